//! Tags, dependencies and check-outs (API.md "CMDB"): each route's success
//! and errors, the uniqueness rules under concurrency, traversals over a
//! cycle, and what deleting an asset removes.

use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::assets::create_asset;
use crate::helpers::{spawn_app, Caller, TestApp, TestResponse};

fn id_of(value: &Value) -> String {
    value["id"].as_str().expect("id").to_string()
}

async fn host(app: &TestApp, caller: &Caller, name: &str) -> String {
    id_of(&create_asset(app, caller, json!({ "name": name, "asset_type": "host" })).await)
}

async fn depend(app: &TestApp, caller: &Caller, source: &str, target: &str) -> TestResponse {
    app.call(
        caller,
        "POST",
        "/api/v1/dependencies",
        Some(&json!({ "source_asset_id": source, "target_asset_id": target, "kind": "runs_on" })),
        &[],
    )
    .await
}

fn node_names(traversal: &TestResponse) -> Vec<(String, i64)> {
    traversal.json()["data"]["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|node| {
            (
                node["name"].as_str().expect("name").to_string(),
                node["depth"].as_i64().expect("depth"),
            )
        })
        .collect()
}

#[tokio::test]
async fn tags_are_created_listed_attached_detached_and_deleted() {
    let app = spawn_app().await;
    let operator = app.caller("operator").await;
    let viewer = app.caller("viewer").await;
    let created = app
        .call(
            &operator,
            "POST",
            "/api/v1/tags",
            Some(&json!({ "name": " PCI " })),
            &[],
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert!(created.header("x-event-position").is_some());
    let tag = created.json()["data"].clone();
    assert_eq!(tag["name"], "PCI");
    assert_eq!(tag["color"], "#64748b");
    let tag_id = id_of(&tag);
    app.call(
        &operator,
        "POST",
        "/api/v1/tags",
        Some(&json!({ "name": "pci" })),
        &[],
    )
    .await
    .assert_error(StatusCode::CONFLICT, "conflict");
    for (body, field) in [
        (json!({ "name": "" }), "name"),
        (json!({ "name": "t".repeat(65) }), "name"),
        (json!({ "name": "ok", "color": "red" }), "color"),
        (json!({ "name": "ok", "color": "#12345" }), "color"),
    ] {
        let refused = app
            .call(&operator, "POST", "/api/v1/tags", Some(&body), &[])
            .await;
        let error = refused.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
        assert_eq!(error["error"]["details"]["fields"][0]["field"], field);
    }
    app.call(
        &operator,
        "POST",
        "/api/v1/tags",
        Some(&json!({ "name": "dmz", "color": "#ABC" })),
        &[],
    )
    .await;
    let list = app.call(&viewer, "GET", "/api/v1/tags", None, &[]).await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.json()["data"]["total"], 2);
    assert_eq!(list.json()["data"]["items"][0]["name"], "dmz");
    assert_eq!(list.json()["data"]["items"][0]["color"], "#abc");

    let asset = host(&app, &operator, "pos-terminal").await;
    let link = format!("/api/v1/tags/{tag_id}/assets/{asset}");
    let attached = app.call(&operator, "POST", &link, None, &[]).await;
    assert_eq!(attached.status, StatusCode::OK, "{}", attached.text);
    assert_eq!(attached.json()["data"]["tags"][0]["name"], "PCI");
    app.call(&operator, "POST", &link, None, &[])
        .await
        .assert_error(StatusCode::CONFLICT, "conflict");
    let unknown = uuid::Uuid::new_v4();
    app.call(
        &operator,
        "POST",
        &format!("/api/v1/tags/{unknown}/assets/{asset}"),
        None,
        &[],
    )
    .await
    .assert_error(StatusCode::NOT_FOUND, "not_found");
    app.call(
        &operator,
        "POST",
        &format!("/api/v1/tags/{tag_id}/assets/{unknown}"),
        None,
        &[],
    )
    .await
    .assert_error(StatusCode::NOT_FOUND, "not_found");
    let detached = app.call(&operator, "DELETE", &link, None, &[]).await;
    assert_eq!(detached.status, StatusCode::OK, "{}", detached.text);
    assert_eq!(detached.json()["data"]["tags"], json!([]));
    app.call(&operator, "DELETE", &link, None, &[])
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");

    // Deleting a tag detaches it everywhere, on the assets' own streams: a
    // tag re-created under the same name starts detached.
    app.call(&operator, "POST", &link, None, &[]).await;
    let deleted = app
        .call(
            &operator,
            "DELETE",
            &format!("/api/v1/tags/{tag_id}"),
            None,
            &[],
        )
        .await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.text);
    assert_eq!(
        deleted.json()["data"],
        json!({ "status": "deleted", "tag_id": tag_id })
    );
    let read = app
        .call(
            &viewer,
            "GET",
            &format!("/api/v1/assets/{asset}"),
            None,
            &[],
        )
        .await;
    assert_eq!(read.json()["data"]["tags"], json!([]));
    let history = app
        .call(
            &viewer,
            "GET",
            &format!("/api/v1/assets/{asset}/history"),
            None,
            &[],
        )
        .await;
    assert_eq!(
        history.json()["data"]["items"][0]["action"],
        "asset.untagged"
    );
    app.call(
        &operator,
        "DELETE",
        &format!("/api/v1/tags/{tag_id}"),
        None,
        &[],
    )
    .await
    .assert_error(StatusCode::NOT_FOUND, "not_found");
    let again = app
        .call(
            &operator,
            "POST",
            "/api/v1/tags",
            Some(&json!({ "name": "PCI" })),
            &[],
        )
        .await;
    assert_eq!(again.status, StatusCode::CREATED, "{}", again.text);
    let reattached = app.call(&operator, "POST", &link, None, &[]).await;
    assert_eq!(reattached.status, StatusCode::OK, "{}", reattached.text);
    app.stop().await;
}

