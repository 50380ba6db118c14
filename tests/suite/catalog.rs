//! The catalogue, on both adapters: every product route and its failure cases through
//! `dispatch` (the path Lambda and the local server share) over the embedded store and over
//! DynamoDB on moto; then the anonymous browse over HTTP against the local server.

use std::sync::Arc;

use bytes::Bytes;
use http::Method;
use image::ImageEncoder as _;
use img_parts::ImageEXIF as _;
use serde_json::{json, Value};
use storefront::clock::Clock as _;
use storefront::jobs::images::ImageUploads;
use storefront::jobs::outbox::SHARDS;
use storefront::jobs::worker::{Dispatcher, Job};
use storefront::jobs::{process_batch, JobMessage};
use storefront::store::{Index, Key, Query, Table};

use crate::helpers::api::{dynamo, embedded, Api, Reply, Shop};
use crate::helpers::LocalServer;

conformance!(embedded, dynamo;
    a_product_is_created_with_its_etag_and_read_back_as_it_was_written,
    anonymous_reads_name_the_shop_and_may_be_cached_publicly_signed_in_ones_privately,
    an_unknown_or_malformed_shop_is_404_or_400_never_an_empty_catalogue,
    invalid_products_are_refused_naming_each_field_and_nothing_is_written,
    a_sku_is_unique_in_a_shop_whatever_its_case_and_free_in_another,
    two_simultaneous_creates_with_one_sku_make_one_product,
    search_finds_a_word_prefix_whatever_its_case_or_accents,
    a_search_of_several_words_finds_names_holding_each_and_lists_a_product_once,
    search_results_are_paged_and_every_match_comes_exactly_once,
    the_catalogue_is_listed_newest_first_in_pages_and_a_cursor_cannot_be_forged,
    a_patch_changes_only_the_fields_it_names_and_reindexes_a_new_name,
    if_none_match_answers_304_and_a_stale_if_match_412_changing_nothing,
    of_two_racing_patches_naming_one_version_exactly_one_wins,
    deleting_a_product_takes_it_out_of_reads_listings_and_search_and_frees_its_sku,
    a_product_of_another_shop_is_404_to_every_route,
    customers_and_anonymous_callers_cannot_write_the_catalogue_staff_can,
    every_product_write_puts_its_event_and_audit_entry_in_its_own_transaction,
    an_image_upload_is_presigned_for_its_type_and_length_and_anything_else_is_refused,
    a_product_takes_ten_images_and_refuses_an_eleventh,
    the_worker_makes_a_thumbnail_strips_the_gps_position_and_marks_the_image_ready,
    a_repeated_notification_makes_no_second_thumbnail_and_no_error,
    a_file_that_lies_about_its_type_is_rejected_and_deleted,
    deleting_an_image_or_its_product_deletes_its_objects,
    an_image_deleted_while_the_worker_checks_it_leaves_no_objects,
);

fn mug(sku: &str, name: &str) -> Value {
    json!({"sku": sku, "name": name, "description": "Stoneware.", "price": {"amount": 1250, "currency": "eur"}, "stock": 5})
}

async fn create(api: &Api, shop: &Shop, sku: &str, name: &str) -> Value {
    let reply = api
        .post("/v1/products", Some(&shop.owner), mug(sku, name))
        .await;
    assert_eq!(reply.status, 201, "{:?}", reply.body);
    reply.body
}

fn id(product: &Value) -> &str {
    product["id"].as_str().expect("product id")
}

fn names(reply: &Reply) -> Vec<String> {
    reply.body["items"]
        .as_array()
        .unwrap_or_else(|| panic!("a page: {:?}", reply.body))
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect()
}

fn header<'a>(reply: &'a Reply, name: &str) -> &'a str {
    reply
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

async fn browse(api: &Api, shop: &Shop, query: &str) -> Reply {
    api.get(
        &format!("/v1/products?tenant_id={}&{query}", shop.tenant_id),
        None,
    )
    .await
}

