//! Quorum messages from another broker (`ringbroker_controller::quorum::wire`):
//! any bytes must decode to an error or to a message whose sender and
//! receiver match its envelope, never panic; and a message that decodes
//! must survive a re-encode unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringbroker_controller::quorum::wire;

fuzz_target!(|data: &[u8]| {
    // A controller's quorum status survives a re-encode too.
    if let Ok(wire::Inbound::Status { from, term, commit_index, voters }) = wire::decode_inbound(data) {
        assert!(voters.len() <= wire::MAX_STATUS_VOTERS);
        let again = wire::encode_status(from, term, commit_index, &voters);
        assert_eq!(
            wire::decode_inbound(&again[4..]).expect("a re-encoded status decodes"),
            wire::Inbound::Status { from, term, commit_index, voters }
        );
    }
    if let Ok((from, to, msg)) = wire::decode(data) {
        let again = wire::encode(from, to, &msg);
        let (f2, t2, m2) = wire::decode(&again[4..]).expect("a re-encoded message decodes");
        assert_eq!((f2, t2), (from, to));
        assert_eq!(m2, msg);
    }
});
