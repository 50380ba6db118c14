//! The `Table` conformance suite: every case runs against the embedded adapter and against
//! the DynamoDB adapter on moto, and both must behave the same.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use storefront::clock::{Clock, ManualClock};
use storefront::store::dynamo::{create_table, DynamoTable};
use storefront::store::embedded::EmbeddedTable;
use storefront::store::{
    Condition, Consistency, Index, Item, Key, Query, SortKey, StoreError, Table, TxOp, UpdateOp,
};

use crate::helpers;

/// A table, the clock it reads TTLs against, and whatever keeps it alive.
pub struct Fixture {
    pub table: Arc<dyn Table>,
    pub clock: Arc<ManualClock>,
    _guard: Option<tempfile::TempDir>,
}

fn start_clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(
        chrono::DateTime::from_timestamp(1_800_000_000, 0).expect("time"),
    ))
}

pub async fn embedded() -> Fixture {
    let dir = helpers::temp_dir();
    let clock = start_clock();
    let table = EmbeddedTable::open(
        &dir.path().join("table.redb"),
        clock.clone() as Arc<dyn Clock>,
    )
    .expect("open");
    Fixture {
        table: Arc::new(table),
        clock,
        _guard: Some(dir),
    }
}

pub async fn dynamo() -> Fixture {
    let sdk = helpers::moto_sdk().await;
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    let name = helpers::unique("table");
    create_table(&client, &name)
        .await
        .expect("create table on moto");
    let clock = start_clock();
    let table = DynamoTable::new(client, name, clock.clone() as Arc<dyn Clock>);
    Fixture {
        table: Arc::new(table),
        clock,
        _guard: None,
    }
}

conformance!(embedded, dynamo;
    an_item_reads_back_with_every_json_type_intact,
    a_missing_item_reads_as_none,
    a_put_that_must_not_exist_refuses_a_second_item,
    a_conditional_update_applies_only_while_the_condition_holds,
    an_update_creates_a_missing_item_and_adds_to_counters,
    a_delete_returns_the_old_item_and_honours_its_condition,
    a_query_reads_one_partition_in_sort_order_both_ways,
    a_query_filters_the_sort_key_by_prefix_equality_and_range,
    paging_with_the_cursor_visits_every_item_exactly_once,
    the_secondary_index_follows_puts_updates_and_deletes,
    a_transaction_lands_whole_or_not_at_all,
    a_transaction_of_a_hundred_operations_lands_and_more_are_refused,
    a_transaction_cannot_touch_one_item_twice,
    an_expired_item_reads_as_absent,
    a_batch_read_answers_in_the_order_asked_with_none_for_absent_and_expired_items,
);

fn key(pk: &str, sk: &str) -> Key {
    Key::new(pk, sk)
}

async fn an_item_reads_back_with_every_json_type_intact(f: Fixture) {
    let item = Item::new(&key("T#1", "A"))
        .with("name", "Mug ☕")
        .with("price", 1250)
        .with("active", true)
        .with("tags", json!(["a", "b"]))
        .with("dims", json!({"w": 10, "h": 12}));
    f.table.put(item.clone(), None).await.unwrap();
    let read = f.table.get(&key("T#1", "A")).await.unwrap().expect("item");
    for field in ["name", "price", "active", "tags", "dims"] {
        assert_eq!(read.get(field), item.get(field), "{field}");
    }
}

async fn a_missing_item_reads_as_none(f: Fixture) {
    assert_eq!(f.table.get(&key("T#1", "nothing")).await.unwrap(), None);
}

async fn a_put_that_must_not_exist_refuses_a_second_item(f: Fixture) {
    let first = Item::new(&key("T#1", "EMAIL")).with("user", "u1");
    f.table
        .put(first, Some(Condition::NotExists))
        .await
        .unwrap();
    let second = Item::new(&key("T#1", "EMAIL")).with("user", "u2");
    let err = f
        .table
        .put(second, Some(Condition::NotExists))
        .await
        .unwrap_err();
    assert!(err.is_condition_failed(), "{err:?}");
    let kept = f.table.get(&key("T#1", "EMAIL")).await.unwrap().unwrap();
    assert_eq!(
        kept.get_str("user"),
        Some("u1"),
        "the refused put changed nothing"
    );
}

