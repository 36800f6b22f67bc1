//! The original SentryOps console reads these shapes (API.md; issue 11,
//! part C). Each test pins the keys the console reads, beside which our
//! additions may stand but in whose place nothing may.

use std::collections::BTreeSet;

use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::compliance::{get, run};
use crate::helpers::{spawn_app, Caller, TestApp};

/// Registers a host with `attributes`; its id.
async fn asset(app: &TestApp, operator: &Caller, name: &str, attributes: Value) -> String {
    crate::compliance::asset(app, operator, name, json!({ "attributes": attributes })).await
}

/// Asserts `value` is an object holding every key of `keys`.
fn has_keys(value: &Value, keys: &[&str]) {
    let object = value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"));
    for key in keys {
        assert!(object.contains_key(*key), "{key} missing from {value}");
    }
}

#[tokio::test]
async fn compliance_reads_have_the_original_shapes() {
    let app = spawn_app().await;
    let operator = app.caller("operator").await;
    // weak: disk-encryption passes, os-supported (critical) and has-owner
    // (low) fail. half: log-retention passes, has-owner fails.
    let weak = asset(
        &app,
        &operator,
        "weak",
        json!({"disk_encrypted": "yes", "os_supported": "no"}),
    )
    .await;
    let half = asset(&app, &operator, "half", json!({"log_retention_days": 45})).await;
    let first = run(&app, &operator).await;

    let report = get(&app, &operator, "/api/v1/compliance/report").await;
    has_keys(
        &report,
        &[
            "run_id",
            "generated_for",
            "org_score",
            "total_assets",
            "status_counts",
            "severity_failing",
            "per_asset",
            "failing_controls",
        ],
    );
    assert_eq!(report["run_id"], first["id"]);
    assert_eq!(report["org_score"], 40.63);
    assert_eq!(report["total_assets"], 2);
    assert_eq!(
        report["status_counts"],
        json!({"pass": 2, "fail": 3, "not_applicable": 27})
    );
    assert_eq!(
        report["severity_failing"],
        json!({"critical": 1, "high": 0, "medium": 0, "low": 2})
    );
    let per_asset = report["per_asset"].as_array().expect("per_asset");
    assert_eq!(per_asset.len(), 2);
    for line in per_asset {
        has_keys(
            line,
            &["asset_id", "score", "passed", "failed", "not_applicable"],
        );
    }
    assert_eq!(per_asset[0]["asset_id"], weak.as_str(), "ascending score");
    assert_eq!(per_asset[0]["score"], 31.25);
    // One failing control per failing (asset, rule): by weight, then
    // asset, then rule.
    let controls = report["failing_controls"].as_array().expect("controls");
    for control in controls {
        has_keys(
            control,
            &[
                "asset_id",
                "rule_id",
                "title",
                "framework",
                "control",
                "severity",
                "remediation",
                "evidence",
            ],
        );
        assert!(control["remediation"]
            .as_str()
            .is_some_and(|r| !r.is_empty()));
    }
    let mut has_owner: Vec<&str> = vec![weak.as_str(), half.as_str()];
    has_owner.sort_unstable();
    let order: Vec<(String, String)> = controls
        .iter()
        .map(|c| {
            (
                c["rule_id"].as_str().expect("rule").to_string(),
                c["asset_id"].as_str().expect("asset").to_string(),
            )
        })
        .collect();
    assert_eq!(
        order,
        vec![
            ("os-supported".to_string(), weak.clone()),
            ("has-owner".to_string(), has_owner[0].to_string()),
            ("has-owner".to_string(), has_owner[1].to_string()),
        ]
    );
    assert_eq!(controls[0]["control"], "SI-2");
    assert_eq!(controls[0]["evidence"]["observed"], "no");

    let score = get(&app, &operator, "/api/v1/compliance/score").await;
    has_keys(
        &score,
        &[
            "org_score",
            "run_id",
            "total_assets",
            "passed_count",
            "failed_count",
            "not_applicable_count",
            "severity_failing",
        ],
    );
    assert_eq!(
        (
            score["passed_count"].clone(),
            score["failed_count"].clone(),
            score["not_applicable_count"].clone()
        ),
        (json!(2), json!(3), json!(27))
    );

    let results = get(
        &app,
        &operator,
        &format!("/api/v1/compliance/assets/{weak}/results"),
    )
    .await;
    let items = results["items"].as_array().expect("items");
    assert_eq!(items.len(), 16);
    let ids: BTreeSet<&str> = items
        .iter()
        .map(|item| {
            has_keys(
                item,
                &[
                    "id",
                    "run_id",
                    "asset_id",
                    "rule_id",
                    "status",
                    "severity",
                    "evidence",
                    "created_at",
                ],
            );
            assert_eq!(item["run_id"], first["id"]);
            assert_eq!(item["asset_id"], weak.as_str());
            item["id"].as_str().expect("id")
        })
        .collect();
    assert_eq!(ids.len(), 16, "every result has its own id");
    let again = get(
        &app,
        &operator,
        &format!("/api/v1/compliance/assets/{weak}/results"),
    )
    .await;
    assert_eq!(again["items"], results["items"], "ids are stable");
    let absent = get(
        &app,
        &operator,
        &format!("/api/v1/compliance/assets/{}/results", uuid::Uuid::new_v4()),
    )
    .await;
    assert_eq!(absent["items"], json!([]));

    // More failures than a default page would hold? Without `limit`,
    // every newly failing item, each with title and control.
    let many: Vec<String> = {
        let mut ids = Vec::new();
        for n in 0..30 {
            ids.push(
                asset(
                    &app,
                    &operator,
                    &format!("bad-{n:02}"),
                    json!({"disk_encrypted": false, "firewall_enabled": false}),
                )
                .await,
            );
        }
        ids
    };
    run(&app, &operator).await;
    let newly = get(&app, &operator, "/api/v1/compliance/newly-failing").await;
    // Per new asset: disk-encryption, firewall-enabled, has-owner.
    assert_eq!(newly["total"], many.len() * 3);
    let items = newly["items"].as_array().expect("items");
    assert_eq!(items.len(), many.len() * 3, "every item without a limit");
    for item in items {
        has_keys(
            item,
            &["asset_id", "rule_id", "severity", "title", "control"],
        );
        assert!(item["title"].as_str().is_some_and(|t| !t.is_empty()));
    }
    let page = get(&app, &operator, "/api/v1/compliance/newly-failing?limit=10").await;
    assert_eq!(page["items"].as_array().expect("items").len(), 10);
    assert_eq!(page["total"], many.len() * 3);
    app.stop().await;
}

