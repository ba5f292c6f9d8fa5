//! Metadata records and the metadata log's framing: bytes from disk today,
//! from other brokers once the metadata quorum replicates them. Any input
//! must give an error or a value, never a panic; a record that decodes
//! re-encodes to bytes that decode to the same change; frames read back are
//! a prefix of the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringbroker_controller::records;

fuzz_target!(|data: &[u8]| {
    if let Ok(change) = records::decode(data) {
        let again = records::decode(&records::encode(&change)).expect("an encoded record decodes");
        assert_eq!(again, change);
    }
    let (frames, valid, _end) = ringbroker_net::metadata_log::parse(data);
    assert!(valid <= data.len());
    assert_eq!(frames.iter().map(|f| 20 + f.record.len()).sum::<usize>(), valid);
    for f in frames {
        let _ = records::decode(&f.record);
    }
});
