//! [`Transaction`]: an all-or-nothing write whose operations each carry a label of the
//! caller's choosing ("the email lock", "line 3's stock"). A failed condition comes back as
//! the label of the operation it guarded, never as a position the caller must count, and
//! DynamoDB's rules (at most [`MAX_TRANSACTION_OPS`] operations, one per item) are checked
//! as each operation is added, where the mistake is made, not when the store refuses.
//!
//! ```ignore
//! let mut tx = Transaction::new();
//! tx.add("the order", orders::create(&order)?)?;
//! for (n, line) in order.lines.iter().enumerate() {
//!     tx.add(format!("line {n}'s stock"), catalog::take_stock(line)?)?;
//! }
//! match tx.commit(table).await {
//!     Err(TransactionError::Refused(label)) if label.ends_with("stock") => /* 409 */,
//!     ...
//! }
//! ```

use std::collections::HashSet;
use std::fmt::Debug;

use super::{Condition, Item, Key, StoreError, Table, TxOp, UpdateOp, MAX_TRANSACTION_OPS};

/// Operations to apply together, each under a label.
#[derive(Debug)]
pub struct Transaction<L> {
    parts: Vec<(L, TxOp)>,
    keys: HashSet<Key>,
}

/// Why a transaction did not apply.
#[derive(Debug, thiserror::Error)]
pub enum TransactionError<L: Debug> {
    /// The condition of the operation with this label did not hold; nothing was written.
    #[error("the condition of {0:?} did not hold")]
    Refused(L),
    /// Anything else: a conflict with a concurrent transaction, an outage, a bug.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl<L: Debug> TransactionError<L> {
    /// The error as the store would name it, for callers that treat every failed condition
    /// alike.
    pub fn into_store(self) -> StoreError {
        match self {
            Self::Refused(_) => StoreError::ConditionFailed { op: None },
            Self::Store(e) => e,
        }
    }
}

impl<L: Debug> Default for Transaction<L> {
    fn default() -> Self {
        Self::new()
    }
}

impl<L: Debug> Transaction<L> {
    pub fn new() -> Self {
        Self {
            parts: Vec::new(),
            keys: HashSet::new(),
        }
    }

    /// Adds an operation under `label`. Refused (a bug in the caller, never user input)
    /// when the transaction already holds [`MAX_TRANSACTION_OPS`] operations or one on
    /// the same item.
    pub fn add(&mut self, label: L, op: TxOp) -> Result<&mut Self, StoreError> {
        if self.parts.len() >= MAX_TRANSACTION_OPS {
            return Err(StoreError::Invalid(format!(
                "{label:?} would be operation {} of a transaction; DynamoDB allows {MAX_TRANSACTION_OPS}",
                self.parts.len() + 1
            )));
        }
        let key = op.key()?;
        if !self.keys.insert(key.clone()) {
            return Err(StoreError::Invalid(format!(
                "{label:?} touches {}/{} again; a transaction touches an item once",
                key.pk, key.sk
            )));
        }
        self.parts.push((label, op));
        Ok(self)
    }

    /// Puts a whole item.
    pub fn put(
        &mut self,
        label: L,
        item: Item,
        condition: Option<Condition>,
    ) -> Result<&mut Self, StoreError> {
        self.add(label, TxOp::Put { item, condition })
    }

    /// Changes an item's attributes in place.
    pub fn update(
        &mut self,
        label: L,
        key: Key,
        ops: Vec<UpdateOp>,
        condition: Option<Condition>,
    ) -> Result<&mut Self, StoreError> {
        self.add(
            label,
            TxOp::Update {
                key,
                ops,
                condition,
            },
        )
    }

    /// Deletes an item.
    pub fn delete(
        &mut self,
        label: L,
        key: Key,
        condition: Option<Condition>,
    ) -> Result<&mut Self, StoreError> {
        self.add(label, TxOp::Delete { key, condition })
    }

