//! The demo data of `sentryops serve --demo` (issue 4, item 5): its shape,
//! its vocabulary, and that a second load changes nothing.

use std::collections::BTreeSet;

use sentryops::demo::cmdb::{demo_asset_id, POSTURE_KEYS};
use serde_json::Value;

use crate::helpers::spawn_app;

#[tokio::test]
async fn the_demo_cmdb_loads_once_with_every_kind_of_asset() {
    let app = spawn_app().await;
    let state = app.app.state().clone();
    sentryops::demo::load(&state).await.expect("demo data");
    let events = app.event_count().await;
    sentryops::demo::load(&state).await.expect("second load");
    assert_eq!(
        app.event_count().await,
        events,
        "a second load appends nothing"
    );

    let pool = &state.pool;
    let count = |sql: &'static str| async move {
        sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(pool)
            .await
            .expect("count")
    };
    assert_eq!(count("select count(*) from assets").await, 30);
    assert_eq!(
        count("select count(distinct asset_type) from assets").await,
        5
    );
    assert_eq!(
        count("select count(distinct environment) from assets").await,
        3
    );
    assert_eq!(
        count("select count(distinct lifecycle_state) from assets").await,
        4
    );
    assert!(count("select count(*) from dependencies").await >= 20);
    assert_eq!(count("select count(*) from tags").await, 4);
    assert!(count("select count(*) from asset_tags").await >= 10);
    assert_eq!(
        count("select count(*) from checkouts where checked_in_at is null").await,
        1
    );
    assert!(count("select count(*) from assets where owner_id is null").await > 0);
    // Owners with and without MFA.
    let mfa: Vec<bool> = sqlx::query_scalar(
        "select distinct u.mfa_enabled from assets a join users u on u.id = a.owner_id",
    )
    .fetch_all(pool)
    .await
    .expect("owners");
    assert_eq!(mfa.len(), 2, "owners with and without MFA: {mfa:?}");

    // Posture attributes speak only the compliance rules' vocabulary.
    let keys: Vec<String> =
        sqlx::query_scalar("select distinct jsonb_object_keys(attributes) from assets")
            .fetch_all(pool)
            .await
            .expect("keys");
    let vocabulary: BTreeSet<&str> = POSTURE_KEYS.into_iter().collect();
    for key in &keys {
        assert!(
            vocabulary.contains(key.as_str()),
            "{key} is not a posture key"
        );
    }
    assert!(keys.len() >= 12, "{keys:?}");

    // The demo graph holds a cycle, and the traversal ends.
    let admin = app.caller("viewer").await;
    let core = demo_asset_id("core-sw-01").expect("core switch");
    let graph = app
        .call(
            &admin,
            "GET",
            &format!("/api/v1/dependencies/graph/{core}?max_depth=10"),
            None,
            &[],
        )
        .await;
    assert_eq!(graph.status, axum::http::StatusCode::OK, "{}", graph.text);
    let nodes = graph.json()["data"]["nodes"].as_array().map(Vec::len);
    assert!(nodes.is_some_and(|nodes| nodes >= 15), "{}", graph.text);
    let names: Vec<Value> = graph.json()["data"]["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|node| node["name"].clone())
        .collect();
    assert!(names.contains(&Value::from("edge-fw-01")));
    app.stop().await;
}
