//! Our event repository for cqrs-es: postgres-es for every read, our own
//! append.
//!
//! The append is one `INSERT … SELECT unnest(…) RETURNING` statement: a
//! single statement is atomic without an explicit transaction, so a command
//! costs two round trips (load, append) instead of five (load, begin, insert
//! per event, commit, and a lookup of the position). The `RETURNING` gives
//! the `(transaction_id, global_position)` of the events, which
//! [`Commands`](super::Commands) hands back to the API for read-your-writes
//! and `X-Event-Position`. A duplicate `(aggregate_type, aggregate_id,
//! sequence)` is the optimistic-concurrency conflict, as in postgres-es.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use cqrs_es::persist::{
    PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot,
};
use cqrs_es::Aggregate;
use postgres_es::PostgresEventRepository;
use sentryops_projections::LogPosition;
use serde_json::Value;
use sqlx::PgPool;

/// Appends made by this process and the time they took, for the
/// event-append metrics (and the benchmarks' "append share" of a request).
static APPENDS: AtomicU64 = AtomicU64::new(0);
static APPEND_NANOS: AtomicU64 = AtomicU64::new(0);

/// How many append statements this process ran (successful or not) and
/// their total duration.
pub fn append_totals() -> (u64, std::time::Duration) {
    (
        APPENDS.load(Ordering::Relaxed),
        std::time::Duration::from_nanos(APPEND_NANOS.load(Ordering::Relaxed)),
    )
}

tokio::task_local! {
    /// The position of the last event appended by the command running in
    /// this task (set by [`EventRepository::persist`]).
    static LAST_APPENDED: Cell<Option<LogPosition>>;
}

/// Runs `command` (a future that appends through an [`EventRepository`])
/// and returns its output with the position of the last event it appended.
pub async fn capture_appended<T>(
    command: impl std::future::Future<Output = T>,
) -> (T, Option<LogPosition>) {
    LAST_APPENDED
        .scope(Cell::new(None), async {
            let output = command.await;
            (output, LAST_APPENDED.with(Cell::get))
        })
        .await
}

/// The event repository behind every command handler.
pub struct EventRepository {
    reads: PostgresEventRepository,
    pool: PgPool,
}

impl EventRepository {
    /// A repository over `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self {
            reads: PostgresEventRepository::new(pool.clone()),
            pool,
        }
    }
}

fn persistence_error(error: sqlx::Error) -> PersistenceError {
    match &error {
        sqlx::Error::Database(database) if database.code().as_deref() == Some("23505") => {
            PersistenceError::OptimisticLockError
        }
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_) => PersistenceError::ConnectionError(Box::new(error)),
        _ => PersistenceError::UnknownError(Box::new(error)),
    }
}

impl EventRepository {
    /// The pool it writes through.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Appends the events of a new stream whose payloads are already JSON
    /// text (`(event_type, event_version, payload)`), at sequences 1, 2, …
    /// in one statement (all or none). For
    /// streams written once and too large to pass through cqrs-es as
    /// `serde_json::Value` trees (a compliance run, ADR 0002). A stream that
    /// already exists is the usual optimistic-concurrency conflict.
    pub async fn append_new_stream(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        events: &[(&str, &str, &str)],
        metadata: &Value,
    ) -> Result<Option<LogPosition>, PersistenceError> {
        let event_types: Vec<&str> = events.iter().map(|event| event.0).collect();
        let event_versions: Vec<&str> = events.iter().map(|event| event.1).collect();
        let payloads: Vec<&str> = events.iter().map(|event| event.2).collect();
        let started = std::time::Instant::now();
        let appended: Result<Vec<(i64, i64)>, PersistenceError> = sqlx::query_as(
            "insert into events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
             select $1, $2, appended.sequence, appended.event_type, appended.event_version, appended.payload::jsonb, $6 \
             from unnest($3::text[], $4::text[], $5::text[]) \
                  with ordinality as appended(event_type, event_version, payload, sequence) \
             returning transaction_id::text::bigint, global_position",
        )
        .bind(aggregate_type)
        .bind(aggregate_id)
        .bind(event_types)
        .bind(event_versions)
        .bind(payloads)
        .bind(metadata)
        .fetch_all(&self.pool)
        .await
        .map_err(persistence_error);
        APPENDS.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        APPEND_NANOS.fetch_add(nanos, Ordering::Relaxed);
        Ok(appended?
            .into_iter()
            .map(|(transaction_id, position)| LogPosition {
                transaction_id,
                position,
            })
            .max())
    }
}

