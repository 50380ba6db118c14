//! Identity and tenancy, on both adapters: every case calls the handlers through
//! `dispatch` (the path Lambda and the local server share) over the embedded store and over
//! DynamoDB on moto. A few flows also run over HTTP against the local server at the end.

use std::sync::Arc;
use std::time::Duration;

use http::Method;
use serde_json::{json, Value};
use storefront::clock::Clock as _;
use storefront::credentials::tokens::KeyRing;
use storefront::store::StoreError;

use crate::helpers::api::{dynamo, embedded, Api};
use crate::helpers::{self, LocalServer};

conformance!(embedded, dynamo;
    creating_a_shop_returns_the_shop_its_owner_and_working_tokens,
    a_shop_with_invalid_fields_is_refused_naming_each_field_and_nothing_is_written,
    a_customer_signs_up_once_per_email_whatever_its_case,
    signing_up_to_a_missing_or_malformed_shop_is_refused,
    a_wrong_email_and_a_wrong_password_get_the_same_401,
    the_sixth_login_attempt_in_a_minute_is_429_per_account_and_per_ip,
    a_refresh_spends_its_token_and_reusing_a_spent_one_revokes_the_session,
    a_token_spent_sixty_refreshes_ago_still_revokes_the_session,
    two_concurrent_refreshes_of_one_token_end_the_session,
    logout_and_revoking_a_session_stop_its_refresh_token,
    sessions_are_listed_newest_first_with_the_current_one_marked,
    owners_and_admins_manage_members_within_the_role_rules,
    members_are_listed_in_pages_and_a_cursor_cannot_reach_another_shop,
    an_api_key_is_shown_once_acts_with_its_role_and_stops_when_revoked,
    a_token_of_one_shop_reaches_nothing_of_another,
    expired_tampered_unsigned_and_missing_tokens_are_401,
    two_simultaneous_signups_with_one_email_make_one_account,
    a_demoted_admin_loses_member_and_key_rights_at_once,
    an_ended_sessions_access_token_cannot_manage_members_or_keys,
    sessions_are_paged_with_limit_and_cursor,
    two_owners_demoting_each_other_at_once_leave_the_shop_an_owner,
    an_api_key_acts_at_most_with_its_creators_current_role,
    an_email_is_one_account_in_any_unicode_form_and_invisible_characters_are_refused,
    a_session_ends_ninety_days_after_sign_in_however_often_it_is_refreshed,
    every_change_by_a_member_or_key_is_in_the_audit_log_newest_first,
);

async fn every_change_by_a_member_or_key_is_in_the_audit_log_newest_first(api: Api) {
    let shop = api.create_shop("owner@example.com").await;
    let member = api.add_member(&shop.owner, "cy@example.com", "staff").await;
    assert_eq!(member.status, 201);
    let member_id = member.body["id"].as_str().unwrap().to_owned();
    let promoted = api
        .patch(
            &format!("/v1/members/{member_id}"),
            Some(&shop.owner),
            json!({"role": "admin"}),
        )
        .await;
    assert_eq!(promoted.status, 200);
    let key = api
        .post("/v1/api-keys", Some(&shop.owner), json!({"name": "Ops"}))
        .await;
    let (key_id, key) = (
        key.body["id"].as_str().unwrap().to_owned(),
        key.body["key"].as_str().unwrap().to_owned(),
    );
    let by_key = api.add_member(&key, "di@example.com", "staff").await;
    assert_eq!(by_key.status, 201);
    // A refused change records nothing: the entry is in the change's transaction.
    let taken = api.add_member(&shop.owner, "cy@example.com", "staff").await;
    assert_eq!(taken.status, 409);
    let revoked = api
        .delete(&format!("/v1/api-keys/{key_id}"), Some(&shop.owner))
        .await;
    assert_eq!(revoked.status, 204);

    let log = api.get("/v1/audit-log", Some(&shop.owner)).await;
    assert_eq!(log.status, 200, "{:?}", log.body);
    let entries = log.body["items"].as_array().unwrap();
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "api_key.revoked",
            "member.created",
            "api_key.created",
            "member.role_changed",
            "member.created"
        ],
        "newest first, the refused change absent"
    );
    assert_eq!(
        entries[0]["resource"],
        json!({"type": "api_key", "id": key_id})
    );
    assert_eq!(
        entries[0]["actor"],
        json!({"type": "user", "id": shop.owner_id})
    );
    assert_eq!(
        entries[1]["actor"],
        json!({"type": "api_key", "id": key_id})
    );
    assert_eq!(entries[3]["detail"], "role: staff -> admin");
    assert_eq!(entries[3]["ip"], "203.0.113.1");
    assert!(entries
        .iter()
        .all(|e| e["id"].as_str().unwrap().starts_with("aud_")
            && chrono::DateTime::parse_from_rfc3339(e["at"].as_str().unwrap()).is_ok()));

    let history = api.audit_history(&shop.owner, &member_id).await;
    assert_eq!(history, ["member.role_changed", "member.created"]);

    let first = api.get("/v1/audit-log?limit=2", Some(&shop.owner)).await;
    assert_eq!(first.body["items"].as_array().unwrap().len(), 2);
    let cursor = first.body["next_cursor"].as_str().unwrap();
    let second = api
        .get(
            &format!("/v1/audit-log?limit=2&cursor={cursor}"),
            Some(&shop.owner),
        )
        .await;
    assert_eq!(second.body["items"][0]["action"], "api_key.created");
    assert_eq!(
        api.get("/v1/audit-log?resource=not%20an%20id", Some(&shop.owner))
            .await
            .status,
        400
    );
    // A cursor of the whole log cannot be used to read one resource's history, or another shop's.
    let crossed = api
        .get(
            &format!("/v1/audit-log?resource={member_id}&cursor={cursor}"),
            Some(&shop.owner),
        )
        .await;
    assert_eq!(crossed.status, 400);
    let other = api.create_shop("other@example.com").await;
    let theirs = api.get("/v1/audit-log", Some(&other.owner)).await;
    assert_eq!(theirs.status, 200);
    assert_eq!(
        theirs.body["items"],
        json!([]),
        "another shop's log is its own"
    );
    let stolen = api
        .get(
            &format!("/v1/audit-log?cursor={cursor}"),
            Some(&other.owner),
        )
        .await;
    assert_eq!(stolen.status, 400);

    let staff = api.add_member(&shop.owner, "ed@example.com", "staff").await;
    assert_eq!(staff.status, 201);
    let staff_token = api
        .login(&shop.tenant_id, "ed@example.com", "member password")
        .await
        .token();
    assert_eq!(
        api.get("/v1/audit-log", Some(&staff_token)).await.status,
        403
    );

    // Each entry expires after the retention (365 days by default).
    let page = api
        .ctx
        .table
        .query(storefront::repo::audit::of_tenant(&shop.tenant_id))
        .await
        .unwrap();
    let now = api.clock.now().timestamp();
    for item in &page.items {
        let ttl = item.get_i64("ttl").expect("an expiry");
        assert!((ttl - now - 365 * 24 * 3600).abs() <= 5, "{ttl} vs {now}");
    }
}

