//! Orders, on both adapters: placing them (idempotent, all or nothing, never oversold),
//! reading and listing them, and their moves (cancel, fulfil, expiry), through `dispatch`
//! over the embedded store and over DynamoDB on moto; then the expiry timer of the local
//! server over HTTP.

use std::time::Duration;

use http::Method;
use serde_json::{json, Value};
use storefront::clock::Clock as _;
use storefront::store::Key;

use crate::helpers::api::{dynamo, embedded, Api, Reply, Shop};
use crate::helpers::LocalServer;

conformance!(embedded, dynamo;
    an_order_takes_its_stock_copies_its_prices_and_is_read_back_by_its_customer,
    an_idempotency_key_replays_the_first_answer_and_refuses_another_body,
    fifty_concurrent_orders_for_five_units_sell_exactly_five,
    an_order_with_one_line_short_of_stock_takes_nothing,
    bad_orders_are_refused_with_a_4xx_and_change_nothing,
    cancelling_returns_the_stock_once_and_every_illegal_move_is_409,
    of_two_racing_cancels_exactly_one_happens,
    an_unpaid_order_expires_after_its_window_and_is_restocked_once,
    customers_list_their_own_orders_and_staff_the_shops_with_filters,
    another_customers_or_another_shops_order_is_404,
    every_order_change_writes_its_event_and_audit_entry,
    a_signed_payment_event_pays_the_order_once_and_a_bad_signature_changes_nothing,
    payment_events_in_any_order_leave_a_refunded_order_refunded,
    a_payment_for_the_wrong_amount_or_another_shop_changes_nothing_but_the_audit_log,
    paying_makes_one_payment_per_order_for_its_customer_alone,
    cancelling_a_paid_order_refunds_it_once_through_the_provider,
    money_that_comes_after_the_order_expired_is_refunded,
);

const PASSWORD: &str = "a long passphrase";

pub(crate) async fn product(api: &Api, shop: &Shop, sku: &str, price: i64, stock: i64) -> String {
    let body = json!({"sku": sku, "name": format!("Tea {sku}"), "description": "", "price": {"amount": price, "currency": "eur"}, "stock": stock});
    let reply = api.post("/v1/products", Some(&shop.owner), body).await;
    assert_eq!(reply.status, 201, "{:?}", reply.body);
    reply.body["id"].as_str().expect("id").to_owned()
}

async fn stock_of(api: &Api, shop: &Shop, product_id: &str) -> i64 {
    let reply = api
        .get(&format!("/v1/products/{product_id}"), Some(&shop.owner))
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    reply.body["stock"].as_i64().expect("stock")
}

/// A customer of the shop, signed in: their token and user id.
pub(crate) async fn customer(api: &Api, shop: &Shop, email: &str) -> (String, String) {
    let reply = api.signup(&shop.tenant_id, email).await;
    assert_eq!(reply.status, 201, "{:?}", reply.body);
    (
        reply.token(),
        reply.body["user"]["id"].as_str().expect("id").to_owned(),
    )
}

async fn order_with_key(api: &Api, token: &str, key: &str, items: Value) -> Reply {
    api.call_with_headers(
        "203.0.113.1",
        Method::POST,
        "/v1/orders",
        Some(token),
        Some(json!({ "items": items })),
        &[("idempotency-key", key)],
    )
    .await
}

pub(crate) async fn order(api: &Api, token: &str, items: Value) -> Reply {
    let key = format!("key-{}", ulid::Ulid::new());
    order_with_key(api, token, &key, items).await
}

fn ids(reply: &Reply) -> Vec<String> {
    reply.body["items"]
        .as_array()
        .unwrap_or_else(|| panic!("a page: {:?}", reply.body))
        .iter()
        .map(|o| o["id"].as_str().expect("id").to_owned())
        .collect()
}

/// Every order of the shop, as its owner lists them.
async fn all_orders(api: &Api, shop: &Shop) -> Vec<String> {
    let reply = api.get("/v1/orders?limit=100", Some(&shop.owner)).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    ids(&reply)
}

async fn an_order_takes_its_stock_copies_its_prices_and_is_read_back_by_its_customer(api: Api) {
    let shop = api.create_shop("owner@example.com").await;
    let green = product(&api, &shop, "GREEN", 1250, 10).await;
    let black = product(&api, &shop, "BLACK", 399, 4).await;
    let (token, user_id) = customer(&api, &shop, "grace@example.com").await;
    let placed = order(
        &api,
        &token,
        json!([{"product_id": green, "quantity": 2}, {"product_id": black, "quantity": 3}, {"product_id": green, "quantity": 1}]),
    )
    .await;
    assert_eq!(placed.status, 201, "{:?}", placed.body);
    let body = &placed.body;
    let id = body["id"].as_str().expect("id");
    assert!(id.starts_with("ord_"), "{id}");
    assert_eq!(
        placed.headers["location"].to_str().unwrap(),
        format!("/v1/orders/{id}")
    );
    assert_eq!(body["status"], "pending_payment");
    assert_eq!(body["customer_id"], user_id.as_str());
    assert_eq!(
        body["items"],
        json!([
            {"product_id": green, "sku": "GREEN", "name": "Tea GREEN", "unit_price": {"amount": 1250, "currency": "eur"}, "quantity": 3, "line_total": {"amount": 3750, "currency": "eur"}},
            {"product_id": black, "sku": "BLACK", "name": "Tea BLACK", "unit_price": {"amount": 399, "currency": "eur"}, "quantity": 3, "line_total": {"amount": 1197, "currency": "eur"}},
        ])
    );
    assert_eq!(body["total"], json!({"amount": 4947, "currency": "eur"}));
    let created =
        chrono::DateTime::parse_from_rfc3339(body["created_at"].as_str().unwrap()).unwrap();
    let due =
        chrono::DateTime::parse_from_rfc3339(body["payment_due_by"].as_str().unwrap()).unwrap();
    assert_eq!((due - created).num_seconds(), 1800);
    assert!(body.get("cancel_reason").is_none() && body.get("refund").is_none());
    assert_eq!(stock_of(&api, &shop, &green).await, 7);
    assert_eq!(stock_of(&api, &shop, &black).await, 1);

    // A later price change does not touch the order's copy.
    let changed = api
        .patch(
            &format!("/v1/products/{green}"),
            Some(&shop.owner),
            json!({"price": {"amount": 9999, "currency": "eur"}}),
        )
        .await;
    assert_eq!(changed.status, 200);
    let read = api.get(&format!("/v1/orders/{id}"), Some(&token)).await;
    assert_eq!(read.status, 200, "{:?}", read.body);
    assert_eq!(&read.body, body);
    let listed = api.get("/v1/orders", Some(&token)).await;
    assert_eq!(listed.body["items"], json!([body]));
    assert_eq!(listed.body["next_cursor"], Value::Null);
}

