//! The `Queue` conformance suite: every case runs against the embedded adapter and against
//! the SQS adapter on moto, and both must behave the same.
//!
//! Both run on the wall clock with a two-second visibility timeout. One second would be too
//! short: the SQS adapter long-polls for a second when a queue is empty, so a message hidden
//! for one second could reappear inside the very receive that checks it is hidden. Every
//! wait is bounded: `receive_up_to` polls until it has what it asked for or its time is up.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use storefront::clock::{Clock, SystemClock};
use storefront::queue::embedded::{EmbeddedQueue, EmbeddedQueues, QueueConfig};
use storefront::queue::sqs::{create_queue_with_dlq, SqsQueue};
use storefront::queue::{
    Outgoing, Queue, QueueError, Received, Redrive, Sent, MAX_BATCH, MAX_BODY_BYTES, MAX_DELAY,
};

use crate::helpers;

/// How long a received message stays hidden, on both adapters.
const VISIBILITY: Duration = Duration::from_secs(2);
/// Receives after which the next one moves a message to the dead-letter queue.
const MAX_RECEIVES: u32 = 2;
/// Slack for the embedded adapter's millisecond timestamps against `Instant`.
const SLACK: Duration = Duration::from_millis(50);

/// A queue with its dead-letter queue, and whatever keeps them alive.
pub struct Fixture {
    pub queue: Arc<dyn Queue>,
    pub dlq: Arc<dyn Queue>,
    _guard: Option<tempfile::TempDir>,
}

/// The embedded queue `jobs` redriving to `jobs-dlq`, in a fresh file on the wall clock.
fn open_embedded() -> (EmbeddedQueue, EmbeddedQueue, tempfile::TempDir) {
    let dir = helpers::temp_dir();
    let queues = EmbeddedQueues::open(
        &dir.path().join("queues.redb"),
        Arc::new(SystemClock) as Arc<dyn Clock>,
    )
    .expect("open");
    let queue = queues.queue(
        "jobs",
        QueueConfig {
            visibility_timeout: VISIBILITY,
            redrive: Some(Redrive {
                dead_letter_queue: "jobs-dlq".to_owned(),
                max_receive_count: MAX_RECEIVES,
            }),
        },
    );
    let dlq = queues.queue(
        "jobs-dlq",
        QueueConfig {
            visibility_timeout: VISIBILITY,
            redrive: None,
        },
    );
    (queue, dlq, dir)
}

pub async fn embedded() -> Fixture {
    let (queue, dlq, dir) = open_embedded();
    Fixture {
        queue: Arc::new(queue),
        dlq: Arc::new(dlq),
        _guard: Some(dir),
    }
}

pub async fn sqs() -> Fixture {
    let client = aws_sdk_sqs::Client::new(&helpers::moto_sdk().await);
    let name = helpers::unique("queue");
    let visibility = u32::try_from(VISIBILITY.as_secs()).expect("seconds");
    let (url, dlq_url) = create_queue_with_dlq(&client, &name, MAX_RECEIVES, visibility)
        .await
        .expect("create queues on moto");
    Fixture {
        queue: Arc::new(SqsQueue::new(client.clone(), url)),
        dlq: Arc::new(SqsQueue::new(client, dlq_url)),
        _guard: None,
    }
}

conformance!(embedded, sqs;
    a_sent_message_is_received_once_with_its_body_intact,
    a_received_message_stays_hidden_for_the_visibility_timeout_then_returns_counted_twice,
    an_acked_message_never_comes_back,
    a_delayed_message_stays_invisible_until_its_delay_passes,
    a_batch_of_ten_is_delivered_whole_and_a_batch_over_the_limits_sends_nothing,
    a_single_message_over_the_limits_is_refused,
    retry_after_zero_makes_a_message_visible_again_at_once,
    a_message_received_too_often_moves_to_the_dead_letter_queue_with_its_body,
    a_receive_takes_between_one_and_ten_messages,
);

/// Receives until `n` messages have arrived or `within` has passed, whichever comes first.
async fn receive_up_to(queue: &dyn Queue, n: usize, within: Duration) -> Vec<Received> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    while got.len() < n && Instant::now() < deadline {
        let batch = queue.receive((n - got.len()).min(MAX_BATCH)).await.unwrap();
        if batch.is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        got.extend(batch);
    }
    got
}

/// One receive of up to ten messages (on SQS, a one-second long poll when there are none).
async fn receive_now(queue: &dyn Queue) -> Vec<Received> {
    queue.receive(MAX_BATCH).await.unwrap()
}

fn bodies(messages: &[Received]) -> Vec<&str> {
    messages.iter().map(|m| m.body.as_str()).collect()
}

