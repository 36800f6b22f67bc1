//! Issue 11: what broke when the service was probed as an attacker and an
//! operator would. Each test fails on the code before the fix.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection};

use crate::helpers::{spawn_app, spawn_app_with, Caller, TestApp, TestResponse};

const PASSWORD: &str = "correct horse battery";

/// An anonymous JSON `POST` from the client address `ip`.
async fn post_from(app: &TestApp, path: &str, body: &Value, ip: [u8; 4]) -> TestResponse {
    let mut request = Request::post(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("request");
    request
        .extensions_mut()
        .insert(axum::extract::ConnectInfo(SocketAddr::from((ip, 40000))));
    app.send(request).await
}

async fn login(app: &TestApp, email: &str) -> Value {
    let response = post_from(
        app,
        "/api/v1/auth/login",
        &json!({ "email": email, "password": PASSWORD }),
        [192, 0, 2, 1],
    )
    .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text);
    response.json()["data"].clone()
}

async fn refresh(app: &TestApp, token: &str) -> TestResponse {
    post_from(
        app,
        "/api/v1/auth/refresh",
        &json!({ "refresh_token": token }),
        [192, 0, 2, 1],
    )
    .await
}

async fn me(app: &TestApp, access: &str) -> StatusCode {
    app.send(
        Request::get("/api/v1/auth/me")
            .header("authorization", format!("Bearer {access}"))
            .body(Body::empty())
            .expect("request"),
    )
    .await
    .status
}

/// How many events of `event_type` the log holds.
async fn events_of(app: &TestApp, event_type: &str) -> i64 {
    sqlx::query_scalar("select count(*) from events where event_type = $1")
        .bind(event_type)
        .fetch_one(&app.app.state().pool)
        .await
        .expect("count")
}

async fn race_refreshes(parallel: usize) {
    let app = spawn_app().await;
    let email = format!("tabs-{parallel}@example.com");
    app.created_user_id(&email, "viewer").await;
    let pair = login(&app, &email).await;
    let token = pair["refresh_token"].as_str().expect("refresh").to_string();
    // Every request is built first, then all are released at once.
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(parallel));
    let mut attempts = tokio::task::JoinSet::new();
    for _ in 0..parallel {
        let router = app.router.clone();
        let barrier = barrier.clone();
        let body = json!({ "refresh_token": token }).to_string();
        attempts.spawn(async move {
            let request = Request::post("/api/v1/auth/refresh")
                .header("content-type", "application/json")
                .body(Body::from(body))
                .expect("request");
            barrier.wait().await;
            let response = tower::ServiceExt::oneshot(router, request)
                .await
                .expect("infallible");
            let status = response.status();
            let body = axum::body::to_bytes(response.into_body(), 1 << 20)
                .await
                .expect("body");
            (status, body)
        });
    }
    let answers = attempts.join_all().await;
    let winners: Vec<Value> = answers
        .iter()
        .filter(|(status, _)| *status == StatusCode::OK)
        .map(|(_, body)| serde_json::from_slice::<Value>(body).expect("json")["data"].clone())
        .collect();
    assert_eq!(
        winners.len(),
        1,
        "{:?}",
        answers.iter().map(|a| a.0).collect::<Vec<_>>()
    );
    assert!(answers
        .iter()
        .all(|(status, _)| *status == StatusCode::OK || *status == StatusCode::UNAUTHORIZED));
    // After the race: nothing was revoked, and the winner's pair works.
    assert_eq!(events_of(&app, "RefreshTokenReuseDetected").await, 0);
    assert_eq!(events_of(&app, "SessionRevoked").await, 0);
    let winner = &winners[0];
    assert_eq!(
        me(&app, winner["access_token"].as_str().expect("access")).await,
        StatusCode::OK
    );
    let next = refresh(&app, winner["refresh_token"].as_str().expect("refresh")).await;
    assert_eq!(next.status, StatusCode::OK, "{}", next.text);
    assert_eq!(
        me(
            &app,
            next.json()["data"]["access_token"]
                .as_str()
                .expect("access")
        )
        .await,
        StatusCode::OK
    );
    app.stop().await;
}

