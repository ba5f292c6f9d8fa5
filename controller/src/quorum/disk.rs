//! The few file operations the metadata quorum's store needs, behind a
//! trait: the broker uses files in its `meta/` directory (`FsDisk`); the
//! deterministic simulator uses `SimDisk`, which loses what was not synced
//! and tears the last unsynced write when a node "crashes".
//!
//! Files are small (the Raft log between snapshots, and the snapshot) and
//! written rarely (metadata changes), so plain blocking I/O is fine even on
//! a shard's executor: a change costs one append and one fdatasync.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

pub trait Disk {
    /// The whole file, or `None` if it does not exist.
    fn read(&mut self, name: &str) -> io::Result<Option<Vec<u8>>>;
    /// Appends to the file (created if missing); durable only after `sync`.
    fn append(&mut self, name: &str, data: &[u8]) -> io::Result<()>;
    /// Makes every append to the file so far durable.
    fn sync(&mut self, name: &str) -> io::Result<()>;
    /// Cuts the file to `len` bytes, durably.
    fn truncate(&mut self, name: &str, len: u64) -> io::Result<()>;
    /// Replaces the file's content atomically and durably: after a crash the
    /// file holds either the old or the new content, whole.
    fn replace(&mut self, name: &str, data: &[u8]) -> io::Result<()>;
}

/// Files in one directory.
pub struct FsDisk {
    dir: PathBuf,
    open: BTreeMap<String, File>,
}

impl FsDisk {
    pub fn new(dir: &Path) -> io::Result<FsDisk> {
        std::fs::create_dir_all(dir)?;
        Ok(FsDisk { dir: dir.to_path_buf(), open: BTreeMap::new() })
    }
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    fn file(&mut self, name: &str) -> io::Result<&mut File> {
        if !self.open.contains_key(name) {
            let f = OpenOptions::new().create(true).read(true).append(true).open(self.dir.join(name))?;
            self.open.insert(name.to_string(), f);
        }
        Ok(self.open.get_mut(name).expect("just opened"))
    }
    fn sync_dir(&self) -> io::Result<()> {
        File::open(&self.dir)?.sync_all()
    }
}

impl Disk for FsDisk {
    fn read(&mut self, name: &str) -> io::Result<Option<Vec<u8>>> {
        match File::open(self.dir.join(name)) {
            Ok(mut f) => {
                let mut v = Vec::new();
                f.read_to_end(&mut v)?;
                Ok(Some(v))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
    fn append(&mut self, name: &str, data: &[u8]) -> io::Result<()> {
        let created = !self.open.contains_key(name) && !self.dir.join(name).exists();
        self.file(name)?.write_all(data)?;
        if created {
            // The new file's directory entry must survive a crash too.
            self.sync_dir()?;
        }
        Ok(())
    }
    fn sync(&mut self, name: &str) -> io::Result<()> {
        self.file(name)?.sync_data()
    }
    fn truncate(&mut self, name: &str, len: u64) -> io::Result<()> {
        let f = self.file(name)?;
        f.set_len(len)?;
        f.sync_all()
    }
    fn replace(&mut self, name: &str, data: &[u8]) -> io::Result<()> {
        let tmp = self.dir.join(format!("{name}.tmp"));
        {
            let mut f = File::create(&tmp)?;
            f.write_all(data)?;
            f.sync_all()?;
        }
        // An open append handle would keep writing to the replaced inode.
        self.open.remove(name);
        std::fs::rename(&tmp, self.dir.join(name))?;
        self.sync_dir()
    }
}

/// An in-memory disk for the simulator. Each file has its bytes and how
/// many of them are durable; `crash` keeps the durable prefix and, if the
/// chooser says so, a torn piece of what followed (possibly with its last
/// byte flipped), which is what a power cut leaves of an unsynced append.
#[derive(Default, Clone)]
pub struct SimDisk {
    files: BTreeMap<String, SimFile>,
    /// Count of syncs (so tests can assert that something was made durable).
    pub syncs: u64,
}

#[derive(Default, Clone)]
struct SimFile {
    data: Vec<u8>,
    durable: usize,
}

impl SimDisk {
    /// Loses unsynced bytes. `torn(n)` is asked how many of the `n` unsynced
    /// bytes of each file survive anyway and whether the last survivor is garbled.
    pub fn crash(&mut self, mut torn: impl FnMut(usize) -> (usize, bool)) {
        for f in self.files.values_mut() {
            let unsynced = f.data.len() - f.durable;
            let (keep, garble) = if unsynced > 0 { torn(unsynced) } else { (0, false) };
            let keep = keep.min(unsynced);
            f.data.truncate(f.durable + keep);
            if garble && keep > 0 {
                let last = f.data.len() - 1;
                f.data[last] ^= 0x5a;
            }
            f.durable = f.data.len();
        }
    }
}

impl Disk for SimDisk {
    fn read(&mut self, name: &str) -> io::Result<Option<Vec<u8>>> {
        Ok(self.files.get(name).map(|f| f.data.clone()))
    }
    fn append(&mut self, name: &str, data: &[u8]) -> io::Result<()> {
        self.files.entry(name.to_string()).or_default().data.extend_from_slice(data);
        Ok(())
    }
    fn sync(&mut self, name: &str) -> io::Result<()> {
        let f = self.files.entry(name.to_string()).or_default();
        f.durable = f.data.len();
        self.syncs += 1;
        Ok(())
    }
    fn truncate(&mut self, name: &str, len: u64) -> io::Result<()> {
        let f = self.files.entry(name.to_string()).or_default();
        f.data.truncate(len as usize);
        f.durable = f.data.len();
        Ok(())
    }
    fn replace(&mut self, name: &str, data: &[u8]) -> io::Result<()> {
        self.files.insert(name.to_string(), SimFile { data: data.to_vec(), durable: data.len() });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sim_disk_loses_unsynced_bytes_on_crash() {
        let mut d = SimDisk::default();
        d.append("a", b"hello").unwrap();
        d.sync("a").unwrap();
        d.append("a", b"world").unwrap();
        d.crash(|_| (2, false));
        assert_eq!(d.read("a").unwrap().unwrap(), b"hellowo");
        d.crash(|_| (2, false));
        assert_eq!(d.read("a").unwrap().unwrap(), b"hellowo", "what survived a crash is durable");
    }

    #[test]
    fn fs_disk_appends_and_replaces() {
        let t = tempfile::tempdir().unwrap();
        let mut d = FsDisk::new(t.path()).unwrap();
        assert!(d.read("x").unwrap().is_none());
        d.append("x", b"ab").unwrap();
        d.append("x", b"cd").unwrap();
        d.sync("x").unwrap();
        assert_eq!(d.read("x").unwrap().unwrap(), b"abcd");
        d.truncate("x", 1).unwrap();
        d.append("x", b"z").unwrap();
        assert_eq!(d.read("x").unwrap().unwrap(), b"az");
        d.replace("x", b"new").unwrap();
        d.append("x", b"!").unwrap();
        assert_eq!(d.read("x").unwrap().unwrap(), b"new!");
    }
}
