//! The compliance endpoints (issue 5): runs recorded as events, scores,
//! drift, newly-failing, the report, verification, the per-user limit, and
//! declarative rules.

use std::collections::BTreeSet;
use std::path::PathBuf;

use axum::http::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{spawn_app, spawn_app_on, spawn_app_with, Caller, TestApp};

/// Registers an asset and returns its id.
pub async fn asset(app: &TestApp, operator: &Caller, name: &str, extra: Value) -> String {
    let mut body = json!({"name": name, "asset_type": "host"});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    let created = app
        .call(operator, "POST", "/api/v1/assets", Some(&body), &[])
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    created.json()["data"]["id"]
        .as_str()
        .expect("id")
        .to_string()
}

/// Patches an asset's attributes.
async fn set_attributes(app: &TestApp, operator: &Caller, id: &str, attributes: Value) {
    let patched = app
        .call(
            operator,
            "PATCH",
            &format!("/api/v1/assets/{id}"),
            Some(&json!({ "attributes": attributes })),
            &[],
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text);
}

/// Runs the rules; returns the run.
pub async fn run(app: &TestApp, operator: &Caller) -> Value {
    let started = app
        .call(operator, "POST", "/api/v1/compliance/runs", None, &[])
        .await;
    assert_eq!(started.status, StatusCode::CREATED, "{}", started.text);
    assert!(started.header("x-event-position").is_some());
    started.json()["data"].clone()
}

/// `GET path` as `caller`, asserting the 200; the envelope's `data`.
pub async fn get(app: &TestApp, caller: &Caller, path: &str) -> Value {
    let answer = app.call(caller, "GET", path, None, &[]).await;
    assert_eq!(answer.status, StatusCode::OK, "{path}: {}", answer.text);
    answer.json()["data"].clone()
}

/// A directory holding one rule file with `text`.
fn rules_dir(file: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sentryops-rules-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join(file), text).expect("rule file");
    dir
}

#[tokio::test]
async fn without_a_run_reads_say_so() {
    let app = spawn_app().await;
    let viewer = app.caller("viewer").await;
    app.call(&viewer, "GET", "/api/v1/compliance/runs/latest", None, &[])
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    app.call(&viewer, "GET", "/api/v1/compliance/report", None, &[])
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    let asset_path = format!("/api/v1/compliance/assets/{}/results", Uuid::new_v4());
    let results = get(&app, &viewer, &asset_path).await;
    assert_eq!(results["items"], json!([]));
    assert_eq!(results["run_id"], Value::Null);
    let score = get(&app, &viewer, "/api/v1/compliance/score").await;
    assert_eq!(score["org_score"], 100.0);
    assert_eq!(score["run_id"], Value::Null);
    let runs = get(&app, &viewer, "/api/v1/compliance/runs").await;
    assert_eq!(runs["total"], 0);
    let newly = get(&app, &viewer, "/api/v1/compliance/newly-failing").await;
    assert_eq!(newly["items"], json!([]));
    let rules = get(&app, &viewer, "/api/v1/compliance/rules").await;
    assert_eq!(rules["total"], 16);
    let first = &rules["items"][0];
    for key in [
        "id",
        "title",
        "framework",
        "control",
        "severity",
        "description",
        "remediation",
    ] {
        assert!(first[key].is_string(), "{key} in {first}");
    }
}

