//! Webhooks, on both adapters: the endpoint routes, and deliveries to a receiver on
//! 127.0.0.1 run job by job as the relay and the worker would (the clock moved to each
//! retry's time instead of waiting for it): signatures the Standard Webhooks reference
//! library verifies, retries on the schedule, the circuit breaker, the dead-letter queue,
//! 410, `Retry-After`, the SSRF guard at delivery time, and no side effect twice.

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use http::Method;
use serde_json::{json, Value};
use storefront::clock::Clock as _;
use storefront::context::AppContext;
use storefront::domain::{Job, RetrySchedule};
use storefront::jobs::{JobMessage, Worker as _};
use storefront::queue::{Outgoing, Queue, QueueError, Received, Sent};
use storefront::store::{Index, Key, Query};
use storefront_tests::receiver::{Delivered, Receiver};

use crate::helpers::api::{dynamo, embedded, Api, Shop};
use crate::orders::{paid_order, product, with_webhook_secret};

conformance!(embedded, dynamo;
    endpoints_are_registered_listed_changed_and_deleted_by_owners_and_admins_alone,
    a_bad_endpoint_is_refused_with_a_422_and_changes_nothing,
    an_order_flow_ends_with_signed_webhooks_the_reference_library_verifies,
    a_receiver_that_fails_three_times_then_succeeds_gets_exactly_one_success,
    a_dead_receiver_opens_the_breaker_and_its_delivery_ends_in_the_dead_letter_queue,
    a_duplicated_event_or_delivery_job_sends_nothing_twice,
    a_410_disables_the_endpoint_and_retry_after_delays_the_next_attempt,
    a_shops_retry_sends_the_event_again_as_a_new_attempt,
    a_url_refused_at_delivery_time_is_a_failed_attempt_that_reaches_nothing,
    a_retry_asked_for_while_the_schedule_runs_carries_the_schedule_on,
    a_delivery_to_an_endpoint_disabled_meanwhile_is_logged_unsent_and_can_be_retried,
);

/// The jobs a test's worker sent back to the queue with a delay.
#[derive(Default)]
struct Requeued(Mutex<Vec<String>>);

#[async_trait]
impl Queue for Requeued {
    async fn send(&self, message: Outgoing) -> Result<String, QueueError> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(message.body);
        Ok("requeued".into())
    }
    async fn send_batch(&self, _: Vec<Outgoing>) -> Result<Vec<Sent>, QueueError> {
        Err(QueueError::Invalid("not used".into()))
    }
    async fn receive(&self, _: usize) -> Result<Vec<Received>, QueueError> {
        Err(QueueError::Invalid("not used".into()))
    }
    async fn ack(&self, _: &str) -> Result<(), QueueError> {
        Err(QueueError::Invalid("not used".into()))
    }
    async fn retry_after(&self, _: &str, _: Duration) -> Result<(), QueueError> {
        Err(QueueError::Invalid("not used".into()))
    }
}

/// The relay and the worker, run by hand: the outbox's jobs and the worker's requeued
/// ones, in due order, the clock moved to each one's time.
pub(crate) struct Jobs {
    pub(crate) ctx: AppContext,
    requeued: Arc<Requeued>,
    /// The bodies relayed to the dead-letter queue.
    dead_letters: Vec<String>,
    /// How many delivery jobs the worker ran.
    ran: usize,
}

impl Jobs {
    pub(crate) fn new(api: &Api, schedule: &str) -> Self {
        let requeued = Arc::new(Requeued::default());
        let mut ctx = api.ctx.clone();
        ctx.queue = requeued.clone();
        // Emails are written to the outbox directory of the harness.
        ctx.mailer = api.mailer();
        ctx.webhooks.allow_loopback = true;
        ctx.webhooks.schedule = RetrySchedule::parse(schedule).expect("schedule");
        Self {
            ctx,
            requeued,
            dead_letters: Vec::new(),
            ran: 0,
        }
    }