async fn an_api_key_acts_at_most_with_its_creators_current_role(api: Api) {
    let shop = api.create_shop("owner@example.com").await;
    let admin = api
        .add_member(&shop.owner, "admin@example.com", "admin")
        .await;
    let admin_id = admin.body["id"].as_str().unwrap().to_owned();
    let admin_token = api
        .login(&shop.tenant_id, "admin@example.com", "member password")
        .await
        .token();
    let made = api
        .post("/v1/api-keys", Some(&admin_token), json!({"name": "Ops"}))
        .await;
    assert_eq!(made.status, 201, "{:?}", made.body);
    let key = made.body["key"].as_str().unwrap().to_owned();
    // A key made with that key carries the same member's authority.
    let chained = api
        .post("/v1/api-keys", Some(&key), json!({"name": "Ops, again"}))
        .await;
    assert_eq!(chained.status, 201, "{:?}", chained.body);
    let chained = chained.body["key"].as_str().unwrap().to_owned();
    assert_eq!(
        api.add_member(&key, "first@example.com", "admin")
            .await
            .status,
        201,
        "while its creator is an admin, the key makes admins"
    );
    let demote = api
        .patch(
            &format!("/v1/members/{admin_id}"),
            Some(&shop.owner),
            json!({"role": "staff"}),
        )
        .await;
    assert_eq!(demote.status, 200);
    for key in [&key, &chained] {
        assert_eq!(
            api.add_member(key, "second@example.com", "admin")
                .await
                .status,
            403,
            "the key acts at most with its creator's role now"
        );
        let me = api.get("/v1/me", Some(key)).await;
        assert_eq!(me.status, 200);
        assert_eq!(me.body["role"], "staff");
    }
    // Given back the role, the member's keys get it back too (never above their own).
    let promote = api
        .patch(
            &format!("/v1/members/{admin_id}"),
            Some(&shop.owner),
            json!({"role": "owner"}),
        )
        .await;
    assert_eq!(promote.status, 200);
    let me = api.get("/v1/me", Some(&key)).await;
    assert_eq!(me.body["role"], "admin", "the key's own role still caps it");
}

async fn an_email_is_one_account_in_any_unicode_form_and_invisible_characters_are_refused(
    api: Api,
) {
    let shop = api.create_shop("owner@example.com").await;
    let composed = api.signup(&shop.tenant_id, "Ren\u{e9}@example.com").await;
    assert_eq!(composed.status, 201, "{:?}", composed.body);
    assert_eq!(composed.body["user"]["email"], "ren\u{e9}@example.com");
    let decomposed = api.signup(&shop.tenant_id, "rene\u{301}@example.com").await;
    assert_eq!(decomposed.status, 409, "{:?}", decomposed.body);
    assert_eq!(decomposed.slug(), "email-taken");
    let login = api
        .login(
            &shop.tenant_id,
            "RENE\u{301}@example.com",
            "a long passphrase",
        )
        .await;
    assert_eq!(login.status, 200, "one account, whichever form is typed");
    for look_alike in [
        "ren\u{e9}\u{200b}@example.com",
        "ren\u{e9}@exam\u{200d}ple.com",
        "\u{202e}ren\u{e9}@example.com",
    ] {
        let refused = api.signup(&shop.tenant_id, look_alike).await;
        assert_eq!(refused.status, 422, "{look_alike:?}: {:?}", refused.body);
        assert_eq!(refused.body["errors"][0]["field"], "email");
    }
}

async fn a_session_ends_ninety_days_after_sign_in_however_often_it_is_refreshed(api: Api) {
    let shop = api.create_shop("owner@example.com").await;
    let day = Duration::from_secs(24 * 3600);
    let mut refresh = shop.owner_refresh.clone();
    // Used every 25 days, the session never idles out; the last refresh is 10 minutes
    // before its 90 days are up.
    for step in [
        day * 25,
        day * 25,
        day * 25,
        day * 15 - Duration::from_secs(600),
    ] {
        api.clock.advance(step);
        let renewed = api.refresh(&refresh).await;
        assert_eq!(renewed.status, 200, "{:?}", renewed.body);
        refresh = renewed.refresh();
    }
    let access = api.refresh(&refresh).await;
    assert_eq!(access.status, 200);
    let (access, refresh) = (access.token(), access.refresh());
    assert_eq!(api.get("/v1/sessions", Some(&access)).await.status, 200);
    // 90 days and 1 minute after sign-in: the access token is still inside its 15
    // minutes, but the session is over.
    api.clock.advance(Duration::from_secs(660));
    assert_eq!(
        api.get("/v1/sessions", Some(&access)).await.status,
        401,
        "a live-session route refuses a session past its lifetime"
    );
    let ended = api.refresh(&refresh).await;
    assert_eq!(ended.status, 401, "{:?}", ended.body);
}