async fn an_idempotency_key_replays_the_first_answer_and_refuses_another_body(api: Api) {
    let shop = api.create_shop("owner@example.com").await;
    let green = product(&api, &shop, "GREEN", 1250, 10).await;
    let (token, _) = customer(&api, &shop, "grace@example.com").await;
    let items = json!([{"product_id": green, "quantity": 2}]);
    let first = order_with_key(&api, &token, "retry-me", items.clone()).await;
    assert_eq!(first.status, 201, "{:?}", first.body);
    let again = order_with_key(&api, &token, "retry-me", items.clone()).await;
    assert_eq!(again.status, 201);
    assert_eq!(again.body, first.body);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(again.headers["location"], first.headers["location"]);
    assert_eq!(stock_of(&api, &shop, &green).await, 8, "taken once");
    assert_eq!(all_orders(&api, &shop).await.len(), 1);

    let other = order_with_key(
        &api,
        &token,
        "retry-me",
        json!([{"product_id": green, "quantity": 3}]),
    )
    .await;
    assert_eq!(other.status, 422, "{:?}", other.body);
    assert_eq!(other.slug(), "idempotency-key-reused");
    // Keys belong to their caller: another customer's same key is a new order.
    let (someone, _) = customer(&api, &shop, "ada@example.com").await;
    let theirs = order_with_key(&api, &someone, "retry-me", items.clone()).await;
    assert_eq!(theirs.status, 201);
    assert_ne!(theirs.body["id"], first.body["id"]);
    assert_eq!(stock_of(&api, &shop, &green).await, 6);

    // Missing, empty, overlong or non-ASCII keys are 400 and place nothing.
    let missing = api
        .post("/v1/orders", Some(&token), json!({ "items": items }))
        .await;
    assert_eq!(missing.status, 400, "{:?}", missing.body);
    let long = "k".repeat(256);
    for key in ["", long.as_str(), "has space"] {
        let reply = order_with_key(&api, &token, key, items.clone()).await;
        assert_eq!(reply.status, 400, "{key:?}: {:?}", reply.body);
    }
    assert_eq!(stock_of(&api, &shop, &green).await, 6);
    assert_eq!(all_orders(&api, &shop).await.len(), 2);
}

async fn fifty_concurrent_orders_for_five_units_sell_exactly_five(api: Api) {
    let shop = api.create_shop("owner@example.com").await;
    let hot = product(&api, &shop, "HOT", 500, 5).await;
    let mut customers = Vec::new();
    for n in 0..10 {
        customers.push(customer(&api, &shop, &format!("c{n}@example.com")).await);
    }
    let attempts = (0..50).map(|n| {
        let (token, user_id) = &customers[n % 10];
        let key = format!("race-{n}");
        let api = &api;
        let hot = &hot;
        async move {
            let reply = order_with_key(
                api,
                token,
                &key,
                json!([{"product_id": hot, "quantity": 1}]),
            )
            .await;
            (reply, user_id.clone(), key)
        }
    });
    let replies = futures_util::future::join_all(attempts).await;
    let sold: Vec<&Reply> = replies
        .iter()
        .map(|(r, _, _)| r)
        .filter(|r| r.status == 201)
        .collect();
    assert_eq!(sold.len(), 5, "exactly the stock is sold");
    for (reply, user_id, key) in replies.iter().filter(|(r, _, _)| r.status != 201) {
        assert_eq!(reply.status, 409, "{:?}", reply.body);
        assert_eq!(reply.slug(), "out-of-stock", "{:?}", reply.body);
        // A refused order leaves no idempotency record behind.
        let record = Key::new(
            format!("IDEMPOTENCY#{}#{user_id}#{key}", shop.tenant_id),
            "IDEMPOTENCY",
        );
        assert!(api.ctx.table.get(&record).await.unwrap().is_none(), "{key}");
    }
    assert_eq!(stock_of(&api, &shop, &hot).await, 0);
    let mut placed: Vec<String> = sold
        .iter()
        .map(|r| r.body["id"].as_str().unwrap().to_owned())
        .collect();
    placed.sort();
    let mut listed = all_orders(&api, &shop).await;
    listed.sort();
    assert_eq!(listed, placed, "no order of a refused request exists");
    let pending = api
        .get(
            "/v1/orders?status=pending_payment&limit=100",
            Some(&shop.owner),
        )
        .await;
    assert_eq!(ids(&pending).len(), 5);
}