    /// Takes every job waiting in the outbox (its items deleted, as the relay does).
    pub(crate) async fn take_outbox(&mut self) -> Vec<String> {
        let mut jobs = Vec::new();
        for shard in 0..storefront::jobs::outbox::SHARDS {
            let page = self
                .ctx
                .table
                .query(Query::partition(Index::Primary, format!("OUTBOX#{shard}")).limit(1000))
                .await
                .expect("the outbox");
            for item in page.items {
                let key: Key = item.key().expect("key");
                let body = item.get_str("body").expect("a body").to_owned();
                if item.get_str("destination") == Some("dead_letters") {
                    self.dead_letters.push(body);
                } else {
                    jobs.push(body);
                }
                self.ctx.table.delete(&key, None).await.expect("delete");
            }
        }
        jobs.extend(std::mem::take(
            &mut *self
                .requeued
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        ));
        jobs
    }

    /// Runs the event and delivery jobs until none is left (other jobs are left out),
    /// with the clock moved forward to each due time; at most `limit` rounds.
    pub(crate) async fn run(&mut self, api: &Api) {
        for _ in 0..200 {
            let mut jobs: Vec<(Option<DateTime<Utc>>, String)> = self
                .take_outbox()
                .await
                .into_iter()
                .filter(|body| {
                    ["event", "deliver", "email"]
                        .iter()
                        .any(|kind| body.contains(&format!("\"kind\":\"{kind}\"")))
                })
                .map(|body| (due(&body), body))
                .collect();
            if jobs.is_empty() {
                return;
            }
            jobs.sort();
            for (due, body) in jobs {
                if let Some(due) = due {
                    let wait = (due - api.clock.now()).to_std().unwrap_or_default();
                    api.clock.advance(wait);
                }
                if body.contains("\"kind\":\"deliver\"") {
                    self.ran += 1;
                }
                let message = JobMessage {
                    id: ulid::Ulid::new().to_string(),
                    body,
                    receive_count: 1,
                };
                storefront::jobs::worker::Dispatcher
                    .handle(&self.ctx, &message)
                    .await
                    .expect("the job runs");
            }
        }
        panic!("the jobs never ran out");
    }
}

fn due(body: &str) -> Option<DateTime<Utc>> {
    match serde_json::from_str::<Job>(body).ok()? {
        Job::Deliver { not_before, .. } => DateTime::parse_from_rfc3339(&not_before?)
            .ok()
            .map(|at| at.with_timezone(&Utc)),
        _ => None,
    }
}

/// An endpoint of the shop on `receiver`, for `events`: its id and secret.
async fn endpoint(api: &Api, shop: &Shop, receiver: &Receiver, events: Value) -> (String, String) {
    let mut ctx = api.ctx.clone();
    ctx.webhooks.allow_loopback = true;
    let request = crate::helpers::api_request(
        Method::POST,
        "/v1/webhook-endpoints",
        Some(&shop.owner),
        Some(json!({"url": receiver.url, "events": events})),
    );
    let response = storefront::edge::dispatch(&ctx, storefront::routes::ROUTES, request).await;
    let body: Value = serde_json::from_slice(response.body().as_ref()).expect("json");
    assert_eq!(response.status(), 201, "{body}");
    (
        body["id"].as_str().expect("id").to_owned(),
        body["secret"].as_str().expect("secret").to_owned(),
    )
}

/// The owner signed in now: the jobs moved the clock past the first token's 15 minutes.
async fn owner(api: &Api, shop: &Shop) -> String {
    let reply = api
        .login(
            &shop.tenant_id,
            "owner@example.com",
            "correct horse battery",
        )
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    reply.token()
}

async fn deliveries(api: &Api, shop: &Shop, endpoint: &str) -> Vec<Value> {
    let token = owner(api, shop).await;
    let reply = api
        .get(
            &format!("/v1/webhook-endpoints/{endpoint}/deliveries?limit=100"),
            Some(&token),
        )
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    reply.body["items"].as_array().expect("items").clone()
}

