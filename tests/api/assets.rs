//! The asset endpoints of API.md "CMDB": register, read, list with filters,
//! update with `If-Match`, lifecycle, delete, history and `as_of`.
//! Role floors are walked for every route by `rbac.rs`; here each route's
//! success and each of its errors.

use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, Caller, TestApp, TestResponse};

/// Registers an asset as `caller`, asserting the 201.
pub async fn create_asset(app: &TestApp, caller: &Caller, body: Value) -> Value {
    let created = app
        .call(caller, "POST", "/api/v1/assets", Some(&body), &[])
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    created.json()["data"].clone()
}

fn id_of(value: &Value) -> String {
    value["id"].as_str().expect("id").to_string()
}

async fn get_asset(app: &TestApp, caller: &Caller, id: &str) -> TestResponse {
    app.call(caller, "GET", &format!("/api/v1/assets/{id}"), None, &[])
        .await
}

/// The names of a list's items, in order.
pub fn names(list: &TestResponse) -> Vec<String> {
    list.json()["data"]["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| item["name"].as_str().expect("name").to_string())
        .collect()
}

#[tokio::test]
async fn an_operator_registers_an_asset_that_everyone_reads() {
    let app = spawn_app().await;
    let operator = app.caller("operator").await;
    let viewer = app.caller("viewer").await;
    let auditor = app.caller("auditor").await;
    let tag = app
        .call(
            &operator,
            "POST",
            "/api/v1/tags",
            Some(&json!({ "name": "edge" })),
            &[],
        )
        .await
        .json()["data"]["id"]
        .as_str()
        .expect("tag id")
        .to_string();
    let created = app
        .call(
            &operator,
            "POST",
            "/api/v1/assets",
            Some(&json!({
                "name": "  web-01 ",
                "asset_type": "host",
                "location": "rack 4",
                "owner_id": operator.user_id,
                "attributes": { "disk_encrypted": true, "open_ports": [22, 443] },
                "custom_fields": { "cost_center": "42" },
                "tag_ids": [tag],
            })),
            &[],
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert!(created.header("x-event-position").is_some());
    let asset = created.json()["data"].clone();
    let short_code = asset["short_code"].as_str().expect("short code");
    assert!(
        short_code.starts_with("HST-") && short_code.len() == 9,
        "{short_code}"
    );
    assert!(short_code[4..]
        .chars()
        .all(|c| "0123456789ABCDEFGHJKMNPQRSTVWXYZ".contains(c)));
    assert_eq!(asset["name"], "web-01");
    assert_eq!(asset["environment"], "prod");
    assert_eq!(asset["lifecycle_state"], "active");
    assert_eq!(asset["description"], Value::Null);
    assert_eq!(asset["owner_id"], json!(operator.user_id));
    assert_eq!(asset["attributes"]["open_ports"], json!([22, 443]));
    assert_eq!(asset["custom_fields"]["cost_center"], "42");
    assert_eq!(asset["tags"][0]["name"], "edge");
    assert_eq!(asset["tags"][0]["color"], "#64748b");
    // Registration and tagging are two events of the stream.
    assert_eq!(asset["version"], 2);
    assert_eq!(created.header("etag"), Some("\"2\""));
    for reader in [&viewer, &auditor, &operator] {
        let read = get_asset(&app, reader, &id_of(&asset)).await;
        assert_eq!(read.status, StatusCode::OK, "{}", read.text);
        assert_eq!(read.header("etag"), Some("\"2\""));
        assert_eq!(read.json()["data"], asset);
    }
    app.stop().await;
}

#[tokio::test]
async fn lists_filter_by_every_field_and_q_newest_first() {
    let app = spawn_app().await;
    let operator = app.caller("operator").await;
    let viewer = app.caller("viewer").await;
    let tag = app
        .call(
            &operator,
            "POST",
            "/api/v1/tags",
            Some(&json!({ "name": "Critical", "color": "#FF0000" })),
            &[],
        )
        .await
        .json()["data"]["id"]
        .clone();
    let web = create_asset(
        &app,
        &operator,
        json!({ "name": "Web-Frontend", "asset_type": "host", "tag_ids": [tag] }),
    )
    .await;
    create_asset(
        &app,
        &operator,
        json!({ "name": "core-switch", "asset_type": "network_device", "environment": "staging" }),
    )
    .await;
    create_asset(
        &app,
        &operator,
        json!({ "name": "billing_api", "asset_type": "service", "lifecycle_state": "maintenance",
                "owner_id": viewer.user_id }),
    )
    .await;
    let list = |query: &str| {
        let app = &app;
        let viewer = &viewer;
        let path = format!("/api/v1/assets{query}");
        async move {
            let list = app.call(viewer, "GET", &path, None, &[]).await;
            assert_eq!(list.status, StatusCode::OK, "{path}: {}", list.text);
            list
        }
    };
    let all = list("").await;
    assert_eq!(names(&all), ["billing_api", "core-switch", "Web-Frontend"]);
    assert_eq!(all.json()["data"]["total"], 3);
    assert_eq!(all.json()["data"]["limit"], 50);
    let item = &all.json()["data"]["items"][2];
    let mut keys: Vec<&str> = item
        .as_object()
        .expect("item")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "asset_type",
            "environment",
            "id",
            "lifecycle_state",
            "name",
            "owner_id",
            "short_code"
        ]
    );
    assert_eq!(
        names(&list("?asset_type=network_device").await),
        ["core-switch"]
    );
    assert_eq!(names(&list("?environment=staging").await), ["core-switch"]);
    assert_eq!(
        names(&list("?lifecycle_state=maintenance").await),
        ["billing_api"]
    );
    assert_eq!(
        names(&list(&format!("?owner_id={}", viewer.user_id)).await),
        ["billing_api"]
    );
    assert_eq!(
        names(&list(&format!("?tag_id={}", tag.as_str().expect("tag"))).await),
        ["Web-Frontend"]
    );
    assert_eq!(names(&list("?q=FRONT").await), ["Web-Frontend"]);
    // Past the last match the page is empty and the total still counts.
    let beyond = list("?q=FRONT&offset=5").await;
    assert_eq!(names(&beyond), Vec::<String>::new());
    assert_eq!(beyond.json()["data"]["total"], 1);
    // `o` is in no short code (Crockford base32 has no O, and no prefix
    // does), so only the two names match, whatever codes were drawn.
    let two = list("?q=o&limit=1").await;
    assert_eq!(names(&two), ["core-switch"]);
    assert_eq!(two.json()["data"]["total"], 2);
    // `_` is a literal underscore, not a LIKE wildcard.
    assert_eq!(names(&list("?q=g_a").await), ["billing_api"]);
    assert_eq!(names(&list("?q=%25").await), Vec::<String>::new());
    // As wildcards, `_f` and `b_f` would match web-frontend's `-f` and `b-f`.
    assert_eq!(names(&list("?q=b_f").await), Vec::<String>::new());
    // Two characters have no trigram: found through the bigram index, and
    // still case-insensitive (`i` is in no short code) and literal.
    assert_eq!(names(&list("?q=IT").await), ["core-switch"]);
    assert_eq!(names(&list("?q=_f").await), Vec::<String>::new());
    let code = web["short_code"].as_str().expect("code").to_lowercase();
    assert_eq!(names(&list(&format!("?q={code}")).await), ["Web-Frontend"]);
    assert_eq!(
        names(&list("?asset_type=host&environment=staging").await),
        Vec::<String>::new()
    );
    let page = list("?limit=1&offset=1").await;
    assert_eq!(names(&page), ["core-switch"]);
    assert_eq!(page.json()["data"]["total"], 3);

    for bad in [
        "?asset_type=server",
        "?environment=production",
        "?lifecycle_state=gone",
        "?owner_id=nope",
        "?limit=0",
        "?limit=201",
        "?offset=-1",
        "?colour=red",
        "?q=%00",
        "?q=a%1Fb",
    ] {
        app.call(&viewer, "GET", &format!("/api/v1/assets{bad}"), None, &[])
            .await
            .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    }
    app.stop().await;
}