async fn two_owners_demoting_each_other_at_once_leave_the_shop_an_owner(api: Api) {
    let shop = api.create_shop("owner@example.com").await;
    let second = api
        .add_member(&shop.owner, "second@example.com", "admin")
        .await;
    let second_id = second.body["id"].as_str().unwrap().to_owned();
    let promote = api
        .patch(
            &format!("/v1/members/{second_id}"),
            Some(&shop.owner),
            json!({"role": "owner"}),
        )
        .await;
    assert_eq!(promote.status, 200);
    let second_token = api
        .login(&shop.tenant_id, "second@example.com", "member password")
        .await
        .token();
    let (second_path, owner_path) = (
        format!("/v1/members/{second_id}"),
        format!("/v1/members/{}", shop.owner_id),
    );
    let (a, b) = tokio::join!(
        api.patch(&second_path, Some(&shop.owner), json!({"role": "admin"})),
        api.patch(&owner_path, Some(&second_token), json!({"role": "admin"})),
    );
    let succeeded = [a.status, b.status].iter().filter(|s| **s == 200).count();
    assert_eq!(
        succeeded, 1,
        "exactly one demotion lands: {} and {}",
        a.status, b.status
    );
    let members = api.get("/v1/members", Some(&shop.owner)).await;
    let members = if members.status == 200 {
        members
    } else {
        api.get("/v1/members", Some(&second_token)).await
    };
    let owners = members.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "owner")
        .count();
    assert_eq!(owners, 1, "the shop keeps one owner");
}

async fn a_demoted_admin_loses_member_and_key_rights_at_once(api: Api) {
    let shop = api.create_shop("owner@example.com").await;
    let admin = api
        .add_member(&shop.owner, "admin@example.com", "admin")
        .await;
    let admin_id = admin.body["id"].as_str().unwrap().to_owned();
    let admin_token = api
        .login(&shop.tenant_id, "admin@example.com", "member password")
        .await
        .token();
    assert_eq!(
        api.add_member(&admin_token, "one@example.com", "staff")
            .await
            .status,
        201
    );
    let demote = api
        .patch(
            &format!("/v1/members/{admin_id}"),
            Some(&shop.owner),
            json!({"role": "staff"}),
        )
        .await;
    assert_eq!(demote.status, 200);
    // The admin's token still says admin for up to 15 minutes; the store says staff.
    assert_eq!(
        api.add_member(&admin_token, "two@example.com", "staff")
            .await
            .status,
        403
    );
    let key = api
        .post(
            "/v1/api-keys",
            Some(&admin_token),
            json!({"name": "Escape hatch"}),
        )
        .await;
    assert_eq!(key.status, 403, "no admin key minted after the demotion");
    for list in ["/v1/members", "/v1/api-keys"] {
        assert_eq!(
            api.get(list, Some(&admin_token)).await.status,
            403,
            "{list} is not read with the old role"
        );
    }
}

async fn an_ended_sessions_access_token_cannot_manage_members_or_keys(api: Api) {
    let shop = api.create_shop("owner@example.com").await;
    let logout = api
        .call(Method::POST, "/v1/auth/logout", Some(&shop.owner), None)
        .await;
    assert_eq!(logout.status, 204);
    // The token itself stays valid until it expires: reading one's own account still works.
    assert_eq!(api.get("/v1/me", Some(&shop.owner)).await.status, 200);
    let key = api
        .post(
            "/v1/api-keys",
            Some(&shop.owner),
            json!({"name": "Lasting"}),
        )
        .await;
    assert_eq!(
        key.status, 401,
        "no lasting key minted from an ended session"
    );
    assert_eq!(
        api.add_member(&shop.owner, "late@example.com", "staff")
            .await
            .status,
        401
    );
    assert_eq!(api.get("/v1/members", Some(&shop.owner)).await.status, 401);
    assert_eq!(api.get("/v1/api-keys", Some(&shop.owner)).await.status, 401);
}

async fn sessions_are_paged_with_limit_and_cursor(api: Api) {
    let shop = api.create_shop("owner@example.com").await;
    for _ in 0..2 {
        api.clock.advance(Duration::from_millis(5));
        assert_eq!(
            api.login(
                &shop.tenant_id,
                "owner@example.com",
                "correct horse battery"
            )
            .await
            .status,
            200
        );
    }
    let first = api.get("/v1/sessions?limit=2", Some(&shop.owner)).await;
    assert_eq!(first.body["items"].as_array().unwrap().len(), 2);
    let cursor = first.body["next_cursor"]
        .as_str()
        .expect("a third session remains")
        .to_owned();
    let second = api
        .get(
            &format!("/v1/sessions?limit=2&cursor={cursor}"),
            Some(&shop.owner),
        )
        .await;
    let items = second.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(
        items[0]["current"], true,
        "the oldest session is the caller's own"
    );
    assert!(second.body["next_cursor"].is_null());
}

async fn creating_a_shop_returns_the_shop_its_owner_and_working_tokens(api: Api) {
    let body = json!({"name": "  Tea Shop ", "owner": {"email": "Owner@Example.com", "password": "correct horse battery", "name": "Ada"}});
    let reply = api.post("/v1/tenants", None, body).await;
    assert_eq!(reply.status, 201, "{:?}", reply.body);
    let tenant = &reply.body["tenant"];
    assert!(tenant["id"].as_str().unwrap().starts_with("ten_"));
    assert_eq!(tenant["name"], "Tea Shop");
    assert_eq!(tenant["currency"], "usd", "usd is the default");
    assert!(tenant["created_at"].as_str().unwrap().ends_with('Z'));
    let user = &reply.body["user"];
    assert_eq!(user["role"], "owner");
    assert_eq!(user["email"], "owner@example.com");
    assert_eq!(user["tenant_id"], tenant["id"]);
    assert!(
        user.get("password_hash").is_none(),
        "the hash never leaves the store"
    );
    let tokens = &reply.body["tokens"];
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 900);
    let me = api.get("/v1/me", Some(&reply.token())).await;
    assert_eq!(me.status, 200);
    assert_eq!(me.body["user_id"], user["id"]);
    assert_eq!(me.body["tenant_id"], tenant["id"]);
    assert_eq!(me.body["role"], "owner");
    assert_eq!(me.body["email"], "owner@example.com");
}