/// Whether Standard Webhooks' own Python library accepts each delivery under `secret`.
pub(crate) fn verified_by_reference_library(secret: &str, delivered: &[Delivered]) -> Vec<bool> {
    let script = r#"
import json, sys
from standardwebhooks.webhooks import Webhook
request = json.load(sys.stdin)
hook = Webhook(request["secret"])
verdicts = []
for d in request["deliveries"]:
    try:
        hook.verify(d["body"], d["headers"])
        verdicts.append(True)
    except Exception:
        verdicts.append(False)
print(json.dumps(verdicts))
"#;
    let deliveries: Vec<Value> = delivered
        .iter()
        .map(|d| {
            json!({"body": d.body, "headers": {
                "webhook-id": d.header("webhook-id"),
                "webhook-timestamp": d.header("webhook-timestamp"),
                "webhook-signature": d.header("webhook-signature"),
            }})
        })
        .collect();
    let mut child = Command::new(crate::payments::tools_bin().join("python"))
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python runs");
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(
                json!({"secret": secret, "deliveries": deliveries})
                    .to_string()
                    .as_bytes(),
            )
            .expect("write");
    }
    let output = child.wait_with_output().expect("python ends");
    assert!(output.status.success(), "{output:?}");
    serde_json::from_slice(&output.stdout).expect("verdicts")
}

async fn endpoints_are_registered_listed_changed_and_deleted_by_owners_and_admins_alone(api: Api) {
    let shop = api.create_shop("owner@example.com").await;
    let created = api
        .post(
            "/v1/webhook-endpoints",
            Some(&shop.owner),
            json!({"url": "https://hooks.shop.example/storefront", "events": ["order.paid", "order.created", "order.paid"]}),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("whe_"));
    assert!(created.body["secret"]
        .as_str()
        .unwrap()
        .starts_with("whsec_"));
    assert_eq!(
        created.body["events"],
        json!(["order.paid", "order.created"])
    );
    assert_eq!(created.body["disabled"], false);
    assert!(created.body["created_at"].is_string());

    let listed = api.get("/v1/webhook-endpoints", Some(&shop.owner)).await;
    assert_eq!(listed.status, 200);
    assert_eq!(listed.body["items"][0]["id"], id.as_str());
    assert!(
        listed.body["items"][0].get("secret").is_none(),
        "the secret is shown once"
    );

    let path = format!("/v1/webhook-endpoints/{id}");
    let changed = api
        .patch(
            &path,
            Some(&shop.owner),
            json!({"events": ["product.deleted"], "disabled": true}),
        )
        .await;
    assert_eq!(changed.status, 200, "{:?}", changed.body);
    assert_eq!(changed.body["events"], json!(["product.deleted"]));
    assert_eq!(changed.body["disabled"], true);
    let enabled = api
        .patch(&path, Some(&shop.owner), json!({"disabled": false}))
        .await;
    assert_eq!(enabled.body["disabled"], false);

    // Staff may not; another shop's owner finds nothing; a malformed id is nothing.
    let staff = api
        .post(
            "/v1/members",
            Some(&shop.owner),
            json!({"email": "staff@example.com", "name": "Staff", "password": "a long passphrase", "role": "staff"}),
        )
        .await;
    assert_eq!(staff.status, 201);
    let staff_token = api
        .login(&shop.tenant_id, "staff@example.com", "a long passphrase")
        .await
        .body["access_token"]
        .as_str()
        .expect("a token")
        .to_owned();
    assert_eq!(
        api.get("/v1/webhook-endpoints", Some(&staff_token))
            .await
            .status,
        403
    );
    let other = api.create_shop("other@example.com").await;
    assert_eq!(
        api.patch(&path, Some(&other.owner), json!({"disabled": true}))
            .await
            .status,
        404
    );
    assert_eq!(api.delete(&path, Some(&other.owner)).await.status, 404);
    assert_eq!(
        api.get(&format!("{path}/deliveries"), Some(&other.owner))
            .await
            .status,
        404
    );
    assert_eq!(
        api.delete("/v1/webhook-endpoints/whe_nope", Some(&shop.owner))
            .await
            .status,
        404
    );
    let others = api.get("/v1/webhook-endpoints", Some(&other.owner)).await;
    assert_eq!(others.body["items"], json!([]));

    assert_eq!(api.delete(&path, Some(&shop.owner)).await.status, 204);
    assert_eq!(api.delete(&path, Some(&shop.owner)).await.status, 404);
    let actions = api.audit_history(&shop.owner, &id).await;
    assert_eq!(
        actions,
        [
            "webhook_endpoint.deleted",
            "webhook_endpoint.updated",
            "webhook_endpoint.updated",
            "webhook_endpoint.created"
        ]
    );
}

