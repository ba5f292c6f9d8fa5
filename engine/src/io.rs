//! The storage seam: what the engine needs from a segment file.
//!
//! The engine's logic (append, flush, recovery, retention) is written against
//! `SegmentFile`/`SegmentStorage`, not against glommio. Production uses
//! `DmaStorage` (O_DIRECT files driven by the shard's io_uring); the trait keeps
//! a deterministic, fault-injecting implementation possible for tests and a
//! simulator, and leaves a way out if the runtime ever has to change.
//!
//! All methods are called only from the shard that owns the partition, so the
//! futures need not be `Send`.
#![allow(async_fn_in_trait)]

use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;

/// Direct I/O alignment used for every write offset and length. 4096 is the
/// physical block size of the disks we target (MACHINE.md: 512 works, 4096 is
/// what the device really writes).
pub const IO_ALIGN: u64 = 4096;

pub fn align_down(v: u64) -> u64 {
    v & !(IO_ALIGN - 1)
}
pub fn align_up(v: u64) -> u64 {
    (v + IO_ALIGN - 1) & !(IO_ALIGN - 1)
}

/// A buffer the file can write with direct I/O.
pub trait IoBuf {
    fn as_mut_slice(&mut self) -> &mut [u8];
}

/// One open segment file, owned by one shard.
pub trait SegmentFile {
    type Buf: IoBuf;
    /// A buffer of `len` bytes (a multiple of IO_ALIGN), aligned for this
    /// file. Its contents are unspecified: callers fill all of it (zeroing the
    /// padding after the data, which recovery must never mistake for a batch),
    /// so the hot path does not clear bytes it is about to overwrite.
    fn alloc_buf(&self, len: usize) -> Self::Buf;
    /// Writes the whole buffer at `pos` (aligned).
    async fn write_at(&self, buf: Self::Buf, pos: u64) -> io::Result<()>;
    /// Reads up to `len` bytes at `pos` (any alignment); shorter at end of file.
    async fn read_at(&self, pos: u64, len: usize) -> io::Result<Bytes>;
    async fn sync_data(&self) -> io::Result<()>;
    async fn truncate(&self, len: u64) -> io::Result<()>;
    /// Reserves space up to `len` bytes without changing the file size.
    async fn preallocate(&self, len: u64) -> io::Result<()>;
    async fn size(&self) -> io::Result<u64>;
    fn path(&self) -> &Path;
}

/// Opens segment files.
pub trait SegmentStorage {
    type File: SegmentFile + 'static;
    async fn open(&self, path: &Path, create: bool) -> io::Result<Rc<Self::File>>;
}

/// glommio DMA (O_DIRECT, io_uring) implementation.
#[derive(Clone, Copy, Default, Debug)]
pub struct DmaStorage;

pub struct DmaSegmentFile {
    file: glommio::io::DmaFile,
    path: PathBuf,
}

impl IoBuf for glommio::io::DmaBuffer {
    fn as_mut_slice(&mut self) -> &mut [u8] {
        self.as_bytes_mut()
    }
}

fn with_path(e: glommio::GlommioError<()>, op: &str, path: &Path) -> io::Error {
    let kind = match &e {
        glommio::GlommioError::IoError(ioe) => ioe.kind(),
        glommio::GlommioError::EnhancedIoError { source, .. } => source.kind(),
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, format!("{op} {}: {e}", path.display()))
}

impl SegmentFile for DmaSegmentFile {
    type Buf = glommio::io::DmaBuffer;

    fn alloc_buf(&self, len: usize) -> Self::Buf {
        debug_assert_eq!(len as u64 % IO_ALIGN, 0);
        self.file.alloc_dma_buffer(len)
    }

    async fn write_at(&self, buf: Self::Buf, pos: u64) -> io::Result<()> {
        assert_eq!(pos % IO_ALIGN, 0, "direct I/O write must be aligned");
        let len = buf.len();
        let n = self.file.write_at(buf, pos).await.map_err(|e| with_path(e, "write", &self.path))?;
        if n != len {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("short write {n}/{len} to {}", self.path.display()),
            ));
        }
        Ok(())
    }

    async fn read_at(&self, pos: u64, len: usize) -> io::Result<Bytes> {
        let r = self.file.read_at(pos, len).await.map_err(|e| with_path(e, "read", &self.path))?;
        Ok(Bytes::copy_from_slice(&r))
    }

    async fn sync_data(&self) -> io::Result<()> {
        self.file.fdatasync().await.map_err(|e| with_path(e, "fdatasync", &self.path))
    }

    async fn truncate(&self, len: u64) -> io::Result<()> {
        self.file.truncate(len).await.map_err(|e| with_path(e, "truncate", &self.path))
    }

    async fn preallocate(&self, len: u64) -> io::Result<()> {
        self.file.pre_allocate(len, true).await.map_err(|e| with_path(e, "fallocate", &self.path))
    }

    async fn size(&self) -> io::Result<u64> {
        self.file.file_size().await.map_err(|e| with_path(e, "stat", &self.path))
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl SegmentStorage for DmaStorage {
    type File = DmaSegmentFile;
    async fn open(&self, path: &Path, create: bool) -> io::Result<Rc<DmaSegmentFile>> {
        let file = glommio::io::OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .dma_open(path)
            .await
            .map_err(|e| with_path(e, "open", path))?;
        Ok(Rc::new(DmaSegmentFile { file, path: path.to_path_buf() }))
    }
}

/// Makes glommio decide whether the disk under `dir` supports polled I/O
/// (IORING_SETUP_IOPOLL) by a read that really reaches the device.
///
/// glommio probes once per device and thread, on the first DMA file opened,
/// by reading its first block. If that first file is empty the read never
/// reaches the device, the probe wrongly succeeds, and later reads on devices
/// without poll queues (virtio-blk, most cloud disks) fail with EOPNOTSUPP.
/// Calling this on each shard before opening any segment makes the probe run
/// against a file with a synced block of data.
pub async fn probe_direct_io(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    // Unique per call: every shard probes concurrently in the same directory.
    static PROBES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = dir.join(format!(".direct-io-probe-{}-{n}", std::process::id()));
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&path)?;
        f.write_all(&[0xA5u8; IO_ALIGN as usize])?;
        f.sync_all()?;
    }
    let r = DmaStorage.open(&path, false).await;
    let _ = std::fs::remove_file(&path);
    let file = r?;
    let b = file.read_at(0, IO_ALIGN as usize).await?;
    if b.len() != IO_ALIGN as usize || b.iter().any(|x| *x != 0xA5) {
        return Err(io::Error::other(format!("direct I/O probe in {} read back wrong data", dir.display())));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    const _: () = assert!(IO_ALIGN.is_power_of_two() && IO_ALIGN >= 512);

    #[test]
    fn alignment_helpers() {
        assert_eq!(align_down(4097), 4096);
        assert_eq!(align_up(4097), 8192);
        assert_eq!(align_up(0), 0);
        assert_eq!(align_up(4096), 4096);
    }
}
