//! Random numbers, record keys and their distributions.

/// Small, fast, seedable PRNG (splitmix64). Not for cryptography; the load
/// generator only needs cheap, reproducible, well-spread numbers.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x2545_f491_4f6c_dd1d)
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    #[inline]
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `[0, n)`; `n > 0`.
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// The text form of key number `id` (fixed width so all keys cost the same).
pub fn key_bytes(id: usize) -> Vec<u8> {
    format!("key-{id:010}").into_bytes()
}

/// Weight of key `rank` (0-based) under Zipf with exponent `s`: `1/(rank+1)^s`.
pub fn zipf_weight(rank: usize, s: f64) -> f64 {
    1.0 / ((rank + 1) as f64).powf(s)
}

/// Samples key ids from a fixed subset of the key space with given weights,
/// by inverse CDF (binary search). The subset is how a connection to one
/// leader only draws keys that hash to the partitions that leader owns.
#[derive(Debug, Clone)]
pub struct KeySampler {
    ids: Vec<u32>,
    /// Cumulative weights, normalised so the last entry is 1.0. Empty for uniform.
    cdf: Vec<f64>,
}

impl KeySampler {
    /// Uniform over `ids`.
    pub fn uniform(ids: Vec<u32>) -> KeySampler {
        assert!(!ids.is_empty(), "key sampler needs at least one key");
        KeySampler { ids, cdf: Vec::new() }
    }

    /// Weighted by `weight(id)` over `ids`.
    pub fn weighted(ids: Vec<u32>, weight: impl Fn(u32) -> f64) -> KeySampler {
        assert!(!ids.is_empty(), "key sampler needs at least one key");
        let mut acc = 0.0;
        let mut cdf: Vec<f64> = ids
            .iter()
            .map(|&i| {
                acc += weight(i);
                acc
            })
            .collect();
        for c in &mut cdf {
            *c /= acc;
        }
        KeySampler { ids, cdf }
    }

    /// Zipf over `ids` with exponent `s` (key id = rank).
    pub fn zipf(ids: Vec<u32>, s: f64) -> KeySampler {
        KeySampler::weighted(ids, |i| zipf_weight(i as usize, s))
    }

    #[inline]
    pub fn sample(&self, rng: &mut Rng) -> u32 {
        if self.cdf.is_empty() {
            return self.ids[rng.below(self.ids.len() as u64) as usize];
        }
        let u = rng.next_f64();
        let i = self.cdf.partition_point(|&c| c <= u).min(self.ids.len() - 1);
        self.ids[i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_below_in_range_and_spread() {
        let mut r = Rng::new(1);
        let mut hits = [0u32; 10];
        for _ in 0..100_000 {
            hits[r.below(10) as usize] += 1;
        }
        for h in hits {
            assert!((9_000..11_000).contains(&h), "{hits:?}");
        }
    }

    #[test]
    fn zipf_distribution_sanity() {
        let n = 1000u32;
        let s = 1.0;
        let z = KeySampler::zipf((0..n).collect(), s);
        let mut r = Rng::new(42);
        let draws = 400_000;
        let mut counts = vec![0u32; n as usize];
        for _ in 0..draws {
            counts[z.sample(&mut r) as usize] += 1;
        }
        let h: f64 = (0..n as usize).map(|k| zipf_weight(k, s)).sum();
        // Rank 0, 1, 9 frequencies match 1/(k+1)/H within 5%.
        for k in [0usize, 1, 9] {
            let expect = zipf_weight(k, s) / h * draws as f64;
            let got = f64::from(counts[k]);
            assert!((got - expect).abs() / expect < 0.05, "rank {k}: got {got}, expected {expect}");
        }
        // Head is heavy, tail is light but present; roughly monotone in decades.
        let decade = |a: usize, b: usize| counts[a..b].iter().map(|&c| u64::from(c)).sum::<u64>();
        assert!(decade(0, 10) > decade(10, 100) / 2);
        assert!(counts[0] > 20 * counts[500]);
        assert!(counts[900..].iter().any(|&c| c > 0));
        // A uniform sampler over the same ids is flat.
        let u = KeySampler::uniform((0..n).collect());
        let mut uc = vec![0u32; n as usize];
        for _ in 0..draws {
            uc[u.sample(&mut r) as usize] += 1;
        }
        let (mn, mx) = (uc.iter().min().unwrap(), uc.iter().max().unwrap());
        assert!(*mn > 250 && *mx < 560, "uniform spread {mn}..{mx}");
    }

    #[test]
    fn subset_sampler_only_returns_subset() {
        let ids: Vec<u32> = (0..100).filter(|i| i % 3 == 0).collect();
        let z = KeySampler::zipf(ids.clone(), 0.99);
        let mut r = Rng::new(7);
        for _ in 0..10_000 {
            assert_eq!(z.sample(&mut r) % 3, 0);
        }
    }
}
