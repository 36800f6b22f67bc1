//! A stored `AssetUpdated` 1.0 (as an older build wrote it) and the 2.0
//! this build writes read alike everywhere: the aggregate's next decision,
//! the assets projection, `as_of`, history, the audit timeline, compliance
//! runs and their verification. The 1.0 row is appended as it was stored
//! then, through the store's own append; it is never rewritten.

use axum::http::StatusCode;
use sentryops_events::EventMetadata;
use sentryops_projections::store::{self, NewEvent};
use serde_json::{json, Value};

use crate::compliance::{asset, get, run};
use crate::helpers::{spawn_app, Caller, TestApp};

/// The same change, as the 1.0 map of JSON values.
const CHANGE_1_0: &str = r#"{"AssetUpdated": {"changes": {
    "attributes": {"before": {"disk_encrypted": false}, "after": {"disk_encrypted": true}},
    "environment": {"before": "staging", "after": "prod"},
    "location": {"before": "rack 1", "after": null},
    "name": {"before": "twin", "after": "twin-renamed"}
}}}"#;

/// The same change, through the API (a 2.0 event).
fn change_2_0() -> Value {
    json!({
        "attributes": {"disk_encrypted": true},
        "environment": "prod",
        "location": null,
        "name": "twin-renamed",
    })
}

async fn twin(app: &TestApp, operator: &Caller) -> String {
    asset(
        app,
        operator,
        "twin",
        json!({"environment": "staging", "location": "rack 1", "attributes": {"disk_encrypted": false}}),
    )
    .await
}

/// The fields both twins must share (ids, short codes and times differ).
fn shared(view: &Value) -> Value {
    json!({
        "name": view["name"],
        "environment": view["environment"],
        "location": view["location"],
        "attributes": view["attributes"],
        "version": view["version"],
    })
}

#[tokio::test]
async fn a_stored_1_0_update_reads_like_a_2_0_one_everywhere() {
    let app = spawn_app().await;
    let operator = app.caller("operator").await;
    let auditor = app.caller("auditor").await;
    let old = twin(&app, &operator).await;
    let new = twin(&app, &operator).await;

    // The old build's event, at the stream's next sequence.
    let state = app.app.state().clone();
    let metadata = serde_json::to_value(EventMetadata::system().to_map()).expect("metadata");
    let appended = store::append(
        &state.pool,
        &[NewEvent {
            aggregate_type: "asset".into(),
            aggregate_id: old.clone(),
            sequence: 2,
            event_type: "AssetUpdated".into(),
            event_version: "1.0".into(),
            payload: CHANGE_1_0.into(),
        }],
        &metadata,
    )
    .await
    .expect("appended");
    assert!(
        state
            .await_read_models(appended.last_position().expect("position"))
            .await
    );
    let patched = app
        .call(
            &operator,
            "PATCH",
            &format!("/api/v1/assets/{new}"),
            Some(&change_2_0()),
            &[],
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text);
    let versions: Vec<(String,)> = sqlx::query_as(
        "select event_version from events where event_type = 'AssetUpdated' order by global_position",
    )
    .fetch_all(&state.pool)
    .await
    .expect("versions");
    assert_eq!(versions, vec![("1.0".into(),), ("2.0".into(),)]);

    // The projection (and the cached view).
    let old_view = get(&app, &operator, &format!("/api/v1/assets/{old}")).await;
    let new_view = get(&app, &operator, &format!("/api/v1/assets/{new}")).await;
    assert_eq!(shared(&old_view), shared(&new_view));
    assert_eq!(old_view["name"], "twin-renamed");
    assert_eq!(old_view["location"], Value::Null);

    // `as_of`: folded from the log by the aggregate.
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .expect("time");
    let as_of = |id: &str| format!("/api/v1/assets/{id}?as_of={}", now.replace('+', "%2B"));
    let old_then = get(&app, &operator, &as_of(&old)).await;
    let new_then = get(&app, &operator, &as_of(&new)).await;
    assert_eq!(shared(&old_then), shared(&new_then));
    assert_eq!(shared(&old_then), shared(&old_view));

    // History and the audit timeline: the same before and after.
    let history = |id: String| {
        let app = &app;
        let operator = &operator;
        async move {
            let page = get(app, operator, &format!("/api/v1/assets/{id}/history")).await;
            let newest = page["items"][0].clone();
            (
                newest["event_type"].clone(),
                newest["before"].clone(),
                newest["after"].clone(),
            )
        }
    };
    let old_history = history(old.clone()).await;
    assert_eq!(old_history, history(new.clone()).await);
    assert_eq!(old_history.1["location"], "rack 1");
    let audit = |id: String| {
        let app = &app;
        let auditor = &auditor;
        async move {
            let page = get(app, auditor, &format!("/api/v1/audit/asset/{id}")).await;
            let newest = page["items"][0].clone();
            (
                newest["action"].clone(),
                newest["before"].clone(),
                newest["after"].clone(),
            )
        }
    };
    let old_audit = audit(old.clone()).await;
    assert_eq!(old_audit, audit(new.clone()).await);
    assert_eq!(old_audit.0, "update");

    // Compliance: a run folds the 1.0 change, and its verification agrees.
    let run = run(&app, &operator).await;
    let results = |id: String| {
        let app = &app;
        let operator = &operator;
        async move {
            let page = get(
                app,
                operator,
                &format!("/api/v1/compliance/assets/{id}/results"),
            )
            .await;
            let items = page["items"].as_array().cloned().expect("results");
            items
                .into_iter()
                .map(|result| (result["rule_id"].clone(), result["status"].clone()))
                .collect::<Vec<_>>()
        }
    };
    let old_results = results(old.clone()).await;
    assert_eq!(old_results, results(new.clone()).await);
    assert!(
        old_results.contains(&(json!("disk-encryption"), json!("pass"))),
        "{old_results:?}"
    );
    let verified = app
        .call(
            &auditor,
            "POST",
            &format!(
                "/api/v1/compliance/runs/{}/verify",
                run["id"].as_str().expect("id")
            ),
            None,
            &[],
        )
        .await;
    assert_eq!(
        verified.json()["data"]["matches"],
        true,
        "{}",
        verified.text
    );

    // The aggregate decides on the upcast state: a PATCH at the version the
    // 1.0 event made, and a no-op for what it already set.
    let again = app
        .call(
            &operator,
            "PATCH",
            &format!("/api/v1/assets/{old}"),
            Some(&json!({"name": "twin-renamed", "description": "after the upgrade"})),
            &[("if-match", "\"2\"")],
        )
        .await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    assert_eq!(again.json()["data"]["version"], 3);
    let changes: Value =
        sqlx::query_scalar("select payload from events where aggregate_id = $1 and sequence = 3")
            .bind(&old)
            .fetch_one(&state.pool)
            .await
            .expect("event");
    assert_eq!(
        changes["AssetUpdated"]["changes"],
        json!([{"field": "description", "before": null, "after": "after the upgrade"}]),
        "only the description changed"
    );
    app.stop().await;
}