async fn an_order_with_one_line_short_of_stock_takes_nothing(api: Api) {
    let shop = api.create_shop("owner@example.com").await;
    let plenty = product(&api, &shop, "PLENTY", 100, 50).await;
    let scarce = product(&api, &shop, "SCARCE", 100, 2).await;
    let (token, _) = customer(&api, &shop, "grace@example.com").await;
    let refused = order(
        &api,
        &token,
        json!([{"product_id": plenty, "quantity": 10}, {"product_id": scarce, "quantity": 3}]),
    )
    .await;
    assert_eq!(refused.status, 409, "{:?}", refused.body);
    assert_eq!(refused.slug(), "out-of-stock");
    assert!(
        refused.body["detail"].as_str().unwrap().contains("SCARCE"),
        "{:?}",
        refused.body
    );
    assert_eq!(stock_of(&api, &shop, &plenty).await, 50);
    assert_eq!(stock_of(&api, &shop, &scarce).await, 2);
    assert!(all_orders(&api, &shop).await.is_empty());
    let exact = order(
        &api,
        &token,
        json!([{"product_id": plenty, "quantity": 10}, {"product_id": scarce, "quantity": 2}]),
    )
    .await;
    assert_eq!(exact.status, 201, "{:?}", exact.body);
    assert_eq!(stock_of(&api, &shop, &scarce).await, 0);
}

async fn bad_orders_are_refused_with_a_4xx_and_change_nothing(api: Api) {
    let shop = api.create_shop("owner@example.com").await;
    let other = api.create_shop("other@example.com").await;
    let green = product(&api, &shop, "GREEN", 100, 5).await;
    let gone = product(&api, &shop, "GONE", 100, 5).await;
    assert_eq!(
        api.delete(&format!("/v1/products/{gone}"), Some(&shop.owner))
            .await
            .status,
        204
    );
    let theirs = product(&api, &other, "THEIRS", 100, 5).await;
    let (token, _) = customer(&api, &shop, "grace@example.com").await;
    let unknown = "prod_01JD0000000000000000000000";
    let too_many: Vec<Value> = (0..94)
        .map(|n| json!({"product_id": format!("prod_01JD{n:022}"), "quantity": 1}))
        .collect();
    let cases: Vec<(Value, u16, &str)> = vec![
        (
            json!([{"product_id": unknown, "quantity": 1}]),
            422,
            "unknown-product",
        ),
        (
            json!([{"product_id": gone, "quantity": 1}]),
            422,
            "unknown-product",
        ),
        (
            json!([{"product_id": theirs, "quantity": 1}]),
            422,
            "unknown-product",
        ),
        (
            json!([{"product_id": green, "quantity": 0}]),
            422,
            "validation-failed",
        ),
        (
            json!([{"product_id": green, "quantity": -2}]),
            422,
            "validation-failed",
        ),
        (
            json!([{"product_id": green, "quantity": 1001}]),
            422,
            "validation-failed",
        ),
        (
            json!([{"product_id": green, "quantity": 600}, {"product_id": green, "quantity": 401}]),
            422,
            "validation-failed",
        ),
        (
            json!([{"product_id": "not-an-id", "quantity": 1}]),
            422,
            "validation-failed",
        ),
        (json!([]), 422, "validation-failed"),
        (Value::Array(too_many), 422, "validation-failed"),
        (
            json!([{"product_id": green, "quantity": 1.5}]),
            400,
            "bad-request",
        ),
        (json!([{"product_id": green}]), 400, "bad-request"),
        (
            json!([{"product_id": green, "quantity": 1, "price": 1}]),
            400,
            "bad-request",
        ),
        (json!("everything"), 400, "bad-request"),
    ];
    for (items, status, slug) in cases {
        let reply = order(&api, &token, items.clone()).await;
        assert_eq!(reply.status, status, "{items}: {:?}", reply.body);
        assert_eq!(reply.slug(), slug, "{items}: {:?}", reply.body);
    }
    let named = order(
        &api,
        &token,
        json!([{"product_id": green, "quantity": 1}, {"product_id": unknown, "quantity": 1}]),
    )
    .await;
    assert_eq!(named.body["errors"][0]["field"], "items[1].product_id");
    assert_eq!(stock_of(&api, &shop, &green).await, 5);
    assert!(all_orders(&api, &shop).await.is_empty());
}

async fn cancelling_returns_the_stock_once_and_every_illegal_move_is_409(api: Api) {
    let shop = api.create_shop("owner@example.com").await;
    let green = product(&api, &shop, "GREEN", 100, 5).await;
    let (token, _) = customer(&api, &shop, "grace@example.com").await;
    let placed = order(&api, &token, json!([{"product_id": green, "quantity": 3}])).await;
    let id = placed.body["id"].as_str().unwrap().to_owned();
    assert_eq!(stock_of(&api, &shop, &green).await, 2);
    // Only a paid order can be fulfilled, and only by staff.
    let fulfil = format!("/v1/orders/{id}/fulfil");
    assert_eq!(api.post(&fulfil, Some(&token), json!({})).await.status, 403);
    let early = api.post(&fulfil, Some(&shop.owner), json!({})).await;
    assert_eq!(early.status, 409, "{:?}", early.body);
    assert_eq!(early.slug(), "order-status");

    let cancel = format!("/v1/orders/{id}/cancel");
    let cancelled = api.post(&cancel, Some(&token), json!({})).await;
    assert_eq!(cancelled.status, 200, "{:?}", cancelled.body);
    assert_eq!(cancelled.body["status"], "cancelled");
    assert!(cancelled.body.get("cancel_reason").is_none());
    assert_eq!(stock_of(&api, &shop, &green).await, 5);
    for (path, token) in [
        (&cancel, &token),
        (&cancel, &shop.owner),
        (&fulfil, &shop.owner),
    ] {
        let again = api.post(path, Some(token), json!({})).await;
        assert_eq!(again.status, 409, "{path}: {:?}", again.body);
    }
    assert_eq!(stock_of(&api, &shop, &green).await, 5, "returned once");
    let read = api.get(&format!("/v1/orders/{id}"), Some(&token)).await;
    assert_eq!(read.body["status"], "cancelled");

    // Staff cancel a customer's order; the stock of a product deleted since goes nowhere.
    let gone = product(&api, &shop, "GONE", 100, 5).await;
    let placed = order(
        &api,
        &token,
        json!([{"product_id": green, "quantity": 1}, {"product_id": gone, "quantity": 1}]),
    )
    .await;
    assert_eq!(placed.status, 201, "{:?}", placed.body);
    assert_eq!(
        api.delete(&format!("/v1/products/{gone}"), Some(&shop.owner))
            .await
            .status,
        204
    );
    let id = placed.body["id"].as_str().unwrap();
    let cancelled = api
        .post(
            &format!("/v1/orders/{id}/cancel"),
            Some(&shop.owner),
            json!({}),
        )
        .await;
    assert_eq!(cancelled.status, 200, "{:?}", cancelled.body);
    assert_eq!(stock_of(&api, &shop, &green).await, 5);
    let deleted = api
        .get(&format!("/v1/products/{gone}"), Some(&shop.owner))
        .await;
    assert_eq!(deleted.status, 404, "not brought back by its restock");
}

