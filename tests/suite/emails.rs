//! Customer emails, on both adapters: an order's confirmation, cancellation and refund,
//! each once, as `.eml` files Python's own `email` package reads (headers, the
//! multipart/alternative structure, both bodies with the lines and the total); then the
//! local server writing them under `<data-dir>/outbox/`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use storefront::jobs::{JobMessage, Worker as _};

use crate::helpers::api::{dynamo, embedded, Api};
use crate::helpers::LocalServer;
use crate::orders::{charge, paid_order, send, with_webhook_secret};
use crate::webhooks::Jobs;

conformance!(embedded, dynamo;
    an_order_flow_sends_confirmation_cancellation_and_refund_emails_a_mime_parser_reads,
    a_duplicated_event_or_email_job_sends_one_email,
);

/// What Python's `email` package makes of each `.eml` file in `dir`, by file name.
fn parsed_by_python(dir: &Path) -> Value {
    let script = r#"
import json, os, sys
from email import policy
from email.parser import BytesParser
out = {}
for name in sorted(os.listdir(sys.argv[1])):
    if not name.endswith(".eml"):
        continue
    with open(os.path.join(sys.argv[1], name), "rb") as f:
        message = BytesParser(policy=policy.default).parse(f)
    parts = {}
    for part in message.walk():
        if part.get_content_maintype() == "text":
            parts[part.get_content_type()] = part.get_content()
    out[name] = {
        "from": str(message["From"]),
        "to": str(message["To"]),
        "subject": str(message["Subject"]),
        "content_type": message.get_content_type(),
        "message_id": str(message["Message-ID"]),
        "parts": parts,
        "defects": len(message.defects),
    }
print(json.dumps(out))
"#;
    let output = Command::new(crate::payments::tools_bin().join("python"))
        .args(["-c", script])
        .arg(dir)
        .stdout(Stdio::piped())
        .output()
        .expect("python runs");
    assert!(output.status.success(), "{output:?}");
    serde_json::from_slice(&output.stdout).expect("json")
}

/// An order of the harness's customer, paid, cancelled and refunded: its id.
async fn paid_cancelled_refunded(api: &Api) -> (crate::helpers::api::Shop, String) {
    let shop = api.create_shop("owner@example.com").await;
    let order_id = paid_order(api, &shop, true).await;
    let refunded = send(
        api,
        "evt_refunded_1",
        "charge.refunded",
        charge(&shop, &order_id, 2500),
    )
    .await;
    assert_eq!(refunded.status, 200, "{:?}", refunded.body);
    (shop, order_id)
}

async fn an_order_flow_sends_confirmation_cancellation_and_refund_emails_a_mime_parser_reads(
    api: Api,
) {
    let api = with_webhook_secret(api);
    let (_, order_id) = paid_cancelled_refunded(&api).await;
    let mut jobs = Jobs::new(&api, "0");
    jobs.run(&api).await;
    assert_eq!(api.mail.sent(), 3);

    let emails = parsed_by_python(api.mail.dir());
    let emails = emails.as_object().expect("files");
    assert_eq!(emails.len(), 3, "{emails:?}");
    let mut subjects: Vec<&str> = Vec::new();
    for (name, email) in emails {
        assert_eq!(email["defects"], 0, "{name}");
        let sender = api.ctx.email_sender.as_deref().expect("a sender");
        assert_eq!(email["from"], format!("Tea Shop <{sender}>"), "{name}");
        assert_eq!(email["to"], "Grace <grace@example.com>", "{name}");
        assert_eq!(email["content_type"], "multipart/alternative", "{name}");
        let text = email["parts"]["text/plain"].as_str().expect("a text part");
        let html = email["parts"]["text/html"].as_str().expect("an HTML part");
        assert!(text.contains(&order_id), "{text}");
        assert!(
            text.contains("2 x Tea GREEN (GREEN) at €12.50: €25.00"),
            "{text}"
        );
        assert!(text.contains("Total: €25.00"), "{text}");
        assert!(html.contains("<td align=\"right\">€25.00</td>"), "{html}");
        assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
        subjects.push(email["subject"].as_str().unwrap());
    }
    subjects.sort();
    assert_eq!(
        subjects,
        [
            format!("Tea Shop: your order {order_id} is cancelled"),
            format!("Tea Shop: your order {order_id} is confirmed"),
            format!("Tea Shop: your refund for order {order_id}"),
        ]
    );
    let refund = emails
        .values()
        .find(|e| e["subject"].as_str().unwrap().contains("refund"))
        .unwrap();
    assert!(refund["parts"]["text/plain"]
        .as_str()
        .unwrap()
        .contains("Refunded: €25.00"));
}