async fn with_headers(
    api: &Api,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> Reply {
    api.call_with_headers("203.0.113.1", method, path, token, body, headers)
        .await
}

async fn a_product_is_created_with_its_etag_and_read_back_as_it_was_written(api: Api) {
    let shop = api.create_shop("owner@example.com").await;
    let created = api
        .post("/v1/products", Some(&shop.owner), mug("MUG-1", "Blue Mug"))
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let product = &created.body;
    assert!(id(product).starts_with("prod_"));
    assert_eq!(
        header(&created, "location"),
        format!("/v1/products/{}", id(product))
    );
    assert_eq!(product["sku"], "MUG-1");
    assert_eq!(product["name"], "Blue Mug");
    assert_eq!(product["description"], "Stoneware.");
    assert_eq!(product["price"], json!({"amount": 1250, "currency": "eur"}));
    assert_eq!(product["stock"], 5);
    assert_eq!(product["images"], json!([]));
    assert_eq!(product["created_at"], product["updated_at"]);
    let etag = header(&created, "etag").to_owned();
    assert!(
        etag.starts_with('"') && etag.ends_with('"'),
        "strong: {etag}"
    );

    let read = api
        .get(&format!("/v1/products/{}", id(product)), Some(&shop.owner))
        .await;
    assert_eq!(read.status, 200);
    assert_eq!(&read.body, product);
    assert_eq!(header(&read, "etag"), etag);
    let listed = api.get("/v1/products", Some(&shop.owner)).await;
    assert_eq!(listed.status, 200);
    assert_eq!(listed.body["items"], json!([product]));
    assert_eq!(listed.body["next_cursor"], Value::Null);
}

async fn anonymous_reads_name_the_shop_and_may_be_cached_publicly_signed_in_ones_privately(
    api: Api,
) {
    let shop = api.create_shop("owner@example.com").await;
    let product = create(&api, &shop, "MUG-1", "Blue Mug").await;
    let customer = api.signup(&shop.tenant_id, "c@example.com").await.token();

    let anonymous = browse(&api, &shop, "").await;
    assert_eq!(anonymous.status, 200);
    assert_eq!(names(&anonymous), ["Blue Mug"]);
    assert_eq!(header(&anonymous, "cache-control"), "public, max-age=60");
    assert!(!header(&anonymous, "etag").is_empty());
    let one = api
        .get(
            &format!("/v1/products/{}?tenant_id={}", id(&product), shop.tenant_id),
            None,
        )
        .await;
    assert_eq!(one.status, 200);
    assert_eq!(header(&one, "cache-control"), "public, max-age=60");

    for token in [&customer, &shop.owner] {
        let signed_in = api.get("/v1/products", Some(token)).await;
        assert_eq!(signed_in.status, 200);
        assert_eq!(names(&signed_in), ["Blue Mug"]);
        assert!(header(&signed_in, "cache-control").starts_with("private"));
        let own = api
            .get(
                &format!("/v1/products?tenant_id={}", shop.tenant_id),
                Some(token),
            )
            .await;
        assert_eq!(own.status, 200, "naming one's own shop is fine");
        assert!(header(&own, "cache-control").starts_with("private"));
    }

    let other = api.create_shop("other@example.com").await;
    let elsewhere = api
        .get(
            &format!("/v1/products?tenant_id={}", other.tenant_id),
            Some(&customer),
        )
        .await;
    assert_eq!(
        elsewhere.status, 400,
        "a credential reads its own shop only"
    );
    let typo = api.get("/v1/products", Some("not-a-token")).await;
    assert_eq!(
        typo.status, 401,
        "a bad credential is never read as anonymous"
    );
    assert_eq!(header(&typo, "www-authenticate"), "Bearer");
    assert_eq!(api.get("/v1/products", None).await.status, 400);
}

async fn an_unknown_or_malformed_shop_is_404_or_400_never_an_empty_catalogue(api: Api) {
    let shop = api.create_shop("owner@example.com").await;
    let unknown = "ten_01JD0000000000000000000000";
    let reply = api
        .get(&format!("/v1/products?tenant_id={unknown}"), None)
        .await;
    assert_eq!(reply.status, 404, "{:?}", reply.body);
    let searched = api
        .get(&format!("/v1/products?tenant_id={unknown}&q=mug"), None)
        .await;
    assert_eq!(searched.status, 404);
    for malformed in ["nope", "usr_01JD0000000000000000000000", "ten_%23PRODUCT"] {
        let reply = api
            .get(&format!("/v1/products?tenant_id={malformed}"), None)
            .await;
        assert_eq!(reply.status, 400, "{malformed}");
        assert_eq!(reply.body["errors"][0]["field"], "tenant_id");
    }
    let empty = browse(&api, &shop, "").await;
    assert_eq!(
        empty.status, 200,
        "a shop with no products is an empty page"
    );
    assert_eq!(empty.body["items"], json!([]));
    let nothing = browse(&api, &shop, "q=zebra").await;
    assert_eq!(nothing.status, 200);
    assert_eq!(nothing.body["items"], json!([]));
}

async fn invalid_products_are_refused_naming_each_field_and_nothing_is_written(api: Api) {
    let shop = api.create_shop("owner@example.com").await;
    let with = |field: &str, value: Value| {
        let mut body = mug("MUG-1", "Blue Mug");
        body[field] = value;
        body
    };
    let unprocessable = [
        (
            with("price", json!({"amount": -1, "currency": "eur"})),
            "price",
        ),
        (
            with(
                "price",
                json!({"amount": 1_000_000_000_001_i64, "currency": "eur"}),
            ),
            "price",
        ),
        (
            with("price", json!({"amount": 100, "currency": "usd"})),
            "price",
        ),
        (
            with("price", json!({"amount": 100, "currency": "xyz"})),
            "price",
        ),
        (
            with("price", json!({"amount": 100, "currency": "EUR"})),
            "price",
        ),
        (with("stock", json!(-1)), "stock"),
        (with("stock", json!(1_000_000_001)), "stock"),
        (with("name", json!("x".repeat(201))), "name"),
        (with("name", json!("  ")), "name"),
        (with("name", json!("Mug\u{7}")), "name"),
        (with("description", json!("d".repeat(5001))), "description"),
        (with("description", json!("bell\u{7}")), "description"),
        (with("sku", json!("mug 1")), "sku"),
        (with("sku", json!("")), "sku"),
    ];
    for (body, field) in unprocessable {
        let reply = api.post("/v1/products", Some(&shop.owner), body).await;
        assert_eq!(reply.status, 422, "{field}: {:?}", reply.body);
        assert_eq!(reply.body["errors"][0]["field"], field, "{:?}", reply.body);
    }
    let malformed = [
        with("price", json!({"amount": 12.5, "currency": "eur"})),
        with("price", json!({"amount": "12", "currency": "eur"})),
        with("stock", json!(1.5)),
        with("stock", json!(1e22)),
        with("extra", json!(true)),
        json!({"sku": "MUG-1", "name": "Blue Mug", "stock": 1}),
        json!({"sku": "MUG-1", "name": "Blue Mug", "price": {"amount": 1, "currency": "eur"}, "stock": 1}),
        json!({"sku": "MUG-1", "name": "Blue Mug", "description": "", "price": {"amount": 1, "currency": "eur"}}),
    ];
    for body in malformed {
        let reply = api
            .post("/v1/products", Some(&shop.owner), body.clone())
            .await;
        assert_eq!(reply.status, 400, "{body}: {:?}", reply.body);
    }
    let listed = api.get("/v1/products", Some(&shop.owner)).await;
    assert_eq!(listed.body["items"], json!([]), "nothing was written");
    let audit = api.get("/v1/audit-log", Some(&shop.owner)).await;
    assert!(audit.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|entry| entry["resource"]["type"] != "product"));
}

async fn a_sku_is_unique_in_a_shop_whatever_its_case_and_free_in_another(api: Api) {
    let shop = api.create_shop("owner@example.com").await;
    create(&api, &shop, "MUG-1", "Blue Mug").await;
    for sku in ["MUG-1", "mug-1"] {
        let reply = api
            .post("/v1/products", Some(&shop.owner), mug(sku, "Other Mug"))
            .await;
        assert_eq!(reply.status, 409, "{sku}");
        assert_eq!(reply.slug(), "sku-taken");
    }
    let second = create(&api, &shop, "MUG-2", "Green Mug").await;
    let clash = api
        .patch(
            &format!("/v1/products/{}", id(&second)),
            Some(&shop.owner),
            json!({"sku": "Mug-1", "name": "Renamed"}),
        )
        .await;
    assert_eq!(clash.status, 409, "a patch cannot take a held sku either");
    let unchanged = api
        .get(&format!("/v1/products/{}", id(&second)), Some(&shop.owner))
        .await;
    assert_eq!(unchanged.body["name"], "Green Mug", "nothing of it changed");
    let other = api.create_shop("other@example.com").await;
    create(&api, &other, "MUG-1", "Their Mug").await;
    assert_eq!(
        names(&api.get("/v1/products", Some(&shop.owner)).await).len(),
        2
    );
}

async fn two_simultaneous_creates_with_one_sku_make_one_product(api: Api) {
    let shop = api.create_shop("owner@example.com").await;
    let attempts = (0..8).map(|n| {
        api.post(
            "/v1/products",
            Some(&shop.owner),
            mug("RACE-1", &format!("Racer {n}")),
        )
    });
    let replies = futures_util::future::join_all(attempts).await;
    let mut statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 409, 409, 409, 409, 409, 409, 409]);
    let listed = api.get("/v1/products", Some(&shop.owner)).await;
    assert_eq!(names(&listed).len(), 1);
}

