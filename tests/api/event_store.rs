//! The one door to the `events` table against the real database: the
//! append (positions back, all or none, conflicts) and the typed reads
//! (upcast on read, loud on a payload that does not decode).

use sentryops_projections::store::{self, AppendError, NewEvent, StreamRange};
use serde_json::json;

use crate::helpers::spawn_app;

fn event(aggregate_id: &str, sequence: i64) -> NewEvent {
    NewEvent {
        aggregate_type: "tag".to_string(),
        aggregate_id: aggregate_id.to_string(),
        sequence,
        event_type: "TagDeleted".to_string(),
        event_version: "1.0".to_string(),
        payload: r#""TagDeleted""#.to_string(),
    }
}

#[tokio::test]
async fn several_events_append_atomically_and_report_each_position() {
    let app = spawn_app().await;
    let pool = app.app.state().pool.clone();
    let metadata = json!({ "actor": "system" });
    let appended = store::append(
        &pool,
        &[event("agg", 1), event("agg", 2), event("agg", 3)],
        &metadata,
    )
    .await
    .expect("appended");
    let stored: Vec<(i64, i64, i64)> = sqlx::query_as(
        "select sequence, transaction_id::text::bigint, global_position from events \
         where aggregate_id = 'agg' order by sequence",
    )
    .fetch_all(&pool)
    .await
    .expect("read");
    let returned: Vec<(i64, i64, i64)> = appended
        .events
        .iter()
        .map(|event| {
            (
                event.sequence,
                event.position.transaction_id,
                event.position.position,
            )
        })
        .collect();
    assert_eq!(
        returned, stored,
        "each event with its own position, in order"
    );
    let last = appended.last_position().expect("a position");
    assert_eq!(last.position, stored[2].2);

    // A batch that reuses a sequence is refused whole: nothing half-written.
    let result = store::append(&pool, &[event("agg", 4), event("agg", 3)], &metadata).await;
    assert!(matches!(result, Err(AppendError::Conflict)), "{result:?}");
    let count: i64 = sqlx::query_scalar("select count(*) from events where aggregate_id = 'agg'")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(count, 3);

    // A single event takes the one-row path; a duplicate is the conflict.
    let one = store::append(&pool, &[event("agg", 4)], &metadata)
        .await
        .expect("appended");
    assert!(one.last_position().expect("position") > last);
    let result = store::append(&pool, &[event("agg", 4)], &metadata).await;
    assert!(matches!(result, Err(AppendError::Conflict)), "{result:?}");
    // Nothing to append is no statement and no position.
    let none = store::append(&pool, &[], &metadata).await.expect("nothing");
    assert_eq!(none.last_position(), None);
    app.stop().await;
}

#[tokio::test]
async fn a_stored_old_version_is_upcast_on_read_and_a_bad_payload_fails_loudly() {
    use sentryops_events::cmdb::{AssetChange, AssetEvent};
    let app = spawn_app().await;
    let pool = app.app.state().pool.clone();
    let metadata = json!({ "actor": "system" });
    let old = NewEvent {
        aggregate_type: "asset".into(),
        aggregate_id: "a".into(),
        sequence: 1,
        event_type: "AssetUpdated".into(),
        event_version: "1.0".into(),
        payload: r#"{"AssetUpdated":{"changes":{"name":{"before":"x","after":"y"}}}}"#.into(),
    };
    store::append(&pool, &[old], &metadata)
        .await
        .expect("appended");
    let read = store::read_stream::<AssetEvent>(&pool, "a", StreamRange::default())
        .await
        .expect("read");
    assert_eq!(read.len(), 1);
    assert_eq!(
        read[0].event,
        AssetEvent::AssetUpdated {
            changes: vec![AssetChange::Name {
                before: "x".into(),
                after: "y".into()
            }]
        }
    );
    assert_eq!(
        read[0].stored.event_version, "1.0",
        "the row is never rewritten"
    );

    let bad = NewEvent {
        aggregate_type: "asset".into(),
        aggregate_id: "b".into(),
        sequence: 1,
        event_type: "AssetUpdated".into(),
        event_version: "2.0".into(),
        payload: r#"{"AssetUpdated":{"changes":[{"field":"colour","before":1,"after":2}]}}"#.into(),
    };
    store::append(&pool, &[bad], &metadata)
        .await
        .expect("appended");
    let error = store::read_stream::<AssetEvent>(&pool, "b", StreamRange::default())
        .await
        .expect_err("refused");
    assert!(
        matches!(&error, store::ReadError::Decode { aggregate_id, .. } if aggregate_id == "b"),
        "{error}"
    );
    app.stop().await;
}

#[tokio::test]
async fn concurrent_registrations_of_one_short_code_create_one_asset_and_audit_it() {
    use sentryops::domain::asset::{asset_id_for, AssetCommand, AssetError, AssetFields};
    use sentryops_events::cmdb::{AssetType, Environment, LifecycleState};
    use sentryops_events::EventMetadata;

    let app = spawn_app().await;
    let state = app.app.state().clone();
    let short_code = "HST-QQQQQ";
    let register = |name: &str| AssetCommand::Register {
        short_code: short_code.into(),
        asset_type: AssetType::Host,
        lifecycle_state: LifecycleState::Active,
        environment: Environment::Prod,
        fields: AssetFields {
            name: name.into(),
            ..AssetFields::default()
        },
        tag_ids: vec![],
    };
    let attempts = (0..8).map(|n| {
        let state = state.clone();
        let command = register(&format!("host-{n}"));
        async move {
            state
                .commands
                .asset(asset_id_for(short_code), command, EventMetadata::system())
                .await
        }
    });
    let outcomes = futures_util::future::join_all(attempts).await;
    let created = outcomes.iter().filter(|outcome| outcome.is_ok()).count();
    assert_eq!(created, 1, "{outcomes:?}");
    for outcome in outcomes.iter().filter(|outcome| outcome.is_err()) {
        assert!(
            matches!(
                outcome,
                Err(cqrs_es::AggregateError::AggregateConflict)
                    | Err(cqrs_es::AggregateError::UserError(
                        AssetError::ShortCodeTaken
                    ))
            ),
            "{outcome:?}"
        );
    }
    let position = outcomes
        .into_iter()
        .find_map(|outcome| outcome.ok().flatten())
        .expect("a position");
    assert!(state.await_read_models(position).await);
    let audited: Vec<(String, String)> =
        sqlx::query_as("select action, entity_id from audit_timeline where entity_type = 'asset'")
            .fetch_all(&state.pool)
            .await
            .expect("audit");
    assert_eq!(
        audited,
        vec![(
            "asset.created".to_string(),
            asset_id_for(short_code).to_string()
        )]
    );
    app.stop().await;
}