#[tokio::test]
async fn dependencies_refuse_self_unknown_and_duplicate_edges_even_concurrently() {
    let app = spawn_app().await;
    let operator = app.caller("operator").await;
    let web = host(&app, &operator, "web").await;
    let db = host(&app, &operator, "db").await;
    let (a, b) = tokio::join!(
        depend(&app, &operator, &web, &db),
        depend(&app, &operator, &web, &db)
    );
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(
        statuses,
        [StatusCode::CREATED, StatusCode::CONFLICT],
        "{} / {}",
        a.text,
        b.text
    );
    let edge = if a.status == StatusCode::CREATED {
        a
    } else {
        b
    };
    assert!(edge.header("x-event-position").is_some());
    let edge = edge.json()["data"].clone();
    assert_eq!(edge["source_asset_id"], json!(web));
    assert_eq!(edge["target_asset_id"], json!(db));
    assert_eq!(edge["kind"], "runs_on");
    // The reverse edge is another edge.
    assert_eq!(
        depend(&app, &operator, &db, &web).await.status,
        StatusCode::CREATED
    );
    let error = depend(&app, &operator, &web, &web)
        .await
        .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    assert_eq!(
        error["error"]["details"]["fields"][0]["field"],
        "target_asset_id"
    );
    depend(&app, &operator, &web, &uuid::Uuid::new_v4().to_string())
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    let path = format!("/api/v1/dependencies/{}", id_of(&edge));
    let removed = app.call(&operator, "DELETE", &path, None, &[]).await;
    assert_eq!(removed.status, StatusCode::OK, "{}", removed.text);
    assert_eq!(
        removed.json()["data"],
        json!({ "status": "deleted", "dependency_id": id_of(&edge) })
    );
    app.call(&operator, "DELETE", &path, None, &[])
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    // Removed, the edge can be added again.
    assert_eq!(
        depend(&app, &operator, &web, &db).await.status,
        StatusCode::CREATED
    );
    app.stop().await;
}