async fn search_finds_a_word_prefix_whatever_its_case_or_accents(api: Api) {
    let shop = api.create_shop("owner@example.com").await;
    create(&api, &shop, "MUG-1", "Blue Mug").await;
    create(&api, &shop, "CAFE-1", "Café Crème").await;
    create(&api, &shop, "TEA-1", "Green Tea, loose leaf").await;
    for (q, found) in [
        ("mug", vec!["Blue Mug"]),
        ("MU", vec!["Blue Mug"]),
        ("cafe", vec!["Café Crème"]),
        ("CRÉM", vec!["Café Crème"]),
        ("leaf", vec!["Green Tea, loose leaf"]),
        ("ug", vec![]),
        ("zebra", vec![]),
    ] {
        let reply = browse(&api, &shop, &format!("q={}", urlencode(q))).await;
        assert_eq!(reply.status, 200, "{q}: {:?}", reply.body);
        assert_eq!(names(&reply), found, "q={q}");
    }
    for (q, reason) in [
        ("--", "no letter or digit"),
        (&*"a".repeat(201), "overlong"),
    ] {
        let reply = browse(&api, &shop, &format!("q={}", urlencode(q))).await;
        assert_eq!(reply.status, 400, "{reason}");
        assert_eq!(reply.body["errors"][0]["field"], "q");
    }
    let other = api.create_shop("other@example.com").await;
    assert_eq!(
        names(&browse(&api, &other, "q=mug").await),
        Vec::<String>::new()
    );
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

async fn a_search_of_several_words_finds_names_holding_each_and_lists_a_product_once(api: Api) {
    let shop = api.create_shop("owner@example.com").await;
    create(&api, &shop, "A", "Blue Mug").await;
    create(&api, &shop, "B", "Blue Bluish Blueberry Bowl").await;
    create(&api, &shop, "C", "Green Mug").await;
    let found = |q: &'static str| {
        let (api, shop) = (&api, &shop);
        async move {
            let mut found = names(&browse(api, shop, &format!("q={}", urlencode(q))).await);
            found.sort();
            found
        }
    };
    assert_eq!(found("mug blue").await, ["Blue Mug"]);
    assert_eq!(found("blue mug").await, ["Blue Mug"]);
    assert_eq!(found("m gr").await, ["Green Mug"]);
    assert_eq!(
        found("blu").await,
        ["Blue Bluish Blueberry Bowl", "Blue Mug"],
        "three matching words, one listing"
    );
    assert_eq!(found("blue cup").await, Vec::<String>::new());
}

async fn search_results_are_paged_and_every_match_comes_exactly_once(api: Api) {
    let shop = api.create_shop("owner@example.com").await;
    for n in 0..7 {
        create(
            &api,
            &shop,
            &format!("M{n}"),
            &format!("Mug Mugs Number {n}"),
        )
        .await;
    }
    create(&api, &shop, "T", "Teapot").await;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let query = match &cursor {
            Some(c) => format!("q=mug&limit=3&cursor={c}"),
            None => "q=mug&limit=3".to_owned(),
        };
        let reply = browse(&api, &shop, &query).await;
        assert_eq!(reply.status, 200, "{:?}", reply.body);
        seen.extend(names(&reply));
        pages += 1;
        match reply.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
        assert!(pages < 10, "paging ends");
    }
    seen.sort();
    let expected: Vec<String> = (0..7).map(|n| format!("Mug Mugs Number {n}")).collect();
    assert_eq!(seen, expected);
    // A search's cursor belongs to its own search.
    let first = browse(&api, &shop, "q=mug&limit=3").await;
    let cursor = first.body["next_cursor"].as_str().unwrap();
    for other in [format!("q=tea&cursor={cursor}"), format!("cursor={cursor}")] {
        assert_eq!(browse(&api, &shop, &other).await.status, 400, "{other}");
    }
}

async fn the_catalogue_is_listed_newest_first_in_pages_and_a_cursor_cannot_be_forged(api: Api) {
    let shop = api.create_shop("owner@example.com").await;
    for n in 0..5 {
        create(&api, &shop, &format!("P{n}"), &format!("Product {n}")).await;
        api.clock.advance(std::time::Duration::from_millis(5));
    }
    let first = browse(&api, &shop, "limit=2").await;
    assert_eq!(names(&first), ["Product 4", "Product 3"]);
    let cursor = first.body["next_cursor"].as_str().unwrap().to_owned();
    let second = browse(&api, &shop, &format!("limit=2&cursor={cursor}")).await;
    assert_eq!(names(&second), ["Product 2", "Product 1"]);
    let other = api.create_shop("other@example.com").await;
    let theirs = browse(&api, &other, &format!("cursor={cursor}")).await;
    assert_eq!(theirs.status, 400, "another shop's cursor");
    // The cursor decoded, pointed at the other shop's partition, and encoded again.
    let decoded = storefront::crypto::b64url_decode(&cursor).expect("base64url");
    let edited = String::from_utf8(decoded)
        .unwrap()
        .replace(&shop.tenant_id, &other.tenant_id);
    assert!(edited.contains(&other.tenant_id));
    let edited = storefront::crypto::b64url(edited.as_bytes());
    for forged in [edited.as_str(), "bm9wZQ", "%%%"] {
        assert_eq!(
            browse(&api, &shop, &format!("cursor={forged}"))
                .await
                .status,
            400,
            "{forged}"
        );
    }
    for limit in ["0", "101", "x"] {
        assert_eq!(
            browse(&api, &shop, &format!("limit={limit}")).await.status,
            400
        );
    }
}

async fn a_patch_changes_only_the_fields_it_names_and_reindexes_a_new_name(api: Api) {
    let shop = api.create_shop("owner@example.com").await;
    let product = create(&api, &shop, "MUG-1", "Blue Mug").await;
    let path = format!("/v1/products/{}", id(&product));
    api.clock.advance(std::time::Duration::from_secs(3));
    let patched = api
        .patch(
            &path,
            Some(&shop.owner),
            json!({"name": "Green Teapot", "stock": 0, "price": {"amount": 990, "currency": "eur"}}),
        )
        .await;
    assert_eq!(patched.status, 200, "{:?}", patched.body);
    assert_eq!(patched.body["name"], "Green Teapot");
    assert_eq!(patched.body["stock"], 0);
    assert_eq!(patched.body["price"]["amount"], 990);
    assert_eq!(patched.body["sku"], "MUG-1");
    assert_eq!(patched.body["description"], "Stoneware.");
    assert_eq!(patched.body["created_at"], product["created_at"]);
    assert_ne!(patched.body["updated_at"], product["updated_at"]);
    assert_eq!(
        names(&browse(&api, &shop, "q=mug").await),
        Vec::<String>::new()
    );
    assert_eq!(
        names(&browse(&api, &shop, "q=teap").await),
        ["Green Teapot"]
    );
    for (body, status) in [
        (json!({"stock": -1}), 422),
        (json!({"price": {"amount": 5, "currency": "usd"}}), 422),
        (json!({"name": ""}), 422),
        (json!({"colour": "red"}), 400),
        (json!({"stock": 2.5}), 400),
    ] {
        let reply = api.patch(&path, Some(&shop.owner), body.clone()).await;
        assert_eq!(reply.status, status, "{body}");
    }
    let read = api.get(&path, Some(&shop.owner)).await;
    assert_eq!(
        read.body, patched.body,
        "the refused patches changed nothing"
    );
    let empty = api.patch(&path, Some(&shop.owner), json!({})).await;
    assert_eq!(empty.status, 200);
    assert_eq!(
        empty.body, patched.body,
        "a patch naming nothing writes nothing"
    );
    assert_eq!(header(&empty, "etag"), header(&read, "etag"));
}