async fn a_bad_endpoint_is_refused_with_a_422_and_changes_nothing(api: Api) {
    let shop = api.create_shop("owner@example.com").await;
    for (url, events) in [
        ("http://hooks.shop.example/x", json!(["order.paid"])),
        ("https://10.0.0.7/x", json!(["order.paid"])),
        ("https://169.254.169.254/latest", json!(["order.paid"])),
        ("https://[::ffff:127.0.0.1]/x", json!(["order.paid"])),
        ("https://localhost/x", json!(["order.paid"])),
        ("http://127.0.0.1:9/x", json!(["order.paid"])),
        (
            "https://user:pw@hooks.shop.example/x",
            json!(["order.paid"]),
        ),
        ("not a url", json!(["order.paid"])),
        ("https://hooks.shop.example/x", json!([])),
        ("https://hooks.shop.example/x", json!(["order.shipped"])),
    ] {
        let reply = api
            .post(
                "/v1/webhook-endpoints",
                Some(&shop.owner),
                json!({"url": url, "events": events}),
            )
            .await;
        assert_eq!(reply.status, 422, "{url} {events}: {:?}", reply.body);
        assert_eq!(
            reply.headers["content-type"], "application/problem+json",
            "{url}"
        );
    }
    let reply = api
        .post(
            "/v1/webhook-endpoints",
            Some(&shop.owner),
            json!({"url": "https://hooks.shop.example/x", "events": "order.paid"}),
        )
        .await;
    assert_eq!(reply.status, 400, "{:?}", reply.body);
    let listed = api.get("/v1/webhook-endpoints", Some(&shop.owner)).await;
    assert_eq!(listed.body["items"], json!([]));

    // At most 16 endpoints.
    for n in 0..16 {
        let reply = api
            .post(
                "/v1/webhook-endpoints",
                Some(&shop.owner),
                json!({"url": format!("https://hooks.shop.example/{n}"), "events": ["order.paid"]}),
            )
            .await;
        assert_eq!(reply.status, 201, "{:?}", reply.body);
    }
    let seventeenth = api
        .post(
            "/v1/webhook-endpoints",
            Some(&shop.owner),
            json!({"url": "https://hooks.shop.example/17", "events": ["order.paid"]}),
        )
        .await;
    assert_eq!(seventeenth.status, 409, "{:?}", seventeenth.body);
    // One deleted makes room for one more.
    let listed = api
        .get("/v1/webhook-endpoints?limit=100", Some(&shop.owner))
        .await;
    let first = listed.body["items"][0]["id"].as_str().unwrap();
    let deleted = api
        .delete(&format!("/v1/webhook-endpoints/{first}"), Some(&shop.owner))
        .await;
    assert_eq!(deleted.status, 204);
    let again = api
        .post(
            "/v1/webhook-endpoints",
            Some(&shop.owner),
            json!({"url": "https://hooks.shop.example/17", "events": ["order.paid"]}),
        )
        .await;
    assert_eq!(again.status, 201, "{:?}", again.body);
}

async fn an_order_flow_ends_with_signed_webhooks_the_reference_library_verifies(api: Api) {
    let api = with_webhook_secret(api);
    let shop = api.create_shop("owner@example.com").await;
    let receiver = Receiver::start(200).await;
    let (endpoint_id, secret) = endpoint(
        &api,
        &shop,
        &receiver,
        json!(storefront::domain::EVENT_TYPES),
    )
    .await;
    let order_id = paid_order(&api, &shop, true).await;

    let mut jobs = Jobs::new(&api, "0");
    jobs.run(&api).await;
    let delivered = receiver.received();
    let mut kinds: Vec<String> = delivered
        .iter()
        .map(|d| d.json()["type"].as_str().unwrap_or_default().to_owned())
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "order.cancelled",
            "order.created",
            "order.paid",
            "product.updated"
        ]
    );
    for d in &delivered {
        let body = d.json();
        assert_eq!(d.header("webhook-id"), body["id"].as_str().unwrap());
        assert!(body["id"].as_str().unwrap().starts_with("evt_"));
        assert_eq!(body["tenant_id"], shop.tenant_id.as_str());
        assert!(body["created_at"].is_string());
        assert_eq!(d.header("content-type"), "application/json");
    }
    let order = delivered
        .iter()
        .map(Delivered::json)
        .find(|b| b["type"] == "order.paid")
        .unwrap();
    assert_eq!(order["data"]["object"]["id"], order_id.as_str());
    assert_eq!(order["data"]["object"]["status"], "paid");

    assert_eq!(
        verified_by_reference_library(&secret, &delivered),
        vec![true; delivered.len()]
    );
    // The check can fail: a changed body, or another endpoint's secret.
    let mut tampered = delivered[0].clone();
    tampered.body.push(' ');
    assert_eq!(verified_by_reference_library(&secret, &[tampered]), [false]);
    let other = storefront::credentials::webhook_signature::generate_secret().unwrap();
    assert_eq!(
        verified_by_reference_library(&other, &delivered[..1]),
        [false]
    );

    let log = deliveries(&api, &shop, &endpoint_id).await;
    assert_eq!(log.len(), 4);
    for attempt in &log {
        assert_eq!(attempt["outcome"], "succeeded", "{attempt}");
        assert_eq!(attempt["status_code"], 200);
        assert_eq!(attempt["attempt"], 1);
        assert!(attempt["id"].as_str().unwrap().starts_with("dlv_"));
        assert!(attempt["duration_ms"].is_u64());
        assert_eq!(attempt["next_attempt_at"], Value::Null);
        assert_eq!(attempt["error"], Value::Null);
    }
}