async fn a_conditional_update_applies_only_while_the_condition_holds(f: Fixture) {
    f.table
        .put(Item::new(&key("P#1", "PRODUCT")).with("stock", 3), None)
        .await
        .unwrap();
    let reserve = |n: i64| {
        let table = f.table.clone();
        async move {
            table
                .update(
                    &key("P#1", "PRODUCT"),
                    vec![UpdateOp::add("stock", -n)],
                    Some(Condition::ge("stock", n)),
                )
                .await
        }
    };
    let after = reserve(2).await.unwrap();
    assert_eq!(after.get_i64("stock"), Some(1));
    let err = reserve(2).await.unwrap_err();
    assert!(err.is_condition_failed(), "{err:?}");
    let now = f.table.get(&key("P#1", "PRODUCT")).await.unwrap().unwrap();
    assert_eq!(
        now.get_i64("stock"),
        Some(1),
        "a failed condition changes nothing"
    );
}

async fn an_update_creates_a_missing_item_and_adds_to_counters(f: Fixture) {
    let k = key("RATE#ip#1", "RATE");
    let first = f
        .table
        .update(
            &k,
            vec![UpdateOp::add("count", 1), UpdateOp::set("scope", "ip")],
            None,
        )
        .await
        .unwrap();
    assert_eq!(first.get_i64("count"), Some(1));
    let second = f
        .table
        .update(
            &k,
            vec![UpdateOp::add("count", 1), UpdateOp::remove("scope")],
            None,
        )
        .await
        .unwrap();
    assert_eq!(second.get_i64("count"), Some(2));
    assert_eq!(second.get("scope"), None);
    assert_eq!(second.key().unwrap(), k);
}

async fn a_delete_returns_the_old_item_and_honours_its_condition(f: Fixture) {
    f.table
        .put(
            Item::new(&key("S#1", "SESSION")).with("status", "active"),
            None,
        )
        .await
        .unwrap();
    let err = f
        .table
        .delete(
            &key("S#1", "SESSION"),
            Some(Condition::eq("status", "revoked")),
        )
        .await
        .unwrap_err();
    assert!(err.is_condition_failed());
    let old = f
        .table
        .delete(
            &key("S#1", "SESSION"),
            Some(Condition::eq("status", "active")),
        )
        .await
        .unwrap();
    assert_eq!(
        old.and_then(|i| i.get_str("status").map(str::to_owned))
            .as_deref(),
        Some("active")
    );
    assert_eq!(f.table.get(&key("S#1", "SESSION")).await.unwrap(), None);
    assert_eq!(
        f.table.delete(&key("S#1", "SESSION"), None).await.unwrap(),
        None,
        "deleting nothing is fine"
    );
}

async fn seed_partition(f: &Fixture, pk: &str, sks: &[&str]) {
    for sk in sks {
        f.table
            .put(Item::new(&key(pk, sk)).with("n", *sk), None)
            .await
            .unwrap();
    }
    // A neighbouring partition that must never leak into the results.
    f.table
        .put(Item::new(&key(&format!("{pk}X"), "A")), None)
        .await
        .unwrap();
}

fn sks(items: &[Item]) -> Vec<String> {
    items.iter().map(|i| i.key().unwrap().sk).collect()
}

async fn a_query_reads_one_partition_in_sort_order_both_ways(f: Fixture) {
    seed_partition(&f, "U#1", &["SESSION#b", "SESSION#a", "USER", "SESSION#c"]).await;
    let forward = f
        .table
        .query(Query::partition(Index::Primary, "U#1").limit(10))
        .await
        .unwrap();
    assert_eq!(
        sks(&forward.items),
        ["SESSION#a", "SESSION#b", "SESSION#c", "USER"]
    );
    assert_eq!(forward.next, None);
    let backward = f
        .table
        .query(Query::partition(Index::Primary, "U#1").backward().limit(2))
        .await
        .unwrap();
    assert_eq!(sks(&backward.items), ["USER", "SESSION#c"]);
    assert!(backward.next.is_some(), "more items remain");
}

async fn a_query_filters_the_sort_key_by_prefix_equality_and_range(f: Fixture) {
    seed_partition(&f, "U#2", &["A#1", "B#1", "B#2", "B#3", "C#1"]).await;
    let q = |sort| Query::partition(Index::Primary, "U#2").sort(sort).limit(10);
    let prefix = f
        .table
        .query(q(SortKey::BeginsWith("B#".into())))
        .await
        .unwrap();
    assert_eq!(sks(&prefix.items), ["B#1", "B#2", "B#3"]);
    let prefix_back = f
        .table
        .query(q(SortKey::BeginsWith("B#".into())).backward())
        .await
        .unwrap();
    assert_eq!(sks(&prefix_back.items), ["B#3", "B#2", "B#1"]);
    let eq = f.table.query(q(SortKey::Eq("C#1".into()))).await.unwrap();
    assert_eq!(sks(&eq.items), ["C#1"]);
    let between = f
        .table
        .query(q(SortKey::Between("A#1".into(), "B#2".into())))
        .await
        .unwrap();
    assert_eq!(sks(&between.items), ["A#1", "B#1", "B#2"]);
}

