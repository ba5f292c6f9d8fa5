//! InitProducerId for idempotent (non-transactional) producers.
//!
//! Producer ids are handed out by the controller shard from blocks reserved
//! durably in metadata (`AllocateProducerIds`), so an id is never reused
//! across restarts while only one metadata write is needed per block.

use std::rc::Rc;

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::ResponseError;

use crate::messages::{Request, Response};
use crate::metadata::MetadataChange;
use crate::router::Transport;
use crate::shard::{Shard, CONTROLLER_SHARD};

/// Producer ids reserved per metadata write.
pub const PRODUCER_ID_BLOCK: i64 = 1000;

pub async fn handle(shard: &Rc<Shard>, req: InitProducerIdRequest, _version: i16) -> InitProducerIdResponse {
    let fail = |e: ResponseError| {
        InitProducerIdResponse::default()
            .with_error_code(e.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    if req.transactional_id.is_some() {
        // Transactions are not implemented: refuse rather than pretend.
        return fail(ResponseError::TransactionalIdAuthorizationFailed);
    }
    match shard.router.request(shard, CONTROLLER_SHARD, Request::AllocateProducerId).await {
        Some(Response::ProducerId(Ok(id))) => {
            InitProducerIdResponse::default().with_error_code(0).with_producer_id(ProducerId(id)).with_producer_epoch(0)
        }
        Some(Response::ProducerId(Err(e))) => fail(e),
        _ => fail(ResponseError::CoordinatorNotAvailable),
    }
}

/// Runs on the controller shard.
pub async fn next_producer_id(shard: &Rc<Shard>) -> Result<i64, ResponseError> {
    loop {
        let (next, end) = shard.producer_id_block.get();
        if next < end {
            shard.producer_id_block.set((next + 1, end));
            return Ok(next);
        }
        // Reserve a new block durably before handing out any id from it.
        let img = shard
            .change_metadata(MetadataChange::AllocateProducerIds { count: PRODUCER_ID_BLOCK })
            .await
            .map_err(|(e, _)| e)?;
        let end = img.next_producer_id;
        let (next, old_end) = shard.producer_id_block.get();
        if next >= old_end {
            shard.producer_id_block.set((end - PRODUCER_ID_BLOCK, end));
        }
    }
}
