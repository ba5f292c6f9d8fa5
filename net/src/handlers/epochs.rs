//! Leader-epoch checks of the read APIs (Fetch v9+, ListOffsets v4+), as
//! Kafka makes them: a client that names an epoch newer than the leader's is
//! ahead of this broker's metadata (UNKNOWN_LEADER_EPOCH, retriable), one
//! that names an older epoch is fenced (FENCED_LEADER_EPOCH: refresh
//! metadata). OffsetForLeaderEpoch makes the same check (cluster.rs).

use kafka_protocol::ResponseError;
use ringbroker_engine::ids::LeaderEpoch;

/// The client's `current_leader_epoch` (-1: not given) against the leader's.
pub fn check_current_epoch(current: i32, leader: LeaderEpoch) -> Result<(), ResponseError> {
    let leader = leader.0;
    if current < 0 || current == leader {
        Ok(())
    } else if current > leader {
        Err(ResponseError::UnknownLeaderEpoch)
    } else {
        Err(ResponseError::FencedLeaderEpoch)
    }
}

/// Fetch: the current epoch, then the epoch of the last fetched record
/// (v12+): a record epoch above every epoch this log has had means the
/// client read a history this leader never wrote, which Kafka answers with
/// OFFSET_OUT_OF_RANGE so the consumer resets.
pub fn check_fetch_epochs(current: i32, last_fetched: i32, leader: LeaderEpoch) -> Result<(), ResponseError> {
    check_current_epoch(current, leader)?;
    if last_fetched > leader.0 {
        return Err(ResponseError::OffsetOutOfRange);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_like_kafka() {
        let (e0, e3) = (LeaderEpoch(0), LeaderEpoch(3));
        assert_eq!(check_current_epoch(-1, e3), Ok(()));
        assert_eq!(check_current_epoch(3, e3), Ok(()));
        assert_eq!(check_current_epoch(4, e3), Err(ResponseError::UnknownLeaderEpoch));
        assert_eq!(check_current_epoch(2, e3), Err(ResponseError::FencedLeaderEpoch));
        assert_eq!(check_fetch_epochs(-1, -1, e0), Ok(()));
        assert_eq!(check_fetch_epochs(0, 0, e0), Ok(()));
        assert_eq!(check_fetch_epochs(-1, 3, e0), Err(ResponseError::OffsetOutOfRange));
        assert_eq!(check_fetch_epochs(5, -1, e0), Err(ResponseError::UnknownLeaderEpoch));
    }
}