#[tokio::test]
async fn sixteen_tabs_refreshing_at_once_keep_the_session() {
    race_refreshes(16).await;
}

#[tokio::test]
async fn sixty_four_tabs_refreshing_at_once_keep_the_session() {
    race_refreshes(64).await;
}

#[tokio::test]
async fn a_replay_within_the_grace_is_refused_without_revoking() {
    let app = spawn_app().await;
    app.created_user_id("grace@example.com", "viewer").await;
    let first = login(&app, "grace@example.com").await;
    let first_refresh = first["refresh_token"].as_str().expect("refresh");
    let second = refresh(&app, first_refresh).await.json()["data"].clone();
    refresh(&app, first_refresh)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(events_of(&app, "SessionRevoked").await, 0);
    let third = refresh(&app, second["refresh_token"].as_str().expect("refresh")).await;
    assert_eq!(third.status, StatusCode::OK, "{}", third.text);
    app.stop().await;
}

#[tokio::test]
async fn forged_tokens_naming_a_session_do_not_spend_its_refresh_limit() {
    let app = spawn_app_with(|config| config.auth_rate_limit_per_minute = 3).await;
    app.created_user_id("victim@example.com", "viewer").await;
    let pair = login(&app, "victim@example.com").await;
    let token = pair["refresh_token"].as_str().expect("refresh");
    // The session id is readable in the token; the secret is not. An
    // attacker forges tokens naming the session from ten addresses.
    use base64::Engine;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut bytes = engine
        .decode(token.strip_prefix("sor1.").expect("sor1 token"))
        .expect("base64");
    // Session id and token id kept; the 32 secret bytes guessed.
    bytes[32..].fill(0x41);
    let forged = format!("sor1.{}", engine.encode(&bytes));
    assert_ne!(forged, token);
    for host in 0..10u8 {
        let answer = post_from(
            &app,
            "/api/v1/auth/refresh",
            &json!({ "refresh_token": forged }),
            [198, 51, 100, host],
        )
        .await;
        answer.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    let real = refresh(&app, token).await;
    assert_eq!(real.status, StatusCode::OK, "{}", real.text);
    // The forger's own address is still limited.
    let mut limited = false;
    for _ in 0..5 {
        let answer = post_from(
            &app,
            "/api/v1/auth/refresh",
            &json!({ "refresh_token": forged }),
            [198, 51, 100, 0],
        )
        .await;
        limited |= answer.status == StatusCode::TOO_MANY_REQUESTS;
    }
    assert!(limited, "forged refreshes count against their address");
    // An IPv6 sender is one client per /64, whatever its low bits.
    let mut limited = false;
    for host in 1..=5u16 {
        let ip = std::net::Ipv6Addr::new(0x2001, 0xdb8, 7, 7, 0, 0, 0, host);
        let mut request = Request::post("/api/v1/auth/refresh")
            .header("content-type", "application/json")
            .body(Body::from(json!({ "refresh_token": forged }).to_string()))
            .expect("request");
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(SocketAddr::from((ip, 40000))));
        limited |= app.send(request).await.status == StatusCode::TOO_MANY_REQUESTS;
    }
    assert!(limited, "addresses of one /64 share a limit");
    app.stop().await;
}