async fn paging_with_the_cursor_visits_every_item_exactly_once(f: Fixture) {
    let all: Vec<String> = (0..25).map(|i| format!("ORDER#{i:03}")).collect();
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    seed_partition(&f, "C#1", &refs).await;
    for backward in [false, true] {
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let mut q = Query::partition(Index::Primary, "C#1")
                .limit(7)
                .after(after.take());
            if backward {
                q = q.backward();
            }
            let page = f.table.query(q).await.unwrap();
            assert!(page.items.len() <= 7);
            seen.extend(sks(&page.items));
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        let mut expected = all.clone();
        if backward {
            expected.reverse();
        }
        assert_eq!(seen, expected, "backward={backward}");
    }
}

async fn the_secondary_index_follows_puts_updates_and_deletes(f: Fixture) {
    for (id, name) in [("p1", "banana"), ("p2", "apple"), ("p3", "cherry")] {
        let item = Item::new(&key(&format!("T#1#PRODUCT#{id}"), "PRODUCT"))
            .with_gsi1("T#1#PRODUCTS", name);
        f.table.put(item, None).await.unwrap();
    }
    let names = |page: storefront::store::Page| {
        page.items
            .iter()
            .map(|i| i.get_str("gsi1sk").unwrap_or_default().to_owned())
            .collect::<Vec<_>>()
    };
    let q = || Query::partition(Index::Gsi1, "T#1#PRODUCTS").limit(10);
    assert_eq!(
        names(f.table.query(q()).await.unwrap()),
        ["apple", "banana", "cherry"]
    );
    f.table
        .update(
            &key("T#1#PRODUCT#p1", "PRODUCT"),
            vec![UpdateOp::set("gsi1sk", "blueberry")],
            None,
        )
        .await
        .unwrap();
    f.table
        .delete(&key("T#1#PRODUCT#p3", "PRODUCT"), None)
        .await
        .unwrap();
    assert_eq!(
        names(f.table.query(q()).await.unwrap()),
        ["apple", "blueberry"]
    );
    let prefix = f
        .table
        .query(q().sort(SortKey::BeginsWith("b".into())))
        .await
        .unwrap();
    assert_eq!(names(prefix), ["blueberry"]);
    // Paging through the index.
    let first = f.table.query(q().limit(1)).await.unwrap();
    let second = f
        .table
        .query(q().limit(1).after(first.next.clone()))
        .await
        .unwrap();
    assert_eq!(names(first), ["apple"]);
    assert_eq!(names(second), ["blueberry"]);
}

async fn a_transaction_lands_whole_or_not_at_all(f: Fixture) {
    f.table
        .put(Item::new(&key("P#1", "PRODUCT")).with("stock", 5), None)
        .await
        .unwrap();
    f.table
        .put(Item::new(&key("P#2", "PRODUCT")).with("stock", 1), None)
        .await
        .unwrap();
    let order = |id: &str, qty2: i64| {
        vec![
            TxOp::Put {
                item: Item::new(&key(id, "ORDER")),
                condition: Some(Condition::NotExists),
            },
            TxOp::Update {
                key: key("P#1", "PRODUCT"),
                ops: vec![UpdateOp::add("stock", -1)],
                condition: Some(Condition::ge("stock", 1)),
            },
            TxOp::Update {
                key: key("P#2", "PRODUCT"),
                ops: vec![UpdateOp::add("stock", -qty2)],
                condition: Some(Condition::ge("stock", qty2)),
            },
        ]
    };
    let err = f.table.transact(order("O#1", 2)).await.unwrap_err();
    match err {
        StoreError::ConditionFailed { op } => assert_eq!(op, Some(2), "the third operation failed"),
        other => panic!("expected a failed condition, got {other:?}"),
    }
    assert_eq!(
        f.table.get(&key("O#1", "ORDER")).await.unwrap(),
        None,
        "no order written"
    );
    let p1 = f.table.get(&key("P#1", "PRODUCT")).await.unwrap().unwrap();
    assert_eq!(p1.get_i64("stock"), Some(5), "no stock taken");
    f.table.transact(order("O#2", 1)).await.unwrap();
    assert!(f.table.get(&key("O#2", "ORDER")).await.unwrap().is_some());
    let p2 = f.table.get(&key("P#2", "PRODUCT")).await.unwrap().unwrap();
    assert_eq!(p2.get_i64("stock"), Some(0));
    // A condition check that fails blocks the writes beside it.
    let check = vec![
        TxOp::Check {
            key: key("P#2", "PRODUCT"),
            condition: Condition::ge("stock", 1),
        },
        TxOp::Put {
            item: Item::new(&key("O#3", "ORDER")),
            condition: None,
        },
    ];
    assert!(f
        .table
        .transact(check)
        .await
        .unwrap_err()
        .is_condition_failed());
    assert_eq!(f.table.get(&key("O#3", "ORDER")).await.unwrap(), None);
}