#[tokio::test]
async fn traversals_follow_direction_stop_at_max_depth_and_survive_cycles() {
    let app = spawn_app().await;
    let operator = app.caller("operator").await;
    let viewer = app.caller("viewer").await;
    // app → api → db → storage → app (a cycle), and monitor → app.
    let names = ["app", "api", "db", "storage", "monitor"];
    let mut ids = Vec::new();
    for name in names {
        ids.push(host(&app, &operator, name).await);
    }
    for (source, target) in [(0, 1), (1, 2), (2, 3), (3, 0), (4, 0)] {
        let added = depend(&app, &operator, &ids[source], &ids[target]).await;
        assert_eq!(added.status, StatusCode::CREATED, "{}", added.text);
    }
    let walk = |kind: &str, query: &str| {
        let app = &app;
        let viewer = &viewer;
        let path = format!("/api/v1/dependencies/{kind}/{}{query}", ids[0]);
        async move { app.call(viewer, "GET", &path, None, &[]).await }
    };
    let upstream = walk("upstream", "").await;
    assert_eq!(upstream.status, StatusCode::OK, "{}", upstream.text);
    assert_eq!(upstream.json()["data"]["asset"]["name"], "app");
    assert_eq!(
        node_names(&upstream),
        [
            ("app".into(), 0),
            ("api".into(), 1),
            ("db".into(), 2),
            ("storage".into(), 3)
        ]
    );
    assert_eq!(
        upstream.json()["data"]["edges"]
            .as_array()
            .expect("edges")
            .len(),
        4
    );
    let shallow = walk("upstream", "?max_depth=1").await;
    assert_eq!(node_names(&shallow), [("app".into(), 0), ("api".into(), 1)]);
    let downstream = walk("downstream", "").await;
    assert_eq!(
        node_names(&downstream),
        [
            ("app".into(), 0),
            ("monitor".into(), 1),
            ("storage".into(), 1),
            ("db".into(), 2),
            ("api".into(), 3)
        ]
    );
    let graph = walk("graph", "?max_depth=1").await;
    assert_eq!(
        node_names(&graph),
        [
            ("app".into(), 0),
            ("api".into(), 1),
            ("monitor".into(), 1),
            ("storage".into(), 1)
        ]
    );
    let whole = walk("graph", "").await;
    assert_eq!(
        whole.json()["data"]["nodes"]
            .as_array()
            .expect("nodes")
            .len(),
        5,
        "the focus asset and four others"
    );
    assert_eq!(
        whole.json()["data"]["edges"]
            .as_array()
            .expect("edges")
            .len(),
        5
    );
    for bad in ["?max_depth=0", "?max_depth=11", "?max_depth=deep"] {
        walk("graph", bad)
            .await
            .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    }
    for kind in ["upstream", "downstream", "graph"] {
        app.call(
            &viewer,
            "GET",
            &format!("/api/v1/dependencies/{kind}/{}", uuid::Uuid::new_v4()),
            None,
            &[],
        )
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    }

    // A deleted asset leaves every graph.
    let admin = app.caller("admin").await;
    let deleted = app
        .call(
            &admin,
            "DELETE",
            &format!("/api/v1/assets/{}", ids[2]),
            None,
            &[],
        )
        .await;
    assert_eq!(deleted.status, StatusCode::OK);
    let upstream = walk("upstream", "").await;
    assert_eq!(
        node_names(&upstream),
        [("app".into(), 0), ("api".into(), 1)]
    );
    let whole = walk("graph", "?max_depth=10").await;
    let reached: Vec<String> = node_names(&whole)
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    assert!(!reached.contains(&"db".to_string()), "{reached:?}");
    app.stop().await;
}