    /// Writes nothing; the transaction fails unless `condition` holds on the item.
    pub fn check(
        &mut self,
        label: L,
        key: Key,
        condition: Condition,
    ) -> Result<&mut Self, StoreError> {
        self.add(label, TxOp::Check { key, condition })
    }

    /// How many operations it holds.
    pub fn len(&self) -> usize {
        self.parts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// How many more operations it can take.
    pub fn room(&self) -> usize {
        MAX_TRANSACTION_OPS - self.parts.len()
    }

    /// The labels, in the order the operations were added.
    pub fn labels(&self) -> impl Iterator<Item = &L> {
        self.parts.iter().map(|(label, _)| label)
    }

    /// Applies every operation or none. A transaction of one write is sent as that plain
    /// write, which DynamoDB bills at half a transaction's capacity, with the same outcome.
    pub async fn commit(self, table: &dyn Table) -> Result<(), TransactionError<L>> {
        let mut parts = self.parts;
        if parts.len() == 1 && !matches!(parts[0].1, TxOp::Check { .. }) {
            let Some((label, op)) = parts.pop() else {
                return Ok(());
            };
            return match table.write(op).await {
                Err(e) if e.is_condition_failed() => Err(TransactionError::Refused(label)),
                other => other.map_err(TransactionError::Store),
            };
        }
        let (mut labels, ops): (Vec<L>, Vec<TxOp>) = parts.into_iter().unzip();
        match table.transact(ops).await {
            Ok(()) => Ok(()),
            Err(StoreError::ConditionFailed { op: Some(i) }) if i < labels.len() => {
                Err(TransactionError::Refused(labels.swap_remove(i)))
            }
            Err(e) => Err(TransactionError::Store(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clock::SystemClock;
    use crate::store::embedded::EmbeddedTable;

    fn put(n: usize) -> TxOp {
        TxOp::Put {
            item: Item::new(&Key::new(format!("T#{n}"), "X")),
            condition: Some(Condition::NotExists),
        }
    }

    #[test]
    fn the_hundred_and_first_operation_is_refused_as_it_is_added() {
        let mut tx = Transaction::new();
        for n in 0..MAX_TRANSACTION_OPS {
            tx.add(format!("item {n}"), put(n)).unwrap();
        }
        assert_eq!(tx.room(), 0);
        let refused = tx.add("one too many".to_owned(), put(100)).unwrap_err();
        assert!(refused.to_string().contains("one too many"), "{refused}");
        assert_eq!(tx.len(), MAX_TRANSACTION_OPS);
    }

    #[test]
    fn an_item_is_touched_once() {
        let mut tx = Transaction::new();
        tx.add("first", put(1)).unwrap();
        let again = tx.add("again", put(1)).unwrap_err();
        assert!(again.to_string().contains("again"), "{again}");
    }

    #[tokio::test]
    async fn a_failed_condition_comes_back_as_its_label_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let table = EmbeddedTable::open(&dir.path().join("t.redb"), Arc::new(SystemClock)).unwrap();
        table
            .put(Item::new(&Key::new("T#2", "X")), None)
            .await
            .unwrap();
        let mut tx = Transaction::new();
        tx.add("line 0", put(0))
            .unwrap()
            .add("line 1", put(1))
            .unwrap()
            .add("line 2", put(2))
            .unwrap();
        match tx.commit(&table).await {
            Err(TransactionError::Refused(label)) => assert_eq!(label, "line 2"),
            other => panic!("expected line 2 refused, got {other:?}"),
        }
        assert!(table.get(&Key::new("T#0", "X")).await.unwrap().is_none());
        // One write alone is sent as the plain write, refused under its label all the same.
        let mut single = Transaction::new();
        single.add("the only one", put(2)).unwrap();
        match single.commit(&table).await {
            Err(TransactionError::Refused(label)) => assert_eq!(label, "the only one"),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
}