impl PersistedEventRepository for EventRepository {
    async fn get_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.reads.get_events::<A>(aggregate_id).await
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.reads
            .get_last_events::<A>(aggregate_id, last_sequence)
            .await
    }

    async fn get_snapshot<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        self.reads.get_snapshot::<A>(aggregate_id).await
    }

    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        if snapshot_update.is_some() {
            // DESIGN D2: snapshot and aggregate-store modes are not used.
            return Err(PersistenceError::UnknownError(
                "snapshots are not supported by this event store".into(),
            ));
        }
        if events.is_empty() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let appended = match events {
            // Most commands append one event: plain parameters are cheaper
            // for the server than unpacking arrays.
            [event] => append_one(&self.pool, event).await.map(|one| vec![one]),
            _ => append_many(&self.pool, events).await,
        };
        APPENDS.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        APPEND_NANOS.fetch_add(nanos, Ordering::Relaxed);
        let appended = appended?;
        let last = appended
            .into_iter()
            .map(|(transaction_id, position)| LogPosition {
                transaction_id,
                position,
            })
            .max();
        // Outside `capture_appended` (no caller interested) this is a no-op.
        let _ = LAST_APPENDED.try_with(|cell| cell.set(last));
        Ok(())
    }

    async fn stream_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<ReplayStream, PersistenceError> {
        self.reads.stream_events::<A>(aggregate_id).await
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        self.reads.stream_all_events::<A>().await
    }
}

fn sequence_of(event: &SerializedEvent) -> Result<i64, PersistenceError> {
    i64::try_from(event.sequence).map_err(|error| PersistenceError::UnknownError(Box::new(error)))
}

async fn append_one(
    pool: &PgPool,
    event: &SerializedEvent,
) -> Result<(i64, i64), PersistenceError> {
    sqlx::query_as(
        "insert into events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         values ($1, $2, $3, $4, $5, $6, $7) \
         returning transaction_id::text::bigint, global_position",
    )
    .bind(&event.aggregate_type)
    .bind(&event.aggregate_id)
    .bind(sequence_of(event)?)
    .bind(&event.event_type)
    .bind(&event.event_version)
    .bind(&event.payload)
    .bind(&event.metadata)
    .fetch_one(pool)
    .await
    .map_err(persistence_error)
}

async fn append_many(
    pool: &PgPool,
    events: &[SerializedEvent],
) -> Result<Vec<(i64, i64)>, PersistenceError> {
    let mut aggregate_types = Vec::with_capacity(events.len());
    let mut aggregate_ids = Vec::with_capacity(events.len());
    let mut sequences = Vec::with_capacity(events.len());
    let mut event_types = Vec::with_capacity(events.len());
    let mut event_versions = Vec::with_capacity(events.len());
    let mut payloads = Vec::with_capacity(events.len());
    let mut metadata = Vec::with_capacity(events.len());
    for event in events {
        aggregate_types.push(event.aggregate_type.as_str());
        aggregate_ids.push(event.aggregate_id.as_str());
        sequences.push(sequence_of(event)?);
        event_types.push(event.event_type.as_str());
        event_versions.push(event.event_version.as_str());
        payloads.push(&event.payload);
        metadata.push(&event.metadata);
    }
    sqlx::query_as(
        "insert into events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         select * from unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::jsonb[], $7::jsonb[]) \
         returning transaction_id::text::bigint, global_position",
    )
    .bind(aggregate_types)
    .bind(aggregate_ids)
    .bind(sequences)
    .bind(event_types)
    .bind(event_versions)
    .bind(payloads)
    .bind(metadata)
    .fetch_all(pool)
    .await
    .map_err(persistence_error)
}
