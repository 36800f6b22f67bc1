//! CMDB read models driven through the command side (the endpoints come
//! next): what the projections hold after a realistic sequence, and that a
//! rebuild of each reproduces its tables row for row.

use sentryops::domain::asset::{
    asset_id_for, draw_short_code, AssetCommand, AssetFields, AssetPatch,
};
use sentryops::domain::dependency::DependencyCommand;
use sentryops::domain::tag::TagCommand;
use sentryops::http::AppState;
use sentryops_events::cmdb::{
    dependency_id_for, tag_id_for, AssetType, Environment, LifecycleState,
};
use sentryops_events::EventMetadata;
use sentryops_projections::LogPosition;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::spawn_app;

async fn register(state: &AppState, name: &str, tags: Vec<Uuid>) -> (Uuid, Option<LogPosition>) {
    let short_code = draw_short_code(AssetType::Host);
    let id = asset_id_for(&short_code);
    let position = state
        .commands
        .asset(
            id,
            AssetCommand::Register {
                short_code,
                asset_type: AssetType::Host,
                lifecycle_state: LifecycleState::Active,
                environment: Environment::Prod,
                fields: AssetFields {
                    name: name.into(),
                    ..AssetFields::default()
                },
                tag_ids: tags,
            },
            EventMetadata::system(),
        )
        .await
        .expect("registered");
    (id, position)
}

async fn rows(state: &AppState, sql: &str) -> Vec<serde_json::Value> {
    sqlx::query_scalar::<_, serde_json::Value>(sql)
        .fetch_all(&state.pool)
        .await
        .expect("query")
}

#[tokio::test]
async fn cmdb_projections_follow_the_commands_and_rebuild_identically() {
    let app = spawn_app().await;
    let state = app.app.state().clone();
    let metadata = EventMetadata::system;
    let tag = tag_id_for("Edge");
    state
        .commands
        .tag(
            tag,
            TagCommand::Create {
                name: "Edge".into(),
                color: "#64748b".into(),
            },
            metadata(),
        )
        .await
        .expect("tag");
    let (web, _) = register(&state, "web-1", vec![tag]).await;
    let (db, _) = register(&state, "db-1", vec![]).await;
    let (cache, _) = register(&state, "cache-1", vec![tag]).await;
    for (source, target) in [(web, db), (web, cache), (cache, db)] {
        state
            .commands
            .dependency(
                dependency_id_for(source, target),
                DependencyCommand::Add {
                    source_asset_id: source,
                    target_asset_id: target,
                    kind: Some("runs_on".into()),
                },
                metadata(),
            )
            .await
            .expect("edge");
    }
    let mut attributes = serde_json::Map::new();
    attributes.insert("disk_encrypted".into(), json!(true));
    state
        .commands
        .asset(
            web,
            AssetCommand::Update {
                patch: AssetPatch {
                    name: Some("web-01".into()),
                    location: Some(Some("rack 4".into())),
                    attributes: Some(attributes),
                    ..AssetPatch::default()
                },
                expected_version: Some(2),
            },
            metadata(),
        )
        .await
        .expect("updated");
    let holder = Uuid::new_v4();
    for asset in [web, cache] {
        state
            .commands
            .asset(
                asset,
                AssetCommand::CheckOut {
                    checkout_id: Uuid::new_v4(),
                    holder_id: holder,
                    notes: None,
                },
                metadata(),
            )
            .await
            .expect("checked out");
    }
    let last = state
        .commands
        .asset(cache, AssetCommand::Delete, metadata())
        .await
        .expect("deleted")
        .expect("a position");
    assert!(state.await_read_models(last).await);

    // What the read models hold.
    let assets = rows(
        &state,
        "select jsonb_build_object('name', name, 'version', version, 'location', location, \
                'attributes', attributes) from assets order by name",
    )
    .await;
    assert_eq!(
        assets,
        vec![
            json!({ "name": "db-1", "version": 1, "location": null, "attributes": {} }),
            json!({ "name": "web-01", "version": 4, "location": "rack 4",
                    "attributes": { "disk_encrypted": true } }),
        ]
    );
    let tagged = rows(&state, "select to_jsonb(asset_id) from asset_tags").await;
    assert_eq!(tagged, vec![json!(web)], "the deleted asset lost its tag");
    let edges = rows(
        &state,
        "select jsonb_build_array(source_asset_id, target_asset_id) from dependencies",
    )
    .await;
    assert_eq!(
        edges,
        vec![json!([web, db])],
        "edges of the deleted asset are gone"
    );
    let open = rows(
        &state,
        "select to_jsonb(asset_id) from checkouts where checked_in_at is null",
    )
    .await;
    assert_eq!(open, vec![json!(web)], "the deleted asset was checked in");

    // A rebuild of each CMDB projection reproduces its tables row for row.
    let projections: [(&dyn sentryops_projections::Projection, &[&str]); 4] = [
        (
            &sentryops_projections::cmdb::AssetsProjection,
            &["assets", "asset_tags"],
        ),
        (&sentryops_projections::cmdb::TagsProjection, &["tags"]),
        (
            &sentryops_projections::cmdb::DependenciesProjection,
            &["dependencies"],
        ),
        (
            &sentryops_projections::cmdb::CheckoutsProjection,
            &["checkouts"],
        ),
    ];
    for (projection, tables) in projections {
        let digest = || async {
            let mut digests = Vec::new();
            for table in tables {
                digests.push(
                    sqlx::query_scalar::<_, Option<String>>(&format!(
                        "select md5(string_agg(t::text, '|' order by t::text)) from {table} t"
                    ))
                    .fetch_one(&state.pool)
                    .await
                    .expect("digest"),
                );
            }
            digests
        };
        let before = digest().await;
        assert!(before.iter().all(Option::is_some), "{tables:?} hold rows");
        let outcome = sentryops_projections::rebuild::rebuild_now(
            &state.pool,
            projection,
            &sentryops_projections::RuntimeOptions::default(),
            &mut |_, _| {},
        )
        .await
        .expect("rebuilt");
        assert!(matches!(
            outcome,
            sentryops_projections::rebuild::RebuildOutcome::Completed { .. }
        ));
        assert_eq!(digest().await, before, "{tables:?}");
    }
    app.stop().await;
}