async fn of_two_racing_cancels_exactly_one_happens(api: Api) {
    let shop = api.create_shop("owner@example.com").await;
    let green = product(&api, &shop, "GREEN", 100, 5).await;
    let (token, _) = customer(&api, &shop, "grace@example.com").await;
    let placed = order(&api, &token, json!([{"product_id": green, "quantity": 2}])).await;
    let cancel = format!("/v1/orders/{}/cancel", placed.body["id"].as_str().unwrap());
    let racing = (0..6).map(|n| {
        let who = if n % 2 == 0 { &token } else { &shop.owner };
        api.post(&cancel, Some(who), json!({}))
    });
    let mut statuses: Vec<u16> = futures_util::future::join_all(racing)
        .await
        .iter()
        .map(|r| r.status)
        .collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409, 409, 409, 409, 409]);
    assert_eq!(stock_of(&api, &shop, &green).await, 5, "returned once");
}

async fn an_unpaid_order_expires_after_its_window_and_is_restocked_once(api: Api) {
    let shop = api.create_shop("owner@example.com").await;
    let green = product(&api, &shop, "GREEN", 100, 5).await;
    let (token, _) = customer(&api, &shop, "grace@example.com").await;
    // Access tokens last 15 minutes and the clock moves further: the owner reads with an
    // API key.
    let key = api
        .post("/v1/api-keys", Some(&shop.owner), json!({"name": "Reader"}))
        .await;
    let reader = Shop {
        owner: key.body["key"].as_str().expect("key").to_owned(),
        ..shop
    };
    let shop = &reader;
    let first = order(&api, &token, json!([{"product_id": green, "quantity": 2}])).await;
    api.clock.advance(Duration::from_secs(600));
    let second = order(&api, &token, json!([{"product_id": green, "quantity": 1}])).await;
    assert_eq!(stock_of(&api, shop, &green).await, 2);

    // Not yet due: nothing happens.
    let sweep = storefront::orders::expire_overdue(&api.ctx).await.unwrap();
    assert_eq!(sweep.expired, 0);
    api.clock.advance(Duration::from_secs(1201));
    // Two sweeps at once (two overlapping schedule ticks): each order expires once.
    let (a, b) = tokio::join!(
        storefront::orders::expire_overdue(&api.ctx),
        storefront::orders::expire_overdue(&api.ctx)
    );
    assert_eq!(a.unwrap().expired + b.unwrap().expired, 1);
    assert_eq!(stock_of(&api, shop, &green).await, 4);
    let id = first.body["id"].as_str().unwrap();
    let expired = api
        .get(&format!("/v1/orders/{id}"), Some(&shop.owner))
        .await;
    assert_eq!(expired.body["status"], "cancelled");
    assert_eq!(expired.body["cancel_reason"], "payment_window_expired");
    let later = api
        .get(
            &format!("/v1/orders/{}", second.body["id"].as_str().unwrap()),
            Some(&shop.owner),
        )
        .await;
    assert_eq!(later.body["status"], "pending_payment");
    let sweep = storefront::orders::expire_overdue(&api.ctx).await.unwrap();
    assert_eq!(sweep.expired, 0, "{sweep:?}");
    assert_eq!(stock_of(&api, shop, &green).await, 4, "restocked once");
    assert_eq!(
        api.audit_history(&shop.owner, id).await,
        ["order.cancelled", "order.created"]
    );
    api.clock.advance(Duration::from_secs(600));
    let sweep = storefront::orders::expire_overdue(&api.ctx).await.unwrap();
    assert_eq!(sweep.expired, 1);
    assert_eq!(stock_of(&api, shop, &green).await, 5);
}