#[tokio::test]
async fn traversals_list_the_focus_asset_among_their_nodes() {
    let app = spawn_app().await;
    let operator = app.caller("operator").await;
    let app_id = asset(&app, &operator, "app", json!({})).await;
    let db_id = asset(&app, &operator, "db", json!({})).await;
    let added = app
        .call(
            &operator,
            "POST",
            "/api/v1/dependencies",
            Some(&json!({ "source_asset_id": app_id, "target_asset_id": db_id })),
            &[],
        )
        .await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.text);
    for (kind, focus, other) in [
        ("upstream", &app_id, &db_id),
        ("downstream", &db_id, &app_id),
    ] {
        let walk = get(
            &app,
            &operator,
            &format!("/api/v1/dependencies/{kind}/{focus}"),
        )
        .await;
        has_keys(&walk, &["asset", "nodes", "edges"]);
        let nodes: Vec<(&str, i64)> = walk["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .map(|node| {
                (
                    node["id"].as_str().expect("id"),
                    node["depth"].as_i64().expect("depth"),
                )
            })
            .collect();
        assert_eq!(nodes, [(focus.as_str(), 0), (other.as_str(), 1)], "{kind}");
    }
    app.stop().await;
}

#[tokio::test]
async fn audit_entries_carry_the_original_verbs_and_a_null_actor_for_the_system() {
    let app = spawn_app().await;
    let operator = app.caller("operator").await;
    let id = asset(&app, &operator, "audited", json!({})).await;
    let holder = operator.user_id.clone();
    for (method, path, body) in [
        (
            "PATCH",
            format!("/api/v1/assets/{id}"),
            json!({ "name": "audited-2" }),
        ),
        (
            "POST",
            format!("/api/v1/assets/{id}/state"),
            json!({ "lifecycle_state": "maintenance" }),
        ),
        (
            "POST",
            format!("/api/v1/checkouts/{id}/check-out"),
            json!({ "holder_id": holder }),
        ),
        (
            "POST",
            format!("/api/v1/checkouts/{id}/check-in"),
            json!({}),
        ),
    ] {
        let answer = app.call(&operator, method, &path, Some(&body), &[]).await;
        assert!(answer.status.is_success(), "{path}: {}", answer.text);
    }
    let admin = app.caller("admin").await;
    let deleted = app
        .call(&admin, "DELETE", &format!("/api/v1/assets/{id}"), None, &[])
        .await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.text);
    let trail = get(&app, &operator, &format!("/api/v1/audit/asset/{id}")).await;
    let verbs: Vec<(&str, &str)> = trail["items"]
        .as_array()
        .expect("items")
        .iter()
        .rev()
        .map(|entry| {
            has_keys(
                entry,
                &[
                    "id",
                    "created_at",
                    "actor_id",
                    "action",
                    "entity_type",
                    "entity_id",
                    "before",
                    "after",
                    "source_ip",
                    "event_type",
                    "request_id",
                    "event_position",
                ],
            );
            assert_eq!(
                entry["actor_id"],
                operator_or_admin(entry, &operator, &admin)
            );
            (
                entry["action"].as_str().expect("action"),
                entry["event_type"].as_str().expect("event type"),
            )
        })
        .collect();
    assert_eq!(
        verbs,
        [
            ("create", "asset.created"),
            ("update", "asset.updated"),
            ("state_change", "asset.lifecycle_changed"),
            ("checkout", "asset.checked_out"),
            ("checkin", "asset.checked_in"),
            ("delete", "asset.deleted"),
        ]
    );
    // The filter takes the coarse verb and the precise name alike.
    for filter in ["checkout", "asset.checked_out"] {
        let found = get(
            &app,
            &operator,
            &format!("/api/v1/audit?entity_id={id}&action={filter}"),
        )
        .await;
        assert_eq!(found["total"], 1, "{filter}");
    }
    // The bootstrap admin was registered by the system: no actor id.
    let system = get(&app, &admin, "/api/v1/audit?entity_type=user&limit=200").await;
    let bootstrap = system["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|entry| entry["event_type"] == "user.registered" && entry["actor"] == "system")
        .unwrap_or_else(|| panic!("a system registration: {system}"));
    assert_eq!(bootstrap["actor_id"], Value::Null);
    assert_eq!(bootstrap["action"], "create");
    app.stop().await;
}

/// The user id that acted on an entry of the asset trail: the admin
/// deleted, the operator did the rest.
fn operator_or_admin(entry: &Value, operator: &Caller, admin: &Caller) -> Value {
    if entry["event_type"] == "asset.deleted" {
        json!(admin.user_id)
    } else {
        json!(operator.user_id)
    }
}
