//! Kafka's default partitioner hash: murmur2 as implemented in
//! `org.apache.kafka.common.utils.Utils.murmur2` (seed 0x9747b28c).

/// murmur2 of `data`, bit-identical to Kafka's Java implementation. The
/// one implementation lives in the Kafka client crate (`ringbroker-cli`),
/// which has no ringbroker-specific behaviour.
pub use ringbroker_cli::produce::murmur2;

/// Kafka's keyed partition choice: `toPositive(murmur2(key)) % numPartitions`.
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    ((murmur2(key) & 0x7fff_ffff) as u32) % partitions
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_vectors() {
        // From Kafka's UtilsTest.testMurmur2.
        assert_eq!(murmur2(b"21"), -973_932_308);
        assert_eq!(murmur2(b"foobar"), -790_332_482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985_981_536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1_486_304_829);
        assert_eq!(murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"), -58_897_971);
        assert_eq!(murmur2(b"abc"), 479_470_107);
    }

    #[test]
    fn partition_is_positive_modulo() {
        for k in 0..1000u32 {
            let key = format!("key-{k}");
            let p = partition_for_key(key.as_bytes(), 7);
            assert!(p < 7);
            assert_eq!(p, ((murmur2(key.as_bytes()) & 0x7fff_ffff) as u32) % 7);
        }
    }
}