#[tokio::test]
async fn a_run_scores_by_weight_and_skips_retired_and_disposed_assets() {
    let app = spawn_app().await;
    let operator = app.caller("operator").await;
    // disk-encryption passes (high 5), os-supported fails (critical 10),
    // has-owner fails (low 1), everything else is not applicable:
    // 100 × 5 / 16 = 31.25.
    let weak = asset(
        &app,
        &operator,
        "weak",
        json!({"attributes": {"disk_encrypted": "yes", "os_supported": "no"}}),
    )
    .await;
    // log-retention passes (low 1), has-owner fails (low 1): 50.
    let half = asset(
        &app,
        &operator,
        "half",
        json!({"attributes": {"log_retention_days": 45}}),
    )
    .await;
    let failing = json!({"disk_encrypted": false, "os_supported": false});
    let retired = asset(
        &app,
        &operator,
        "retired",
        json!({"attributes": failing, "lifecycle_state": "retired"}),
    )
    .await;
    asset(
        &app,
        &operator,
        "disposed",
        json!({"attributes": failing, "lifecycle_state": "disposed"}),
    )
    .await;

    let run = run(&app, &operator).await;
    assert_eq!(run["total_assets"], 2);
    // Mean of 31.25 and 50.
    assert_eq!(run["org_score"], 40.63);
    assert_eq!(run["passed_count"], 2);
    assert_eq!(run["failed_count"], 3);
    assert_eq!(run["not_applicable_count"], 27);
    assert_eq!(
        run["severity_failing"],
        json!({"critical": 1, "high": 0, "medium": 0, "low": 2})
    );
    assert_eq!(run["triggered_by_id"], operator.user_id.as_str());
    assert!(run["event_position"]
        .as_i64()
        .is_some_and(|position| position > 0));

    let viewer = app.caller("viewer").await;
    assert_eq!(
        get(&app, &viewer, "/api/v1/compliance/runs/latest").await,
        run
    );
    let score = get(&app, &viewer, "/api/v1/compliance/score").await;
    assert_eq!(
        (score["org_score"].clone(), score["run_id"].clone()),
        (json!(40.63), run["id"].clone())
    );

    let report = get(&app, &viewer, "/api/v1/compliance/report").await;
    let scores: Vec<(String, f64)> = report["per_asset"]
        .as_array()
        .expect("per_asset")
        .iter()
        .map(|line| {
            (
                line["asset_id"].as_str().expect("id").to_string(),
                line["score"].as_f64().expect("score"),
            )
        })
        .collect();
    assert_eq!(
        scores,
        vec![(weak.clone(), 31.25), (half.clone(), 50.0)],
        "lowest score first"
    );
    let controls: Vec<(String, i64)> = report["failing_rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|control| {
            (
                control["rule_id"].as_str().expect("id").to_string(),
                control["weight"].as_i64().expect("weight"),
            )
        })
        .collect();
    assert_eq!(
        controls,
        vec![
            ("os-supported".to_string(), 10),
            ("has-owner".to_string(), 2)
        ]
    );
    let by_id = get(
        &app,
        &viewer,
        &format!(
            "/api/v1/compliance/report?run_id={}",
            run["id"].as_str().expect("id")
        ),
    )
    .await;
    assert_eq!(by_id["run"]["id"], run["id"]);
    app.call(
        &viewer,
        "GET",
        &format!("/api/v1/compliance/report?run_id={}", Uuid::new_v4()),
        None,
        &[],
    )
    .await
    .assert_error(StatusCode::NOT_FOUND, "not_found");
    app.call(
        &viewer,
        "GET",
        "/api/v1/compliance/report?run_id=latest",
        None,
        &[],
    )
    .await
    .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");

    let results = get(
        &app,
        &viewer,
        &format!("/api/v1/compliance/assets/{weak}/results"),
    )
    .await;
    assert_eq!(results["score"], 31.25);
    let items = results["items"].as_array().expect("items");
    assert_eq!(items.len(), 16);
    let os = items
        .iter()
        .find(|item| item["rule_id"] == "os-supported")
        .expect("os-supported");
    assert_eq!(os["status"], "fail");
    assert_eq!(os["severity"], "critical");
    assert_eq!(os["evidence"]["observed"], "no");
    assert_eq!(os["evidence"]["attribute"], "os_supported");
    // Not evaluated (retired): an empty list, as the original answered.
    let retired_results = get(
        &app,
        &viewer,
        &format!("/api/v1/compliance/assets/{retired}/results"),
    )
    .await;
    assert_eq!(retired_results["items"], json!([]));
    assert_eq!(retired_results["total"], 0);
    assert_eq!(retired_results["run_id"], run["id"]);
}