async fn a_shop_with_invalid_fields_is_refused_naming_each_field_and_nothing_is_written(api: Api) {
    let bad = json!({"name": "", "currency": "EUR", "owner": {"email": "not-an-email", "password": "short", "name": "Ada"}});
    let reply = api.post("/v1/tenants", None, bad).await;
    assert_eq!(reply.status, 422);
    assert_eq!(reply.headers["content-type"], "application/problem+json");
    let fields: Vec<&str> = reply.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        ["name", "currency", "owner.email", "owner.password"]
    );
    let unknown = json!({"name": "Shop", "owner": {"email": "a@example.com", "password": "long enough", "name": "A"}, "plan": "gold"});
    assert_eq!(api.post("/v1/tenants", None, unknown).await.status, 400);
    let wrong_type = json!({"name": 7, "owner": {"email": "a@example.com", "password": "long enough", "name": "A"}});
    assert_eq!(api.post("/v1/tenants", None, wrong_type).await.status, 400);
    let missing = json!({"name": "Shop"});
    assert_eq!(api.post("/v1/tenants", None, missing).await.status, 400);
    // A refused signup writes nothing: the same email then signs up fine.
    let shop = api.create_shop("owner@example.com").await;
    let short = json!({"tenant_id": shop.tenant_id, "email": "kim@example.com", "password": "short", "name": "Kim"});
    assert_eq!(api.post("/v1/auth/signup", None, short).await.status, 422);
    assert_eq!(
        api.signup(&shop.tenant_id, "kim@example.com").await.status,
        201
    );
}

async fn a_customer_signs_up_once_per_email_whatever_its_case(api: Api) {
    let shop = api.create_shop("owner@example.com").await;
    let first = api.signup(&shop.tenant_id, "Grace@Example.com").await;
    assert_eq!(first.status, 201, "{:?}", first.body);
    assert_eq!(first.body["user"]["role"], "customer");
    assert_eq!(first.body["user"]["tenant_id"], shop.tenant_id.as_str());
    let again = api.signup(&shop.tenant_id, "grace@example.COM").await;
    assert_eq!(again.status, 409);
    assert_eq!(again.slug(), "email-taken");
    let owner_email = api.signup(&shop.tenant_id, "owner@example.com").await;
    assert_eq!(
        owner_email.status, 409,
        "the owner's email is taken in this shop too"
    );
    let other = api.create_shop("other-owner@example.com").await;
    assert_eq!(
        api.signup(&other.tenant_id, "grace@example.com")
            .await
            .status,
        201,
        "emails are unique per shop, not globally"
    );
    let login = api
        .login(&shop.tenant_id, "GRACE@example.com", "a long passphrase")
        .await;
    assert_eq!(login.status, 200);
}

async fn signing_up_to_a_missing_or_malformed_shop_is_refused(api: Api) {
    let missing = api
        .signup("ten_01JD0000000000000000000000", "grace@example.com")
        .await;
    assert_eq!(missing.status, 404);
    let malformed = api.signup("shop-1", "grace@example.com").await;
    assert_eq!(malformed.status, 422);
    assert_eq!(malformed.body["errors"][0]["field"], "tenant_id");
}

async fn a_wrong_email_and_a_wrong_password_get_the_same_401(api: Api) {
    let shop = api.create_shop("owner@example.com").await;
    let ok = api
        .login(
            &shop.tenant_id,
            "owner@example.com",
            "correct horse battery",
        )
        .await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.body["token_type"], "Bearer");
    let wrong_password = api
        .login(&shop.tenant_id, "owner@example.com", "wrong horse battery")
        .await;
    let wrong_email = api
        .login(
            &shop.tenant_id,
            "nobody@example.com",
            "correct horse battery",
        )
        .await;
    let wrong_shop = api
        .login(
            "ten_01JD0000000000000000000000",
            "owner@example.com",
            "correct horse battery",
        )
        .await;
    for reply in [&wrong_password, &wrong_email, &wrong_shop] {
        assert_eq!(reply.status, 401);
        assert_eq!(reply.headers["www-authenticate"], "Bearer");
        assert_eq!(
            reply.body["detail"], wrong_password.body["detail"],
            "the answers cannot be told apart"
        );
    }
    let malformed = api.login(&shop.tenant_id, "not an email", "whatever").await;
    assert_eq!(malformed.status, 422);
}

