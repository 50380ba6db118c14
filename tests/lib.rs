//! What the end-to-end suite and the benchmarks share: a store that records every request
//! made through it, as DynamoDB and IAM see it.

pub mod receiver;
pub mod recording;
pub mod template;