#[tokio::test]
async fn drift_and_newly_failing_follow_three_runs() {
    let app = spawn_app().await;
    let operator = app.caller("operator").await;
    let host = asset(
        &app,
        &operator,
        "db-01",
        json!({"attributes": {"disk_encrypted": true, "firewall_enabled": true}}),
    )
    .await;
    let first = run(&app, &operator).await;
    let newly = get(&app, &operator, "/api/v1/compliance/newly-failing").await;
    let pairs = |newly: &Value| -> Vec<(String, String)> {
        newly["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|item| {
                (
                    item["asset_id"].as_str().expect("id").to_string(),
                    item["rule_id"].as_str().expect("rule").to_string(),
                )
            })
            .collect()
    };
    assert_eq!(
        pairs(&newly),
        vec![(host.clone(), "has-owner".to_string())],
        "one run: all its failures"
    );

    set_attributes(
        &app,
        &operator,
        &host,
        json!({"disk_encrypted": false, "firewall_enabled": true}),
    )
    .await;
    let second = run(&app, &operator).await;
    let newly = get(&app, &operator, "/api/v1/compliance/newly-failing").await;
    assert_eq!(newly["run_id"], second["id"]);
    assert_eq!(newly["previous_run_id"], first["id"]);
    assert_eq!(
        pairs(&newly),
        vec![(host.clone(), "disk-encryption".to_string())]
    );
    assert_eq!(newly["items"][0]["severity"], "high");
    assert_eq!(newly["items"][0]["evidence"]["observed"], false);

    set_attributes(
        &app,
        &operator,
        &host,
        json!({"disk_encrypted": false, "firewall_enabled": "off"}),
    )
    .await;
    let third = run(&app, &operator).await;
    let newly = get(&app, &operator, "/api/v1/compliance/newly-failing").await;
    assert_eq!(
        pairs(&newly),
        vec![(host.clone(), "firewall-enabled".to_string())],
        "disk-encryption failed before, so it is not new"
    );

    let drift = get(&app, &operator, "/api/v1/compliance/drift").await;
    let series: Vec<(Value, Value)> = drift["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|point| (point["run_id"].clone(), point["org_score"].clone()))
        .collect();
    // Passes/fails by weight: 10/11, 5/11, 0/11.
    assert_eq!(
        series,
        vec![
            (first["id"].clone(), json!(90.91)),
            (second["id"].clone(), json!(45.45)),
            (third["id"].clone(), json!(0.0)),
        ],
        "oldest first"
    );
    let last_two = get(&app, &operator, "/api/v1/compliance/drift?limit=2").await;
    assert_eq!(last_two["items"][0]["run_id"], second["id"]);
    assert_eq!(last_two["items"][1]["run_id"], third["id"]);
    assert_eq!(last_two["items"][1]["severity_failing"]["high"], 2);
    app.call(
        &operator,
        "GET",
        "/api/v1/compliance/drift?limit=0",
        None,
        &[],
    )
    .await
    .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    let runs = get(&app, &operator, "/api/v1/compliance/runs").await;
    assert_eq!(runs["total"], 3);
    assert_eq!(runs["items"][0]["id"], third["id"], "newest first");
}