async fn the_sixth_login_attempt_in_a_minute_is_429_per_account_and_per_ip(api: Api) {
    let shop = api.create_shop("owner@example.com").await;
    for attempt in 1..=5 {
        let ip = format!("192.0.2.{attempt}");
        let reply = api
            .login_from(&ip, &shop.tenant_id, "owner@example.com", "wrong password!")
            .await;
        assert_eq!(reply.status, 401, "attempt {attempt}");
    }
    let sixth = api
        .login_from(
            "192.0.2.99",
            &shop.tenant_id,
            "owner@example.com",
            "correct horse battery",
        )
        .await;
    assert_eq!(sixth.status, 429, "the account is limited whatever the IP");
    assert!(
        sixth.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    assert!(sixth.headers["ratelimit-policy"]
        .to_str()
        .unwrap()
        .contains("q=5"));
    assert!(sixth.headers.contains_key("ratelimit"));
    for n in 1..=5 {
        let reply = api
            .login_from(
                "192.0.2.200",
                &shop.tenant_id,
                &format!("user{n}@example.com"),
                "whatever pass",
            )
            .await;
        assert_eq!(reply.status, 401);
    }
    let from_same_ip = api
        .login_from(
            "192.0.2.200",
            &shop.tenant_id,
            "someone-new@example.com",
            "whatever pass",
        )
        .await;
    assert_eq!(
        from_same_ip.status, 429,
        "one IP is limited across accounts"
    );
    api.clock.advance(Duration::from_secs(61));
    let later = api
        .login_from(
            "192.0.2.99",
            &shop.tenant_id,
            "owner@example.com",
            "correct horse battery",
        )
        .await;
    assert_eq!(later.status, 200, "a new minute, a new window");
}

async fn a_refresh_spends_its_token_and_reusing_a_spent_one_revokes_the_session(api: Api) {
    let shop = api.create_shop("owner@example.com").await;
    let first = api.refresh(&shop.owner_refresh).await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    assert_ne!(first.refresh(), shop.owner_refresh);
    assert_eq!(api.get("/v1/me", Some(&first.token())).await.status, 200);
    let second = api.refresh(&first.refresh()).await;
    assert_eq!(second.status, 200);
    // The first token again: theft assumed, the whole session ends.
    let reused = api.refresh(&shop.owner_refresh).await;
    assert_eq!(reused.status, 401);
    let after = api.refresh(&second.refresh()).await;
    assert_eq!(
        after.status, 401,
        "the newest token of the revoked session no longer works"
    );
    for garbage in [
        "",
        "nonsense",
        "ten_x.usr_y.ses_z.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    ] {
        assert_eq!(api.refresh(garbage).await.status, 401, "{garbage}");
    }
    assert_eq!(
        api.post("/v1/auth/refresh", None, json!({"token": "x"}))
            .await
            .status,
        400
    );
}

async fn a_token_spent_sixty_refreshes_ago_still_revokes_the_session(api: Api) {
    let shop = api.create_shop("owner@example.com").await;
    let mut latest = shop.owner_refresh.clone();
    for n in 0..60 {
        let reply = api.refresh(&latest).await;
        assert_eq!(reply.status, 200, "refresh {n}: {:?}", reply.body);
        latest = reply.refresh();
    }
    assert_eq!(api.refresh(&shop.owner_refresh).await.status, 401);
    assert_eq!(
        api.refresh(&latest).await.status,
        401,
        "the oldest token's reuse ended the session"
    );
}

async fn two_concurrent_refreshes_of_one_token_end_the_session(api: Api) {
    let shop = api.create_shop("owner@example.com").await;
    let (a, b) = tokio::join!(
        api.refresh(&shop.owner_refresh),
        api.refresh(&shop.owner_refresh)
    );
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(
        statuses,
        [200, 401],
        "one spends the token, the other is refused"
    );
    let winner = if a.status == 200 { a } else { b };
    assert_eq!(
        api.refresh(&winner.refresh()).await.status,
        401,
        "spending one token twice is reuse: the session is over"
    );
}

#[tokio::test]
async fn a_refresh_cancelled_by_a_concurrent_transaction_is_taken_as_reuse_and_ends_the_session() {
    let mut api = embedded().await;
    let shop = api.create_shop("owner@example.com").await;
    // The next transaction is cancelled as DynamoDB cancels the loser of two concurrent
    // transactions on one item (`TransactionConflict`).
    api.ctx.table = Arc::new(helpers::FirstTransaction::new(
        api.ctx.table.clone(),
        Box::new(|| Box::pin(async { Err(StoreError::Conflict) })),
    ));
    assert_eq!(api.refresh(&shop.owner_refresh).await.status, 401);
    assert_eq!(
        api.refresh(&shop.owner_refresh).await.status,
        401,
        "the session is over, not just this attempt"
    );
    assert_eq!(
        api.get("/v1/sessions", Some(&shop.owner)).await.status,
        401,
        "its access token no longer reaches the session routes"
    );
}

async fn logout_and_revoking_a_session_stop_its_refresh_token(api: Api) {
    let shop = api.create_shop("owner@example.com").await;
    assert_eq!(
        api.call(Method::POST, "/v1/auth/logout", None, None)
            .await
            .status,
        401
    );
    let logout = api
        .call(Method::POST, "/v1/auth/logout", Some(&shop.owner), None)
        .await;
    assert_eq!(logout.status, 204);
    let refresh = api.refresh(&shop.owner_refresh).await;
    assert_eq!(refresh.status, 401);
    let phone = api
        .login(
            &shop.tenant_id,
            "owner@example.com",
            "correct horse battery",
        )
        .await;
    let laptop = api
        .login(
            &shop.tenant_id,
            "owner@example.com",
            "correct horse battery",
        )
        .await;
    let sessions = api.get("/v1/sessions", Some(&laptop.token())).await;
    let phone_session = sessions.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["current"] == false)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let revoke = api
        .delete(
            &format!("/v1/sessions/{phone_session}"),
            Some(&laptop.token()),
        )
        .await;
    assert_eq!(revoke.status, 204);
    let phone_refresh = api.refresh(&phone.refresh()).await;
    assert_eq!(phone_refresh.status, 401);
    let again = api
        .delete(
            &format!("/v1/sessions/{phone_session}"),
            Some(&laptop.token()),
        )
        .await;
    assert_eq!(again.status, 404);
}

async fn sessions_are_listed_newest_first_with_the_current_one_marked(api: Api) {
    let shop = api.create_shop("owner@example.com").await;
    api.clock.advance(Duration::from_millis(5));
    let second = api
        .login(
            &shop.tenant_id,
            "owner@example.com",
            "correct horse battery",
        )
        .await;
    let list = api.get("/v1/sessions", Some(&shop.owner)).await;
    assert_eq!(list.status, 200);
    let items = list.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(
        items[1]["current"], true,
        "the shop-creation session is the older one and the caller's"
    );
    assert_eq!(items[0]["current"], false);
    assert_eq!(items[0]["user_agent"], "storefront-tests/1");
    assert_eq!(items[0]["ip"], "198.51.100.7");
    assert!(list.body["next_cursor"].is_null());
    let from_second = api.get("/v1/sessions", Some(&second.token())).await;
    assert_eq!(from_second.body["items"][0]["current"], true);
    // Another user's session is not the caller's to end.
    let customer = api.signup(&shop.tenant_id, "grace@example.com").await;
    let owner_session = items[1]["id"].as_str().unwrap();
    let foreign = api
        .delete(
            &format!("/v1/sessions/{owner_session}"),
            Some(&customer.token()),
        )
        .await;
    assert_eq!(foreign.status, 404);
}

