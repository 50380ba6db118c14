//! Customer emails: an order's confirmation when it is paid, its cancellation, and its
//! refund, in plain text and HTML from the templates under `shared/templates/email/`.
//!
//! The worker queues an email when the event that calls for one reaches it ([`queue`]): in
//! one transaction, the email's record (so an event queues one email, however often it is
//! delivered) and its job, through the outbox, for the emails queue. The emails consumer
//! ([`send`]; the `emails` function on AWS, a worker loop in the local server) leases the
//! record, composes the message and hands it to the mailer (SES, or an `.eml` file).

use askama::Template as _;
use serde::Deserialize;

use crate::context::AppContext;
use crate::domain::{Event, Job, Money};
use crate::ids::IdKind;
use crate::repo::emails::{self as repo, Lease};
use crate::repo::outbox::Destination;
use crate::store::{Transaction, TransactionError};

/// How long a send holds its email: longer than SES takes, shorter than the queue's
/// visibility timeout, so a crashed send's job, back after it, finds the lease run out.
const LEASE_MS: i64 = 60_000;

pub use crate::domain::EmailKind as Kind;

/// The parts of an order (as the API shows it) an email tells of.
#[derive(Clone, Debug, Deserialize)]
pub struct OrderFacts {
    pub id: String,
    pub customer_id: String,
    pub items: Vec<LineFacts>,
    pub total: Money,
    #[serde(default)]
    pub refund: Option<RefundFacts>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct LineFacts {
    pub sku: String,
    pub name: String,
    pub unit_price: Money,
    pub quantity: u32,
    pub line_total: Money,
}

#[derive(Clone, Debug, Deserialize)]
pub struct RefundFacts {
    pub amount: Money,
}

/// Queues the email `event` calls for, if any: answers whether it did. An event that
/// queued its email before, an order placed with an API key (no address to write to), or
/// a customer who is gone, queues nothing.
#[tracing::instrument(skip_all, fields(event_id = %event.id, event_type = %event.kind))]
pub async fn queue(ctx: &AppContext, event: &Event) -> anyhow::Result<bool> {
    let Some(kind) = Kind::of(&event.kind) else {
        return Ok(false);
    };
    let order: OrderFacts = serde_json::from_value(event.data.object.clone())?;
    if !IdKind::User.matches(&order.customer_id) {
        tracing::info!("the order's customer is an API key: no email");
        return Ok(false);
    }
    let table = ctx.table.as_ref();
    let Some(customer) =
        crate::repo::users::get(table, &event.tenant_id, &order.customer_id).await?
    else {
        tracing::info!("the order's customer is gone: no email");
        return Ok(false);
    };
    let shop = crate::repo::tenants::get(table, &event.tenant_id)
        .await?
        .map(|tenant| tenant.name)
        .unwrap_or_default();
    let job = Job::Email {
        tenant_id: event.tenant_id.clone(),
        event_id: event.id.clone(),
        email: kind,
        to: customer.email,
        customer_name: customer.name,
        shop_name: shop,
        order: event.data.object.clone(),
    };
    let now = ctx.clock.now();
    let expires_at = (now + chrono::Duration::days(repo::RETENTION_DAYS)).timestamp();
    let mut tx = Transaction::new();
    tx.add(
        "the email",
        repo::queued(&event.tenant_id, &event.id, kind.as_str(), expires_at),
    )?
    .add(
        "its job",
        crate::repo::outbox::enqueue_to(
            Destination::Emails,
            &job,
            &ctx.ids.next(IdKind::Message),
            &event.tenant_id,
            now,
        )?,
    )?;
    match tx.commit(table).await {
        Ok(()) => {
            tracing::info!(kind = kind.as_str(), "email queued");
            Ok(true)
        }
        Err(TransactionError::Refused("the email")) => Ok(false),
        Err(e) => Err(e.into_store().into()),
    }
}

/// One email job, as the consumer received it.
#[derive(Clone, Debug)]
pub struct Request {
    pub tenant_id: String,
    pub event_id: String,
    pub kind: Kind,
    pub to: String,
    pub customer_name: String,
    pub shop_name: String,
    pub order: serde_json::Value,
}

/// Sends one queued email, once.
#[tracing::instrument(skip_all, fields(event_id = %job.event_id, kind = job.kind.as_str()))]
pub async fn send(ctx: &AppContext, job: Request) -> anyhow::Result<()> {
    let sender = ctx
        .email_sender
        .as_deref()
        .ok_or_else(|| anyhow::anyhow!("no sender address (STOREFRONT_EMAIL_SENDER is unset)"))?;
    let order: OrderFacts = serde_json::from_value(job.order.clone())?;
    let email = compose(&job, &order)?;
    let raw = mime(&email, sender, &job)?;
    let table = ctx.table.as_ref();
    let key = repo::key(&job.tenant_id, &job.event_id);
    let token = ctx.ids.next(IdKind::Message);
    let now_ms = ctx.clock.now().timestamp_millis();
    match repo::lease(table, &key, &token, now_ms, now_ms + LEASE_MS).await? {
        Lease::Taken => {}
        Lease::Sent | Lease::Busy => {
            tracing::info!("the email was sent, or is being sent, by another job");
            return Ok(());
        }
    }
    let outgoing = crate::mail::Outgoing {
        id: format!("{}.{}", job.event_id, job.kind.as_str()),
        from: sender.to_owned(),
        to: job.to.clone(),
        raw,
    };
    let provider_id = ctx.mailer.send(&outgoing).await?;
    let at = crate::clock::rfc3339(ctx.clock.now());
    repo::sent(table, &key, &token, &provider_id, &at).await?;
    tracing::info!(provider_id, "email sent");
    Ok(())
}

/// An email's subject and its two bodies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Composed {
    pub subject: String,
    pub text: String,
    pub html: String,
}

