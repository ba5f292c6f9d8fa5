//! Fuzzes what the broker does with a request frame from the network:
//! frame checks, header decode, and the body decode of every supported API.
//! Must never panic, abort, or commit memory out of proportion to the input.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use ringbroker_net::conn::{parse_request, Parsed};

// Same guard as the broker binary: array lengths come from the wire.
#[global_allocator]
static ALLOCATOR: ringbroker_net::alloc_guard::GuardedAlloc = ringbroker_net::alloc_guard::GuardedAlloc;

fuzz_target!(|data: &[u8]| {
    if let Ok(Parsed::Request { api_key, header, body }) = parse_request(Bytes::copy_from_slice(data)) {
        let _ = ringbroker_net::handlers::decode_only(api_key, header.request_api_version, body);
    }
});