async fn owners_and_admins_manage_members_within_the_role_rules(api: Api) {
    let shop = api.create_shop("owner@example.com").await;
    let admin = api
        .add_member(&shop.owner, "admin@example.com", "admin")
        .await;
    assert_eq!(admin.status, 201, "{:?}", admin.body);
    assert_eq!(admin.body["role"], "admin");
    let admin_token = api
        .login(&shop.tenant_id, "admin@example.com", "member password")
        .await
        .token();
    let staff = api
        .add_member(&admin_token, "staff@example.com", "staff")
        .await;
    assert_eq!(staff.status, 201);
    let staff_id = staff.body["id"].as_str().unwrap().to_owned();
    assert_eq!(
        api.add_member(&admin_token, "boss@example.com", "owner")
            .await
            .status,
        403,
        "an admin cannot create an owner"
    );
    assert_eq!(
        api.add_member(&admin_token, "staff@example.com", "staff")
            .await
            .status,
        409
    );
    assert_eq!(
        api.add_member(&admin_token, "c@example.com", "customer")
            .await
            .status,
        422
    );
    let promote = |id: String, token: String, role: &'static str| {
        let api = &api;
        async move {
            api.patch(
                &format!("/v1/members/{id}"),
                Some(&token),
                json!({"role": role}),
            )
            .await
        }
    };
    assert_eq!(
        promote(staff_id.clone(), admin_token.clone(), "owner")
            .await
            .status,
        403,
        "an admin cannot promote to owner"
    );
    assert_eq!(
        promote(shop.owner_id.clone(), admin_token.clone(), "staff")
            .await
            .status,
        403,
        "an admin cannot demote an owner"
    );
    let promoted = promote(staff_id.clone(), admin_token.clone(), "admin").await;
    assert_eq!(promoted.status, 200);
    assert_eq!(promoted.body["role"], "admin");
    assert_eq!(
        promote(staff_id.clone(), shop.owner.clone(), "owner")
            .await
            .status,
        200,
        "an owner can make an owner"
    );
    assert_eq!(
        promote(shop.owner_id.clone(), shop.owner.clone(), "staff")
            .await
            .status,
        409,
        "an owner cannot demote themselves"
    );
    let staff_token = api
        .login(&shop.tenant_id, "staff@example.com", "member password")
        .await
        .token();
    assert_eq!(
        api.get("/v1/members", Some(&staff_token)).await.status,
        200,
        "the promoted member now lists members"
    );
    let customer = api.signup(&shop.tenant_id, "grace@example.com").await;
    let customer_id = customer.body["user"]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        api.get("/v1/members", Some(&customer.token())).await.status,
        403
    );
    assert_eq!(
        promote(customer_id, shop.owner.clone(), "staff")
            .await
            .status,
        404,
        "a customer is not a member"
    );
    assert_eq!(
        promote(
            "usr_01JD0000000000000000000000".into(),
            shop.owner.clone(),
            "staff"
        )
        .await
        .status,
        404
    );
    assert_eq!(
        promote(staff_id, shop.owner.clone(), "emperor")
            .await
            .status,
        422
    );
}

async fn members_are_listed_in_pages_and_a_cursor_cannot_reach_another_shop(api: Api) {
    let shop = api.create_shop("owner@example.com").await;
    for n in 0..4 {
        api.clock.advance(Duration::from_millis(5));
        assert_eq!(
            api.add_member(&shop.owner, &format!("staff{n}@example.com"), "staff")
                .await
                .status,
            201
        );
    }
    let mut emails = Vec::new();
    let mut path = "/v1/members?limit=2".to_owned();
    loop {
        let page = api.get(&path, Some(&shop.owner)).await;
        assert_eq!(page.status, 200, "{:?}", page.body);
        let items = page.body["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        emails.extend(
            items
                .iter()
                .map(|m| m["email"].as_str().unwrap().to_owned()),
        );
        match page.body["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/members?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(
        emails,
        [
            "owner@example.com",
            "staff0@example.com",
            "staff1@example.com",
            "staff2@example.com",
            "staff3@example.com"
        ]
    );
    let first = api.get("/v1/members?limit=1", Some(&shop.owner)).await;
    let cursor = first.body["next_cursor"].as_str().unwrap().to_owned();
    let other = api.create_shop("other@example.com").await;
    let stolen = api
        .get(&format!("/v1/members?cursor={cursor}"), Some(&other.owner))
        .await;
    assert_eq!(stolen.status, 400, "a cursor is bound to its shop");
    // Edited inside its own partition to name another shop's item: the list still reads
    // only this shop's index partition, and the store does not fail on the odd start key.
    let mut position: serde_json::Value = serde_json::from_slice(
        &storefront::crypto::b64url_decode(&cursor).expect("a cursor is base64url"),
    )
    .expect("and JSON");
    position["pk"] = json!(format!(
        "TENANT#{}#USER#usr_01JD0000000000000000000000",
        other.tenant_id
    ));
    position["gsi1sk"] = json!("0000");
    let edited = storefront::crypto::b64url(position.to_string().as_bytes());
    let page = api
        .get(&format!("/v1/members?cursor={edited}"), Some(&shop.owner))
        .await;
    assert_eq!(page.status, 200, "{:?}", page.body);
    assert!(page.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["tenant_id"] == json!(shop.tenant_id)));
    assert_eq!(
        api.get("/v1/members?limit=0", Some(&shop.owner))
            .await
            .status,
        400
    );
    assert_eq!(
        api.get("/v1/members?limit=101", Some(&shop.owner))
            .await
            .status,
        400
    );
}

