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