async fn if_none_match_answers_304_and_a_stale_if_match_412_changing_nothing(api: Api) {
    let shop = api.create_shop("owner@example.com").await;
    let created = api
        .post("/v1/products", Some(&shop.owner), mug("MUG-1", "Blue Mug"))
        .await;
    let v1 = header(&created, "etag").to_owned();
    let path = format!("/v1/products/{}", id(&created.body));
    let anonymous = format!("{path}?tenant_id={}", shop.tenant_id);

    let cached = with_headers(
        &api,
        Method::GET,
        &anonymous,
        None,
        None,
        &[("if-none-match", &v1)],
    )
    .await;
    assert_eq!(cached.status, 304);
    assert_eq!(cached.body, Value::Null, "no body");
    assert_eq!(header(&cached, "etag"), v1);
    assert_eq!(header(&cached, "cache-control"), "public, max-age=60");
    let weak = format!("W/{v1}");
    let also = with_headers(
        &api,
        Method::GET,
        &path,
        Some(&shop.owner),
        None,
        &[("if-none-match", &weak)],
    )
    .await;
    assert_eq!(also.status, 304, "If-None-Match compares weakly");

    let page = browse(&api, &shop, "").await;
    let page_tag = header(&page, "etag").to_owned();
    let list_path = format!("/v1/products?tenant_id={}&", shop.tenant_id);
    let unchanged = with_headers(
        &api,
        Method::GET,
        &list_path,
        None,
        None,
        &[("if-none-match", &page_tag)],
    )
    .await;
    assert_eq!(
        unchanged.status, 304,
        "a page is revalidated by its ETag too"
    );

    let updated = with_headers(
        &api,
        Method::PATCH,
        &path,
        Some(&shop.owner),
        Some(json!({"stock": 9})),
        &[("if-match", &v1)],
    )
    .await;
    assert_eq!(updated.status, 200);
    let v2 = header(&updated, "etag").to_owned();
    assert_ne!(v1, v2);
    let stale = with_headers(
        &api,
        Method::GET,
        &anonymous,
        None,
        None,
        &[("if-none-match", &v1)],
    )
    .await;
    assert_eq!(stale.status, 200, "an old ETag gets the new product");
    assert_eq!(stale.body["stock"], 9);

    let refused = with_headers(
        &api,
        Method::PATCH,
        &path,
        Some(&shop.owner),
        Some(json!({"stock": 1})),
        &[("if-match", &v1)],
    )
    .await;
    assert_eq!(refused.status, 412);
    assert_eq!(refused.slug(), "precondition-failed");
    let deleted = with_headers(
        &api,
        Method::DELETE,
        &path,
        Some(&shop.owner),
        None,
        &[("if-match", &v1)],
    )
    .await;
    assert_eq!(deleted.status, 412);
    let unquoted = v2.trim_matches('"').to_owned();
    let malformed = with_headers(
        &api,
        Method::DELETE,
        &path,
        Some(&shop.owner),
        None,
        &[("if-match", &unquoted)],
    )
    .await;
    assert_eq!(
        malformed.status, 412,
        "a malformed entity tag matches nothing"
    );
    let read = api.get(&path, Some(&shop.owner)).await;
    assert_eq!(read.status, 200);
    assert_eq!(read.body["stock"], 9, "nothing changed");
    assert_eq!(header(&read, "etag"), v2);
    let gone = with_headers(
        &api,
        Method::DELETE,
        &path,
        Some(&shop.owner),
        None,
        &[("if-match", &v2)],
    )
    .await;
    assert_eq!(gone.status, 204);
}