async fn customers_list_their_own_orders_and_staff_the_shops_with_filters(api: Api) {
    let shop = api.create_shop("owner@example.com").await;
    let green = product(&api, &shop, "GREEN", 100, 100).await;
    let (grace, grace_id) = customer(&api, &shop, "grace@example.com").await;
    let (ada, ada_id) = customer(&api, &shop, "ada@example.com").await;
    let line = json!([{"product_id": green, "quantity": 1}]);
    let mut graces = Vec::new();
    for _ in 0..5 {
        let reply = order(&api, &grace, line.clone()).await;
        graces.push(reply.body["id"].as_str().unwrap().to_owned());
        api.clock.advance(Duration::from_millis(5));
    }
    let adas = order(&api, &ada, line.clone()).await;
    let adas = adas.body["id"].as_str().unwrap().to_owned();
    let cancelled = api
        .post(
            &format!("/v1/orders/{}/cancel", graces[1]),
            Some(&grace),
            json!({}),
        )
        .await;
    assert_eq!(cancelled.status, 200);

    // A customer's own, newest first, in pages.
    let newest_first: Vec<String> = graces.iter().rev().cloned().collect();
    let first = api.get("/v1/orders?limit=3", Some(&grace)).await;
    assert_eq!(ids(&first), newest_first[..3]);
    let cursor = first.body["next_cursor"].as_str().expect("a cursor");
    let second = api
        .get(&format!("/v1/orders?limit=3&cursor={cursor}"), Some(&grace))
        .await;
    assert_eq!(ids(&second), newest_first[3..]);
    assert_eq!(second.body["next_cursor"], Value::Null);
    // A cursor of Grace's list does not page through Ada's.
    let forged = api
        .get(&format!("/v1/orders?cursor={cursor}"), Some(&ada))
        .await;
    assert_eq!(forged.status, 400);
    let own = api.get("/v1/orders?status=cancelled", Some(&grace)).await;
    assert_eq!(ids(&own), [graces[1].clone()]);
    let nobody = api
        .get(&format!("/v1/orders?customer={ada_id}"), Some(&grace))
        .await;
    assert_eq!(nobody.status, 200);
    assert!(ids(&nobody).is_empty(), "a customer sees no one else's");

    // Staff see the shop's, narrowed by customer and status.
    let mut all = newest_first.clone();
    all.insert(0, adas.clone());
    assert_eq!(all_orders(&api, &shop).await, all);
    let theirs = api
        .get(
            &format!("/v1/orders?customer={grace_id}"),
            Some(&shop.owner),
        )
        .await;
    assert_eq!(ids(&theirs), newest_first);
    let pending = api
        .get("/v1/orders?status=pending_payment", Some(&shop.owner))
        .await;
    let expected: Vec<String> = all.iter().filter(|id| **id != graces[1]).cloned().collect();
    assert_eq!(ids(&pending), expected);
    let both = api
        .get(
            &format!("/v1/orders?customer={grace_id}&status=cancelled"),
            Some(&shop.owner),
        )
        .await;
    assert_eq!(ids(&both), [graces[1].clone()]);
    let bad = api.get("/v1/orders?status=lost", Some(&shop.owner)).await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.body["errors"][0]["field"], "status");
}

async fn another_customers_or_another_shops_order_is_404(api: Api) {
    let shop = api.create_shop("owner@example.com").await;
    let other = api.create_shop("other@example.com").await;
    let green = product(&api, &shop, "GREEN", 100, 10).await;
    let (grace, _) = customer(&api, &shop, "grace@example.com").await;
    let (ada, _) = customer(&api, &shop, "ada@example.com").await;
    let placed = order(&api, &grace, json!([{"product_id": green, "quantity": 1}])).await;
    let id = placed.body["id"].as_str().unwrap();
    for (token, who) in [(&ada, "another customer"), (&other.owner, "another shop")] {
        let read = api.get(&format!("/v1/orders/{id}"), Some(token)).await;
        assert_eq!(read.status, 404, "{who}: {:?}", read.body);
        let cancel = api
            .post(&format!("/v1/orders/{id}/cancel"), Some(token), json!({}))
            .await;
        assert_eq!(cancel.status, 404, "{who}: {:?}", cancel.body);
    }
    let fulfil = api
        .post(
            &format!("/v1/orders/{id}/fulfil"),
            Some(&other.owner),
            json!({}),
        )
        .await;
    assert_eq!(fulfil.status, 404);
    assert!(all_orders(&api, &other).await.is_empty());
    for path in [
        "/v1/orders/ord_nonsense",
        "/v1/orders/ord_01JD0000000000000000000000",
    ] {
        assert_eq!(api.get(path, Some(&grace)).await.status, 404, "{path}");
    }
    assert_eq!(api.get("/v1/orders", None).await.status, 401);
    let read = api.get(&format!("/v1/orders/{id}"), Some(&grace)).await;
    assert_eq!(read.body["status"], "pending_payment");
    assert_eq!(stock_of(&api, &shop, &green).await, 9);
}

/// The events waiting in the outbox about one order, oldest first.
async fn events_about(api: &Api, order_id: &str) -> Vec<String> {
    let mut kinds = Vec::new();
    for body in api.outbox_jobs().await {
        let job: Value = serde_json::from_str(&body).unwrap();
        if job["event"]["data"]["object"]["id"] == order_id {
            kinds.push(job["event"]["type"].as_str().unwrap().to_owned());
        }
    }
    kinds
}

