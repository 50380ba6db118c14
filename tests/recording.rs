//! A [`Table`] that records every request made through it: the DynamoDB API call it is
//! (`GetItem` … `TransactWriteItems`), and each item it touches as the action IAM
//! authorises (a transaction is authorised item by item), with the table or index and the
//! partition. `bench-requests` counts the calls per operation; the least-privilege test
//! holds each function's policy to the items.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use storefront::store::{
    Condition, Index, Item, Key, Page, Query, StoreError, Table, TxOp, UpdateOp,
};

/// One request to the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// What the caller was doing, as last set with [`Recording::label`].
    pub label: String,
    /// The DynamoDB API call.
    pub api: &'static str,
    pub items: Vec<Touch>,
}

/// One item a request touches, as IAM authorises it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Touch {
    /// The IAM action, without `dynamodb:`.
    pub action: &'static str,
    /// `table`, or `table/index/<name>`.
    pub resource: &'static str,
    pub partition: String,
}

/// Records the requests made through it, then passes them on to `inner`.
pub struct Recording {
    inner: Arc<dyn Table>,
    label: Mutex<String>,
    requests: Mutex<Vec<Request>>,
}

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Recording {
    pub fn new(inner: Arc<dyn Table>) -> Self {
        Self {
            inner,
            label: Mutex::new(String::new()),
            requests: Mutex::new(Vec::new()),
        }
    }

    /// Labels the requests recorded from now on (the function making them, say).
    pub fn label(&self, label: &str) {
        *locked(&self.label) = label.to_owned();
    }

    /// The requests recorded since the last call, oldest first.
    pub fn take(&self) -> Vec<Request> {
        std::mem::take(&mut *locked(&self.requests))
    }

    fn record(&self, api: &'static str, items: Vec<Touch>) {
        let label = locked(&self.label).clone();
        locked(&self.requests).push(Request { label, api, items });
    }

    /// A single-item request on the table itself, whose API call is its IAM action.
    fn record_one(&self, action: &'static str, partition: &str) {
        let touch = Touch {
            action,
            resource: "table",
            partition: partition.to_owned(),
        };
        self.record(action, vec![touch]);
    }
}

#[async_trait]
impl Table for Recording {
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        self.record_one("GetItem", &key.pk);
        self.inner.get(key).await
    }
    async fn put(&self, item: Item, condition: Option<Condition>) -> Result<(), StoreError> {
        self.record_one("PutItem", &item.key()?.pk);
        self.inner.put(item, condition).await
    }
    async fn update(
        &self,
        key: &Key,
        ops: Vec<UpdateOp>,
        condition: Option<Condition>,
    ) -> Result<Item, StoreError> {
        self.record_one("UpdateItem", &key.pk);
        self.inner.update(key, ops, condition).await
    }
    async fn delete(
        &self,
        key: &Key,
        condition: Option<Condition>,
    ) -> Result<Option<Item>, StoreError> {
        self.record_one("DeleteItem", &key.pk);
        self.inner.delete(key, condition).await
    }
    async fn query(&self, query: Query) -> Result<Page, StoreError> {
        let resource = match query.index {
            Index::Primary => "table",
            Index::Gsi1 => "table/index/gsi1",
        };
        let touch = Touch {
            action: "Query",
            resource,
            partition: query.partition.clone(),
        };
        self.record("Query", vec![touch]);
        self.inner.query(query).await
    }
    async fn transact(&self, ops: Vec<TxOp>) -> Result<(), StoreError> {
        let mut items = Vec::with_capacity(ops.len());
        for op in &ops {
            let action = match op {
                TxOp::Put { .. } => "PutItem",
                TxOp::Update { .. } => "UpdateItem",
                TxOp::Delete { .. } => "DeleteItem",
                TxOp::Check { .. } => "ConditionCheckItem",
            };
            items.push(Touch {
                action,
                resource: "table",
                partition: op.key()?.pk,
            });
        }
        self.record("TransactWriteItems", items);
        self.inner.transact(ops).await
    }
}
