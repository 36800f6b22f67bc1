//! `sentryops replay`: an aggregate's state after each event, folded by
//! its own `apply`, matches what `GET /assets/{id}?as_of=` shows at that
//! time, step by step; `--until` and `--until-position` cut the stream.

use std::process::Command;

use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::assets::create_asset;
use crate::helpers::{spawn_app, TestApp};

fn replay(app: &TestApp, args: &[&str]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_sentryops"))
        .arg("replay")
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", &app.database_url)
        .output()
        .expect("the binary runs");
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

#[tokio::test]
async fn replay_asset_matches_as_of_at_every_step() {
    let app = spawn_app().await;
    let operator = app.caller("operator").await;
    let asset = create_asset(
        &app,
        &operator,
        json!({ "name": "replayed", "asset_type": "host", "environment": "staging" }),
    )
    .await;
    let id = asset["id"].as_str().expect("id").to_string();
    let path = format!("/api/v1/assets/{id}");
    for change in [
        json!({ "name": "replayed-2", "attributes": { "disk_encrypted": true } }),
        json!({ "lifecycle_state": "maintenance", "location": "dc-1" }),
        json!({ "location": null, "attributes": { "disk_encrypted": false, "os_supported": true } }),
    ] {
        let updated = app
            .call(
                &operator,
                "PATCH",
                &path,
                Some(&change),
                &[("if-match", "*")],
            )
            .await;
        assert_eq!(updated.status, StatusCode::OK, "{}", updated.text);
    }

    let (ok, output) = replay(&app, &["asset", &id, "--json"]);
    assert!(ok, "{output}");
    let replayed: Value = serde_json::from_str(&output).expect("JSON");
    let steps = replayed["steps"].as_array().expect("steps");
    // Registered, three updates, and the lifecycle change that the second
    // PATCH appended in the same transaction as its update.
    assert_eq!(steps.len(), 5, "{replayed:#}");
    assert_eq!(steps[3]["event_type"], "AssetLifecycleChanged");
    assert_eq!(steps[0]["event_type"], "AssetRegistered");
    assert_eq!(steps[0]["actor"], operator.user_id.as_str());
    for (index, step) in steps.iter().enumerate() {
        let at = step["recorded_at"].as_str().expect("time");
        let then = app
            .call(
                &operator,
                "GET",
                &format!("{path}?as_of={}", at.replace('+', "%2B")),
                None,
                &[],
            )
            .await;
        assert_eq!(then.status, StatusCode::OK, "{}", then.text);
        let view = &then.json()["data"];
        assert_eq!(step["state"]["version"], index as u64 + 1, "step {index}");
        // `as_of` is a time: events of one transaction share theirs, so it
        // shows the state after the last of them.
        let last_at_that_time = steps
            .iter()
            .rposition(|later| later["recorded_at"] == step["recorded_at"])
            .expect("itself");
        let state = &steps[last_at_that_time]["state"];
        assert_eq!(state["version"], view["version"], "step {index}");
        assert_eq!(state["fields"]["name"], view["name"], "step {index}");
        assert_eq!(
            state["fields"]["location"], view["location"],
            "step {index}"
        );
        assert_eq!(
            state["fields"]["attributes"], view["attributes"],
            "step {index}"
        );
        assert_eq!(
            state["lifecycle_state"], view["lifecycle_state"],
            "step {index}"
        );
        assert_eq!(state["short_code"], view["short_code"], "step {index}");
    }

    // Cut by position and by time: the prefix, the same states.
    let third = steps[2]["global_position"].as_i64().expect("position");
    let (ok, output) = replay(
        &app,
        &[
            "asset",
            &id,
            "--json",
            "--until-position",
            &third.to_string(),
        ],
    );
    assert!(ok, "{output}");
    let cut: Value = serde_json::from_str(&output).expect("JSON");
    assert_eq!(cut["steps"].as_array().expect("steps")[..], steps[..3]);
    let second_at = steps[1]["recorded_at"].as_str().expect("time");
    let (ok, output) = replay(&app, &["asset", &id, "--json", "--until", second_at]);
    assert!(ok, "{output}");
    let cut: Value = serde_json::from_str(&output).expect("JSON");
    assert_eq!(cut["steps"].as_array().expect("steps")[..], steps[..2]);

    // The human form names each event; an unknown id or a bad time fails.
    let (ok, output) = replay(&app, &["asset", &id]);
    assert!(ok, "{output}");
    assert!(output.contains("AssetRegistered v1.0"), "{output}");
    assert!(output.contains("AssetUpdated v2.0"), "{output}");
    let (ok, _) = replay(&app, &["asset", "00000000-0000-0000-0000-000000000000"]);
    assert!(!ok, "no stream, non-zero exit");
    let (ok, output) = replay(&app, &["asset", &id, "--until", "yesterday"]);
    assert!(!ok);
    assert!(output.contains("RFC 3339"), "{output}");
}

#[tokio::test]
async fn replay_user_redacts_the_password_hash_and_replays_a_compliance_run() {
    let app = spawn_app().await;
    let user_id = app
        .created_user_id("replay@tests.example.com", "viewer")
        .await;
    let (ok, output) = replay(&app, &["user", &user_id, "--json"]);
    assert!(ok, "{output}");
    assert!(
        !output.contains("argon2"),
        "no secret in a replay: {output}"
    );
    let replayed: Value = serde_json::from_str(&output).expect("JSON");
    assert_eq!(replayed["steps"][0]["event_type"], "UserRegistered");

    let run = app
        .send_json("POST", "/api/v1/compliance/runs", &json!({}))
        .await;
    assert_eq!(run.status, StatusCode::CREATED, "{}", run.text);
    let run_id = run.json()["data"]["id"].as_str().expect("id").to_string();
    let (ok, output) = replay(&app, &["compliance-run", &run_id, "--json"]);
    assert!(ok, "{output}");
    let replayed: Value = serde_json::from_str(&output).expect("JSON");
    let steps = replayed["steps"].as_array().expect("steps");
    assert_eq!(steps[0]["event_type"], "ComplianceRunStarted");
    let last = &steps.last().expect("a step")["state"];
    assert_eq!(last["run_id"], run_id.as_str());
    assert_eq!(
        last["completed"]["org_score"],
        run.json()["data"]["org_score"]
    );
    assert_eq!(last["assets_recorded"], last["total_assets"]);
}
