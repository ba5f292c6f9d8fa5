//! ApiVersions: what we serve, and the KIP-511 answer to a version we don't.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};
use kafka_protocol::protocol::Encodable;
use kafka_protocol::ResponseError;

use super::SUPPORTED;

pub fn response() -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_error_code(0).with_api_keys(
        SUPPORTED
            .iter()
            .map(|(k, lo, hi)| {
                // Never advertise beyond what the codec can decode.
                let codec = k.valid_versions();
                assert!(*lo >= codec.min && *hi <= codec.max, "{k:?} range outside codec");
                ApiVersion::default().with_api_key(*k as i16).with_min_version(*lo).with_max_version(*hi)
            })
            .collect(),
    )
}

/// KIP-511: a client on ApiVersions v3+ names its software; Kafka refuses
/// names and versions outside `[a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?`
/// with INVALID_REQUEST and no API list.
pub fn valid_client_software(s: &str) -> bool {
    let b = s.as_bytes();
    let inner_ok = |c: &u8| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'.';
    match (b.first(), b.last()) {
        (Some(f), Some(l)) => f.is_ascii_alphanumeric() && l.is_ascii_alphanumeric() && b.iter().all(inner_ok),
        _ => false,
    }
}

/// A v0 ApiVersions response with UNSUPPORTED_VERSION: clients that asked
/// for a newer version than we know retry with the highest ApiVersions we
/// list (like Kafka, only ApiVersions' own range is listed).
pub fn unsupported_version_response(correlation_id: i32) -> Bytes {
    let own = response().api_keys.into_iter().filter(|a| a.api_key == ApiKey::ApiVersions as i16).collect();
    let body =
        ApiVersionsResponse::default().with_error_code(ResponseError::UnsupportedVersion.code()).with_api_keys(own);
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    buf.put_i32(correlation_id);
    body.encode(&mut buf, 0).expect("v0 ApiVersions always encodes");
    let len = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    buf.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::protocol::Decodable;

    #[test]
    fn client_software_names_as_kafka_checks_them() {
        for ok in ["librdkafka", "apache-kafka-java", "4.1.1", "a", "v1.2-rc3"] {
            assert!(valid_client_software(ok), "{ok}");
        }
        for bad in ["", "bad name!", "-x", "x.", "ümlaut"] {
            assert!(!valid_client_software(bad), "{bad}");
        }
    }

    #[test]
    fn advertised_ranges_decode_and_fallback_is_v0() {
        let r = response();
        assert!(r.api_keys.iter().any(|a| a.api_key == ApiKey::Produce as i16));
        let mut b = unsupported_version_response(7).slice(4..);
        assert_eq!(bytes::Buf::get_i32(&mut b), 7);
        let d = ApiVersionsResponse::decode(&mut b, 0).unwrap();
        assert_eq!(d.error_code, 35);
        assert_eq!(d.api_keys.len(), 1);
        assert_eq!(d.api_keys[0].api_key, ApiKey::ApiVersions as i16);
    }
}
