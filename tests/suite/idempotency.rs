//! The idempotency store on both table adapters: a retried request replays the first
//! answer, another request under the same key is refused, a request still running blocks
//! its retries, a crashed one's lease lapses, and the answer lands only with its change.

use std::sync::Arc;
use std::time::Duration;

use storefront::clock::Clock as _;
use storefront::domain::{TenantId, TypedId as _};
use storefront::repo::idempotency::{
    begin, Begin, IdempotencyKey, Lease, Refusal, Scope, StoredResponse, LEASE_SECONDS,
    RETENTION_SECONDS,
};
use storefront::store::{Condition, Item, Key, StoreError, TxOp};

use crate::table_conformance::{dynamo, embedded, Fixture};

fn scope(principal: &str, key: &str) -> Scope {
    Scope {
        tenant_id: TenantId::parse("ten_01JD0000000000000000000000").unwrap(),
        principal: principal.into(),
        key: IdempotencyKey::parse(key).unwrap(),
    }
}

fn answer(body: &str) -> StoredResponse {
    StoredResponse {
        status: 201,
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.into(),
    }
}

async fn claim(
    f: &Fixture,
    scope: &Scope,
    fingerprint: &str,
    holder: &str,
) -> Result<Begin, Refusal> {
    begin(f.table.as_ref(), scope, fingerprint, holder, f.clock.now()).await
}

async fn started(f: &Fixture, scope: &Scope, fingerprint: &str, holder: &str) -> Lease {
    match claim(f, scope, fingerprint, holder).await {
        Ok(Begin::Started(lease)) => lease,
        other => panic!("expected the key to be claimed, got {other:?}"),
    }
}

async fn replayed(f: &Fixture, scope: &Scope, fingerprint: &str, holder: &str) -> StoredResponse {
    match claim(f, scope, fingerprint, holder).await {
        Ok(Begin::Replay(stored)) => stored,
        other => panic!("expected a replay, got {other:?}"),
    }
}

/// A change the answer lands with: one new item.
fn change(name: &str) -> TxOp {
    TxOp::Put {
        item: Item::new(&Key::new("CHANGE", name)),
        condition: Some(Condition::NotExists),
    }
}

pub async fn a_completed_answer_replays_for_the_same_request(f: Fixture) {
    let s = scope("usr_a", "key-1");
    let lease = started(&f, &s, "fp-1", "req_1").await;
    f.table
        .transact(vec![
            change("one"),
            lease.complete(&answer("{\"id\":1}")).unwrap(),
        ])
        .await
        .unwrap();
    assert_eq!(
        replayed(&f, &s, "fp-1", "req_2").await,
        answer("{\"id\":1}")
    );
}

pub async fn the_same_key_for_another_request_is_refused_before_and_after_completion(f: Fixture) {
    let s = scope("usr_a", "key-1");
    let lease = started(&f, &s, "fp-1", "req_1").await;
    assert!(matches!(
        claim(&f, &s, "fp-2", "req_2").await,
        Err(Refusal::Mismatch)
    ));
    lease.finish(f.table.as_ref(), &answer("{}")).await.unwrap();
    assert!(matches!(
        claim(&f, &s, "fp-2", "req_3").await,
        Err(Refusal::Mismatch)
    ));
}

pub async fn a_retry_while_the_first_request_runs_is_refused_as_in_flight(f: Fixture) {
    let s = scope("usr_a", "key-1");
    let _lease = started(&f, &s, "fp-1", "req_1").await;
    f.clock
        .advance(Duration::from_secs(LEASE_SECONDS as u64 - 1));
    assert!(matches!(
        claim(&f, &s, "fp-1", "req_2").await,
        Err(Refusal::InFlight)
    ));
}