async fn a_receiver_that_fails_three_times_then_succeeds_gets_exactly_one_success(api: Api) {
    let shop = api.create_shop("owner@example.com").await;
    let receiver = Receiver::start(200).await;
    // A redirect is a failure too: it is never followed.
    receiver.then(&[500, 302, 503]);
    let (endpoint_id, _) = endpoint(&api, &shop, &receiver, json!(["product.updated"])).await;
    product(&api, &shop, "GREEN", 1250, 10).await;
    let started = api.clock.now();
    let mut jobs = Jobs::new(&api, "0,5,300,1800,7200");
    jobs.run(&api).await;

    let delivered = receiver.received();
    let statuses: Vec<u16> = delivered.iter().map(|d| d.status).collect();
    assert_eq!(statuses, [500, 302, 503, 200]);
    let ids: std::collections::BTreeSet<&str> =
        delivered.iter().map(|d| d.header("webhook-id")).collect();
    assert_eq!(ids.len(), 1, "every attempt is the same message");
    // The waits were the schedule's, each within its 20 % jitter: 5 s + 300 s + 1800 s.
    let waited = (api.clock.now() - started).num_seconds();
    assert!(
        (2105 * 8 / 10..=2105 * 12 / 10).contains(&waited),
        "waited {waited} s"
    );
    let log = deliveries(&api, &shop, &endpoint_id).await;
    let outcomes: Vec<(u64, &str, Value)> = log
        .iter()
        .map(|a| {
            (
                a["attempt"].as_u64().unwrap(),
                a["outcome"].as_str().unwrap(),
                a["status_code"].clone(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            (4, "succeeded", json!(200)),
            (3, "failed", json!(503)),
            (2, "failed", json!(302)),
            (1, "failed", json!(500)),
        ]
    );
    for failed in &log[1..] {
        assert!(failed["next_attempt_at"].is_string(), "{failed}");
        assert!(failed["error"]
            .as_str()
            .unwrap()
            .contains("the endpoint answered"));
        assert!(failed["response_excerpt"]
            .as_str()
            .unwrap()
            .contains("answered"));
    }
    assert_eq!(
        log[2]["error"],
        "the endpoint answered 302; redirects are not followed"
    );
    assert!(jobs.dead_letters.is_empty());
}

async fn a_dead_receiver_opens_the_breaker_and_its_delivery_ends_in_the_dead_letter_queue(
    api: Api,
) {
    let shop = api.create_shop("owner@example.com").await;
    let receiver = Receiver::start(500).await;
    let (endpoint_id, _) = endpoint(&api, &shop, &receiver, json!(["product.updated"])).await;
    product(&api, &shop, "GREEN", 1250, 10).await;
    let mut jobs = Jobs::new(&api, "0,1,1,1,1,1,1");
    jobs.run(&api).await;

    // Seven attempts: five in quick succession open the breaker, whose 30 s the sixth
    // waits out (as a trial, failing, so the breaker opens again), and the seventh too.
    let delivered = receiver.received();
    assert_eq!(delivered.len(), 7);
    let log = deliveries(&api, &shop, &endpoint_id).await;
    let at = |a: &Value| {
        DateTime::parse_from_rfc3339(a["created_at"].as_str().unwrap())
            .unwrap()
            .with_timezone(&Utc)
    };
    let times: Vec<DateTime<Utc>> = log.iter().rev().map(at).collect();
    assert!((times[4] - times[3]).num_seconds() <= 2, "{times:?}");
    assert!(
        (times[5] - times[4]).num_seconds() >= 30,
        "the breaker held the sixth attempt: {times:?}"
    );
    assert!((times[6] - times[5]).num_seconds() >= 30, "{times:?}");
    assert_eq!(log[0]["outcome"], "dead");
    assert_eq!(log[0]["attempt"], 7);
    assert!(log[1..].iter().all(|a| a["outcome"] == "failed"));
    assert_eq!(jobs.dead_letters.len(), 1);
    let parked: Job = serde_json::from_str(&jobs.dead_letters[0]).unwrap();
    assert!(
        matches!(&parked, Job::Deliver { endpoint_id: id, attempt: 8, .. } if *id == endpoint_id),
        "{parked:?}"
    );
    // Waiting for the breaker is no attempt: seven logged, more jobs run.
    assert!(jobs.ran > 7, "{} jobs ran", jobs.ran);
}

async fn a_duplicated_event_or_delivery_job_sends_nothing_twice(api: Api) {
    let shop = api.create_shop("owner@example.com").await;
    let receiver = Receiver::start(200).await;
    let (endpoint_id, _) = endpoint(&api, &shop, &receiver, json!(["product.updated"])).await;
    product(&api, &shop, "GREEN", 1250, 10).await;
    let mut jobs = Jobs::new(&api, "0");
    let events = jobs.take_outbox().await;
    assert_eq!(events.len(), 1);
    // The event twice (the queue delivered it twice): one fan-out.
    for _ in 0..2 {
        let message = JobMessage {
            id: "m".into(),
            body: events[0].clone(),
            receive_count: 1,
        };
        storefront::jobs::worker::Dispatcher
            .handle(&jobs.ctx, &message)
            .await
            .unwrap();
    }
    let deliveries_jobs = jobs.take_outbox().await;
    assert_eq!(deliveries_jobs.len(), 1, "{deliveries_jobs:?}");
    // The delivery job three times, two at once: one request.
    let run = |body: String| {
        let ctx = jobs.ctx.clone();
        async move {
            let message = JobMessage {
                id: "d".into(),
                body,
                receive_count: 1,
            };
            storefront::jobs::worker::Dispatcher
                .handle(&ctx, &message)
                .await
                .unwrap();
        }
    };
    tokio::join!(
        run(deliveries_jobs[0].clone()),
        run(deliveries_jobs[0].clone())
    );
    run(deliveries_jobs[0].clone()).await;
    assert_eq!(receiver.received().len(), 1);
    assert_eq!(deliveries(&api, &shop, &endpoint_id).await.len(), 1);
    assert!(jobs.take_outbox().await.is_empty());
}

async fn a_410_disables_the_endpoint_and_retry_after_delays_the_next_attempt(api: Api) {
    let shop = api.create_shop("owner@example.com").await;
    let receiver = Receiver::start(200).await;
    receiver.then_with(503, &[("retry-after", "3600")]);
    let (endpoint_id, _) = endpoint(&api, &shop, &receiver, json!(["product.updated"])).await;
    product(&api, &shop, "GREEN", 1250, 10).await;
    let mut jobs = Jobs::new(&api, "0,5,5");
    jobs.run(&api).await;
    let log = deliveries(&api, &shop, &endpoint_id).await;
    assert_eq!(log.len(), 2);
    let failed_at = DateTime::parse_from_rfc3339(log[1]["created_at"].as_str().unwrap()).unwrap();
    let next = DateTime::parse_from_rfc3339(log[1]["next_attempt_at"].as_str().unwrap()).unwrap();
    assert!(
        (next - failed_at).num_seconds() >= 3600,
        "Retry-After: 3600 outweighs the schedule's 5 s: {failed_at} → {next}"
    );
    assert_eq!(log[0]["outcome"], "succeeded");

    receiver.answer(410);
    let token = owner(&api, &shop).await;
    let body = json!({"stock": 5});
    let path = format!("/v1/products/{}", {
        let listed = api.get("/v1/products", Some(&token)).await;
        listed.body["items"][0]["id"].as_str().unwrap().to_owned()
    });
    assert_eq!(api.patch(&path, Some(&token), body).await.status, 200);
    jobs.run(&api).await;
    let endpoints = api.get("/v1/webhook-endpoints", Some(&token)).await;
    assert_eq!(endpoints.body["items"][0]["disabled"], true);
    assert!(endpoints.body["items"][0]["disabled_reason"]
        .as_str()
        .unwrap()
        .contains("410"));
    let log = deliveries(&api, &shop, &endpoint_id).await;
    assert_eq!(log[0]["status_code"], 410);
    assert_eq!(log[0]["next_attempt_at"], Value::Null);
    // Disabled: the next event is not delivered at all.
    assert_eq!(
        api.patch(&path, Some(&token), json!({"stock": 4}))
            .await
            .status,
        200
    );
    jobs.run(&api).await;
    assert_eq!(receiver.received().len(), 3);
    assert!(jobs.dead_letters.is_empty());
}

async fn a_shops_retry_sends_the_event_again_as_a_new_attempt(api: Api) {
    let shop = api.create_shop("owner@example.com").await;
    let receiver = Receiver::start(500).await;
    let (endpoint_id, _) = endpoint(&api, &shop, &receiver, json!(["product.updated"])).await;
    product(&api, &shop, "GREEN", 1250, 10).await;
    let mut jobs = Jobs::new(&api, "0");
    jobs.run(&api).await;
    let log = deliveries(&api, &shop, &endpoint_id).await;
    assert_eq!(log[0]["outcome"], "dead");
    let dead = log[0]["id"].as_str().unwrap().to_owned();
    receiver.answer(200);
    let retry = api
        .post(
            &format!("/v1/webhook-endpoints/{endpoint_id}/deliveries/{dead}/retry"),
            Some(&shop.owner),
            json!({}),
        )
        .await;
    assert_eq!(retry.status, 202, "{:?}", retry.body);
    assert_eq!(retry.body["attempt"], 2);
    jobs.run(&api).await;
    let log = deliveries(&api, &shop, &endpoint_id).await;
    assert_eq!(log.len(), 2);
    assert_eq!(log[0]["outcome"], "succeeded");
    assert_eq!(log[0]["attempt"], 2);
    assert_eq!(receiver.received().len(), 2);
    assert_eq!(
        jobs.dead_letters.len(),
        1,
        "only the scheduled failure went dead"
    );
    // Another shop, or a delivery that is not one, is 404; a disabled endpoint is 409.
    let other = api.create_shop("other@example.com").await;
    let path = format!("/v1/webhook-endpoints/{endpoint_id}/deliveries/{dead}/retry");
    assert_eq!(
        api.post(&path, Some(&other.owner), json!({})).await.status,
        404
    );
    let nothing = format!(
        "/v1/webhook-endpoints/{endpoint_id}/deliveries/dlv_01JD0000000000000000000000/retry"
    );
    assert_eq!(
        api.post(&nothing, Some(&shop.owner), json!({}))
            .await
            .status,
        404
    );
    let endpoint_path = format!("/v1/webhook-endpoints/{endpoint_id}");
    api.patch(&endpoint_path, Some(&shop.owner), json!({"disabled": true}))
        .await;
    let refused = api.post(&path, Some(&shop.owner), json!({})).await;
    assert_eq!(refused.status, 409, "{:?}", refused.body);
}

async fn a_url_refused_at_delivery_time_is_a_failed_attempt_that_reaches_nothing(api: Api) {
    let shop = api.create_shop("owner@example.com").await;
    let receiver = Receiver::start(200).await;
    let (endpoint_id, _) = endpoint(&api, &shop, &receiver, json!(["product.updated"])).await;
    product(&api, &shop, "GREEN", 1250, 10).await;
    // Registered while loopback was allowed; delivered by a worker that does not allow it.
    let mut jobs = Jobs::new(&api, "0");
    jobs.ctx.webhooks.allow_loopback = false;
    jobs.run(&api).await;
    assert!(receiver.received().is_empty());
    let log = deliveries(&api, &shop, &endpoint_id).await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["status_code"], Value::Null);
    // The URL is checked again before each attempt (the connector's own checks of the
    // resolved and connected addresses are `webhooks::guard`'s tests).
    assert_eq!(log[0]["error"], "the URL must use https");
}

/// Hands every job waiting in the outbox to the worker once, as they are.
async fn run_once(jobs: &mut Jobs) {
    for body in jobs.take_outbox().await {
        let message = JobMessage {
            id: ulid::Ulid::new().to_string(),
            body,
            receive_count: 1,
        };
        storefront::jobs::worker::Dispatcher
            .handle(&jobs.ctx, &message)
            .await
            .unwrap();
    }
}

async fn a_retry_asked_for_while_the_schedule_runs_carries_the_schedule_on(api: Api) {
    let shop = api.create_shop("owner@example.com").await;
    let receiver = Receiver::start(500).await;
    let (endpoint_id, _) = endpoint(&api, &shop, &receiver, json!(["product.updated"])).await;
    product(&api, &shop, "GREEN", 1250, 10).await;
    let mut jobs = Jobs::new(&api, "0,3600,3600");
    // The event fans out, its first attempt fails, and the second waits its hour.
    run_once(&mut jobs).await;
    run_once(&mut jobs).await;
    let log = deliveries(&api, &shop, &endpoint_id).await;
    assert_eq!(log.len(), 1);
    let failed = log[0]["id"].as_str().unwrap().to_owned();
    // The shop retries now, and that fails too: the schedule goes on from it.
    let retry = api
        .post(
            &format!("/v1/webhook-endpoints/{endpoint_id}/deliveries/{failed}/retry"),
            Some(&shop.owner),
            json!({}),
        )
        .await;
    assert_eq!(retry.status, 202, "{:?}", retry.body);
    jobs.run(&api).await;
    let log = deliveries(&api, &shop, &endpoint_id).await;
    let outcomes: Vec<&str> = log.iter().map(|a| a["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["dead", "failed", "failed"]);
    assert_eq!(receiver.received().len(), 3);
    assert_eq!(
        jobs.dead_letters.len(),
        1,
        "the schedule still ends in the dead-letter queue"
    );
}

async fn a_delivery_to_an_endpoint_disabled_meanwhile_is_logged_unsent_and_can_be_retried(
    api: Api,
) {
    let shop = api.create_shop("owner@example.com").await;
    let receiver = Receiver::start(200).await;
    let (endpoint_id, _) = endpoint(&api, &shop, &receiver, json!(["product.updated"])).await;
    product(&api, &shop, "GREEN", 1250, 10).await;
    let mut jobs = Jobs::new(&api, "0");
    // Fanned out, then the endpoint is disabled before the attempt.
    run_once(&mut jobs).await;
    let path = format!("/v1/webhook-endpoints/{endpoint_id}");
    let disabled = api
        .patch(&path, Some(&shop.owner), json!({"disabled": true}))
        .await;
    assert_eq!(disabled.status, 200);
    jobs.run(&api).await;
    assert!(receiver.received().is_empty());
    let log = deliveries(&api, &shop, &endpoint_id).await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["outcome"], "failed");
    assert_eq!(log[0]["status_code"], Value::Null);
    assert_eq!(log[0]["next_attempt_at"], Value::Null);
    assert!(log[0]["error"].as_str().unwrap().contains("disabled"));
    // Enabled again, the shop's retry delivers it.
    let enabled = api
        .patch(&path, Some(&shop.owner), json!({"disabled": false}))
        .await;
    assert_eq!(enabled.status, 200);
    let unsent = log[0]["id"].as_str().unwrap();
    let retry = api
        .post(
            &format!("{path}/deliveries/{unsent}/retry"),
            Some(&shop.owner),
            json!({}),
        )
        .await;
    assert_eq!(retry.status, 202, "{:?}", retry.body);
    jobs.run(&api).await;
    assert_eq!(receiver.received().len(), 1);
    assert_eq!(
        deliveries(&api, &shop, &endpoint_id).await[0]["outcome"],
        "succeeded"
    );
}