#[tokio::test]
async fn session_audit_entries_are_for_admins_and_auditors_only() {
    let app = spawn_app().await;
    let viewer = app.caller("viewer").await;
    let operator = app.caller("operator").await;
    let auditor = app.caller("auditor").await;
    let admin = app.caller("admin").await;
    let count = |caller: &Caller, path: &'static str| {
        let app = &app;
        let caller = caller.clone();
        async move {
            let answer = app.call(&caller, "GET", path, None, &[]).await;
            assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
            answer.json()["data"]["total"].as_i64().expect("total")
        }
    };
    for caller in [&viewer, &operator] {
        assert_eq!(count(caller, "/api/v1/audit?entity_type=session").await, 0);
        let all = app
            .call(caller, "GET", "/api/v1/audit?limit=200", None, &[])
            .await
            .json();
        assert!(
            all["data"]["items"]
                .as_array()
                .expect("items")
                .iter()
                .all(|entry| entry["entity_type"] != "session"),
            "{all}"
        );
    }
    for caller in [&auditor, &admin] {
        assert!(count(caller, "/api/v1/audit?entity_type=session").await >= 4);
    }
    // Where people log in from, likewise.
    let login_of = |caller: &Caller| {
        let app = &app;
        let caller = caller.clone();
        async move {
            let found = app
                .call(
                    &caller,
                    "GET",
                    "/api/v1/audit?action=auth.login_succeeded&limit=1",
                    None,
                    &[],
                )
                .await
                .json();
            found["data"]["items"][0].clone()
        }
    };
    app.created_user_id("seen@example.com", "viewer").await;
    login(&app, "seen@example.com").await;
    assert_eq!(login_of(&auditor).await["source_ip"], "192.0.2.1");
    assert_eq!(login_of(&admin).await["source_ip"], "192.0.2.1");
    assert_eq!(login_of(&viewer).await["source_ip"], Value::Null);
    assert_eq!(login_of(&operator).await["source_ip"], Value::Null);
    app.stop().await;
}

#[tokio::test]
async fn nul_and_invalid_utf8_in_any_text_input_is_a_422() {
    let app = spawn_app().await;
    let viewer = app.caller("viewer").await;
    for path in [
        "/api/v1/audit?actor_id=%00",
        "/api/v1/audit?entity_type=a%00",
        "/api/v1/audit?entity_id=%00x",
        "/api/v1/audit?action=%00",
        "/api/v1/audit/asset/a%00b",
        "/api/v1/audit/a%00/b",
        "/api/v1/assets?q=%00",
        "/api/v1/audit/asset/%FF%FE",
        "/api/v1/audit?actor_id=%FF",
    ] {
        let answer = app.call(&viewer, "GET", path, None, &[]).await;
        answer.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    }
    // In a JSON body, anywhere: the field is named.
    let answer = post_from(
        &app,
        "/api/v1/auth/login",
        &json!({ "email": "a\u{0}@example.com", "password": "x" }),
        [192, 0, 2, 7],
    )
    .await;
    let body = answer.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    assert_eq!(body["error"]["details"]["fields"][0]["field"], "email");
    app.stop().await;
}

#[tokio::test]
async fn token_responses_and_authenticated_answers_are_never_cached() {
    let app = spawn_app().await;
    app.created_user_id("cache@example.com", "viewer").await;
    let response = post_from(
        &app,
        "/api/v1/auth/login",
        &json!({ "email": "cache@example.com", "password": PASSWORD }),
        [192, 0, 2, 1],
    )
    .await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.header("cache-control"), Some("no-store"));
    assert_eq!(response.header("pragma"), Some("no-cache"));
    let token = response.json()["data"]["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_string();
    let rotated = refresh(&app, &token).await;
    assert_eq!(rotated.status, StatusCode::OK);
    assert_eq!(rotated.header("cache-control"), Some("no-store"));
    assert_eq!(rotated.header("pragma"), Some("no-cache"));
    for path in ["/api/v1/auth/me", "/api/v1/users", "/api/v1/assets"] {
        let answer = app.get(path, true).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.header("cache-control"), Some("no-store"), "{path}");
    }
    app.get("/api/v1/auth/me", false)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    // Public keys are public: verifiers may keep them a minute.
    let keys = app.get("/api/v1/auth/keys", false).await;
    assert_eq!(keys.header("cache-control"), Some("public, max-age=60"));
    app.stop().await;
}