pub async fn of_simultaneous_claims_exactly_one_runs(f: Fixture) {
    let s = scope("usr_a", "key-race");
    let mut claims = Vec::new();
    for i in 0..8 {
        let table = Arc::clone(&f.table);
        let s = s.clone();
        let now = f.clock.now();
        claims.push(tokio::spawn(async move {
            begin(table.as_ref(), &s, "fp", &format!("req_{i}"), now).await
        }));
    }
    let mut runs = 0;
    for c in claims {
        match c.await.unwrap() {
            Ok(Begin::Started(_)) => runs += 1,
            Err(Refusal::InFlight) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(runs, 1);
}

pub async fn a_crashed_requests_lease_lapses_and_its_late_answer_cannot_land(f: Fixture) {
    let s = scope("usr_a", "key-1");
    let crashed = started(&f, &s, "fp-1", "req_1").await;
    f.clock
        .advance(Duration::from_secs(LEASE_SECONDS as u64 + 1));
    let retry = started(&f, &s, "fp-1", "req_2").await;
    let late = f
        .table
        .transact(vec![
            change("late"),
            crashed.complete(&answer("late")).unwrap(),
        ])
        .await;
    assert!(
        matches!(late, Err(StoreError::ConditionFailed { .. })),
        "{late:?}"
    );
    assert!(
        f.table
            .get(&Key::new("CHANGE", "late"))
            .await
            .unwrap()
            .is_none(),
        "the late request's change did not land"
    );
    retry
        .finish(f.table.as_ref(), &answer("retry"))
        .await
        .unwrap();
    assert_eq!(replayed(&f, &s, "fp-1", "req_3").await.body, "retry");
}

pub async fn an_answer_whose_change_fails_is_not_stored_and_a_release_frees_the_key(f: Fixture) {
    let s = scope("usr_a", "key-1");
    f.table
        .put(Item::new(&Key::new("CHANGE", "taken")), None)
        .await
        .unwrap();
    let lease = started(&f, &s, "fp-1", "req_1").await;
    let failed = f
        .table
        .transact(vec![
            change("taken"),
            lease.complete(&answer("no")).unwrap(),
        ])
        .await;
    assert!(failed.is_err());
    assert!(
        matches!(claim(&f, &s, "fp-1", "req_2").await, Err(Refusal::InFlight)),
        "nothing was stored: the key is still held"
    );
    lease.release(f.table.as_ref()).await.unwrap();
    let _again = started(&f, &s, "fp-1", "req_3").await;
}

pub async fn keys_belong_to_their_caller_and_expire_after_a_day(f: Fixture) {
    let mine = scope("usr_a", "shared-key");
    let theirs = scope("usr_b", "shared-key");
    let lease = started(&f, &mine, "fp-a", "req_1").await;
    lease.finish(f.table.as_ref(), &answer("a")).await.unwrap();
    let _other = started(&f, &theirs, "fp-b", "req_2").await;
    f.clock
        .advance(Duration::from_secs(RETENTION_SECONDS as u64 + 1));
    let _fresh = started(&f, &mine, "fp-changed", "req_3").await;
}

pub async fn a_takeover_late_in_a_records_life_keeps_it_a_full_day(f: Fixture) {
    let s = scope("usr_a", "key-1");
    let _crashed = started(&f, &s, "fp-1", "req_1").await;
    f.clock
        .advance(Duration::from_secs(RETENTION_SECONDS as u64 - 30));
    let retry = started(&f, &s, "fp-1", "req_2").await;
    f.clock.advance(Duration::from_secs(60));
    retry
        .finish(f.table.as_ref(), &answer("late but kept"))
        .await
        .expect("the record outlived its first day because the takeover renewed it");
    assert_eq!(
        replayed(&f, &s, "fp-1", "req_3").await.body,
        "late but kept"
    );
}

conformance!(embedded, dynamo;
    a_takeover_late_in_a_records_life_keeps_it_a_full_day,
    a_completed_answer_replays_for_the_same_request,
    the_same_key_for_another_request_is_refused_before_and_after_completion,
    a_retry_while_the_first_request_runs_is_refused_as_in_flight,
    of_simultaneous_claims_exactly_one_runs,
    a_crashed_requests_lease_lapses_and_its_late_answer_cannot_land,
    an_answer_whose_change_fails_is_not_stored_and_a_release_frees_the_key,
    keys_belong_to_their_caller_and_expire_after_a_day,
);