fn is_invalid<T: std::fmt::Debug>(result: &Result<T, QueueError>) -> bool {
    matches!(result, Err(QueueError::Invalid(_)))
}

async fn a_sent_message_is_received_once_with_its_body_intact(f: Fixture) {
    let body = r#"{"job":"send-receipt","order":"O#1","note":"Mug ☕ \"x2\""}"#;
    let id = f.queue.send(Outgoing::new(body)).await.unwrap();
    let got = receive_up_to(&*f.queue, 1, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].id, id);
    assert_eq!(got[0].body, body);
    assert_eq!(got[0].receive_count, 1);
    assert!(!got[0].receipt.is_empty());
    let again = receive_now(&*f.queue).await;
    assert!(
        again.is_empty(),
        "a received message is not delivered twice: {again:?}"
    );
}

async fn a_received_message_stays_hidden_for_the_visibility_timeout_then_returns_counted_twice(
    f: Fixture,
) {
    let id = f.queue.send(Outgoing::new("resize P#1")).await.unwrap();
    let start = Instant::now();
    let first = receive_up_to(&*f.queue, 1, Duration::from_secs(5)).await;
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0].receive_count, 1);
    let hidden = receive_now(&*f.queue).await;
    assert!(hidden.is_empty(), "still hidden: {hidden:?}");
    let second = receive_up_to(&*f.queue, 1, VISIBILITY + Duration::from_secs(5)).await;
    let elapsed = start.elapsed();
    assert_eq!(second.len(), 1, "it came back: {second:?}");
    assert_eq!(second[0].id, id);
    assert_eq!(second[0].body, "resize P#1");
    assert_eq!(second[0].receive_count, 2);
    assert!(
        elapsed + SLACK >= VISIBILITY,
        "it came back after {elapsed:?}, before the visibility timeout"
    );
}

async fn an_acked_message_never_comes_back(f: Fixture) {
    let done = f.queue.send(Outgoing::new("done")).await.unwrap();
    let kept = f.queue.send(Outgoing::new("kept")).await.unwrap();
    let first = receive_up_to(&*f.queue, 2, Duration::from_secs(5)).await;
    assert_eq!(first.len(), 2, "{first:?}");
    let acked = first.iter().find(|m| m.id == done).expect("done received");
    f.queue.ack(&acked.receipt).await.unwrap();
    // The message left un-acked comes back once its timeout passes; the acked one must not.
    let back = receive_up_to(&*f.queue, 1, VISIBILITY + Duration::from_secs(5)).await;
    assert_eq!(back.len(), 1, "{back:?}");
    assert_eq!(back[0].id, kept, "only the un-acked message returns");
    assert_eq!(back[0].receive_count, 2);
    f.queue.ack(&back[0].receipt).await.unwrap();
    let rest = receive_now(&*f.queue).await;
    assert!(rest.is_empty(), "the acked message came back: {rest:?}");
}

async fn a_delayed_message_stays_invisible_until_its_delay_passes(f: Fixture) {
    let delay = Duration::from_secs(2);
    let start = Instant::now();
    let later = f
        .queue
        .send(Outgoing::new("later").delayed(delay))
        .await
        .unwrap();
    f.queue.send(Outgoing::new("now")).await.unwrap();
    let first = receive_now(&*f.queue).await;
    assert_eq!(
        bodies(&first),
        ["now"],
        "only the undelayed message is visible"
    );
    f.queue.ack(&first[0].receipt).await.unwrap();
    let delayed = receive_up_to(&*f.queue, 1, delay + Duration::from_secs(5)).await;
    let elapsed = start.elapsed();
    assert_eq!(delayed.len(), 1, "the delayed message arrived: {delayed:?}");
    assert_eq!(delayed[0].id, later);
    assert_eq!(delayed[0].body, "later");
    assert_eq!(delayed[0].receive_count, 1);
    assert!(
        elapsed + SLACK >= delay,
        "delivered after {elapsed:?}, before its delay"
    );
}