#[tokio::test]
async fn a_run_racing_asset_updates_evaluates_exactly_the_state_at_its_position() {
    let app = spawn_app_with(|config| config.compliance_runs_per_minute = 1_000).await;
    let operator = app.caller("operator").await;
    let host = asset(
        &app,
        &operator,
        "racer",
        json!({"attributes": {"password_max_age_days": 0}}),
    )
    .await;
    // Each update leaves a generation number in a rule's evidence.
    let writer = {
        let app_operator = operator.clone();
        let host = host.clone();
        let router = app.router.clone();
        tokio::spawn(async move {
            use tower::ServiceExt;
            for generation in 1..=40 {
                let request = axum::http::Request::patch(format!("/api/v1/assets/{host}"))
                    .header("authorization", format!("Bearer {}", app_operator.token))
                    .header("content-type", "application/json")
                    .body(axum::body::Body::from(
                        json!({"attributes": {"password_max_age_days": generation}}).to_string(),
                    ))
                    .expect("request");
                let answer = router.clone().oneshot(request).await.expect("infallible");
                assert_eq!(answer.status(), StatusCode::OK);
            }
        })
    };
    // Runs for as long as the writer writes, and one after.
    let mut runs = Vec::new();
    while !writer.is_finished() {
        runs.push(run(&app, &operator).await);
    }
    writer.await.expect("writer");
    runs.push(run(&app, &operator).await);

    let pool = &app.app.state().pool;
    let auditor = app.caller("auditor").await;
    let mut generations = BTreeSet::new();
    for run in runs {
        let run_id: Uuid = run["id"].as_str().expect("id").parse().expect("uuid");
        let (transaction_id, position): (i64, i64) = sqlx::query_as(
            "select event_transaction, event_position from compliance_runs where run_id = $1",
        )
        .bind(run_id)
        .fetch_one(pool)
        .await
        .expect("run row");
        // The asset's own events inside the cut, read through the store and
        // folded by the aggregate: the attributes it had there.
        let cut = sentryops_projections::LogPosition {
            transaction_id,
            position,
        };
        let mut asset = sentryops::domain::asset::Asset::default();
        let mut events = sentryops_projections::store::read_at_cut::<
            sentryops_events::cmdb::AssetEvent,
        >(pool, cut, sentryops_projections::store::CutFilter::All);
        while let Some(recorded) = futures_util::TryStreamExt::try_next(&mut events)
            .await
            .expect("read")
        {
            if recorded.stored.aggregate_id == host {
                cqrs_es::Aggregate::apply(&mut asset, recorded.event);
            }
        }
        drop(events);
        let expected: Option<i64> = asset
            .fields()
            .attributes
            .get("password_max_age_days")
            .and_then(Value::as_i64);
        let results: Value = sqlx::query_scalar(
            "select asset->'results' from compliance_asset_results r \
             join events e on e.aggregate_type = 'compliance_run' \
                          and e.aggregate_id = r.run_id::text and e.sequence = r.batch_sequence \
             cross join lateral jsonb_array_elements(e.payload->'ComplianceResultsRecorded'->'assets') asset \
             where r.run_id = $1 and r.asset_id = $2::uuid and asset->>'asset_id' = r.asset_id::text",
        )
        .bind(run_id)
        .bind(&host)
        .fetch_one(pool)
        .await
        .expect("results");
        let observed = results
            .as_array()
            .expect("results")
            .iter()
            .find(|result| result["rule_id"] == "password-max-age")
            .map(|result| result["evidence"]["observed"].as_i64())
            .expect("password-max-age");
        assert_eq!(
            observed, expected,
            "run {run_id} saw the state at its position"
        );
        generations.insert(observed);
        let verified = app
            .call(
                &auditor,
                "POST",
                &format!("/api/v1/compliance/runs/{run_id}/verify"),
                None,
                &[],
            )
            .await;
        assert_eq!(verified.status, StatusCode::OK, "{}", verified.text);
        assert_eq!(
            verified.json()["data"]["matches"],
            true,
            "{}",
            verified.text
        );
    }
    assert!(
        generations.len() >= 2,
        "the runs raced the writes and saw different states: {generations:?}"
    );
    assert!(
        generations.contains(&Some(40)),
        "the last run sees the last write"
    );
}

const MAX_AGE_RULE: &str = r#"
[[rule]]
id = "short-password-age"
title = "Passwords expire within 60 days"
framework = "internal"
control = "PW-1"
severity = "medium"
description = "Stricter than IA-5."
remediation = "Lower the maximum password age."
passes_when = 'attributes.password_max_age_days <= 60'
"#;

#[tokio::test]
async fn verify_matches_an_untouched_log_and_reports_a_changed_threshold() {
    let first_rules = rules_dir("password.toml", MAX_AGE_RULE);
    let app = spawn_app_with(|config| config.rules_dir = Some(first_rules.clone())).await;
    let operator = app.caller("operator").await;
    let host = asset(
        &app,
        &operator,
        "app-01",
        json!({"attributes": {"password_max_age_days": 45}}),
    )
    .await;
    let rules = get(&app, &operator, "/api/v1/compliance/rules").await;
    assert_eq!(rules["total"], 17, "16 built-in plus the file's");
    assert_eq!(rules["items"][16]["id"], "short-password-age");
    assert_eq!(
        rules["items"][16]["source"], "password.toml",
        "no server path"
    );
    let run = run(&app, &operator).await;
    let run_id = run["id"].as_str().expect("id").to_string();
    let verify_path = format!("/api/v1/compliance/runs/{run_id}/verify");

    let auditor = app.caller("auditor").await;
    let verified = app.call(&auditor, "POST", &verify_path, None, &[]).await;
    assert_eq!(verified.status, StatusCode::OK, "{}", verified.text);
    let verified = verified.json()["data"].clone();
    assert_eq!(verified["matches"], true, "{verified}");
    assert_eq!(verified["ruleset_changed"], false);
    assert_eq!(verified["differences"], json!([]));
    assert_eq!(verified["totals"], Value::Null);
    assert_eq!(verified["event_position"], run["event_position"]);
    // Later changes to the CMDB do not touch the run's cut.
    set_attributes(
        &app,
        &operator,
        &host,
        json!({"password_max_age_days": 365}),
    )
    .await;
    let again = app.call(&auditor, "POST", &verify_path, None, &[]).await;
    assert_eq!(again.json()["data"]["matches"], true, "{}", again.text);
    app.call(&operator, "POST", &verify_path, None, &[])
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
    app.call(
        &auditor,
        "POST",
        &format!("/api/v1/compliance/runs/{}/verify", Uuid::new_v4()),
        None,
        &[],
    )
    .await
    .assert_error(StatusCode::NOT_FOUND, "not_found");

    // The same log, served with the threshold lowered to 30.
    let stricter = rules_dir("password.toml", &MAX_AGE_RULE.replace("<= 60", "<= 30"));
    let second = spawn_app_on(&app.database_url, |config| {
        config.rules_dir = Some(stricter.clone())
    })
    .await;
    let auditor = second.caller("auditor").await;
    let verified = second.call(&auditor, "POST", &verify_path, None, &[]).await;
    assert_eq!(verified.status, StatusCode::OK, "{}", verified.text);
    let verified = verified.json()["data"].clone();
    assert_eq!(verified["matches"], false, "{verified}");
    assert_eq!(verified["ruleset_changed"], true);
    assert_eq!(verified["rules_changed"], json!(["short-password-age"]));
    assert_eq!(verified["assets_differing"], 1);
    // One pass became a fail: the totals say so too.
    assert_eq!(verified["totals"]["recorded"]["failed_count"], 1);
    assert_eq!(verified["totals"]["now"]["failed_count"], 2);
    let difference = &verified["differences"][0];
    assert_eq!(difference["asset_id"], host.as_str());
    assert_eq!(difference["rule_id"], "short-password-age");
    assert_eq!(difference["recorded"]["status"], "pass");
    assert_eq!(difference["now"]["status"], "fail");
    assert_eq!(
        difference["now"]["evidence"]["observed"]["attributes.password_max_age_days"], 45,
        "the state at the run's position"
    );
    second.stop().await;
}