async fn a_transaction_of_a_hundred_operations_lands_and_more_are_refused(f: Fixture) {
    let puts = |n: usize| {
        (0..n)
            .map(|i| TxOp::Put {
                item: Item::new(&key("BULK", &format!("I#{i:03}"))),
                condition: None,
            })
            .collect::<Vec<_>>()
    };
    assert!(matches!(
        f.table.transact(puts(101)).await,
        Err(StoreError::Invalid(_))
    ));
    f.table.transact(puts(100)).await.unwrap();
    let page = f
        .table
        .query(Query::partition(Index::Primary, "BULK").limit(1000))
        .await
        .unwrap();
    assert_eq!(page.items.len(), 100);
}

async fn a_transaction_cannot_touch_one_item_twice(f: Fixture) {
    let ops = vec![
        TxOp::Put {
            item: Item::new(&key("D#1", "X")),
            condition: None,
        },
        TxOp::Delete {
            key: key("D#1", "X"),
            condition: None,
        },
    ];
    assert!(matches!(
        f.table.transact(ops).await,
        Err(StoreError::Invalid(_))
    ));
}

async fn an_expired_item_reads_as_absent(f: Fixture) {
    let now = f.clock.now().timestamp();
    f.table
        .put(
            Item::new(&key("I#1", "IDEMPOTENCY")).with_ttl(now + 60),
            None,
        )
        .await
        .unwrap();
    f.table
        .put(Item::new(&key("I#1", "KEEP")), None)
        .await
        .unwrap();
    assert!(f
        .table
        .get(&key("I#1", "IDEMPOTENCY"))
        .await
        .unwrap()
        .is_some());
    f.clock.advance(Duration::from_secs(61));
    assert_eq!(f.table.get(&key("I#1", "IDEMPOTENCY")).await.unwrap(), None);
    let page = f
        .table
        .query(Query::partition(Index::Primary, "I#1").limit(10))
        .await
        .unwrap();
    assert_eq!(sks(&page.items), ["KEEP"]);
    // An expired item counts as absent for conditions too, though DynamoDB may not have
    // swept it yet: an expired idempotency record must not block a new one.
    f.table
        .put(
            Item::new(&key("I#1", "IDEMPOTENCY")),
            Some(Condition::NotExists),
        )
        .await
        .expect("an expired item does not block a put that requires absence");
}

async fn a_batch_read_answers_in_the_order_asked_with_none_for_absent_and_expired_items(
    f: Fixture,
) {
    let now = f.clock.now().timestamp();
    for n in 0..120 {
        f.table
            .put(
                Item::new(&key("B#1", &format!("K{n:03}"))).with("n", n),
                None,
            )
            .await
            .unwrap();
    }
    f.table
        .put(Item::new(&key("B#2", "SOON")).with_ttl(now + 5), None)
        .await
        .unwrap();
    f.clock.advance(Duration::from_secs(6));
    let keys = [
        key("B#1", "K007"),
        key("B#1", "MISSING"),
        key("B#2", "SOON"),
        key("B#1", "K003"),
        key("B#1", "K007"),
    ];
    let read = f.table.get_many(&keys, Consistency::Strong).await.unwrap();
    let numbers: Vec<Option<i64>> = read
        .iter()
        .map(|item| item.as_ref().and_then(|i| i.get_i64("n")))
        .collect();
    assert_eq!(numbers, [Some(7), None, None, Some(3), Some(7)]);

    let hundred: Vec<Key> = (0..100).map(|n| key("B#1", &format!("K{n:03}"))).collect();
    let read = f
        .table
        .get_many(&hundred, Consistency::Strong)
        .await
        .unwrap();
    assert!(
        read.iter().all(Option::is_some),
        "a full batch of 100 reads whole"
    );
    let too_many: Vec<Key> = (0..101).map(|n| key("B#1", &format!("K{n:03}"))).collect();
    assert!(matches!(
        f.table.get_many(&too_many, Consistency::Strong).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        f.table.get_many(&[], Consistency::Strong).await,
        Err(StoreError::Invalid(_))
    ));
}