#[tokio::test]
async fn control_and_bidi_characters_are_refused_in_every_name() {
    let app = spawn_app().await;
    let operator = app.caller("operator").await;
    for bad in [
        "evil\u{1b}[31mred",
        "invoice\u{202e}gnp.exe",
        "tab\tname",
        "iso\u{2066}late",
        "c1\u{9b}x",
    ] {
        for (path, body) in [
            (
                "/api/v1/assets",
                json!({ "name": bad, "asset_type": "host" }),
            ),
            ("/api/v1/tags", json!({ "name": bad })),
        ] {
            let answer = app.call(&operator, "POST", path, Some(&body), &[]).await;
            let error = answer.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
            assert_eq!(
                error["error"]["details"]["fields"][0]["field"], "name",
                "{path} {bad:?}"
            );
        }
        let user = app
            .post_json(
                "/api/v1/users",
                &json!({ "email": "x@example.com", "full_name": bad, "password": PASSWORD }),
            )
            .await;
        let error = user.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
        assert_eq!(error["error"]["details"]["fields"][0]["field"], "full_name");
    }
    // Attribute keys are names; their string values free text.
    for attributes in [
        json!({ "os\u{1b}[2J": "x" }),
        json!({ "os": "evil\u{202e}txt" }),
        json!({ "ports": ["22", "2\u{7}3"] }),
    ] {
        let answer = app
            .call(
                &operator,
                "POST",
                "/api/v1/assets",
                Some(&json!({ "name": "attrs", "asset_type": "host", "attributes": attributes })),
                &[],
            )
            .await;
        let error = answer.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
        assert_eq!(
            error["error"]["details"]["fields"][0]["field"],
            "attributes"
        );
    }
    // Free text keeps tabs and line breaks, and still refuses the rest.
    let created = app
        .call(
            &operator,
            "POST",
            "/api/v1/assets",
            Some(&json!({ "name": "ok", "asset_type": "host", "description": "a\tb\nc" })),
            &[],
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let refused = app
        .call(
            &operator,
            "POST",
            "/api/v1/assets",
            Some(&json!({ "name": "ok2", "asset_type": "host", "description": "x\u{202d}y" })),
            &[],
        )
        .await;
    let error = refused.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    assert_eq!(
        error["error"]["details"]["fields"][0]["field"],
        "description"
    );
    app.stop().await;
}

#[tokio::test]
async fn validation_details_name_fields_and_json_types_never_rust_types() {
    let app = spawn_app().await;
    for (body, field, reason) in [
        (
            "\"just a string\"",
            "body",
            "must be a JSON object, not a string",
        ),
        ("true", "body", "must be a JSON object, not a boolean"),
        (
            "{\"email\": 5, \"password\": \"x\"}",
            "email",
            "must be a string, not a number",
        ),
        ("{\"email\": \"a@b.io\"}", "password", "is required"),
    ] {
        let mut request = Request::post("/api/v1/auth/login")
            .header("content-type", "application/json")
            .body(Body::from(body))
            .expect("request");
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(SocketAddr::from((
                [192, 0, 2, 3],
                1,
            ))));
        let answer = app.send(request).await;
        let error = answer.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
        assert_eq!(
            error["error"]["details"]["fields"][0]["field"], field,
            "{body}"
        );
        assert_eq!(
            error["error"]["details"]["fields"][0]["reason"], reason,
            "{body}"
        );
        for leak in ["struct", "LoginRequest", "u32", "i64", "String"] {
            assert!(!answer.text.contains(leak), "{leak} in {}", answer.text);
        }
    }
    let answer = app.get("/api/v1/assets?limit=ten", true).await;
    let error = answer.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    assert_eq!(error["error"]["details"]["fields"][0]["field"], "limit");
    assert!(!answer.text.contains("i64"), "{}", answer.text);
    let answer = app.get("/api/v1/assets/not-a-uuid", true).await;
    let error = answer.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    assert_eq!(
        error["error"]["details"]["fields"][0]["reason"],
        "must be a UUID"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_bearer_scheme_is_matched_case_insensitively() {
    let app = spawn_app().await;
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let answer = app
            .send(
                Request::get("/api/v1/auth/me")
                    .header("authorization", format!("{scheme} {}", app.admin_token))
                    .body(Body::empty())
                    .expect("request"),
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{scheme}");
    }
    for wrong in [
        format!("Basic {}", app.admin_token),
        "Bearer".to_string(),
        "Bearer ".to_string(),
    ] {
        let answer = app
            .send(
                Request::get("/api/v1/auth/me")
                    .header("authorization", wrong)
                    .body(Body::empty())
                    .expect("request"),
            )
            .await;
        answer.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    app.stop().await;
}

/// A connection to another database of the test cluster.
async fn connect_to(database_url: &str) -> PgConnection {
    PgConnection::connect(database_url).await.expect("connect")
}

#[tokio::test]
async fn idle_write_transactions_elsewhere_neither_stall_writes_nor_stale_reads() {
    let app = spawn_app().await;
    let operator = app.caller("operator").await;
    let created = app
        .call(
            &operator,
            "POST",
            "/api/v1/assets",
            Some(&json!({ "name": "before", "asset_type": "host" })),
            &[],
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let id = created.json()["data"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    // An idle transaction holding an xid in another database of the
    // server, and one in ours that wrote to another table.
    let mut elsewhere = connect_to(&sentryops_projections::testing::admin_url()).await;
    sqlx::query("begin")
        .execute(&mut elsewhere)
        .await
        .expect("begin");
    sqlx::query("select pg_current_xact_id()")
        .execute(&mut elsewhere)
        .await
        .expect("xid");
    let mut ours = connect_to(&app.database_url).await;
    sqlx::query("create table idle_probe (x integer)")
        .execute(&mut ours)
        .await
        .expect("table");
    sqlx::query("begin")
        .execute(&mut ours)
        .await
        .expect("begin");
    sqlx::query("insert into idle_probe values (1)")
        .execute(&mut ours)
        .await
        .expect("write elsewhere");
    for round in 0..5 {
        let name = format!("after-{round}");
        let patched = app
            .call(
                &operator,
                "PATCH",
                &format!("/api/v1/assets/{id}"),
                Some(&json!({ "name": name })),
                &[],
            )
            .await;
        assert_eq!(patched.status, StatusCode::OK, "{}", patched.text);
        // Read-your-writes, from the read model (the list is not cached).
        let listed = app
            .call(
                &operator,
                "GET",
                &format!("/api/v1/assets?q={name}"),
                None,
                &[],
            )
            .await;
        assert_eq!(
            listed.json()["data"]["total"],
            1,
            "round {round}: {}",
            listed.text
        );
    }
    assert_eq!(app.get("/ready", false).await.status, StatusCode::OK);
    sqlx::query("rollback")
        .execute(&mut elsewhere)
        .await
        .expect("rollback");
    sqlx::query("rollback")
        .execute(&mut ours)
        .await
        .expect("rollback");
    app.stop().await;
}

#[tokio::test]
async fn an_append_held_open_makes_ready_say_degraded_and_name_it() {
    let app = spawn_app_with(|config| config.ready_max_open_append = Duration::ZERO).await;
    assert_eq!(app.get("/ready", false).await.status, StatusCode::OK);
    let mut holder = connect_to(&app.database_url).await;
    sqlx::query("set application_name = 'held-append'")
        .execute(&mut holder)
        .await
        .expect("name");
    sqlx::query("begin")
        .execute(&mut holder)
        .await
        .expect("begin");
    sqlx::query(
        "insert into events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
                             payload, metadata) \
         values ('probe', 'held', 1, 'ProbeRecorded', '1.0', '{}', '{}')",
    )
    .execute(&mut holder)
    .await
    .expect("append");
    let ready = app.get("/ready", false).await;
    assert_eq!(
        ready.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        ready.text
    );
    let body = ready.json();
    assert_eq!(body["status"], "degraded");
    assert_eq!(
        body["oldest_open_append"]["application_name"],
        "held-append"
    );
    sqlx::query("rollback")
        .execute(&mut holder)
        .await
        .expect("rollback");
    assert_eq!(app.get("/ready", false).await.status, StatusCode::OK);
    app.stop().await;
}

#[tokio::test]
async fn an_append_must_be_the_first_write_of_its_transaction() {
    let app = spawn_app().await;
    let mut conn = connect_to(&app.database_url).await;
    let mut tx = conn.begin().await.expect("begin");
    sqlx::query("select pg_current_xact_id()")
        .execute(&mut *tx)
        .await
        .expect("xid");
    let refused = sqlx::query(
        "insert into events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
                             payload, metadata) \
         values ('probe', 'late', 1, 'ProbeRecorded', '1.0', '{}', '{}')",
    )
    .execute(&mut *tx)
    .await
    .expect_err("refused");
    assert!(refused.to_string().contains("first write"), "{refused}");
    tx.rollback().await.expect("rollback");
    // Two appends in one transaction are one append.
    let mut tx = conn.begin().await.expect("begin");
    for sequence in [1, 2] {
        sqlx::query(
            "insert into events (aggregate_type, aggregate_id, sequence, event_type, \
                                 event_version, payload, metadata) \
             values ('probe', 'pair', $1, 'ProbeRecorded', '1.0', '{}', '{}')",
        )
        .bind(sequence)
        .execute(&mut *tx)
        .await
        .expect("append");
    }
    tx.commit().await.expect("commit");
    app.stop().await;
}

#[tokio::test]
async fn a_locked_table_times_out_its_own_queries_and_leaves_other_routes_answering() {
    let app = spawn_app_with(|config| {
        config.request_timeout = Duration::from_secs(2);
        config.statement_timeout = Duration::from_secs(1);
        config.lock_timeout = Duration::from_millis(200);
    })
    .await;
    let viewer = app.caller("viewer").await;
    let mut holder = connect_to(&app.database_url).await;
    sqlx::query("begin")
        .execute(&mut holder)
        .await
        .expect("begin");
    sqlx::query("lock table assets in access exclusive mode")
        .execute(&mut holder)
        .await
        .expect("lock");
    let mut lists = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let router = app.router.clone();
        let token = viewer.token.clone();
        lists.spawn(async move {
            let request = Request::get("/api/v1/assets")
                .header("authorization", format!("Bearer {token}"))
                .body(Body::empty())
                .expect("request");
            tower::ServiceExt::oneshot(router, request)
                .await
                .expect("infallible")
                .status()
        });
    }
    // A route that does not touch the locked table answers meanwhile.
    let tags = app.call(&viewer, "GET", "/api/v1/tags", None, &[]).await;
    assert_eq!(tags.status, StatusCode::OK, "{}", tags.text);
    let statuses = lists.join_all().await;
    assert!(
        statuses
            .iter()
            .all(|status| *status == StatusCode::SERVICE_UNAVAILABLE),
        "{statuses:?}"
    );
    // Nothing of ours is left waiting inside PostgreSQL.
    let database = app.database_url.rsplit('/').next().expect("db").to_string();
    let waiting: i64 = sqlx::query_scalar(
        "select count(*) from pg_stat_activity where datname = $1 and wait_event_type = 'Lock'",
    )
    .bind(&database)
    .fetch_one(&mut holder)
    .await
    .expect("count");
    assert_eq!(waiting, 0);
    sqlx::query("rollback")
        .execute(&mut holder)
        .await
        .expect("rollback");
    let listed = app.call(&viewer, "GET", "/api/v1/assets", None, &[]).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text);
    app.stop().await;
}

#[tokio::test]
async fn ready_fails_for_a_stalled_projection_not_for_a_burst() {
    // A burst: 11,000 rows (more than the old 10,000-event threshold)
    // imported while /ready is asked throughout.
    let app = spawn_app().await;
    let operator = app.caller("operator").await;
    let mut csv = String::from("name,asset_type\n");
    for row in 0..11_000 {
        csv.push_str(&format!("burst-{row},host\n"));
    }
    let router = app.router.clone();
    let token = operator.token.clone();
    let import = tokio::spawn(async move {
        let request = Request::post("/api/v1/assets/import")
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "text/csv")
            .body(Body::from(csv))
            .expect("request");
        tower::ServiceExt::oneshot(router, request)
            .await
            .expect("infallible")
            .status()
    });
    let mut asked = 0;
    while !import.is_finished() {
        let ready = app.get("/ready", false).await;
        assert_eq!(ready.status, StatusCode::OK, "{}", ready.text);
        asked += 1;
    }
    assert_eq!(import.await.expect("import"), StatusCode::OK);
    assert!(asked >= 1, "ready was asked during the import");
    assert_eq!(app.get("/ready", false).await.status, StatusCode::OK);
    app.stop().await;

    // A stall: the projectors stopped, an event waits, no batch comes.
    let stalled = spawn_app_with(|config| config.ready_max_lag = Duration::ZERO).await;
    assert_eq!(stalled.get("/ready", false).await.status, StatusCode::OK);
    stalled.app.state().runtime.stop().await;
    sqlx::query(
        "insert into events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
                             payload, metadata) \
         values ('probe', 'stall', 1, 'ProbeRecorded', '1.0', '{}', '{}')",
    )
    .execute(&stalled.app.state().pool)
    .await
    .expect("append");
    let ready = stalled.get("/ready", false).await;
    assert_eq!(
        ready.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        ready.text
    );
    assert_eq!(ready.json()["status"], "not_ready");
}