async fn a_duplicated_event_or_email_job_sends_one_email(api: Api) {
    let api = with_webhook_secret(api);
    let shop = api.create_shop("owner@example.com").await;
    paid_order(&api, &shop, false).await;
    let mut jobs = Jobs::new(&api, "0");
    let ctx = jobs.ctx.clone();
    let run = |body: String| {
        let ctx = ctx.clone();
        async move {
            let message = JobMessage {
                id: "m".into(),
                body,
                receive_count: 1,
            };
            storefront::jobs::worker::Dispatcher
                .handle(&ctx, &message)
                .await
                .expect("the job runs");
        }
    };
    // Each event twice: the paid one queues one email.
    let events = jobs.take_outbox().await;
    for body in events.iter().chain(events.iter()) {
        run(body.clone()).await;
    }
    let emails: Vec<String> = jobs
        .take_outbox()
        .await
        .into_iter()
        .filter(|body| body.contains("\"kind\":\"email\""))
        .collect();
    assert_eq!(emails.len(), 1, "{emails:?}");
    // The email job three times, two at once: one email.
    tokio::join!(run(emails[0].clone()), run(emails[0].clone()));
    run(emails[0].clone()).await;
    assert_eq!(api.mail.sent(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_server_writes_each_email_to_its_outbox_directory() {
    let local = LocalServer::start().await;
    let client = crate::webhooks_local::Client::new(local.server.url());
    let (_, owner) = client.shop().await;
    let product = client.product(&owner, 3).await;
    let order = client.order(&owner, &product, "email-1").await;
    client
        .post(
            &format!("/v1/orders/{order}/cancel"),
            Some(&owner),
            json!({}),
        )
        .await;
    let outbox = local.server.embedded().data_dir.join("outbox");
    let mut found = Vec::new();
    for _ in 0..300 {
        found = std::fs::read_dir(&outbox)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|name| name.ends_with(".eml"))
                    .collect()
            })
            .unwrap_or_default();
        if !found.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].ends_with(".cancellation.eml"), "{found:?}");
    let parsed = parsed_by_python(&outbox);
    let email = &parsed[&found[0]];
    assert_eq!(email["from"], "Tea <orders@storefront.localhost>");
    assert_eq!(email["to"], "O <o@example.com>");
    assert!(email["parts"]["text/plain"]
        .as_str()
        .unwrap()
        .contains("1 x Tea (T) at €4.50: €4.50"));
    local.server.stop().await;
}

/// The SES adapter against moto: a verified sender's message is accepted with an id, an
/// unverified sender's is refused.
#[tokio::test]
async fn the_ses_mailer_sends_the_raw_message_and_fails_for_an_unverified_sender() {
    use storefront::mail::{ses::SesMailer, Mailer as _, Outgoing};
    let sdk = crate::helpers::moto_sdk().await;
    let client = aws_sdk_sesv2::Client::new(&sdk);
    let sender = format!("orders-{}@shop.example", ulid::Ulid::new()).to_lowercase();
    client
        .create_email_identity()
        .email_identity(&sender)
        .send()
        .await
        .expect("identity");
    let raw = format!(
        "From: Tea Shop <{sender}>\r\nTo: grace@example.com\r\nSubject: Hello\r\n\r\nHello.\r\n"
    );
    let mailer = SesMailer::new(client);
    let email = Outgoing {
        id: "evt_1.confirmation".into(),
        from: sender.clone(),
        to: "grace@example.com".into(),
        raw: raw.into_bytes(),
    };
    let id = mailer.send(&email).await.expect("SES accepts it");
    assert!(!id.is_empty());
    let stranger = Outgoing {
        from: "nobody@elsewhere.example".into(),
        raw: b"From: nobody@elsewhere.example\r\nTo: grace@example.com\r\nSubject: x\r\n\r\nx\r\n"
            .to_vec(),
        ..email
    };
    assert!(mailer.send(&stranger).await.is_err());
}