async fn of_two_racing_patches_naming_one_version_exactly_one_wins(api: Api) {
    let shop = api.create_shop("owner@example.com").await;
    let created = api
        .post("/v1/products", Some(&shop.owner), mug("MUG-1", "Blue Mug"))
        .await;
    let v1 = header(&created, "etag").to_owned();
    let path = format!("/v1/products/{}", id(&created.body));
    let if_match = [("if-match", v1.as_str())];
    let racers = (0..6).map(|n| {
        with_headers(
            &api,
            Method::PATCH,
            &path,
            Some(&shop.owner),
            Some(json!({"stock": 100 + n})),
            &if_match,
        )
    });
    let replies = futures_util::future::join_all(racers).await;
    let winners: Vec<&Reply> = replies.iter().filter(|r| r.status == 200).collect();
    assert_eq!(
        winners.len(),
        1,
        "{:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert!(replies.iter().all(|r| r.status == 200 || r.status == 412));
    let read = api.get(&path, Some(&shop.owner)).await;
    assert_eq!(read.body["stock"], winners[0].body["stock"]);
}

async fn deleting_a_product_takes_it_out_of_reads_listings_and_search_and_frees_its_sku(api: Api) {
    let shop = api.create_shop("owner@example.com").await;
    let product = create(&api, &shop, "MUG-1", "Blue Mug").await;
    create(&api, &shop, "MUG-2", "Green Mug").await;
    let path = format!("/v1/products/{}", id(&product));
    let deleted = api.delete(&path, Some(&shop.owner)).await;
    assert_eq!(deleted.status, 204);
    assert_eq!(deleted.body, Value::Null);
    assert_eq!(api.get(&path, Some(&shop.owner)).await.status, 404);
    assert_eq!(names(&browse(&api, &shop, "").await), ["Green Mug"]);
    assert_eq!(
        names(&browse(&api, &shop, "q=blue").await),
        Vec::<String>::new()
    );
    assert_eq!(names(&browse(&api, &shop, "q=mug").await), ["Green Mug"]);
    assert_eq!(api.delete(&path, Some(&shop.owner)).await.status, 404);
    assert_eq!(
        api.patch(&path, Some(&shop.owner), json!({"stock": 1}))
            .await
            .status,
        404
    );
    create(&api, &shop, "MUG-1", "Blue Mug Again").await;
}

async fn a_product_of_another_shop_is_404_to_every_route(api: Api) {
    let shop = api.create_shop("owner@example.com").await;
    let other = api.create_shop("other@example.com").await;
    let theirs = create(&api, &other, "MUG-1", "Their Mug").await;
    let path = format!("/v1/products/{}", id(&theirs));
    assert_eq!(api.get(&path, Some(&shop.owner)).await.status, 404);
    let anonymous = format!("{path}?tenant_id={}", shop.tenant_id);
    assert_eq!(api.get(&anonymous, None).await.status, 404);
    assert_eq!(
        api.patch(&path, Some(&shop.owner), json!({"stock": 0}))
            .await
            .status,
        404
    );
    assert_eq!(api.delete(&path, Some(&shop.owner)).await.status, 404);
    for malformed in [
        "/v1/products/nope",
        "/v1/products/usr_01JD0000000000000000000000",
    ] {
        assert_eq!(api.get(malformed, Some(&shop.owner)).await.status, 404);
    }
    let read = api.get(&path, Some(&other.owner)).await;
    assert_eq!(read.body["stock"], 5, "untouched");
}

async fn customers_and_anonymous_callers_cannot_write_the_catalogue_staff_can(api: Api) {
    let shop = api.create_shop("owner@example.com").await;
    let customer = api.signup(&shop.tenant_id, "c@example.com").await.token();
    let staff = api.add_member(&shop.owner, "s@example.com", "staff").await;
    assert_eq!(staff.status, 201);
    let staff = api
        .login(&shop.tenant_id, "s@example.com", "member password")
        .await
        .token();
    let refused = api
        .post("/v1/products", Some(&customer), mug("MUG-1", "Blue Mug"))
        .await;
    assert_eq!(refused.status, 403);
    let anonymous = api
        .post("/v1/products", None, mug("MUG-1", "Blue Mug"))
        .await;
    assert_eq!(anonymous.status, 401);
    let made = api
        .post("/v1/products", Some(&staff), mug("MUG-1", "Blue Mug"))
        .await;
    assert_eq!(made.status, 201);
    let path = format!("/v1/products/{}", id(&made.body));
    assert_eq!(
        api.patch(&path, Some(&customer), json!({"stock": 0}))
            .await
            .status,
        403
    );
    assert_eq!(api.delete(&path, Some(&customer)).await.status, 403);
    assert_eq!(api.delete(&path, None).await.status, 401);
    assert_eq!(api.get(&path, Some(&customer)).await.body["stock"], 5);
    assert_eq!(api.delete(&path, Some(&staff)).await.status, 204);
}

/// The events in the outbox about one product, by type.
async fn events_about(api: &Api, product_id: &str) -> Vec<String> {
    let mut found = Vec::new();
    for body in api.outbox_jobs().await {
        if let Job::Event { event } = serde_json::from_str(&body).expect("a job") {
            if event.data.object["id"] == product_id {
                found.push(event.kind);
            }
        }
    }
    found.sort();
    found
}

async fn every_product_write_puts_its_event_and_audit_entry_in_its_own_transaction(api: Api) {
    let shop = api.create_shop("owner@example.com").await;
    let product = create(&api, &shop, "MUG-1", "Blue Mug").await;
    let path = format!("/v1/products/{}", id(&product));
    assert_eq!(events_about(&api, id(&product)).await, ["product.updated"]);
    let refused = api
        .post("/v1/products", Some(&shop.owner), mug("MUG-1", "Copy"))
        .await;
    assert_eq!(refused.status, 409);
    api.patch(&path, Some(&shop.owner), json!({"stock": 3}))
        .await;
    assert_eq!(
        events_about(&api, id(&product)).await,
        ["product.updated", "product.updated"]
    );
    assert_eq!(api.delete(&path, Some(&shop.owner)).await.status, 204);
    assert_eq!(
        events_about(&api, id(&product)).await,
        ["product.deleted", "product.updated", "product.updated"]
    );
    let actions = api.audit_history(&shop.owner, id(&product)).await;
    assert_eq!(
        actions,
        ["product.deleted", "product.updated", "product.created"]
    );
}

/// A shop on the local server, over HTTP: its owner's access token and its id.
async fn local_shop(local: &LocalServer) -> (String, String) {
    let shop: Value = local
        .client
        .post(local.url("/v1/tenants"))
        .json(&json!({"name": "Shop", "owner": {"email": "o@example.com", "password": "correct horse battery", "name": "O"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let owner = shop["tokens"]["access_token"].as_str().unwrap().to_owned();
    (owner, shop["tenant"]["id"].as_str().unwrap().to_owned())
}

/// A product of the owner's shop on the local server, over HTTP.
async fn local_product(local: &LocalServer, owner: &str, name: &str) -> Value {
    let created = local
        .client
        .post(local.url("/v1/products"))
        .bearer_auth(owner)
        .json(&json!({"sku": "MUG-1", "name": name, "description": "", "price": {"amount": 1250, "currency": "usd"}, "stock": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    created.json().await.unwrap()
}

#[tokio::test]
async fn the_local_server_serves_the_catalogue_to_anonymous_browsers_over_http() {
    let local = LocalServer::start().await;
    let c = &local.client;
    let (owner, tenant_id) = local_shop(&local).await;
    local_product(&local, &owner, "Café Mug").await;
    let found = c
        .get(local.url(&format!("/v1/products?tenant_id={tenant_id}&q=cafe")))
        .send()
        .await
        .unwrap();
    assert_eq!(found.status(), 200);
    assert_eq!(found.headers()["cache-control"], "public, max-age=60");
    let etag = found.headers()["etag"].to_str().unwrap().to_owned();
    let page: Value = found.json().await.unwrap();
    assert_eq!(page["items"][0]["name"], "Café Mug");
    let again = c
        .get(local.url(&format!("/v1/products?tenant_id={tenant_id}&q=cafe")))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert!(again.bytes().await.unwrap().is_empty());
}

/// A JPEG of `width` x `height` with an EXIF block holding a GPS position.
pub fn photo_with_gps(width: u32, height: u32) -> Vec<u8> {
    let image = image::ImageBuffer::from_fn(width, height, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 120])
    });
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90)
        .write_image(
            image.as_raw(),
            width,
            height,
            image::ExtendedColorType::Rgb8,
        )
        .expect("jpeg");
    // TIFF: IFD0 with a GPS IFD pointer; the GPS IFD with GPSLatitudeRef "N".
    let mut tiff = Vec::new();
    tiff.extend_from_slice(b"II*\0");
    tiff.extend_from_slice(&8u32.to_le_bytes());
    tiff.extend_from_slice(&1u16.to_le_bytes());
    tiff.extend_from_slice(&0x8825u16.to_le_bytes());
    tiff.extend_from_slice(&4u16.to_le_bytes());
    tiff.extend_from_slice(&1u32.to_le_bytes());
    tiff.extend_from_slice(&26u32.to_le_bytes());
    tiff.extend_from_slice(&0u32.to_le_bytes());
    tiff.extend_from_slice(&1u16.to_le_bytes());
    tiff.extend_from_slice(&0x0001u16.to_le_bytes());
    tiff.extend_from_slice(&2u16.to_le_bytes());
    tiff.extend_from_slice(&2u32.to_le_bytes());
    tiff.extend_from_slice(b"N\0\0\0");
    tiff.extend_from_slice(&0u32.to_le_bytes());
    tiff.extend_from_slice(b"GPS-51.5074N-0.1278W");
    let mut parts = img_parts::jpeg::Jpeg::from_bytes(Bytes::from(jpeg)).expect("parts");
    parts.set_exif(Some(Bytes::from(tiff)));
    parts.encoder().bytes().to_vec()
}

/// A PNG of `width` x `height`.
pub fn png(width: u32, height: u32) -> Vec<u8> {
    let image = image::ImageBuffer::from_fn(width, height, |x, _| {
        image::Rgba([(x % 256) as u8, 40, 80, 200])
    });
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(
            image.as_raw(),
            width,
            height,
            image::ExtendedColorType::Rgba8,
        )
        .expect("png");
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

async fn add_image(
    api: &Api,
    shop: &Shop,
    product_id: &str,
    content_type: &str,
    length: usize,
) -> Reply {
    api.post(
        &format!("/v1/products/{product_id}/images"),
        Some(&shop.owner),
        json!({"content_type": content_type, "content_length": length}),
    )
    .await
}

fn upload_key(shop: &Shop, product_id: &str, image_id: &str) -> String {
    format!("uploads/{}/{product_id}/{image_id}", shop.tenant_id)
}

/// The message S3 sends (through SQS) when an object is created under `key`.
pub fn notification(key: &str) -> JobMessage {
    let body = json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "eu-west-1",
        "eventTime": "2026-11-25T15:12:00.000Z", "eventName": "ObjectCreated:Put",
        "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": "uploads", "arn": "arn:aws:s3:::uploads"},
               "object": {"key": key, "size": 1}}
    }]});
    JobMessage {
        id: format!("n-{key}"),
        body: body.to_string(),
        receive_count: 1,
    }
}