#[derive(askama::Template)]
#[template(path = "email/order.txt", escape = "none")]
struct Text<'a> {
    view: &'a View,
}

#[derive(askama::Template)]
#[template(path = "email/order.html")]
struct Html<'a> {
    view: &'a View,
}

/// What the templates show.
struct View {
    heading: String,
    intro: String,
    shop: String,
    order_id: String,
    lines: Vec<Line>,
    total: String,
    refund: Option<String>,
}

struct Line {
    quantity: u32,
    name: String,
    sku: String,
    unit: String,
    total: String,
}

/// Renders the email `job` calls for about `order`.
pub fn compose(job: &Request, order: &OrderFacts) -> anyhow::Result<Composed> {
    let shop = if job.shop_name.is_empty() {
        "The shop"
    } else {
        job.shop_name.as_str()
    };
    let name = job.customer_name.as_str();
    let (subject, heading, intro) = match job.kind {
        Kind::Confirmation => (
            format!("{shop}: your order {} is confirmed", order.id),
            "Thank you for your order".to_owned(),
            format!("Hello {name}, {shop} has received your payment. Here is what you ordered."),
        ),
        Kind::Cancellation => (
            format!("{shop}: your order {} is cancelled", order.id),
            "Your order is cancelled".to_owned(),
            format!(
                "Hello {name}, your order with {shop} is cancelled. If you paid for it, the \
                 money goes back to you: another email tells you when."
            ),
        ),
        Kind::Refund => (
            format!("{shop}: your refund for order {}", order.id),
            "Your refund is on its way".to_owned(),
            format!(
                "Hello {name}, {shop} has refunded your order. Your bank may take a few days \
                 to show it."
            ),
        ),
    };
    let view = View {
        heading,
        intro,
        shop: shop.to_owned(),
        order_id: order.id.clone(),
        lines: order
            .items
            .iter()
            .map(|line| Line {
                quantity: line.quantity,
                name: line.name.clone(),
                sku: line.sku.clone(),
                unit: line.unit_price.formatted(),
                total: line.line_total.formatted(),
            })
            .collect(),
        total: order.total.formatted(),
        refund: order
            .refund
            .as_ref()
            .filter(|_| job.kind == Kind::Refund)
            .map(|refund| refund.amount.formatted()),
    };
    Ok(Composed {
        subject,
        text: Text { view: &view }.render()?,
        html: Html { view: &view }.render()?,
    })
}

