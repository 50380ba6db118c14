//! The jobs the `worker` function runs, and the dispatcher that routes each to its handler.
//!
//! A job travels as JSON tagged with its `kind`. A body that is not a known job fails, so it
//! is retried and then parked in the dead-letter queue, where an operator can see it.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{JobMessage, Worker};
use crate::context::AppContext;

/// Every kind of job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Job {
    /// Deletes an object from the blob store (abandoned or replaced uploads).
    DeleteBlob { key: String },
}

impl Job {
    pub fn to_body(&self) -> anyhow::Result<String> {
        Ok(serde_json::to_string(self)?)
    }
}

/// Decodes each message as a [`Job`] and runs it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Dispatcher;

#[async_trait]
impl Worker for Dispatcher {
    async fn handle(&self, ctx: &AppContext, message: &JobMessage) -> anyhow::Result<()> {
        let job: Job = serde_json::from_str(&message.body)
            .map_err(|e| anyhow::anyhow!("message {} is not a job: {e}", message.id))?;
        match job {
            Job::DeleteBlob { key } => {
                ctx.blobs.delete(&key).await?;
                tracing::info!(key, "blob deleted");
            }
        }
        Ok(())
    }
}