async fn a_batch_of_ten_is_delivered_whole_and_a_batch_over_the_limits_sends_nothing(f: Fixture) {
    let refused = |n: usize| {
        (0..n)
            .map(|i| Outgoing::new(format!("refused-{i}")))
            .collect::<Vec<_>>()
    };
    let eleven = f.queue.send_batch(refused(MAX_BATCH + 1)).await;
    assert!(is_invalid(&eleven), "eleven messages: {eleven:?}");
    let mut too_big = refused(MAX_BATCH - 1);
    too_big.push(Outgoing::new("x".repeat(MAX_BODY_BYTES + 1)));
    let too_big = f.queue.send_batch(too_big).await;
    assert!(is_invalid(&too_big), "a body over 256 KiB: {too_big:?}");
    let mut too_late = refused(MAX_BATCH - 1);
    too_late.push(Outgoing::new("late").delayed(MAX_DELAY + Duration::from_secs(1)));
    let too_late = f.queue.send_batch(too_late).await;
    assert!(
        is_invalid(&too_late),
        "a delay over 15 minutes: {too_late:?}"
    );
    let empty = f.queue.send_batch(Vec::new()).await;
    assert!(is_invalid(&empty), "an empty batch: {empty:?}");
    let mut unsendable = refused(MAX_BATCH - 1);
    unsendable.push(Outgoing::new("a U+FFFF: \u{FFFF}"));
    let unsendable = f.queue.send_batch(unsendable).await;
    assert!(
        is_invalid(&unsendable),
        "a character SQS refuses: {unsendable:?}"
    );
    let alone = f.queue.send(Outgoing::new("\u{0}")).await;
    assert!(is_invalid(&alone), "a NUL: {alone:?}");

    let sent: Vec<String> = (0..MAX_BATCH).map(|i| format!("ok-{i}")).collect();
    let ids: Vec<String> = f
        .queue
        .send_batch(sent.iter().map(Outgoing::new).collect())
        .await
        .unwrap()
        .into_iter()
        .map(|outcome| match outcome {
            Sent::Accepted(id) => id,
            refused => panic!("a valid message was refused: {refused:?}"),
        })
        .collect();
    assert_eq!(ids.len(), MAX_BATCH);
    assert_eq!(
        ids.iter().collect::<BTreeSet<_>>().len(),
        MAX_BATCH,
        "ids are distinct"
    );
    let got = receive_up_to(&*f.queue, MAX_BATCH, Duration::from_secs(8)).await;
    let by_body: BTreeMap<&str, &Received> = got.iter().map(|m| (m.body.as_str(), m)).collect();
    assert_eq!(
        by_body.keys().copied().collect::<Vec<_>>(),
        sent.iter().map(String::as_str).collect::<Vec<_>>(),
        "all ten arrived and nothing of the refused batches"
    );
    assert_eq!(got.len(), MAX_BATCH, "each exactly once");
    for (body, id) in sent.iter().zip(&ids) {
        let m = by_body[body.as_str()];
        assert_eq!(&m.id, id, "ids come back in the order sent ({body})");
        assert_eq!(m.receive_count, 1);
    }
    for m in &got {
        f.queue.ack(&m.receipt).await.unwrap();
    }
    let rest = receive_now(&*f.queue).await;
    assert!(
        rest.is_empty(),
        "a refused batch sent something: {:?}",
        bodies(&rest)
    );
}

async fn a_single_message_over_the_limits_is_refused(f: Fixture) {
    let big = f
        .queue
        .send(Outgoing::new("x".repeat(MAX_BODY_BYTES + 1)))
        .await;
    assert!(is_invalid(&big), "a body over 256 KiB: {big:?}");
    let late = f
        .queue
        .send(Outgoing::new("late").delayed(MAX_DELAY + Duration::from_secs(1)))
        .await;
    assert!(is_invalid(&late), "a delay over 15 minutes: {late:?}");
    let empty = f.queue.send(Outgoing::new("")).await;
    assert!(is_invalid(&empty), "an empty body: {empty:?}");
    let nothing = receive_now(&*f.queue).await;
    assert!(
        nothing.is_empty(),
        "a refused send sent something: {nothing:?}"
    );
}

async fn retry_after_zero_makes_a_message_visible_again_at_once(f: Fixture) {
    let id = f.queue.send(Outgoing::new("charge O#1")).await.unwrap();
    let start = Instant::now();
    let first = receive_up_to(&*f.queue, 1, Duration::from_secs(5)).await;
    assert_eq!(first.len(), 1, "{first:?}");
    f.queue
        .retry_after(&first[0].receipt, Duration::ZERO)
        .await
        .unwrap();
    let again = receive_up_to(&*f.queue, 1, VISIBILITY).await;
    let elapsed = start.elapsed();
    assert_eq!(again.len(), 1, "it came back at once: {again:?}");
    assert_eq!(again[0].id, id);
    assert_eq!(again[0].body, "charge O#1");
    assert_eq!(again[0].receive_count, 2);
    assert!(
        elapsed < VISIBILITY,
        "it came back after {elapsed:?}, no sooner than the visibility timeout would have"
    );
}