async fn every_order_change_writes_its_event_and_audit_entry(api: Api) {
    let shop = api.create_shop("owner@example.com").await;
    let green = product(&api, &shop, "GREEN", 100, 10).await;
    let (grace, _) = customer(&api, &shop, "grace@example.com").await;
    let placed = order(&api, &grace, json!([{"product_id": green, "quantity": 1}])).await;
    let id = placed.body["id"].as_str().unwrap();
    assert_eq!(events_about(&api, id).await, ["order.created"]);
    api.post(&format!("/v1/orders/{id}/cancel"), Some(&grace), json!({}))
        .await;
    assert_eq!(
        events_about(&api, id).await,
        ["order.created", "order.cancelled"]
    );
    assert_eq!(
        api.audit_history(&shop.owner, id).await,
        ["order.cancelled", "order.created"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_server_expires_an_unpaid_order_on_its_timer() {
    let local = LocalServer::start_with(|options| options.payment_window_s = 1).await;
    let client = &local.client;
    let shop: Value = client
        .post(local.url("/v1/tenants"))
        .json(&json!({"name": "Tea", "currency": "eur", "owner": {"email": "o@example.com", "password": PASSWORD, "name": "O"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let owner = shop["tokens"]["access_token"].as_str().unwrap();
    let product: Value = client
        .post(local.url("/v1/products"))
        .bearer_auth(owner)
        .json(&json!({"sku": "T", "name": "Tea", "description": "", "price": {"amount": 100, "currency": "eur"}, "stock": 3}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let placed = client
        .post(local.url("/v1/orders"))
        .bearer_auth(owner)
        .header("idempotency-key", "local-1")
        .json(&json!({"items": [{"product_id": product["id"], "quantity": 3}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(placed.status(), 201);
    let placed: Value = placed.json().await.unwrap();
    let path = local.url(&format!("/v1/orders/{}", placed["id"].as_str().unwrap()));
    // The window is one second and the timer ticks every second; the bound only ends a
    // test that would otherwise hang.
    let mut status = Value::Null;
    for _ in 0..300 {
        let read: Value = client
            .get(&path)
            .bearer_auth(owner)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        status = read["status"].clone();
        if status == "cancelled" {
            assert_eq!(read["cancel_reason"], "payment_window_expired");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, "cancelled");
    let product: Value = client
        .get(local.url(&format!("/v1/products/{}", product["id"].as_str().unwrap())))
        .bearer_auth(owner)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(product["stock"], 3);
    local.server.stop().await;
}

pub(crate) const WEBHOOK_SECRET: &str = "whsec_test_orders_suite";

pub(crate) fn with_webhook_secret(mut api: Api) -> Api {
    api.ctx.payment_webhook_secret = Some(secrecy::SecretString::from(WEBHOOK_SECRET));
    api
}

/// A Stripe event of `kind` about `object`, signed at `at` (unix seconds) with `secret`.
pub(crate) async fn stripe_event(
    api: &Api,
    id: &str,
    kind: &str,
    object: Value,
    signed_at: i64,
    secret: &str,
) -> Reply {
    let body =
        json!({"id": id, "object": "event", "type": kind, "data": {"object": object}}).to_string();
    let signature = storefront::credentials::stripe_signature::sign(
        body.as_bytes(),
        &secrecy::SecretString::from(secret),
        signed_at,
    );
    let mut req = crate::helpers::api_request(Method::POST, "/v1/payments/webhook", None, None);
    *req.body_mut() = lambda_http::Body::Text(body);
    req.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    req.headers_mut()
        .insert("stripe-signature", signature.parse().unwrap());
    let response = storefront::edge::dispatch(&api.ctx, storefront::routes::ROUTES, req).await;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body: Value = serde_json::from_slice(response.body().as_ref()).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        body,
    }
}

pub(crate) async fn send(api: &Api, id: &str, kind: &str, object: Value) -> Reply {
    let now = api.clock.now().timestamp();
    stripe_event(api, id, kind, object, now, WEBHOOK_SECRET).await
}

pub(crate) fn intent(shop: &Shop, order_id: &str, amount: i64) -> Value {
    json!({"id": "pi_test_1", "object": "payment_intent", "amount": amount, "currency": "eur",
           "metadata": {"order_id": order_id, "tenant_id": shop.tenant_id}})
}

pub(crate) fn charge(shop: &Shop, order_id: &str, amount: i64) -> Value {
    json!({"id": "ch_test_1", "object": "charge", "amount": amount, "amount_refunded": amount,
           "currency": "eur", "payment_intent": "pi_test_1", "refunded": true,
           "metadata": {"order_id": order_id, "tenant_id": shop.tenant_id}})
}

/// An order of the shop's customer, paid (its provider's `payment_intent.succeeded`
/// applied), and then cancelled when `cancel`: its id.
pub(crate) async fn paid_order(api: &Api, shop: &Shop, cancel: bool) -> String {
    let (order_id, _) = placed_order(api, shop).await;
    let paid = send(
        api,
        "evt_paid_1",
        "payment_intent.succeeded",
        intent(shop, &order_id, 2500),
    )
    .await;
    assert_eq!(paid.status, 200, "{:?}", paid.body);
    if cancel {
        let cancelled = api
            .post(
                &format!("/v1/orders/{order_id}/cancel"),
                Some(&shop.owner),
                json!({}),
            )
            .await;
        assert_eq!(cancelled.status, 200, "{:?}", cancelled.body);
    }
    order_id
}

pub(crate) async fn placed_order(api: &Api, shop: &Shop) -> (String, String) {
    let green = product(api, shop, "GREEN", 1250, 10).await;
    let (token, _) = customer(api, shop, "grace@example.com").await;
    let placed = order(api, &token, json!([{"product_id": green, "quantity": 2}])).await;
    assert_eq!(placed.status, 201, "{:?}", placed.body);
    (placed.body["id"].as_str().unwrap().to_owned(), token)
}

async fn status_of(api: &Api, shop: &Shop, order_id: &str) -> Value {
    let read = api
        .get(&format!("/v1/orders/{order_id}"), Some(&shop.owner))
        .await;
    assert_eq!(read.status, 200, "{:?}", read.body);
    read.body
}

async fn a_signed_payment_event_pays_the_order_once_and_a_bad_signature_changes_nothing(api: Api) {
    let api = with_webhook_secret(api);
    let shop = api.create_shop("owner@example.com").await;
    let (id, _) = placed_order(&api, &shop).await;
    let now = api.clock.now().timestamp();
    let paid = intent(&shop, &id, 2500);
    for (signed_at, secret, why) in [
        (now, "whsec_someone_else", "another secret"),
        (now - 301, WEBHOOK_SECRET, "too old"),
        (now + 301, WEBHOOK_SECRET, "from the future"),
    ] {
        let refused = stripe_event(
            &api,
            "evt_1",
            "payment_intent.succeeded",
            paid.clone(),
            signed_at,
            secret,
        )
        .await;
        assert_eq!(refused.status, 400, "{why}: {:?}", refused.body);
    }
    let mut unsigned = crate::helpers::api_request(
        Method::POST,
        "/v1/payments/webhook",
        None,
        Some(json!({"id": "evt_1"})),
    );
    unsigned.headers_mut().remove("stripe-signature");
    let response = storefront::edge::dispatch(&api.ctx, storefront::routes::ROUTES, unsigned).await;
    assert_eq!(response.status(), 400);
    assert_eq!(
        status_of(&api, &shop, &id).await["status"],
        "pending_payment"
    );

    let applied = send(&api, "evt_1", "payment_intent.succeeded", paid.clone()).await;
    assert_eq!(applied.status, 200, "{:?}", applied.body);
    assert_eq!(applied.body["outcome"], "applied");
    assert_eq!(status_of(&api, &shop, &id).await["status"], "paid");
    let replayed = send(&api, "evt_1", "payment_intent.succeeded", paid).await;
    assert_eq!(replayed.body["outcome"], "duplicate");
    let ignored = send(&api, "evt_2", "customer.created", json!({"id": "cus_1"})).await;
    assert_eq!(ignored.status, 200);
    assert_eq!(ignored.body["outcome"], "ignored");
    // Paid: it can be fulfilled now, and the expiry sweep leaves it alone.
    api.clock.advance(Duration::from_secs(3600));
    let owner = api
        .login(
            &shop.tenant_id,
            "owner@example.com",
            "correct horse battery",
        )
        .await
        .token();
    let shop = Shop { owner, ..shop };
    let sweep = storefront::orders::expire_overdue(&api.ctx).await.unwrap();
    assert_eq!(sweep.expired, 0);
    let fulfilled = api
        .post(
            &format!("/v1/orders/{id}/fulfil"),
            Some(&shop.owner),
            json!({}),
        )
        .await;
    assert_eq!(fulfilled.status, 200, "{:?}", fulfilled.body);
    assert_eq!(fulfilled.body["status"], "fulfilled");
    assert_eq!(
        events_about(&api, &id).await,
        ["order.created", "order.paid", "order.fulfilled"]
    );
}

async fn payment_events_in_any_order_leave_a_refunded_order_refunded(api: Api) {
    let api = with_webhook_secret(api);
    let shop = api.create_shop("owner@example.com").await;
    let (id, _) = placed_order(&api, &shop).await;
    let failed = send(&api, "evt_f", "payment_intent.payment_failed",
        json!({"id": "pi_test_1", "amount": 2500, "currency": "eur", "last_payment_error": {"message": "Your card was declined."},
               "metadata": {"order_id": id, "tenant_id": shop.tenant_id}})).await;
    assert_eq!(failed.body["outcome"], "applied");
    assert_eq!(
        status_of(&api, &shop, &id).await["status"],
        "pending_payment"
    );
    // The refund's event comes before the payment's.
    let refunded = send(&api, "evt_r", "charge.refunded", charge(&shop, &id, 2500)).await;
    assert_eq!(refunded.body["outcome"], "applied", "{:?}", refunded.body);
    let paid = send(
        &api,
        "evt_p",
        "payment_intent.succeeded",
        intent(&shop, &id, 2500),
    )
    .await;
    assert_eq!(paid.body["outcome"], "applied");
    let refunded = status_of(&api, &shop, &id).await;
    assert_eq!(refunded["status"], "refunded");
    assert_eq!(
        refunded["refund"],
        json!({"status": "succeeded", "amount": {"amount": 2500, "currency": "eur"}})
    );

    // And in the usual order, on another order: paid, then refunded.
    let green = product(&api, &shop, "BLACK", 100, 10).await;
    let placed = order(
        &api,
        &shop.owner,
        json!([{"product_id": green, "quantity": 1}]),
    )
    .await;
    let other = placed.body["id"].as_str().unwrap();
    send(
        &api,
        "evt_p2",
        "payment_intent.succeeded",
        intent(&shop, other, 100),
    )
    .await;
    assert_eq!(status_of(&api, &shop, other).await["status"], "paid");
    send(&api, "evt_r2", "charge.refunded", charge(&shop, other, 100)).await;
    assert_eq!(status_of(&api, &shop, other).await["status"], "refunded");
    assert_eq!(
        events_about(&api, other).await,
        ["order.created", "order.paid", "order.refunded"]
    );
}

async fn a_payment_for_the_wrong_amount_or_another_shop_changes_nothing_but_the_audit_log(
    api: Api,
) {
    let api = with_webhook_secret(api);
    let shop = api.create_shop("owner@example.com").await;
    let other = api.create_shop("other@example.com").await;
    let (id, _) = placed_order(&api, &shop).await;
    let short = send(
        &api,
        "evt_s",
        "payment_intent.succeeded",
        intent(&shop, &id, 2499),
    )
    .await;
    assert_eq!(short.status, 200);
    assert_eq!(
        status_of(&api, &shop, &id).await["status"],
        "pending_payment"
    );
    assert_eq!(
        api.audit_history(&shop.owner, &id).await,
        ["order.payment_mismatch", "order.created"]
    );
    let elsewhere = send(
        &api,
        "evt_o",
        "payment_intent.succeeded",
        intent(&other, &id, 2500),
    )
    .await;
    assert_eq!(elsewhere.status, 200);
    assert_eq!(elsewhere.body["outcome"], "ignored");
    let unknown = send(
        &api,
        "evt_u",
        "payment_intent.succeeded",
        intent(&shop, "ord_01JD0000000000000000000000", 2500),
    )
    .await;
    assert_eq!(unknown.body["outcome"], "ignored");
    assert_eq!(
        status_of(&api, &shop, &id).await["status"],
        "pending_payment"
    );
    assert_eq!(events_about(&api, &id).await, ["order.created"]);
}

/// The local provider, announcing its events on a channel the test delivers from.
fn announcing_payments(
    api: &mut Api,
) -> (
    storefront::payments::local::LocalPayments,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let (events, announced) = tokio::sync::mpsc::unbounded_channel();
    let local =
        storefront::payments::local::LocalPayments::new(api.ctx.table.clone(), api.ctx.ids.clone())
            .announcing(events);
    api.ctx.payments = std::sync::Arc::new(local.clone());
    (local, announced)
}

/// Delivers the provider's next announced event to the webhook, signed.
async fn deliver(api: &Api, announced: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> Reply {
    let body = announced.try_recv().expect("an announced event");
    let event: Value = serde_json::from_str(&body).unwrap();
    send(
        api,
        event["id"].as_str().unwrap(),
        event["type"].as_str().unwrap(),
        event["data"]["object"].clone(),
    )
    .await
}

async fn pay(api: &Api, token: &str, order_id: &str) -> Reply {
    api.post(
        &format!("/v1/orders/{order_id}/payment"),
        Some(token),
        json!({}),
    )
    .await
}

/// Runs the refund jobs waiting in the outbox through the worker, as the relay and the
/// queue would; answers how many ran.
async fn run_refund_jobs(api: &Api) -> usize {
    let mut ran = 0;
    for body in api.outbox_jobs().await {
        if body.contains("\"kind\":\"refund\"") {
            let message = storefront::jobs::JobMessage {
                id: format!("m{ran}"),
                body,
                receive_count: 1,
            };
            let outcome = storefront::jobs::process_batch(
                &api.ctx,
                &storefront::jobs::worker::Dispatcher,
                &[message],
            )
            .await;
            assert!(outcome.failed.is_empty(), "{outcome:?}");
            ran += 1;
        }
    }
    ran
}

async fn paying_makes_one_payment_per_order_for_its_customer_alone(api: Api) {
    let shop = api.create_shop("owner@example.com").await;
    let (id, token) = placed_order(&api, &shop).await;
    let first = pay(&api, &token, &id).await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    assert_eq!(first.body["provider"], "local");
    assert!(first.body["payment_intent_id"]
        .as_str()
        .unwrap()
        .starts_with("pi_"));
    assert!(first.body["client_secret"]
        .as_str()
        .unwrap()
        .contains("_secret_"));
    let again = pay(&api, &token, &id).await;
    assert_eq!(again.body, first.body, "the same payment");
    // Only its customer pays it: staff and other customers are told it does not exist.
    assert_eq!(pay(&api, &shop.owner, &id).await.status, 404);
    let (someone, _) = customer(&api, &shop, "ada@example.com").await;
    assert_eq!(pay(&api, &someone, &id).await.status, 404);
    assert_eq!(
        api.audit_history(&shop.owner, &id).await,
        ["order.payment_started", "order.created"]
    );
    let cancelled = api
        .post(&format!("/v1/orders/{id}/cancel"), Some(&token), json!({}))
        .await;
    assert_eq!(cancelled.status, 200);
    let late = pay(&api, &token, &id).await;
    assert_eq!(late.status, 409, "{:?}", late.body);
    assert_eq!(late.slug(), "order-status");
}

async fn cancelling_a_paid_order_refunds_it_once_through_the_provider(mut api: Api) {
    let (provider, mut announced) = announcing_payments(&mut api);
    let api = with_webhook_secret(api);
    let shop = api.create_shop("owner@example.com").await;
    let (id, token) = placed_order(&api, &shop).await;
    let payment = pay(&api, &token, &id).await;
    let intent = payment.body["payment_intent_id"].as_str().unwrap();
    provider
        .confirm(intent, payment.body["client_secret"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(
        deliver(&api, &mut announced).await.body["outcome"],
        "applied"
    );
    assert_eq!(status_of(&api, &shop, &id).await["status"], "paid");

    let cancelled = api
        .post(&format!("/v1/orders/{id}/cancel"), Some(&token), json!({}))
        .await;
    assert_eq!(cancelled.status, 200, "{:?}", cancelled.body);
    assert_eq!(cancelled.body["status"], "cancelled");
    assert_eq!(
        cancelled.body["refund"],
        json!({"status": "pending", "amount": {"amount": 2500, "currency": "eur"}})
    );
    // The job runs twice (SQS delivers at least once): one refund, one event.
    assert_eq!(run_refund_jobs(&api).await, 1);
    assert_eq!(run_refund_jobs(&api).await, 1);
    assert_eq!(
        deliver(&api, &mut announced).await.body["outcome"],
        "applied"
    );
    assert!(announced.try_recv().is_err(), "no second refund");
    let order = status_of(&api, &shop, &id).await;
    assert_eq!(order["status"], "cancelled");
    assert_eq!(order["refund"]["status"], "succeeded");
    // The refund is news even though the order stays cancelled.
    assert_eq!(
        events_about(&api, &id).await,
        [
            "order.created",
            "order.paid",
            "order.cancelled",
            "order.refunded"
        ]
    );
}

async fn money_that_comes_after_the_order_expired_is_refunded(mut api: Api) {
    let (provider, mut announced) = announcing_payments(&mut api);
    let api = with_webhook_secret(api);
    let shop = api.create_shop("owner@example.com").await;
    let (id, token) = placed_order(&api, &shop).await;
    let payment = pay(&api, &token, &id).await;
    api.clock.advance(Duration::from_secs(1801));
    assert_eq!(
        storefront::orders::expire_overdue(&api.ctx)
            .await
            .unwrap()
            .expired,
        1
    );
    // The customer's bank was slow: the money comes after all.
    provider
        .confirm(
            payment.body["payment_intent_id"].as_str().unwrap(),
            payment.body["client_secret"].as_str().unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        deliver(&api, &mut announced).await.body["outcome"],
        "applied"
    );
    let owner = api
        .login(
            &shop.tenant_id,
            "owner@example.com",
            "correct horse battery",
        )
        .await
        .token();
    let shop = Shop { owner, ..shop };
    let order = status_of(&api, &shop, &id).await;
    assert_eq!(order["status"], "cancelled");
    assert_eq!(order["refund"]["status"], "pending");
    assert_eq!(run_refund_jobs(&api).await, 1);
    deliver(&api, &mut announced).await;
    assert_eq!(
        status_of(&api, &shop, &id).await["refund"]["status"],
        "succeeded"
    );
}