#[tokio::test]
async fn bad_asset_input_is_a_422_naming_each_field_and_writes_nothing() {
    let app = spawn_app().await;
    let operator = app.caller("operator").await;
    let before = app.event_count().await;
    let many_keys: serde_json::Map<String, Value> =
        (0..101).map(|n| (format!("k{n}"), json!(n))).collect();
    let big = json!({ "blob": "x".repeat(64 * 1024) });
    let cases = [
        (json!({ "name": "a", "asset_type": "server" }), "asset_type"),
        (
            json!({ "name": "a", "asset_type": "host", "environment": "production" }),
            "environment",
        ),
        (
            json!({ "name": "a", "asset_type": "host", "lifecycle_state": "gone" }),
            "lifecycle_state",
        ),
        (json!({ "name": "   ", "asset_type": "host" }), "name"),
        (
            json!({ "name": "n".repeat(256), "asset_type": "host" }),
            "name",
        ),
        (
            json!({ "name": "a", "asset_type": "host", "attributes": many_keys }),
            "attributes",
        ),
        (
            json!({ "name": "a", "asset_type": "host", "custom_fields": big }),
            "custom_fields",
        ),
        (
            json!({ "name": "a", "asset_type": "host", "owner_id": uuid::Uuid::new_v4() }),
            "owner_id",
        ),
        (
            json!({ "name": "a", "asset_type": "host", "tag_ids": [uuid::Uuid::new_v4()] }),
            "tag_ids",
        ),
        (
            json!({ "name": "a", "asset_type": "host", "location": "l".repeat(256) }),
            "location",
        ),
        // The log (jsonb) and the read models (text) cannot hold NUL.
        (json!({ "name": "a\u{0}b", "asset_type": "host" }), "name"),
        (
            json!({ "name": "a", "asset_type": "host", "attributes": { "k": ["x\u{0}"] } }),
            "attributes.k[0]",
        ),
    ];
    for (body, field) in cases {
        let refused = app
            .call(&operator, "POST", "/api/v1/assets", Some(&body), &[])
            .await;
        let error = refused.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
        assert_eq!(
            error["error"]["details"]["fields"][0]["field"], field,
            "{}",
            refused.text
        );
    }
    // Several problems at once are all named.
    let refused = app
        .call(
            &operator,
            "POST",
            "/api/v1/assets",
            Some(&json!({ "name": "", "asset_type": "server", "environment": "x" })),
            &[],
        )
        .await;
    let error = refused.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    assert_eq!(
        error["error"]["details"]["fields"]
            .as_array()
            .expect("fields")
            .len(),
        3
    );
    // Missing fields, unknown fields and a malformed id are shape errors.
    for body in [
        json!({ "asset_type": "host" }),
        json!({ "name": "a", "asset_type": "host", "colour": "red" }),
        json!({ "name": "a", "asset_type": "host", "owner_id": "not-a-uuid" }),
    ] {
        app.call(&operator, "POST", "/api/v1/assets", Some(&body), &[])
            .await
            .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    }
    assert_eq!(
        app.event_count().await,
        before,
        "a refused request appends nothing"
    );

    get_asset(&app, &operator, &uuid::Uuid::new_v4().to_string())
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    get_asset(&app, &operator, "not-a-uuid")
        .await
        .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    app.stop().await;
}