async fn an_api_key_is_shown_once_acts_with_its_role_and_stops_when_revoked(api: Api) {
    let shop = api.create_shop("owner@example.com").await;
    let created = api
        .post(
            "/v1/api-keys",
            Some(&shop.owner),
            json!({"name": "Warehouse sync"}),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    assert_eq!(created.body["role"], "admin", "admin unless narrower");
    let key = created.body["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("sk_"));
    assert!(key.contains(created.body["prefix"].as_str().unwrap()));
    let me = api.get("/v1/me", Some(&key)).await;
    assert_eq!(me.status, 200);
    assert_eq!(me.body["tenant_id"], shop.tenant_id.as_str());
    assert_eq!(me.body["role"], "admin");
    assert!(me.body["user_id"].is_null());
    let members = api.get("/v1/members", Some(&key)).await;
    assert_eq!(members.status, 200, "an admin key lists members");
    let narrow = api
        .post(
            "/v1/api-keys",
            Some(&shop.owner),
            json!({"name": "Reader", "role": "staff"}),
        )
        .await;
    assert_eq!(narrow.status, 201);
    let narrow_key = narrow.body["key"].as_str().unwrap().to_owned();
    assert_eq!(api.get("/v1/members", Some(&narrow_key)).await.status, 403);
    assert_eq!(
        api.post(
            "/v1/api-keys",
            Some(&shop.owner),
            json!({"name": "Boss", "role": "owner"})
        )
        .await
        .status,
        422
    );
    let list = api.get("/v1/api-keys", Some(&shop.owner)).await;
    assert_eq!(list.status, 200);
    let items = list.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["name"], "Reader", "newest first");
    assert!(
        items
            .iter()
            .all(|k| k.get("key").is_none() && k.get("hash").is_none()),
        "the key is never shown again"
    );
    let used = items
        .iter()
        .find(|k| k["name"] == "Warehouse sync")
        .unwrap();
    assert!(used["last_used_at"].is_string(), "last use is recorded");
    let id = created.body["id"].as_str().unwrap();
    assert_eq!(
        api.delete(&format!("/v1/api-keys/{id}"), Some(&shop.owner))
            .await
            .status,
        204
    );
    assert_eq!(
        api.get("/v1/me", Some(&key)).await.status,
        401,
        "a revoked key stops at once"
    );
    assert_eq!(
        api.delete(&format!("/v1/api-keys/{id}"), Some(&shop.owner))
            .await
            .status,
        404
    );
    let forged = format!("{}x", &key[..key.len() - 1]);
    assert_eq!(api.get("/v1/me", Some(&forged)).await.status, 401);
}

async fn a_token_of_one_shop_reaches_nothing_of_another(api: Api) {
    let a = api.create_shop("a@example.com").await;
    let b = api.create_shop("b@example.com").await;
    let b_staff = api
        .add_member(&b.owner, "staff@b.example.com", "staff")
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let b_key = api
        .post("/v1/api-keys", Some(&b.owner), json!({"name": "B"}))
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let patch = api
        .patch(
            &format!("/v1/members/{b_staff}"),
            Some(&a.owner),
            json!({"role": "admin"}),
        )
        .await;
    assert_eq!(
        patch.status, 404,
        "another shop's member does not exist for A"
    );
    let revoke = api
        .delete(&format!("/v1/api-keys/{b_key}"), Some(&a.owner))
        .await;
    assert_eq!(revoke.status, 404);
    let a_members = api.get("/v1/members", Some(&a.owner)).await;
    let emails: Vec<&str> = a_members.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["email"].as_str().unwrap())
        .collect();
    assert_eq!(emails, ["a@example.com"]);
    let a_keys = api.get("/v1/api-keys", Some(&a.owner)).await;
    assert_eq!(a_keys.body["items"].as_array().unwrap().len(), 0);
    let login_elsewhere = api
        .login(&b.tenant_id, "a@example.com", "correct horse battery")
        .await;
    assert_eq!(
        login_elsewhere.status, 401,
        "an account belongs to one shop"
    );
}

