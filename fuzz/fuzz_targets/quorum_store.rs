//! The metadata quorum's files as found on disk after anything (a crash, a
//! bad disk, a hostile edit): opening the store from arbitrary log and
//! snapshot bytes returns an error or a store, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringbroker_controller::quorum::disk::{Disk, SimDisk};
use ringbroker_controller::quorum::store::{RaftStore, LOG_FILE, SNAPSHOT_FILE};

fuzz_target!(|data: &[u8]| {
    // First byte: where the snapshot bytes end and the log bytes begin.
    let Some((&cut, rest)) = data.split_first() else { return };
    let cut = (cut as usize).min(rest.len());
    let mut disk = SimDisk::default();
    if cut > 0 {
        disk.replace(SNAPSHOT_FILE, &rest[..cut]).unwrap();
    }
    disk.replace(LOG_FILE, &rest[cut..]).unwrap();
    if let Ok(store) = RaftStore::open(disk, &[1, 2, 3]) {
        use raft::Storage;
        let (first, last) = (store.first_index().unwrap(), store.last_index().unwrap());
        assert!(first <= last + 1);
        let _ = store.initial_state();
    }
});