/// A Redis that completes the connection handshake (`CLIENT SETINFO` gets
/// `+OK`), refuses `PING`, and never answers a script (a hung server): a
/// client that sends scripts waits on every one. What each client sent is
/// kept.
async fn hung_redis() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<u8>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = received.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut buffer = [0u8; 4096];
                while let Ok(read) = socket.read(&mut buffer).await {
                    if read == 0 {
                        break;
                    }
                    let chunk = String::from_utf8_lossy(&buffer[..read]).to_string();
                    log.lock().expect("log").extend_from_slice(&buffer[..read]);
                    // A script hangs (its text holds `*`, so it is not
                    // split); otherwise one reply per command (each a RESP
                    // array, `*`).
                    if chunk.to_ascii_uppercase().contains("EVAL") {
                        continue;
                    }
                    let mut replies = String::new();
                    for command in chunk.split('*').filter(|part| !part.is_empty()) {
                        let upper = command.to_ascii_uppercase();
                        if upper.contains("PING") {
                            replies.push_str("-ERR hung\r\n");
                        } else {
                            replies.push_str("+OK\r\n");
                        }
                    }
                    if !replies.is_empty() && socket.write_all(replies.as_bytes()).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (port, received)
}

fn script_calls(received: &std::sync::Mutex<Vec<u8>>) -> usize {
    let bytes = received.lock().expect("log");
    String::from_utf8_lossy(&bytes).matches("EVAL").count()
}

#[tokio::test]
async fn with_redis_hung_the_limiter_stops_asking_it_after_the_first_failure() {
    let (port, received) = hung_redis().await;
    let app = spawn_app_with(|config| {
        config.redis_url = Some(sentryops::config::Secret::new(format!(
            "redis://127.0.0.1:{port}"
        )));
    })
    .await;
    // The bootstrap admin's login has met the hung Redis: the circuit is
    // open now, and requests skip Redis instead of waiting on it.
    assert!(app.app.state().limiter.is_local());
    let before = script_calls(&received);
    app.created_user_id("hung@example.com", "viewer").await;
    for _ in 0..10 {
        login(&app, "hung@example.com").await;
    }
    assert_eq!(
        script_calls(&received),
        before,
        "no rate-limit script reached Redis while its circuit was open"
    );
    app.stop().await;
}