async fn expired_tampered_unsigned_and_missing_tokens_are_401(api: Api) {
    let shop = api.create_shop("owner@example.com").await;
    let me = |token: Option<String>| {
        let api = &api;
        async move { api.get("/v1/me", token.as_deref()).await }
    };
    let missing = me(None).await;
    assert_eq!(missing.status, 401);
    assert_eq!(missing.headers["www-authenticate"], "Bearer");
    assert_eq!(me(Some("garbage".into())).await.status, 401);
    let parts: Vec<&str> = shop.owner.split('.').collect();
    let mut claims: Value =
        serde_json::from_slice(&storefront::crypto::b64url_decode(parts[1]).unwrap()).unwrap();
    claims["role"] = json!("owner");
    claims["tid"] = json!("ten_01JD0000000000000000000000");
    let forged_payload = storefront::crypto::b64url(claims.to_string().as_bytes());
    assert_eq!(
        me(Some(format!(
            "{}.{}.{}",
            parts[0], forged_payload, parts[2]
        )))
        .await
        .status,
        401,
        "tampered"
    );
    let none_header = storefront::crypto::b64url(br#"{"alg":"none","typ":"JWT"}"#);
    assert_eq!(
        me(Some(format!("{none_header}.{}.", parts[1])))
            .await
            .status,
        401,
        "alg=none"
    );
    let hs_header = storefront::crypto::b64url(br#"{"alg":"HS256","typ":"JWT"}"#);
    assert_eq!(
        me(Some(format!("{hs_header}.{}.{}", parts[1], parts[2])))
            .await
            .status,
        401,
        "HS256"
    );
    assert_eq!(me(Some(shop.owner.clone())).await.status, 200);
    api.clock.advance(Duration::from_secs(15 * 60 + 1));
    assert_eq!(
        me(Some(shop.owner.clone())).await.status,
        401,
        "expired after 15 minutes"
    );
    let basic = api
        .call_from("203.0.113.1", Method::GET, "/v1/me", None, None)
        .await;
    assert_eq!(basic.status, 401);
}

async fn two_simultaneous_signups_with_one_email_make_one_account(api: Api) {
    let shop = api.create_shop("owner@example.com").await;
    let (a, b) = tokio::join!(
        api.signup(&shop.tenant_id, "twin@example.com"),
        api.signup(&shop.tenant_id, "twin@example.com")
    );
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(statuses, [201, 409]);
    let members_and_customers_login = api
        .login(&shop.tenant_id, "twin@example.com", "a long passphrase")
        .await;
    assert_eq!(members_and_customers_login.status, 200);
}

/// Where .ci/setup installed PyJWT (the independent verifier).
fn python() -> std::path::PathBuf {
    let moto = std::env::var_os("STOREFRONT_MOTO_SERVER").map(std::path::PathBuf::from);
    match moto.as_ref().and_then(|m| m.parent()) {
        Some(bin) => bin.join("python"),
        None => std::path::PathBuf::from(std::env::var("HOME").unwrap_or_default())
            .join(".cache/storefront/venv/bin/python"),
    }
}

#[tokio::test]
async fn the_published_jwks_verifies_an_access_token_with_an_independent_jwt_library() {
    let local = LocalServer::start().await;
    let create = local
        .client
        .post(local.url("/v1/tenants"))
        .json(&json!({"name": "Shop", "owner": {"email": "o@example.com", "password": "correct horse battery", "name": "O"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(create.status(), 201);
    let created: Value = create.json().await.unwrap();
    let token = created["tokens"]["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let jwks = local
        .client
        .get(local.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(jwks.status(), 200);
    assert!(jwks.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("max-age"));
    let jwks: Value = jwks.json().await.unwrap();
    let script = r#"
import json, sys, jwt
token, jwks = sys.argv[1], json.loads(sys.argv[2])
kid = jwt.get_unverified_header(token)["kid"]
key = next(k for k in jwks["keys"] if k["kid"] == kid)
claims = jwt.decode(token, jwt.PyJWK(key).key, algorithms=["EdDSA"], audience="storefront-api", issuer="storefront")
print(json.dumps(claims))
"#;
    let output = std::process::Command::new(python())
        .args(["-c", script, &token, &jwks.to_string()])
        .output()
        .expect("python with PyJWT (run .ci/test)");
    assert!(
        output.status.success(),
        "PyJWT refused the token: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let claims: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(claims["sub"], created["user"]["id"]);
    assert_eq!(claims["tid"], created["tenant"]["id"]);
    assert_eq!(claims["role"], "owner");
    assert!(claims["sid"].as_str().unwrap().starts_with("ses_"));
    let tampered = format!("{}x", &token[..token.len() - 2]);
    let refused = std::process::Command::new(python())
        .args(["-c", script, &tampered, &jwks.to_string()])
        .output()
        .unwrap();
    assert!(
        !refused.status.success(),
        "PyJWT must refuse a tampered token"
    );
    local.server.stop().await;
}

#[tokio::test]
async fn the_local_server_serves_the_identity_flow_over_http() {
    let local = LocalServer::start().await;
    let c = &local.client;
    let create: Value = c
        .post(local.url("/v1/tenants"))
        .json(&json!({"name": "Shop", "owner": {"email": "o@example.com", "password": "correct horse battery", "name": "O"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let tenant_id = create["tenant"]["id"].as_str().unwrap();
    let signup = c
        .post(local.url("/v1/auth/signup"))
        .json(&json!({"tenant_id": tenant_id, "email": "c@example.com", "password": "customer password", "name": "C"}))
        .send()
        .await
        .unwrap();
    assert_eq!(signup.status(), 201);
    let login = c
        .post(local.url("/v1/auth/login"))
        .json(&json!({"tenant_id": tenant_id, "email": "c@example.com", "password": "customer password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let tokens: Value = login.json().await.unwrap();
    let me = c
        .get(local.url("/v1/me"))
        .bearer_auth(tokens["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    let sessions: Value = c
        .get(local.url("/v1/sessions"))
        .bearer_auth(tokens["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        sessions["items"][0]["ip"], "127.0.0.1",
        "the local server records the peer address"
    );
    local.server.stop().await;
}

#[tokio::test]
async fn rotating_the_keys_in_ssm_keeps_two_live_and_publishes_their_jwks() {
    use storefront::credentials::keys::{rotate_aws, StoredKeys};
    use storefront::credentials::tokens::{Claims, AUDIENCE, ISSUER};
    let sdk = helpers::moto_sdk().await;
    let ssm = aws_sdk_ssm::Client::new(&sdk);
    let kms = aws_sdk_kms::Client::new(&sdk);
    let prefix = helpers::unique("/storefront");
    let (signing, jwks) = (format!("{prefix}/signing-keys"), format!("{prefix}/jwks"));
    let alias = format!("alias{prefix}");
    // The customer-managed key is made on first use, and found again after.
    let key = storefront_local::ensure_kms_key(&kms, &alias)
        .await
        .expect("a key is made");
    assert_eq!(
        storefront_local::ensure_kms_key(&kms, &alias)
            .await
            .unwrap(),
        key,
        "the same key, not a second one"
    );
    let rotate_aws = |ssm, signing, jwks| rotate_aws(ssm, signing, jwks, &alias);
    let read_ring = || async {
        let value = ssm
            .get_parameter()
            .name(&signing)
            .with_decryption(true)
            .send()
            .await
            .unwrap();
        let stored: StoredKeys =
            serde_json::from_str(value.parameter().unwrap().value().unwrap()).unwrap();
        KeyRing::from_private_keys(&stored.decode().unwrap()).unwrap()
    };
    let read_jwks = || async {
        let value = ssm.get_parameter().name(&jwks).send().await.unwrap();
        KeyRing::from_jwks(value.parameter().unwrap().value().unwrap()).unwrap()
    };
    let now = chrono::Utc::now().timestamp();
    let claims = Claims {
        sub: "usr_1".into(),
        tid: "ten_1".into(),
        role: "owner".into(),
        sid: "ses_1".into(),
        iat: now,
        exp: now + 900,
        iss: ISSUER.into(),
        aud: AUDIENCE.into(),
    };
    let first = rotate_aws(&ssm, &signing, &jwks)
        .await
        .expect("first rotation creates the parameters");
    let token = read_ring().await.issue(&claims).unwrap();
    assert!(
        read_jwks().await.verify(&token, now + 1).is_ok(),
        "the published JWKS verifies the issuer's tokens"
    );
    tokio::time::sleep(Duration::from_millis(2)).await;
    let second = rotate_aws(&ssm, &signing, &jwks).await.unwrap();
    assert_ne!(first, second);
    let public = read_jwks().await;
    assert!(
        public.verify(&token, now + 1).is_ok(),
        "the previous key still verifies after one rotation"
    );
    assert_eq!(public.jwks()["keys"].as_array().unwrap().len(), 2);
    let newer = read_ring().await.issue(&claims).unwrap();
    assert_eq!(
        jsonwebtoken::decode_header(&newer).unwrap().kid.as_deref(),
        Some(second.as_str()),
        "the newest key signs"
    );
    tokio::time::sleep(Duration::from_millis(2)).await;
    rotate_aws(&ssm, &signing, &jwks).await.unwrap();
    assert!(
        read_jwks().await.verify(&token, now + 1).is_err(),
        "two rotations retire the first key"
    );
    let stored = ssm
        .describe_parameters()
        .parameter_filters(
            aws_sdk_ssm::types::ParameterStringFilter::builder()
                .key("Name")
                .values(&signing)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let described = &stored.parameters()[0];
    assert_eq!(
        described.r#type(),
        Some(&aws_sdk_ssm::types::ParameterType::SecureString)
    );
    assert_eq!(
        described.key_id(),
        Some(alias.as_str()),
        "under the customer-managed key"
    );
}