async fn a_message_received_too_often_moves_to_the_dead_letter_queue_with_its_body(f: Fixture) {
    let body = r#"{"job":"poison","payload":"ünïcödé"}"#;
    let id = f.queue.send(Outgoing::new(body)).await.unwrap();
    for count in 1..=MAX_RECEIVES {
        let got = receive_up_to(&*f.queue, 1, Duration::from_secs(5)).await;
        assert_eq!(got.len(), 1, "receive {count}: {got:?}");
        assert_eq!(got[0].receive_count, count);
        // A failed handler hands the message back without acking it.
        f.queue
            .retry_after(&got[0].receipt, Duration::ZERO)
            .await
            .unwrap();
    }
    let moved = receive_now(&*f.queue).await;
    assert!(
        moved.is_empty(),
        "the receive past the limit moves the message instead of delivering it: {moved:?}"
    );
    let dead = receive_up_to(&*f.dlq, 1, Duration::from_secs(5)).await;
    assert_eq!(dead.len(), 1, "the dead-letter queue holds it: {dead:?}");
    assert_eq!(dead[0].id, id);
    assert_eq!(dead[0].body, body);
    f.dlq.ack(&dead[0].receipt).await.unwrap();
    let gone = receive_now(&*f.queue).await;
    assert!(gone.is_empty(), "it left the queue: {gone:?}");
}

async fn a_receive_takes_between_one_and_ten_messages(f: Fixture) {
    f.queue.send(Outgoing::new("kept")).await.unwrap();
    let none = f.queue.receive(0).await;
    assert!(is_invalid(&none), "receive(0): {none:?}");
    let eleven = f.queue.receive(MAX_BATCH + 1).await;
    assert!(is_invalid(&eleven), "receive(11): {eleven:?}");
    let got = receive_up_to(&*f.queue, 1, Duration::from_secs(5)).await;
    assert_eq!(bodies(&got), ["kept"]);
    assert_eq!(
        got[0].receive_count, 1,
        "a refused receive neither delivered nor counted"
    );
}

/// Receipts on the embedded adapter, which (unlike SQS) keeps only the latest one valid.
mod embedded_receipts {
    use std::time::Duration;

    use storefront::queue::{Outgoing, Queue, QueueError};

    fn is_stale(result: &Result<(), QueueError>) -> bool {
        matches!(result, Err(QueueError::StaleReceipt))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_made_up_receipt_is_stale_and_changes_nothing() {
        let (queue, _dlq, _dir) = super::open_embedded();
        queue.send(Outgoing::new("job")).await.unwrap();
        let got = queue.receive(1).await.unwrap();
        assert_eq!(got.len(), 1, "{got:?}");
        let (id, token) = got[0].receipt.split_once('.').expect("<id>.<token>");
        assert_eq!(id, got[0].id);
        let made_up = [
            String::new(),
            "made-up".to_owned(),
            format!("{id}.not-the-token"),
            format!("{}.{token}", ulid::Ulid::new()),
        ];
        for receipt in &made_up {
            let ack = queue.ack(receipt).await;
            assert!(is_stale(&ack), "ack `{receipt}`: {ack:?}");
            let retry = queue.retry_after(receipt, Duration::ZERO).await;
            assert!(is_stale(&retry), "retry_after `{receipt}`: {retry:?}");
        }
        assert_eq!(queue.len().await.unwrap(), 1, "nothing was deleted");
        let hidden = queue.receive(10).await.unwrap();
        assert!(hidden.is_empty(), "nothing was made visible: {hidden:?}");
        queue.ack(&got[0].receipt).await.unwrap();
        assert_eq!(queue.len().await.unwrap(), 0, "the real receipt still acks");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_old_receipt_is_stale_once_the_message_is_received_again() {
        let (queue, _dlq, _dir) = super::open_embedded();
        queue.send(Outgoing::new("job")).await.unwrap();
        let first = queue.receive(1).await.unwrap();
        assert_eq!(first.len(), 1, "{first:?}");
        queue
            .retry_after(&first[0].receipt, Duration::ZERO)
            .await
            .unwrap();
        let second = queue.receive(1).await.unwrap();
        assert_eq!(second.len(), 1, "{second:?}");
        assert_eq!(second[0].receive_count, 2);
        assert_ne!(second[0].receipt, first[0].receipt);
        let ack = queue.ack(&first[0].receipt).await;
        assert!(is_stale(&ack), "{ack:?}");
        let retry = queue.retry_after(&first[0].receipt, Duration::ZERO).await;
        assert!(is_stale(&retry), "{retry:?}");
        assert_eq!(queue.len().await.unwrap(), 1);
        queue.ack(&second[0].receipt).await.unwrap();
        assert_eq!(queue.len().await.unwrap(), 0);
    }
}