#[tokio::test]
async fn two_patches_with_one_if_match_apply_once_and_the_other_is_412() {
    let app = spawn_app().await;
    let operator = app.caller("operator").await;
    let asset = create_asset(
        &app,
        &operator,
        json!({ "name": "db-1", "asset_type": "host" }),
    )
    .await;
    let path = format!("/api/v1/assets/{}", id_of(&asset));
    let if_match = [("if-match", "\"1\"")];
    let first = json!({ "name": "db-primary" });
    let second = json!({ "name": "db-replica" });
    let (a, b) = tokio::join!(
        app.call(&operator, "PATCH", &path, Some(&first), &if_match),
        app.call(&operator, "PATCH", &path, Some(&second), &if_match),
    );
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(
        statuses,
        [StatusCode::OK, StatusCode::PRECONDITION_FAILED],
        "{} / {}",
        a.text,
        b.text
    );
    let (winner, loser) = if a.status == StatusCode::OK {
        (a, b)
    } else {
        (b, a)
    };
    loser.assert_error(StatusCode::PRECONDITION_FAILED, "precondition_failed");
    let winning_name = winner.json()["data"]["name"].clone();
    let read = app.call(&operator, "GET", &path, None, &[]).await;
    assert_eq!(read.json()["data"]["name"], winning_name);
    assert_eq!(read.json()["data"]["version"], 2);
    assert_eq!(read.header("etag"), Some("\"2\""));
    let history = app
        .call(&operator, "GET", &format!("{path}/history"), None, &[])
        .await;
    assert_eq!(
        history.json()["data"]["total"],
        2,
        "only one update was recorded"
    );

    // Sequential: a stale tag, a malformed one and a weak one are 412; `*`
    // and the current tag pass.
    for stale in ["\"1\"", "1", "W/\"2\"", "\"two\""] {
        app.call(
            &operator,
            "PATCH",
            &path,
            Some(&first),
            &[("if-match", stale)],
        )
        .await
        .assert_error(StatusCode::PRECONDITION_FAILED, "precondition_failed");
    }
    let updated = app
        .call(
            &operator,
            "PATCH",
            &path,
            Some(&json!({ "location": "dc-2", "attributes": { "firewall_enabled": true } })),
            &[("if-match", "\"2\"")],
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.text);
    assert_eq!(updated.header("etag"), Some("\"3\""));
    assert!(updated.header("x-event-position").is_some());
    let cleared = app
        .call(
            &operator,
            "PATCH",
            &path,
            Some(&json!({ "location": null, "lifecycle_state": "maintenance" })),
            &[("if-match", "*")],
        )
        .await;
    assert_eq!(cleared.status, StatusCode::OK, "{}", cleared.text);
    let data = cleared.json()["data"].clone();
    assert_eq!(data["location"], Value::Null);
    assert_eq!(data["lifecycle_state"], "maintenance");
    assert_eq!(data["attributes"], json!({ "firewall_enabled": true }));
    assert_eq!(
        data["version"], 5,
        "field change and lifecycle are two events"
    );
    // A patch that changes nothing appends nothing.
    let unchanged = app
        .call(
            &operator,
            "PATCH",
            &path,
            Some(&json!({ "location": null })),
            &[],
        )
        .await;
    assert_eq!(unchanged.status, StatusCode::OK);
    assert_eq!(unchanged.json()["data"]["version"], 5);
    assert!(unchanged.header("x-event-position").is_none());

    for (body, field) in [
        (json!({ "asset_type": "service" }), "asset_type"),
        (json!({ "name": "" }), "name"),
        (json!({ "environment": "qa" }), "environment"),
        (json!({ "owner_id": uuid::Uuid::new_v4() }), "owner_id"),
    ] {
        let refused = app.call(&operator, "PATCH", &path, Some(&body), &[]).await;
        let error = refused.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
        assert_eq!(error["error"]["details"]["fields"][0]["field"], field);
    }
    app.call(
        &operator,
        "PATCH",
        &format!("/api/v1/assets/{}", uuid::Uuid::new_v4()),
        Some(&first),
        &[],
    )
    .await
    .assert_error(StatusCode::NOT_FOUND, "not_found");
    app.stop().await;
}