#[tokio::test]
async fn one_check_out_at_a_time_with_holder_and_history() {
    let app = spawn_app().await;
    let operator = app.caller("operator").await;
    let viewer = app.caller("viewer").await;
    let laptop = host(&app, &operator, "laptop-7").await;
    let out = format!("/api/v1/checkouts/{laptop}/check-out");
    let body = json!({ "holder_id": viewer.user_id, "notes": "travel" });
    let (a, b) = tokio::join!(
        app.call(&operator, "POST", &out, Some(&body), &[]),
        app.call(&operator, "POST", &out, Some(&body), &[]),
    );
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(
        statuses,
        [StatusCode::CREATED, StatusCode::CONFLICT],
        "{} / {}",
        a.text,
        b.text
    );
    let checkout = if a.status == StatusCode::CREATED {
        a
    } else {
        b
    };
    assert!(checkout.header("x-event-position").is_some());
    let checkout = checkout.json()["data"].clone();
    assert_eq!(checkout["holder_id"], json!(viewer.user_id));
    assert_eq!(checkout["notes"], "travel");
    assert_eq!(checkout["checked_in_at"], Value::Null);
    let holder = app
        .call(
            &viewer,
            "GET",
            &format!("/api/v1/checkouts/{laptop}/holder"),
            None,
            &[],
        )
        .await;
    assert_eq!(holder.status, StatusCode::OK);
    assert_eq!(holder.json()["data"]["id"], checkout["id"]);

    let back = format!("/api/v1/checkouts/{laptop}/check-in");
    let returned = app.call(&operator, "POST", &back, None, &[]).await;
    assert_eq!(returned.status, StatusCode::OK, "{}", returned.text);
    assert_eq!(returned.json()["data"]["id"], checkout["id"]);
    assert!(returned.json()["data"]["checked_in_at"].is_string());
    app.call(&operator, "POST", &back, None, &[])
        .await
        .assert_error(StatusCode::CONFLICT, "conflict");
    app.call(
        &viewer,
        "GET",
        &format!("/api/v1/checkouts/{laptop}/holder"),
        None,
        &[],
    )
    .await
    .assert_error(StatusCode::NOT_FOUND, "not_found");
    let second = app
        .call(
            &operator,
            "POST",
            &out,
            Some(&json!({ "holder_id": operator.user_id })),
            &[],
        )
        .await;
    assert_eq!(second.status, StatusCode::CREATED, "{}", second.text);
    let history = app
        .call(
            &viewer,
            "GET",
            &format!("/api/v1/checkouts/{laptop}/history"),
            None,
            &[],
        )
        .await;
    assert_eq!(history.status, StatusCode::OK);
    assert_eq!(history.json()["data"]["total"], 2);
    assert_eq!(
        history.json()["data"]["items"][0]["holder_id"],
        json!(operator.user_id)
    );

    let refused = app
        .call(
            &operator,
            "POST",
            &out,
            Some(&json!({ "holder_id": uuid::Uuid::new_v4() })),
            &[],
        )
        .await;
    let error = refused.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    assert_eq!(error["error"]["details"]["fields"][0]["field"], "holder_id");
    let unknown = uuid::Uuid::new_v4();
    app.call(
        &operator,
        "POST",
        &format!("/api/v1/checkouts/{unknown}/check-out"),
        Some(&json!({ "holder_id": viewer.user_id })),
        &[],
    )
    .await
    .assert_error(StatusCode::NOT_FOUND, "not_found");
    app.call(
        &operator,
        "POST",
        &format!("/api/v1/checkouts/{unknown}/check-in"),
        None,
        &[],
    )
    .await
    .assert_error(StatusCode::NOT_FOUND, "not_found");
    app.call(
        &viewer,
        "GET",
        &format!("/api/v1/checkouts/{unknown}/history"),
        None,
        &[],
    )
    .await
    .assert_error(StatusCode::NOT_FOUND, "not_found");

    // Deleting the asset checks it in and removes it from the check-outs.
    let admin = app.caller("admin").await;
    app.call(
        &admin,
        "DELETE",
        &format!("/api/v1/assets/{laptop}"),
        None,
        &[],
    )
    .await;
    app.call(
        &viewer,
        "GET",
        &format!("/api/v1/checkouts/{laptop}/holder"),
        None,
        &[],
    )
    .await
    .assert_error(StatusCode::NOT_FOUND, "not_found");
    app.call(
        &viewer,
        "GET",
        &format!("/api/v1/checkouts/{laptop}/history"),
        None,
        &[],
    )
    .await
    .assert_error(StatusCode::NOT_FOUND, "not_found");
    app.stop().await;
}