/// Uploads `bytes` as the image's file (as the client's PUT does) and runs the image worker
/// on S3's notification of it.
async fn upload_and_process(
    api: &Api,
    shop: &Shop,
    product_id: &str,
    image_id: &str,
    content_type: &str,
    bytes: Vec<u8>,
) {
    let key = upload_key(shop, product_id, image_id);
    api.ctx
        .blobs
        .put(&key, Bytes::from(bytes), content_type, None)
        .await
        .expect("upload");
    use storefront::jobs::Worker as _;
    ImageUploads::default()
        .handle(&api.ctx, &notification(&key))
        .await
        .expect("the worker succeeds");
}

async fn image_of(api: &Api, shop: &Shop, product_id: &str) -> Value {
    let product = api
        .get(&format!("/v1/products/{product_id}"), Some(&shop.owner))
        .await;
    product.body["images"][0].clone()
}

/// The key of an object an image URL addresses.
fn key_of(url: &str) -> String {
    url.split_once("/images/")
        .map(|(_, rest)| format!("images/{rest}"))
        .expect("an image URL")
}

async fn an_image_upload_is_presigned_for_its_type_and_length_and_anything_else_is_refused(
    api: Api,
) {
    let shop = api.create_shop("owner@example.com").await;
    let product = create(&api, &shop, "MUG-1", "Blue Mug").await;
    let added = add_image(&api, &shop, id(&product), "image/jpeg", 48_213).await;
    assert_eq!(added.status, 201, "{:?}", added.body);
    let image_id = added.body["image_id"].as_str().unwrap();
    assert!(image_id.starts_with("img_"));
    let upload = &added.body["upload"];
    assert_eq!(upload["method"], "PUT");
    assert!(upload["url"]
        .as_str()
        .unwrap()
        .contains(&upload_key(&shop, id(&product), image_id)));
    assert_eq!(upload["headers"]["content-type"], "image/jpeg");
    assert_eq!(upload["headers"]["content-length"], "48213");
    let expires =
        chrono::DateTime::parse_from_rfc3339(upload["expires_at"].as_str().unwrap()).unwrap();
    let in_fifteen = api.clock.now() + chrono::Duration::minutes(15);
    assert!(
        (expires.timestamp() - in_fifteen.timestamp()).abs() <= 1,
        "15 minutes"
    );
    let image = image_of(&api, &shop, id(&product)).await;
    assert_eq!(image["id"], image_id);
    assert_eq!(image["status"], "pending");
    assert_eq!(image["content_type"], "image/jpeg");
    assert!(image.get("url").is_none(), "no address before it is ready");

    let path = format!("/v1/products/{}/images", id(&product));
    for (body, status, field) in [
        (
            json!({"content_type": "image/gif", "content_length": 10}),
            422,
            "content_type",
        ),
        (
            json!({"content_type": "text/html", "content_length": 10}),
            422,
            "content_type",
        ),
        (
            json!({"content_type": "image/png", "content_length": 0}),
            422,
            "content_length",
        ),
        (
            json!({"content_type": "image/png", "content_length": 10 * 1024 * 1024 + 1}),
            422,
            "content_length",
        ),
        (
            json!({"content_type": "image/png", "content_length": 1.5}),
            400,
            "content_length",
        ),
        (
            json!({"content_type": "image/png", "content_length": -1}),
            400,
            "content_length",
        ),
        (json!({"content_type": "image/png"}), 400, "content_length"),
    ] {
        let reply = api.post(&path, Some(&shop.owner), body.clone()).await;
        assert_eq!(reply.status, status, "{body}: {:?}", reply.body);
        assert_eq!(reply.body["errors"][0]["field"], field, "{body}");
    }
    let largest = add_image(&api, &shop, id(&product), "image/webp", 10 * 1024 * 1024).await;
    assert_eq!(largest.status, 201, "10 MiB exactly is allowed");
    let customer = api.signup(&shop.tenant_id, "c@example.com").await.token();
    let refused = api
        .post(
            &path,
            Some(&customer),
            json!({"content_type": "image/png", "content_length": 10}),
        )
        .await;
    assert_eq!(refused.status, 403);
    let other = api.create_shop("other@example.com").await;
    let theirs = add_image(&api, &other, id(&product), "image/png", 10).await;
    assert_eq!(theirs.status, 404, "another shop's product");
    let images = api
        .get(&format!("/v1/products/{}", id(&product)), Some(&shop.owner))
        .await
        .body["images"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(images, 2, "only the two accepted requests added images");
}

async fn a_product_takes_ten_images_and_refuses_an_eleventh(api: Api) {
    let shop = api.create_shop("owner@example.com").await;
    let product = create(&api, &shop, "MUG-1", "Blue Mug").await;
    let mut ids = Vec::new();
    for _ in 0..10 {
        let added = add_image(&api, &shop, id(&product), "image/png", 100).await;
        assert_eq!(added.status, 201);
        ids.push(added.body["image_id"].as_str().unwrap().to_owned());
    }
    let eleventh = add_image(&api, &shop, id(&product), "image/png", 100).await;
    assert_eq!(eleventh.status, 409);
    assert_eq!(eleventh.slug(), "too-many-images");
    let deleted = api
        .delete(
            &format!("/v1/products/{}/images/{}", id(&product), ids[0]),
            Some(&shop.owner),
        )
        .await;
    assert_eq!(deleted.status, 204);
    assert_eq!(
        add_image(&api, &shop, id(&product), "image/png", 100)
            .await
            .status,
        201
    );
    assert_eq!(
        add_image(&api, &shop, id(&product), "image/png", 100)
            .await
            .status,
        409
    );
    // Uploads never made are given up on once their window is long over.
    api.clock.advance(std::time::Duration::from_secs(3600));
    let owner = api
        .login(
            &shop.tenant_id,
            "owner@example.com",
            "correct horse battery",
        )
        .await
        .token();
    let later = api
        .post(
            &format!("/v1/products/{}/images", id(&product)),
            Some(&owner),
            json!({"content_type": "image/png", "content_length": 100}),
        )
        .await;
    assert_eq!(later.status, 201);
    let read = api
        .get(&format!("/v1/products/{}", id(&product)), Some(&owner))
        .await;
    assert_eq!(
        read.body["images"].as_array().unwrap().len(),
        1,
        "the abandoned ones were dropped"
    );
}

async fn the_worker_makes_a_thumbnail_strips_the_gps_position_and_marks_the_image_ready(api: Api) {
    let shop = api.create_shop("owner@example.com").await;
    let product = create(&api, &shop, "MUG-1", "Blue Mug").await;
    let photo = photo_with_gps(1200, 900);
    assert!(contains(&photo, b"GPS-51.5074N"));
    let added = add_image(&api, &shop, id(&product), "image/jpeg", photo.len()).await;
    let image_id = added.body["image_id"].as_str().unwrap().to_owned();
    upload_and_process(&api, &shop, id(&product), &image_id, "image/jpeg", photo).await;

    let image = image_of(&api, &shop, id(&product)).await;
    assert_eq!(image["status"], "ready", "{image}");
    assert_eq!(
        (image["width"].as_u64(), image["height"].as_u64()),
        (Some(1200), Some(900))
    );
    let url = image["url"].as_str().expect("url");
    let thumbnail_url = image["thumbnail_url"].as_str().expect("thumbnail_url");
    assert_ne!(url, thumbnail_url);
    let original = api
        .ctx
        .blobs
        .get(&key_of(url))
        .await
        .unwrap()
        .expect("original");
    assert_eq!(original.content_type, "image/jpeg");
    assert!(
        !contains(&original.bytes, b"GPS-51.5074N"),
        "the GPS position is gone"
    );
    let decoded = image::load_from_memory(&original.bytes).expect("still an image");
    assert_eq!((decoded.width(), decoded.height()), (1200, 900));
    let thumbnail = api
        .ctx
        .blobs
        .get(&key_of(thumbnail_url))
        .await
        .unwrap()
        .expect("thumbnail");
    let thumb = image::load_from_memory(&thumbnail.bytes).expect("a thumbnail");
    assert_eq!((thumb.width(), thumb.height()), (256, 192));
    let upload = upload_key(&shop, id(&product), &image_id);
    assert!(
        api.ctx.blobs.head(&upload).await.unwrap().is_none(),
        "the upload is deleted"
    );
    let anonymous = api
        .get(
            &format!("/v1/products/{}?tenant_id={}", id(&product), shop.tenant_id),
            None,
        )
        .await;
    assert_eq!(anonymous.body["images"][0]["url"], url);
    assert_eq!(
        events_about(&api, id(&product)).await.len(),
        3,
        "created, image added, image ready"
    );
}

async fn a_repeated_notification_makes_no_second_thumbnail_and_no_error(api: Api) {
    let shop = api.create_shop("owner@example.com").await;
    let product = create(&api, &shop, "MUG-1", "Blue Mug").await;
    let bytes = png(300, 200);
    let added = add_image(&api, &shop, id(&product), "image/png", bytes.len()).await;
    let image_id = added.body["image_id"].as_str().unwrap().to_owned();
    upload_and_process(&api, &shop, id(&product), &image_id, "image/png", bytes).await;
    let path = format!("/v1/products/{}", id(&product));
    let first = api.get(&path, Some(&shop.owner)).await;
    let thumbnail_key = key_of(first.body["images"][0]["thumbnail_url"].as_str().unwrap());
    let thumbnail = api
        .ctx
        .blobs
        .get(&thumbnail_key)
        .await
        .unwrap()
        .expect("thumbnail");
    let key = upload_key(&shop, id(&product), &image_id);
    for _ in 0..2 {
        let outcome =
            process_batch(&api.ctx, &ImageUploads::default(), &[notification(&key)]).await;
        assert!(outcome.failed.is_empty(), "a repeat is no error");
    }
    let again = api.get(&path, Some(&shop.owner)).await;
    assert_eq!(
        header(&again, "etag"),
        header(&first, "etag"),
        "nothing was written"
    );
    assert_eq!(
        api.ctx
            .blobs
            .get(&thumbnail_key)
            .await
            .unwrap()
            .expect("thumbnail")
            .bytes,
        thumbnail.bytes
    );
    assert_eq!(events_about(&api, id(&product)).await.len(), 3);
}

async fn a_file_that_lies_about_its_type_is_rejected_and_deleted(api: Api) {
    let shop = api.create_shop("owner@example.com").await;
    let product = create(&api, &shop, "MUG-1", "Blue Mug").await;
    let lie = png(64, 64);
    let added = add_image(&api, &shop, id(&product), "image/jpeg", lie.len()).await;
    let image_id = added.body["image_id"].as_str().unwrap().to_owned();
    upload_and_process(&api, &shop, id(&product), &image_id, "image/jpeg", lie).await;
    let image = image_of(&api, &shop, id(&product)).await;
    assert_eq!(image["status"], "rejected");
    assert!(image.get("url").is_none());
    let key = upload_key(&shop, id(&product), &image_id);
    assert!(
        api.ctx.blobs.head(&key).await.unwrap().is_none(),
        "the file is deleted"
    );
    let original = format!(
        "images/{}/{}/{image_id}/original.jpg",
        shop.tenant_id,
        id(&product)
    );
    assert!(
        api.ctx.blobs.head(&original).await.unwrap().is_none(),
        "nothing is served"
    );
    // Text with an image's name, and a declared length the file does not have.
    let text = b"<svg onload=alert(1)>".to_vec();
    let added = add_image(&api, &shop, id(&product), "image/png", text.len()).await;
    let second = added.body["image_id"].as_str().unwrap().to_owned();
    upload_and_process(&api, &shop, id(&product), &second, "image/png", text).await;
    assert_eq!(
        image_of(&api, &shop, id(&product)).await["status"],
        "rejected",
        "text is no image"
    );
    let short = add_image(&api, &shop, id(&product), "image/png", 999).await;
    let third = short.body["image_id"].as_str().unwrap().to_owned();
    upload_and_process(&api, &shop, id(&product), &third, "image/png", png(10, 10)).await;
    let read = api
        .get(&format!("/v1/products/{}", id(&product)), Some(&shop.owner))
        .await;
    // Adding an image drops the rejected ones before it: only the last is listed.
    assert_eq!(read.body["images"].as_array().unwrap().len(), 1);
    assert_eq!(read.body["images"][0]["id"], third.as_str());
    assert_eq!(
        read.body["images"][0]["status"], "rejected",
        "a length other than the one declared"
    );
}

async fn deleting_an_image_or_its_product_deletes_its_objects(api: Api) {
    let shop = api.create_shop("owner@example.com").await;
    let product = create(&api, &shop, "MUG-1", "Blue Mug").await;
    let mut urls = Vec::new();
    for _ in 0..2 {
        let bytes = png(40, 30);
        let added = add_image(&api, &shop, id(&product), "image/png", bytes.len()).await;
        let image_id = added.body["image_id"].as_str().unwrap().to_owned();
        upload_and_process(&api, &shop, id(&product), &image_id, "image/png", bytes).await;
    }
    let read = api
        .get(&format!("/v1/products/{}", id(&product)), Some(&shop.owner))
        .await;
    for image in read.body["images"].as_array().unwrap() {
        urls.push((
            image["id"].as_str().unwrap().to_owned(),
            key_of(image["url"].as_str().unwrap()),
            key_of(image["thumbnail_url"].as_str().unwrap()),
        ));
    }
    let (first, first_original, first_thumbnail) = &urls[0];
    let deleted = api
        .delete(
            &format!("/v1/products/{}/images/{first}", id(&product)),
            Some(&shop.owner),
        )
        .await;
    assert_eq!(deleted.status, 204);
    assert_eq!(
        api.delete(
            &format!("/v1/products/{}/images/{first}", id(&product)),
            Some(&shop.owner)
        )
        .await
        .status,
        404
    );
    run_deletion_jobs(&api).await;
    for key in [first_original, first_thumbnail] {
        assert!(
            api.ctx.blobs.head(key).await.unwrap().is_none(),
            "{key} deleted"
        );
    }
    let (_, second_original, second_thumbnail) = &urls[1];
    assert!(
        api.ctx.blobs.head(second_original).await.unwrap().is_some(),
        "the other image stays"
    );
    assert_eq!(
        api.delete(&format!("/v1/products/{}", id(&product)), Some(&shop.owner))
            .await
            .status,
        204
    );
    run_deletion_jobs(&api).await;
    for key in [second_original, second_thumbnail] {
        assert!(
            api.ctx.blobs.head(key).await.unwrap().is_none(),
            "{key} deleted with its product"
        );
    }
}

/// Runs the object deletions waiting in the outbox, as the worker would once relayed.
async fn run_deletion_jobs(api: &Api) {
    for shard in 0..SHARDS {
        let page = api
            .ctx
            .table
            .query(Query::partition(Index::Primary, format!("OUTBOX#{shard}")).limit(1000))
            .await
            .expect("outbox");
        for item in page.items {
            let body = item.get_str("body").expect("body").to_owned();
            if matches!(
                serde_json::from_str::<Job>(&body),
                Ok(Job::DeleteBlobs { .. })
            ) {
                let message = JobMessage {
                    id: "d".into(),
                    body,
                    receive_count: 1,
                };
                let outcome = process_batch(&api.ctx, &Dispatcher, &[message]).await;
                assert!(outcome.failed.is_empty());
                api.ctx
                    .table
                    .delete(&item.key().unwrap(), None)
                    .await
                    .unwrap();
            }
        }
    }
}

/// A table whose first transaction finds `victim` deleted by another writer just before
/// it: a product deleted while the image worker checks its upload.
pub fn deletes_before_first_transaction(
    inner: Arc<dyn Table>,
    bystander: Arc<dyn Table>,
    victim: Key,
) -> crate::helpers::FirstTransaction {
    crate::helpers::FirstTransaction::new(
        inner,
        Box::new(move || {
            let (bystander, victim) = (bystander.clone(), victim.clone());
            Box::pin(async move { bystander.delete(&victim, None).await.map(drop) })
        }),
    )
}

async fn an_image_deleted_while_the_worker_checks_it_leaves_no_objects(api: Api) {
    let shop = api.create_shop("owner@example.com").await;
    let product = create(&api, &shop, "MUG-1", "Blue Mug").await;
    let bytes = png(50, 50);
    let added = add_image(&api, &shop, id(&product), "image/png", bytes.len()).await;
    let image_id = added.body["image_id"].as_str().unwrap().to_owned();
    let key = upload_key(&shop, id(&product), &image_id);
    api.ctx
        .blobs
        .put(&key, Bytes::from(bytes), "image/png", None)
        .await
        .unwrap();
    let mut ctx = api.ctx.clone();
    ctx.table = Arc::new(deletes_before_first_transaction(
        api.ctx.table.clone(),
        api.ctx.table.clone(),
        Key::new(
            format!("TENANT#{}#PRODUCT#{}", shop.tenant_id, id(&product)),
            "PRODUCT",
        ),
    ));
    let outcome = process_batch(&ctx, &ImageUploads::default(), &[notification(&key)]).await;
    assert!(outcome.failed.is_empty());
    let base = format!("images/{}/{}/{image_id}", shop.tenant_id, id(&product));
    for object in [
        key,
        format!("{base}/original.png"),
        format!("{base}/thumbnail.png"),
    ] {
        assert!(
            api.ctx.blobs.head(&object).await.unwrap().is_none(),
            "{object} is left"
        );
    }
}

#[tokio::test]
async fn an_upload_after_its_window_or_of_another_type_or_length_is_refused_by_the_store() {
    use storefront::blobs::embedded::PresignRefusal;
    let api = embedded().await;
    let blobs = api.embedded.as_ref().expect("embedded").blobs.clone();
    let shop = api.create_shop("owner@example.com").await;
    let product = create(&api, &shop, "MUG-1", "Blue Mug").await;
    let bytes = png(20, 20);
    let added = add_image(&api, &shop, id(&product), "image/png", bytes.len()).await;
    let url = url::Url::parse(added.body["upload"]["url"].as_str().unwrap()).unwrap();
    let key = url.path().trim_start_matches("/_blobs/").to_owned();
    let query = url.query().unwrap().to_owned();
    let put = |content_type: &'static str, body: Vec<u8>| {
        let (blobs, key, query) = (blobs.clone(), key.clone(), query.clone());
        async move {
            blobs
                .accept_put(&key, &query, Some(content_type), Bytes::from(body))
                .await
        }
    };
    assert_eq!(
        put("image/jpeg", bytes.clone()).await,
        Err(PresignRefusal::WrongContentType)
    );
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(
        put("image/png", longer).await,
        Err(PresignRefusal::WrongContentLength)
    );
    api.clock
        .advance(std::time::Duration::from_secs(15 * 60 + 1));
    assert_eq!(
        put("image/png", bytes.clone()).await,
        Err(PresignRefusal::Expired)
    );
    assert!(
        api.ctx.blobs.head(&key).await.unwrap().is_none(),
        "nothing stored"
    );
}