#[tokio::test]
async fn the_lifecycle_endpoint_moves_an_asset_between_states() {
    let app = spawn_app().await;
    let operator = app.caller("operator").await;
    let asset = create_asset(
        &app,
        &operator,
        json!({ "name": "fw", "asset_type": "network_device" }),
    )
    .await;
    let path = format!("/api/v1/assets/{}/state", id_of(&asset));
    let moved = app
        .call(
            &operator,
            "POST",
            &path,
            Some(&json!({ "lifecycle_state": "retired" })),
            &[],
        )
        .await;
    assert_eq!(moved.status, StatusCode::OK, "{}", moved.text);
    assert_eq!(moved.json()["data"]["lifecycle_state"], "retired");
    assert!(moved.header("x-event-position").is_some());
    app.call(
        &operator,
        "POST",
        &path,
        Some(&json!({ "lifecycle_state": "lost" })),
        &[],
    )
    .await
    .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    app.call(
        &operator,
        "POST",
        &format!("/api/v1/assets/{}/state", uuid::Uuid::new_v4()),
        Some(&json!({ "lifecycle_state": "active" })),
        &[],
    )
    .await
    .assert_error(StatusCode::NOT_FOUND, "not_found");
    let history = app
        .call(
            &operator,
            "GET",
            &format!("/api/v1/assets/{}/history", id_of(&asset)),
            None,
            &[],
        )
        .await;
    let latest = &history.json()["data"]["items"][0];
    assert_eq!(latest["action"], "asset.lifecycle_changed");
    app.stop().await;
}