#[tokio::test]
async fn an_invalid_rule_file_stops_start_up_with_file_line_and_reason() {
    let dir = rules_dir(
        "broken.toml",
        &MAX_AGE_RULE.replace(
            "'attributes.password_max_age_days <= 60'",
            "'colour == \"red\"'",
        ),
    );
    let database_url = sentryops_projections::testing::create_database().await;
    let mut config = sentryops::config::Config::for_tests(&database_url);
    config.rules_dir = Some(dir.clone());
    let Err(error) = sentryops::startup::Application::build(config).await else {
        panic!("the service must not start with an invalid rule file");
    };
    let message = format!("{error:#}");
    let file = dir.join("broken.toml");
    assert!(
        message.contains(&format!("{}:10:", file.display())),
        "file and line (the passes_when line) in {message}"
    );
    assert!(
        message.contains("colour"),
        "the reason names the unknown operand: {message}"
    );
}

#[tokio::test]
async fn the_seventh_run_within_a_minute_from_one_user_is_429() {
    let app = spawn_app().await;
    let operator = app.caller("operator").await;
    for _ in 0..6 {
        run(&app, &operator).await;
    }
    let limited = app
        .call(&operator, "POST", "/api/v1/compliance/runs", None, &[])
        .await;
    limited.assert_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert!(limited.header("retry-after").is_some());
    let other = app.caller("operator").await;
    run(&app, &other).await;
    let viewer = app.caller("viewer").await;
    app.call(&viewer, "POST", "/api/v1/compliance/runs", None, &[])
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
}