/// The message as MIME: `multipart/alternative` with the text and HTML bodies, from the
/// shop's name at `sender`, to the customer.
pub fn mime(email: &Composed, sender: &str, job: &Request) -> anyhow::Result<Vec<u8>> {
    use lettre::message::{Mailbox, MultiPart};
    let from = Mailbox::new(
        Some(job.shop_name.clone()).filter(|name| !name.is_empty()),
        sender
            .parse()
            .map_err(|e| anyhow::anyhow!("the sender address {sender} is not one: {e}"))?,
    );
    let to = Mailbox::new(
        Some(job.customer_name.clone()).filter(|name| !name.is_empty()),
        job.to
            .parse()
            .map_err(|e| anyhow::anyhow!("the customer's address is not one: {e}"))?,
    );
    let domain = sender.rsplit('@').next().unwrap_or("storefront.invalid");
    let message = lettre::Message::builder()
        .from(from)
        .to(to)
        .subject(email.subject.clone())
        .message_id(Some(format!(
            "<{}.{}@{domain}>",
            job.event_id,
            job.kind.as_str()
        )))
        .multipart(MultiPart::alternative_plain_html(
            email.text.clone(),
            email.html.clone(),
        ))?;
    Ok(message.formatted())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(kind: Kind) -> (Request, OrderFacts) {
        let order = serde_json::json!({
            "id": "ord_01JD0000000000000000000000",
            "status": "paid",
            "customer_id": "usr_01JD0000000000000000000000",
            "items": [
                {"product_id": "prod_1", "sku": "MUG-1", "name": "Café <Crème> Mug",
                 "unit_price": {"amount": 1250, "currency": "eur"}, "quantity": 2,
                 "line_total": {"amount": 2500, "currency": "eur"}},
                {"product_id": "prod_2", "sku": "TEA-9", "name": "Green tea",
                 "unit_price": {"amount": 123456, "currency": "eur"}, "quantity": 1,
                 "line_total": {"amount": 123456, "currency": "eur"}}
            ],
            "total": {"amount": 125956, "currency": "eur"},
            "refund": {"status": "succeeded", "amount": {"amount": 125956, "currency": "eur"}}
        });
        let request = Request {
            tenant_id: "ten_1".into(),
            event_id: "evt_01JD0000000000000000000000".into(),
            kind,
            to: "grace@example.com".into(),
            customer_name: "Grace".into(),
            shop_name: "Tea & Cups".into(),
            order: order.clone(),
        };
        (request, serde_json::from_value(order).unwrap())
    }

    #[test]
    fn an_email_shows_every_line_and_the_total_in_the_shops_currency() {
        let (request, order) = job(Kind::Confirmation);
        let email = compose(&request, &order).unwrap();
        assert_eq!(
            email.subject,
            "Tea & Cups: your order ord_01JD0000000000000000000000 is confirmed"
        );
        assert!(
            email
                .text
                .contains("2 x Café <Crème> Mug (MUG-1) at €12.50: €25.00"),
            "{}",
            email.text
        );
        assert!(email.text.contains("€1,234.56"), "{}", email.text);
        assert!(email.text.contains("Total: €1,259.56"), "{}", email.text);
        assert!(!email.text.contains("Refunded"), "{}", email.text);
        // The HTML escapes what the shop typed.
        assert!(
            email.html.contains("Café &#60;Crème&#62; Mug")
                || email.html.contains("Café &lt;Crème&gt; Mug"),
            "{}",
            email.html
        );
        assert!(email.html.contains("€1,259.56"));
        let (refund, order) = job(Kind::Refund);
        let email = compose(&refund, &order).unwrap();
        assert!(email.text.contains("Refunded: €1,259.56"), "{}", email.text);
    }

    #[test]
    fn the_message_is_multipart_alternative_from_the_shop_to_the_customer() {
        let (request, order) = job(Kind::Cancellation);
        let email = compose(&request, &order).unwrap();
        let raw =
            String::from_utf8(mime(&email, "orders@shop.example", &request).unwrap()).unwrap();
        assert!(raw.contains("multipart/alternative"), "{raw}");
        assert!(
            raw.contains("text/plain") && raw.contains("text/html"),
            "{raw}"
        );
        assert!(raw.contains("To: Grace <grace@example.com>"), "{raw}");
        assert!(raw.contains("orders@shop.example>"), "{raw}");
        assert!(
            raw.contains("Message-ID: <evt_01JD0000000000000000000000.cancellation@shop.example>"),
            "{raw}"
        );
        assert!(mime(&email, "not an address", &request).is_err());
    }
}