#[tokio::test]
async fn history_and_as_of_fold_the_log_before_during_and_after_deletion() {
    let app = spawn_app().await;
    let operator = app.caller("operator").await;
    let admin = app.caller("admin").await;
    let asset = create_asset(
        &app,
        &operator,
        json!({ "name": "v1", "asset_type": "cloud_resource", "environment": "dev" }),
    )
    .await;
    let id = id_of(&asset);
    let path = format!("/api/v1/assets/{id}");
    for name in ["v2", "v3"] {
        let updated = app
            .call(
                &operator,
                "PATCH",
                &path,
                Some(&json!({ "name": name })),
                &[],
            )
            .await;
        assert_eq!(updated.status, StatusCode::OK, "{}", updated.text);
    }
    let deleted = app.call(&admin, "DELETE", &path, None, &[]).await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.text);
    assert_eq!(
        deleted.json()["data"],
        json!({ "status": "deleted", "asset_id": id })
    );
    assert!(deleted.header("x-event-position").is_some());

    let history = app
        .call(&operator, "GET", &format!("{path}/history"), None, &[])
        .await;
    assert_eq!(history.status, StatusCode::OK, "{}", history.text);
    let items = history.json()["data"]["items"].clone();
    let actions: Vec<&str> = items
        .as_array()
        .expect("items")
        .iter()
        .map(|item| item["action"].as_str().expect("action"))
        .collect();
    assert_eq!(
        actions,
        [
            "asset.deleted",
            "asset.updated",
            "asset.updated",
            "asset.created"
        ]
    );
    assert_eq!(items[1]["before"], json!({ "name": "v2" }));
    assert_eq!(items[1]["after"], json!({ "name": "v3" }));
    assert_eq!(items[1]["actor_id"], json!(operator.user_id));
    assert_eq!(items[0]["actor_id"], json!(admin.user_id));
    assert_eq!(items[1]["version"], 3);

    let at = |index: usize| {
        items[index]["recorded_at"]
            .as_str()
            .expect("time")
            .to_string()
    };
    let as_of = |time: String| {
        let app = &app;
        let operator = &operator;
        let path = format!("{path}?as_of={}", time.replace('+', "%2B"));
        async move { app.call(operator, "GET", &path, None, &[]).await }
    };
    let created_at =
        time::OffsetDateTime::parse(&at(3), &time::format_description::well_known::Rfc3339)
            .expect("timestamp");
    let before = (created_at - time::Duration::seconds(1))
        .format(&time::format_description::well_known::Rfc3339)
        .expect("format");
    as_of(before)
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    let middle = as_of(at(2)).await;
    assert_eq!(middle.status, StatusCode::OK, "{}", middle.text);
    assert_eq!(middle.json()["data"]["name"], "v2");
    assert_eq!(middle.json()["data"]["version"], 2);
    assert_eq!(middle.header("etag"), Some("\"2\""));
    let after = as_of(
        time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .expect("format"),
    )
    .await;
    assert_eq!(after.status, StatusCode::OK, "{}", after.text);
    assert_eq!(after.json()["data"]["name"], "v3");
    assert_eq!(after.json()["data"]["environment"], "dev");
    assert_eq!(after.json()["data"]["short_code"], asset["short_code"]);

    // Gone from the present: the read, the list, a second delete.
    get_asset(&app, &operator, &id)
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    let list = app
        .call(&operator, "GET", "/api/v1/assets", None, &[])
        .await;
    assert_eq!(list.json()["data"]["total"], 0);
    app.call(&admin, "DELETE", &path, None, &[])
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    app.call(
        &operator,
        "GET",
        &format!("{path}?as_of=yesterday"),
        None,
        &[],
    )
    .await
    .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    app.call(
        &operator,
        "GET",
        &format!("/api/v1/assets/{}/history", uuid::Uuid::new_v4()),
        None,
        &[],
    )
    .await
    .assert_error(StatusCode::NOT_FOUND, "not_found");
    app.stop().await;
}