#[tokio::test]
async fn the_demo_data_fails_rules_of_every_family() {
    let app = spawn_app().await;
    sentryops::demo::load(app.app.state())
        .await
        .expect("demo data");
    let operator = app.caller("operator").await;
    let run = run(&app, &operator).await;
    assert!(
        run["total_assets"]
            .as_i64()
            .is_some_and(|total| total >= 25),
        "{run}"
    );
    let rules = get(&app, &operator, "/api/v1/compliance/rules").await;
    let family_of = |rule_id: &str| -> String {
        rules["items"]
            .as_array()
            .expect("rules")
            .iter()
            .find(|rule| rule["id"] == rule_id)
            .and_then(|rule| rule["family"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    let report = get(&app, &operator, "/api/v1/compliance/report").await;
    let failing_families: BTreeSet<String> = report["failing_controls"]
        .as_array()
        .expect("controls")
        .iter()
        .map(|control| family_of(control["rule_id"].as_str().expect("id")))
        .collect();
    let every_family: BTreeSet<String> = [
        "encryption",
        "endpoint",
        "identity",
        "logging_and_backup",
        "network",
        "patching",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert!(
        every_family.is_subset(&failing_families),
        "families failing: {failing_families:?}"
    );
    let failing_rules: BTreeSet<String> = report["failing_controls"]
        .as_array()
        .expect("controls")
        .iter()
        .map(|control| control["rule_id"].as_str().expect("id").to_string())
        .collect();
    assert!(
        failing_rules.contains("owner-mfa"),
        "an owner without MFA: {failing_rules:?}"
    );
    assert!(run["org_score"]
        .as_f64()
        .is_some_and(|score| score > 0.0 && score < 100.0));
}

#[tokio::test]
async fn a_rebuild_of_the_compliance_projection_reproduces_its_tables() {
    let app = spawn_app().await;
    let operator = app.caller("operator").await;
    let host = asset(
        &app,
        &operator,
        "web-01",
        json!({"attributes": {"disk_encrypted": true}}),
    )
    .await;
    run(&app, &operator).await;
    set_attributes(&app, &operator, &host, json!({"disk_encrypted": false})).await;
    run(&app, &operator).await;
    let pool = &app.app.state().pool;
    let digest = || async {
        let mut digests = Vec::new();
        for table in ["compliance_runs", "compliance_asset_results"] {
            digests.push(
                sqlx::query_scalar::<_, Option<String>>(&format!(
                    "select md5(string_agg(t::text, '|' order by t::text)) from {table} t"
                ))
                .fetch_one(pool)
                .await
                .expect("digest"),
            );
        }
        digests
    };
    let before = digest().await;
    assert!(before.iter().all(Option::is_some));
    let outcome = sentryops_projections::rebuild::rebuild_now(
        pool,
        &sentryops_projections::compliance::ComplianceProjection,
        &sentryops_projections::RuntimeOptions::default(),
        &mut |_, _| {},
    )
    .await
    .expect("rebuilt");
    assert!(matches!(
        outcome,
        sentryops_projections::rebuild::RebuildOutcome::Completed { .. }
    ));
    assert_eq!(digest().await, before);
    app.stop().await;
}

#[tokio::test]
async fn with_the_database_gone_runs_and_reads_answer_503() {
    let app = spawn_app().await;
    let operator = app.caller("operator").await;
    let auditor = app.caller("auditor").await;
    let first = run(&app, &operator).await;
    // Both callers' access checks are cached now.
    get(&app, &auditor, "/api/v1/compliance/score").await;
    app.app.state().pool.close().await;
    app.call(&operator, "POST", "/api/v1/compliance/runs", None, &[])
        .await
        .assert_error(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable");
    let verify = format!(
        "/api/v1/compliance/runs/{}/verify",
        first["id"].as_str().expect("id")
    );
    app.call(&auditor, "POST", &verify, None, &[])
        .await
        .assert_error(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable");
    app.call(&auditor, "GET", "/api/v1/compliance/score", None, &[])
        .await
        .assert_error(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable");
    app.stop().await;
}

#[tokio::test]
async fn the_log_keeps_every_result_for_readers_and_spares_the_projection_runners() {
    let app = spawn_app().await;
    let operator = app.caller("operator").await;
    asset(
        &app,
        &operator,
        "web-01",
        json!({"attributes": {"disk_encrypted": true}}),
    )
    .await;
    run(&app, &operator).await;
    let mut conn = app.app.state().pool.acquire().await.expect("connection");
    let start = sentryops_projections::LogPosition::START;
    let full = sentryops_projections::store::read_settled(&mut conn, start, 10_000)
        .await
        .expect("read");
    let results: Vec<Value> = full
        .iter()
        .filter(|event| event.event_type == "ComplianceResultsRecorded")
        .map(|event| serde_json::from_str(event.payload.as_deref().expect("kept")).expect("json"))
        .collect();
    assert_eq!(results.len(), 1);
    assert_eq!(
        results[0]["ComplianceResultsRecorded"]["assets"][0]["asset_name"], "web-01",
        "the export (and every reader for people) gets the results"
    );
    let projected = sentryops_projections::store::read_settled_for_projection(
        &mut conn,
        &sentryops_projections::compliance::ComplianceProjection,
        start,
        10_000,
    )
    .await
    .expect("read");
    let spared = projected
        .iter()
        .find(|event| event.event_type == "ComplianceResultsRecorded")
        .expect("the event is there");
    assert_eq!(spared.payload, None);
    assert_eq!(full.len(), projected.len());
}
