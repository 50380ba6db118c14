//! What a change tells the outside world, written into the outbox in the change's own
//! transaction (`crate::repo::outbox` keeps the items, `crate::jobs::outbox` relays them):
//! an event (`order.created`, `product.updated`, …) carrying the object as the API shows
//! it, or a job for the worker (objects to delete, a refund to ask for).

use serde::Serialize;

use crate::context::AppContext;
use crate::domain::{Event, EventData, Job};
use crate::ids::IdKind;
use crate::repo::outbox;
use crate::store::{StoreError, TxOp};

/// The outbox write announcing `kind` about `object` (as the API shows it) in a shop.
pub fn announce(
    ctx: &AppContext,
    tenant_id: &str,
    kind: &str,
    object: &impl Serialize,
) -> Result<TxOp, StoreError> {
    let object = serde_json::to_value(object)
        .map_err(|e| StoreError::Invalid(format!("the {kind} event does not serialise: {e}")))?;
    let job = Job::Event {
        event: Event {
            id: ctx.ids.next(IdKind::Event),
            kind: kind.to_owned(),
            created_at: crate::clock::rfc3339(ctx.clock.now()),
            tenant_id: tenant_id.to_owned(),
            data: EventData { object },
        },
    };
    queue(ctx, tenant_id, &job)
}

/// The outbox write of a job for the worker, run once the change has landed.
pub fn queue(ctx: &AppContext, tenant_id: &str, job: &Job) -> Result<TxOp, StoreError> {
    outbox::enqueue(
        job,
        &ctx.ids.next(IdKind::Message),
        tenant_id,
        ctx.clock.now(),
    )
}
