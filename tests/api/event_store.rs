//! The append path of our cqrs-es repository against the real database.

use cqrs_es::persist::{PersistedEventRepository, PersistenceError, SerializedEvent};
use sentryops::domain::event_store::{capture_appended, EventRepository};
use sentryops::domain::user::User;
use serde_json::json;

use crate::helpers::spawn_app;

fn event(aggregate_id: &str, sequence: usize) -> SerializedEvent {
    SerializedEvent::new(
        aggregate_id.to_string(),
        sequence,
        "user".to_string(),
        "UserRegistered".to_string(),
        "1.0".to_string(),
        json!({ "n": sequence }),
        json!({ "actor": "system" }),
    )
}

#[tokio::test]
async fn several_events_append_atomically_and_report_the_last_position() {
    let app = spawn_app().await;
    let pool = app.app.state().pool.clone();
    let repository = EventRepository::new(pool.clone());
    let (result, appended) = capture_appended(
        repository.persist::<User>(&[event("agg", 1), event("agg", 2), event("agg", 3)], None),
    )
    .await;
    result.expect("appended");
    let appended = appended.expect("a position");
    let (max_position, max_tx): (i64, i64) = sqlx::query_as(
        "select max(global_position), max(transaction_id::text::bigint) from events where aggregate_id = 'agg'",
    )
    .fetch_one(&pool)
    .await
    .expect("read");
    assert_eq!(appended.position, max_position);
    assert_eq!(appended.transaction_id, max_tx);

    // A batch that reuses a sequence is refused whole: nothing half-written.
    let (result, appended) =
        capture_appended(repository.persist::<User>(&[event("agg", 4), event("agg", 3)], None))
            .await;
    assert!(
        matches!(result, Err(PersistenceError::OptimisticLockError)),
        "{result:?}"
    );
    assert_eq!(appended, None);
    let count: i64 = sqlx::query_scalar("select count(*) from events where aggregate_id = 'agg'")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(count, 3);

    // A single event takes the one-row path; a duplicate is the conflict.
    let (result, appended) =
        capture_appended(repository.persist::<User>(&[event("agg", 4)], None)).await;
    result.expect("appended");
    assert!(appended.expect("position").position > max_position);
    let result = repository.persist::<User>(&[event("agg", 4)], None).await;
    assert!(
        matches!(result, Err(PersistenceError::OptimisticLockError)),
        "{result:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn snapshots_are_refused() {
    let app = spawn_app().await;
    let repository = EventRepository::new(app.app.state().pool.clone());
    let result = repository
        .persist::<User>(&[event("snap", 1)], Some(("snap".into(), json!({}), 1)))
        .await;
    assert!(
        matches!(result, Err(PersistenceError::UnknownError(_))),
        "{result:?}"
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