/// Two instances on one database and key file, as replicas run; asset views
/// cached for 600 s on both (only an invalidation can refresh them in time).
async fn replicas(
    adjust_second: impl FnOnce(&mut sentryops::config::Config),
) -> (TestApp, TestApp) {
    let keys =
        std::env::temp_dir().join(format!("sentryops-replicas-{}.json", uuid::Uuid::new_v4()));
    let long_ttl = std::time::Duration::from_secs(600);
    let first = crate::helpers::spawn_app_with(|config| {
        config.token_keys_file = Some(keys.clone());
        config.asset_cache_ttl = long_ttl;
    })
    .await;
    let prefix = first.app.state().config.redis_key_prefix.clone();
    let second = crate::helpers::spawn_app_on(&first.database_url, |config| {
        config.token_keys_file = Some(keys.clone());
        config.redis_key_prefix = prefix;
        config.asset_cache_ttl = long_ttl;
        adjust_second(config);
    })
    .await;
    (first, second)
}

/// Polls `GET path` on `app` until its name is `name`; how long it took.
async fn until_named(
    app: &TestApp,
    caller: &Caller,
    path: &str,
    name: &str,
    bound: std::time::Duration,
) -> std::time::Duration {
    let started = std::time::Instant::now();
    loop {
        let read = app.call(caller, "GET", path, None, &[]).await;
        if read.json()["data"]["name"] == name {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < bound,
            "still {} after {bound:?}",
            read.text
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_asset_changed_on_one_replica_is_read_fresh_on_the_other() {
    let (first, second) = replicas(|_| {}).await;
    let operator = first.caller("operator").await;
    let asset = create_asset(
        &first,
        &operator,
        json!({ "name": "v1", "asset_type": "host" }),
    )
    .await;
    let path = format!("/api/v1/assets/{}", id_of(&asset));
    // Cached on both.
    for instance in [&first, &second] {
        assert_eq!(
            instance
                .call(&operator, "GET", &path, None, &[])
                .await
                .json()["data"]["name"],
            "v1"
        );
    }
    let patched = first
        .call(
            &operator,
            "PATCH",
            &path,
            Some(&json!({ "name": "v2" })),
            &[],
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK);
    // The writer reads its own write at once; the other replica hears of it
    // over Redis.
    assert_eq!(
        first.call(&operator, "GET", &path, None, &[]).await.json()["data"]["name"],
        "v2"
    );
    until_named(
        &second,
        &operator,
        &path,
        "v2",
        std::time::Duration::from_secs(1),
    )
    .await;
    let read = second.call(&operator, "GET", &path, None, &[]).await;
    assert_eq!(read.header("etag"), Some("\"2\""));
    first.stop().await;
    second.stop().await;
}

#[tokio::test]
async fn without_redis_a_replica_reads_an_asset_change_once_its_cache_entry_expires() {
    let ttl = std::time::Duration::from_millis(1500);
    let (first, second) = replicas(|config| {
        // Nothing listens there: no invalidation can arrive.
        config.redis_url = Some(sentryops::config::Secret::new("redis://127.0.0.1:1"));
        config.asset_cache_ttl = ttl;
    })
    .await;
    let operator = first.caller("operator").await;
    let asset = create_asset(
        &first,
        &operator,
        json!({ "name": "v1", "asset_type": "host" }),
    )
    .await;
    let path = format!("/api/v1/assets/{}", id_of(&asset));
    assert_eq!(
        second.call(&operator, "GET", &path, None, &[]).await.json()["data"]["name"],
        "v1"
    );
    first
        .call(
            &operator,
            "PATCH",
            &path,
            Some(&json!({ "name": "v2" })),
            &[],
        )
        .await;
    until_named(
        &second,
        &operator,
        &path,
        "v2",
        ttl + std::time::Duration::from_millis(500),
    )
    .await;
    first.stop().await;
    second.stop().await;
}