#[tokio::test]
async fn an_image_uploaded_to_the_local_server_is_checked_thumbnailed_and_served() {
    let local = LocalServer::start().await;
    let c = &local.client;
    let (owner, _) = local_shop(&local).await;
    let owner = owner.as_str();
    let product = local_product(&local, owner, "Mug").await;
    let product_id = id(&product).to_owned();
    let photo = photo_with_gps(2000, 1500);
    let added: Value = c
        .post(local.url(&format!("/v1/products/{product_id}/images")))
        .bearer_auth(owner)
        .json(&json!({"content_type": "image/jpeg", "content_length": photo.len()}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let upload = &added["upload"];
    let url = upload["url"].as_str().unwrap();
    let wrong_type = c
        .put(url)
        .header("content-type", "image/png")
        .body(photo.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_type.status(), 403, "another type than the one signed");
    let mut put = c.put(url);
    for (name, value) in upload["headers"].as_object().unwrap() {
        put = put.header(name.as_str(), value.as_str().unwrap());
    }
    let stored = put.body(photo).send().await.unwrap();
    assert_eq!(stored.status(), 200);

    // The worker runs beside the server; wait (bounded) for its verdict.
    let mut image = Value::Null;
    for _ in 0..600 {
        let read: Value = c
            .get(local.url(&format!("/v1/products/{product_id}")))
            .bearer_auth(owner)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        image = read["images"][0].clone();
        if image["status"] != "pending" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(image["status"], "ready", "{image}");
    assert_eq!(
        (image["width"].as_u64(), image["height"].as_u64()),
        (Some(2000), Some(1500))
    );
    let thumbnail = c
        .get(image["thumbnail_url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(thumbnail.status(), 200);
    assert_eq!(thumbnail.headers()["content-type"], "image/jpeg");
    assert_eq!(
        thumbnail.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    let thumb = image::load_from_memory(&thumbnail.bytes().await.unwrap()).unwrap();
    assert_eq!((thumb.width(), thumb.height()), (256, 192));
    let original = c
        .get(image["url"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(
        !contains(&original, b"GPS-51.5074N"),
        "served without its GPS position"
    );
    let upload_path = url::Url::parse(url).unwrap().path().to_owned();
    let hidden = c
        .get(local.url(&upload_path.replace("/_blobs/uploads/", "/images/uploads/")))
        .send()
        .await
        .unwrap();
    assert_eq!(hidden.status(), 404, "uploads are never served");
}
