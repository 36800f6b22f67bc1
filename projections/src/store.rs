//! The one door to the `events` table, both ways: the append, and every
//! read (by stream, by range of the global order, at a cut), each
//! decoding through `sentryops_events::decode` (upcasters included). The
//! only SQL that reads payloads elsewhere is ADR 0001's in-SQL read of
//! compliance results.
//!
//! Reading the event log in a global order that never skips a late commit
//! (DESIGN D3):
//!
//! `global_position` is assigned at insert, not at commit, so a transaction
//! holding position 5 can commit after one holding position 6. Reading by
//! position alone would move a checkpoint past 5 before it is visible and
//! lose it for good. We read only from transactions below the settled
//! horizon (`events_settled_horizon()`, migration 0011, ADR 0004): the oldest
//! append still in flight, so no transaction below it can still add an
//! event, and the order `(transaction_id, global_position)` over them is
//! final. Transactions that do not append (an idle one in another database,
//! a write to another table) do not hold it back: an append must be the
//! first write of its transaction, so one that already has an xid and no
//! lock on `events` never will.

use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::stream::BoxStream;
use sentryops_events::metadata::MetadataError;
use sentryops_events::{AnyEvent, DecodeError, EventMetadata, LogEvent};
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor};
use time::OffsetDateTime;

/// A point in the global order: the pair is compared as a pair, never the
/// position alone. Field order matters: the derived `Ord` compares the
/// transaction id first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct LogPosition {
    /// `events.transaction_id` (an xid8) as a 64-bit integer.
    pub transaction_id: i64,
    /// `events.global_position`.
    pub position: i64,
}

impl LogPosition {
    /// The cursor naming this place: `<transaction_id>:<global_position>`.
    pub fn cursor(&self) -> String {
        format!("{}:{}", self.transaction_id, self.position)
    }

    /// Before the first event.
    pub const START: LogPosition = LogPosition {
        transaction_id: 0,
        position: 0,
    };
}

/// One event as stored, with its place in the global order. The payload
/// is the stored JSON text, at the stored version: [`StoredEvent::decode`]
/// brings it to the current shape.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct StoredEvent {
    pub global_position: i64,
    pub transaction_id: i64,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    /// `None` when the read left it out ([`PROJECTED_EVENT_COLUMNS`]).
    pub payload: Option<String>,
    /// The stored metadata object as JSON text, parsed on demand
    /// ([`StoredEvent::event_metadata`]): most readers need a field or two,
    /// or none.
    pub metadata: String,
    pub recorded_at: OffsetDateTime,
}

impl StoredEvent {
    /// This event's place in the global order.
    pub fn log_position(&self) -> LogPosition {
        LogPosition {
            transaction_id: self.transaction_id,
            position: self.global_position,
        }
    }

    /// The event, decoded as an event of `E`'s aggregate type.
    pub fn decode<E: LogEvent>(&self) -> Result<E, DecodeError> {
        let payload = self
            .payload
            .as_deref()
            .ok_or_else(|| DecodeError::LeftOut {
                event_type: self.event_type.clone(),
            })?;
        sentryops_events::decode(&self.event_type, &self.event_version, payload)
    }

    /// The metadata the command wrote, parsed.
    pub fn event_metadata(&self) -> Result<EventMetadata, MetadataError> {
        EventMetadata::from_json_text(&self.metadata)
    }

    /// The event, decoded whatever its aggregate type.
    pub fn decode_any(&self) -> Result<AnyEvent, DecodeError> {
        let payload = self
            .payload
            .as_deref()
            .ok_or_else(|| DecodeError::LeftOut {
                event_type: self.event_type.clone(),
            })?;
        AnyEvent::decode(
            &self.aggregate_type,
            &self.event_type,
            &self.event_version,
            payload,
        )
    }
}

/// A decoded event with its stored row (payload left in place).
#[derive(Debug, Clone)]
pub struct Recorded<E> {
    pub event: E,
    pub stored: StoredEvent,
}

/// A read of the log that failed: the database, or a stored event that
/// does not decode.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("event {position} ({aggregate_type} {aggregate_id}): {source}")]
    Decode {
        position: i64,
        aggregate_type: String,
        aggregate_id: String,
        source: Box<DecodeError>,
    },
}

fn decoded<E: LogEvent>(stored: StoredEvent) -> Result<Recorded<E>, ReadError> {
    match stored.decode::<E>() {
        Ok(event) => Ok(Recorded { event, stored }),
        Err(source) => Err(ReadError::Decode {
            position: stored.global_position,
            aggregate_type: stored.aggregate_type,
            aggregate_id: stored.aggregate_id,
            source: Box::new(source),
        }),
    }
}

/// The columns of [`StoredEvent`], for every reader of the log.
pub const STORED_EVENT_COLUMNS: &str = "global_position, transaction_id::text::bigint as transaction_id, \
     aggregate_type, aggregate_id, sequence, event_type, event_version, payload::text as payload, metadata::text as metadata, recorded_at";

/// [`STORED_EVENT_COLUMNS`] as projection runners read them: the payload
/// of a `ComplianceResultsRecorded` event (up to a few hundred KiB of
/// results) is left out (`None`). Every runner reads every batch, and
/// decoding a 10,000-asset run into `serde_json::Value` trees would cost
/// each of them hundreds of MiB; the one projection that needs those
/// results reads them inside PostgreSQL, from `events` (see
/// [`crate::compliance`], ADR 0001). Readers for people (the export) get
/// every payload.
pub const PROJECTED_EVENT_COLUMNS: &str = "global_position, transaction_id::text::bigint as transaction_id, \
     aggregate_type, aggregate_id, sequence, event_type, event_version, \
     case when event_type = 'ComplianceResultsRecorded' then null else payload::text end as payload, \
     metadata::text as metadata, recorded_at";

/// Up to `limit` settled events after `after`, in global order, with every
/// payload.
pub async fn read_settled(
    conn: &mut PgConnection,
    after: LogPosition,
    limit: i64,
) -> sqlx::Result<Vec<StoredEvent>> {
    read_settled_columns(conn, STORED_EVENT_COLUMNS, after, limit).await
}

/// [`read_settled`] for projection runners: large results payloads are
/// left out (see [`PROJECTED_EVENT_COLUMNS`]) unless `projection` asks for
/// them.
pub async fn read_settled_for_projection(
    conn: &mut PgConnection,
    projection: &dyn crate::Projection,
    after: LogPosition,
    limit: i64,
) -> sqlx::Result<Vec<StoredEvent>> {
    read_settled_batch(conn, projection.reads_large_payloads(), after, limit).await
}

/// [`read_settled_for_projection`] by what the projection asks for, for a
/// reader that runs apart from it (the rebuild's reading task).
pub async fn read_settled_batch(
    conn: &mut PgConnection,
    large_payloads: bool,
    after: LogPosition,
    limit: i64,
) -> sqlx::Result<Vec<StoredEvent>> {
    let columns = if large_payloads {
        STORED_EVENT_COLUMNS
    } else {
        PROJECTED_EVENT_COLUMNS
    };
    read_settled_columns(conn, columns, after, limit).await
}

/// The `order by` names `events.transaction_id` explicitly: the select list
/// aliases `transaction_id::text::bigint` to the same name, and ordering by
/// that alias would sort the whole remaining log instead of walking the
/// `(transaction_id, global_position)` index.
async fn read_settled_columns(
    conn: &mut PgConnection,
    columns: &str,
    after: LogPosition,
    limit: i64,
) -> sqlx::Result<Vec<StoredEvent>> {
    let sql = format!(
        "select {columns} from events \
         where (transaction_id, global_position) > ($1::text::xid8, $2) \
           and transaction_id < (select events_settled_horizon()) \
         order by events.transaction_id, events.global_position \
         limit $3"
    );
    sqlx::query_as::<_, StoredEvent>(&sql)
        .bind(after.transaction_id.to_string())
        .bind(after.position)
        .bind(limit)
        .fetch_all(conn)
        .await
}

/// The settled horizon now (`events_settled_horizon()`): transactions
/// below it are settled. A reader that must see one consistent prefix of
/// the log across many reads (a verification) takes it once, in its
/// snapshot, and reads with [`read_settled_below`]: recomputed per read it
/// can move (it looks at live locks, not the snapshot).
pub async fn settled_horizon(conn: &mut PgConnection) -> sqlx::Result<i64> {
    sqlx::query_scalar("select events_settled_horizon()::text::bigint")
        .fetch_one(conn)
        .await
}

/// [`read_settled`] below a fixed `horizon` (see [`settled_horizon`]).
pub async fn read_settled_below(
    conn: &mut PgConnection,
    after: LogPosition,
    limit: i64,
    horizon: i64,
) -> sqlx::Result<Vec<StoredEvent>> {
    let sql = format!(
        "select {STORED_EVENT_COLUMNS} from events \
         where (transaction_id, global_position) > ($1::text::xid8, $2) \
           and transaction_id < $4::text::xid8 \
         order by events.transaction_id, events.global_position \
         limit $3"
    );
    sqlx::query_as::<_, StoredEvent>(&sql)
        .bind(after.transaction_id.to_string())
        .bind(after.position)
        .bind(limit)
        .bind(horizon.to_string())
        .fetch_all(conn)
        .await
}

/// The position of the newest committed event visible now, settled or not.
pub async fn newest_committed(conn: &mut PgConnection) -> sqlx::Result<Option<LogPosition>> {
    let newest: Option<(i64, i64)> = sqlx::query_as(
        "select transaction_id::text::bigint, global_position from events \
         order by events.transaction_id desc, events.global_position desc limit 1",
    )
    .fetch_optional(conn)
    .await?;
    Ok(newest.map(|(transaction_id, position)| LogPosition {
        transaction_id,
        position,
    }))
}

/// Whether committed events after `after` exist that are not yet settled
/// (an older append is still open).
pub async fn has_unsettled_after(
    conn: &mut PgConnection,
    after: LogPosition,
) -> sqlx::Result<bool> {
    // `order by … limit 1`, not `exists`: inside `exists` the planner drops
    // the ordering, and its generic plan then scans the whole table, which
    // finds nothing exactly when a runner is caught up (measured: 100 ms
    // per idle pass at 100,000 events). Ordered, it walks the index.
    let first: Option<i64> = sqlx::query_scalar(
        "select global_position from events \
         where (transaction_id, global_position) > ($1::text::xid8, $2) \
         order by events.transaction_id, events.global_position limit 1",
    )
    .bind(after.transaction_id.to_string())
    .bind(after.position)
    .fetch_optional(conn)
    .await?;
    Ok(first.is_some())
}

/// Which events of one stream a read returns.
#[derive(Debug, Clone, Copy, Default)]
pub struct StreamRange {
    /// Only events recorded at or before this time.
    pub until_time: Option<OffsetDateTime>,
    /// Only events at or before this global position.
    pub until_position: Option<i64>,
}

/// The events of the stream `(E::AGGREGATE_TYPE, aggregate_id)` in
/// sequence order, decoded.
pub async fn read_stream<'e, E: LogEvent>(
    executor: impl PgExecutor<'e>,
    aggregate_id: &str,
    range: StreamRange,
) -> Result<Vec<Recorded<E>>, ReadError> {
    let sql = format!(
        "select {STORED_EVENT_COLUMNS} from events \
         where aggregate_type = $1 and aggregate_id = $2 \
           and ($3::timestamptz is null or recorded_at <= $3) \
           and ($4::bigint is null or global_position <= $4) \
         order by sequence"
    );
    let rows = sqlx::query_as::<_, StoredEvent>(&sql)
        .bind(E::AGGREGATE_TYPE)
        .bind(aggregate_id)
        .bind(range.until_time)
        .bind(range.until_position)
        .fetch_all(executor)
        .await?;
    rows.into_iter().map(decoded).collect()
}

/// The events of a user's stream that change the user (logins left out,
/// ADR 0002), through the partial index of migration 0009, and the
/// stream's last sequence (logins included), read in one statement.
pub async fn read_user_state<'e, E: LogEvent>(
    executor: impl PgExecutor<'e>,
    user_id: &str,
) -> Result<(i64, Vec<Recorded<E>>), ReadError> {
    // Literal predicates, so that the partial index serves the query; the
    // last sequence comes from the same snapshot.
    let sql = format!(
        "with last as (select coalesce(max(sequence), 0) as sequence from events \
                       where aggregate_type = 'user' and aggregate_id = $1) \
         select (select sequence from last) as last_sequence, state.* from last \
         left join lateral (select {STORED_EVENT_COLUMNS} from events \
              where aggregate_type = 'user' and aggregate_id = $1 \
                and event_type not in ('LoginSucceeded', 'LoginFailed') \
                and sequence <= last.sequence \
              order by sequence) state on true"
    );
    #[derive(sqlx::FromRow)]
    struct Row {
        last_sequence: i64,
        #[sqlx(flatten)]
        event: OptionalStoredEvent,
    }
    let rows = sqlx::query_as::<_, Row>(&sql)
        .bind(user_id)
        .fetch_all(executor)
        .await?;
    let last = rows.first().map_or(0, |row| row.last_sequence);
    let events = rows
        .into_iter()
        .filter_map(|row| row.event.into_stored())
        .map(decoded)
        .collect::<Result<_, _>>()?;
    Ok((last, events))
}

/// [`StoredEvent`] from an outer join: every column may be null.
#[derive(sqlx::FromRow)]
struct OptionalStoredEvent {
    global_position: Option<i64>,
    transaction_id: Option<i64>,
    aggregate_type: Option<String>,
    aggregate_id: Option<String>,
    sequence: Option<i64>,
    event_type: Option<String>,
    event_version: Option<String>,
    payload: Option<String>,
    metadata: Option<String>,
    recorded_at: Option<OffsetDateTime>,
}

impl OptionalStoredEvent {
    fn into_stored(self) -> Option<StoredEvent> {
        Some(StoredEvent {
            global_position: self.global_position?,
            transaction_id: self.transaction_id?,
            aggregate_type: self.aggregate_type?,
            aggregate_id: self.aggregate_id?,
            sequence: self.sequence?,
            event_type: self.event_type?,
            event_version: self.event_version?,
            payload: self.payload,
            metadata: self.metadata?,
            recorded_at: self.recorded_at?,
        })
    }
}

/// Which events of an aggregate type a read at a cut returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutFilter {
    /// All of them.
    All,
    /// Users' state-changing events only (logins left out, through the
    /// partial index of migration 0009).
    UserState,
}

/// The read at a cut of [`read_at_cut`], one statement per filter, built
/// once (a stream of rows borrows its statement text).
static AT_CUT_SQL: std::sync::LazyLock<[String; 2]> = std::sync::LazyLock::new(|| {
    [
        format!(
            "select {STORED_EVENT_COLUMNS} from events where aggregate_type = $1 \
               and (transaction_id, global_position) <= ($2::text::xid8, $3) \
             order by aggregate_id collate \"C\", sequence"
        ),
        // Literal predicates, so that the partial index of migration 0009
        // (which leaves the logins out) serves the query.
        format!(
            "select {STORED_EVENT_COLUMNS} from events where aggregate_type = 'user' \
               and event_type not in ('LoginSucceeded', 'LoginFailed') and $1 = 'user' \
               and (transaction_id, global_position) <= ($2::text::xid8, $3) \
             order by aggregate_id collate \"C\", sequence"
        ),
    ]
});

/// Every event of `E`'s aggregate type at or before `cut` in the global
/// order, stream by stream (aggregate ids in bytewise order, as `Uuid`'s
/// `Ord` sorts them), each stream in sequence order, decoded as it
/// streams: only one row is held at a time.
pub fn read_at_cut<'a, E: LogEvent + Send + 'a>(
    pool: &'a sqlx::PgPool,
    cut: LogPosition,
    filter: CutFilter,
) -> BoxStream<'a, Result<Recorded<E>, ReadError>> {
    use futures_util::{StreamExt, TryStreamExt};
    let sql: &'static str = match filter {
        CutFilter::All => &AT_CUT_SQL[0],
        CutFilter::UserState => &AT_CUT_SQL[1],
    };
    sqlx::query_as::<_, StoredEvent>(sql)
        .bind(E::AGGREGATE_TYPE)
        .bind(cut.transaction_id.to_string())
        .bind(cut.position)
        .fetch(pool)
        .map_err(ReadError::from)
        .map(|row| row.and_then(decoded))
        .boxed()
}

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

/// An event to append: its stream, its sequence there, its type and
/// version, and its payload as JSON text.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: String,
}

impl NewEvent {
    /// `event`, the `sequence`-th of the stream `aggregate_id`, serialized
    /// at the version this build writes.
    pub fn of<E: LogEvent>(
        aggregate_id: &str,
        sequence: i64,
        event: &E,
    ) -> serde_json::Result<NewEvent> {
        Ok(NewEvent {
            aggregate_type: E::AGGREGATE_TYPE.to_string(),
            aggregate_id: aggregate_id.to_string(),
            sequence,
            event_type: event.event_type(),
            event_version: event.event_version(),
            payload: serde_json::to_string(event)?,
        })
    }
}

/// An appended event: its stream, sequence and type, and the place it took
/// in the global order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendedEvent {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub position: LogPosition,
}

/// The events one append wrote, in the order they were given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Appended {
    pub events: Vec<AppendedEvent>,
}

impl Appended {
    /// The position of the last event appended; `None` when nothing was.
    pub fn last_position(&self) -> Option<LogPosition> {
        self.events.iter().map(|event| event.position).max()
    }
}

/// Why an append wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// One of the sequences is taken: another writer appended to the
    /// stream since it was read (optimistic concurrency).
    #[error("a stream moved on since it was read")]
    Conflict,
    #[error(transparent)]
    Database(sqlx::Error),
}

impl From<sqlx::Error> for AppendError {
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::Database(database) if database.code().as_deref() == Some("23505") => {
                AppendError::Conflict
            }
            _ => AppendError::Database(error),
        }
    }
}

/// Appends `events` with `metadata` (one command's, shared by its events)
/// in one statement: all or none. One statement is atomic without an
/// explicit transaction, so a command costs two round trips (load,
/// append). A taken `(aggregate_type, aggregate_id, sequence)` is
/// [`AppendError::Conflict`]. The `RETURNING` gives each event's place in
/// the global order, for read-your-writes and `X-Event-Position`.
pub async fn append<'e>(
    executor: impl PgExecutor<'e>,
    events: &[NewEvent],
    metadata: &serde_json::Value,
) -> Result<Appended, AppendError> {
    if events.is_empty() {
        return Ok(Appended::default());
    }
    let started = std::time::Instant::now();
    let rows = append_rows(executor, events, metadata).await;
    APPENDS.fetch_add(1, Ordering::Relaxed);
    let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
    APPEND_NANOS.fetch_add(nanos, Ordering::Relaxed);
    let mut rows = rows?;
    // `RETURNING` order is not promised, but positions are drawn in
    // insertion order, which is the given order (`order by index`).
    rows.sort_by_key(|row| row.1);
    Ok(Appended {
        events: events
            .iter()
            .zip(rows)
            .map(|(event, (transaction_id, position))| AppendedEvent {
                aggregate_type: event.aggregate_type.clone(),
                aggregate_id: event.aggregate_id.clone(),
                sequence: event.sequence,
                event_type: event.event_type.clone(),
                position: LogPosition {
                    transaction_id,
                    position,
                },
            })
            .collect(),
    })
}

/// `(transaction_id, global_position)` of each row.
async fn append_rows<'e>(
    executor: impl PgExecutor<'e>,
    events: &[NewEvent],
    metadata: &serde_json::Value,
) -> sqlx::Result<Vec<(i64, i64)>> {
    if let [event] = events {
        // Most commands append one event: plain parameters are cheaper for
        // the server than unpacking arrays.
        return sqlx::query_as(
            "insert into events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
             values ($1, $2, $3, $4, $5, $6::jsonb, $7) \
             returning transaction_id::text::bigint, global_position",
        )
        .bind(&event.aggregate_type)
        .bind(&event.aggregate_id)
        .bind(event.sequence)
        .bind(&event.event_type)
        .bind(&event.event_version)
        .bind(&event.payload)
        .bind(metadata)
        .fetch_all(executor)
        .await;
    }
    let column = |field: fn(&NewEvent) -> &str| events.iter().map(field).collect::<Vec<&str>>();
    let sequences: Vec<i64> = events.iter().map(|event| event.sequence).collect();
    sqlx::query_as(
        "insert into events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         select appended.aggregate_type, appended.aggregate_id, appended.sequence, appended.event_type, \
                appended.event_version, appended.payload::jsonb, $7 \
         from unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[]) \
              with ordinality as appended(aggregate_type, aggregate_id, sequence, event_type, event_version, payload, index) \
         order by appended.index \
         returning transaction_id::text::bigint, global_position",
    )
    .bind(column(|event| &event.aggregate_type))
    .bind(column(|event| &event.aggregate_id))
    .bind(sequences)
    .bind(column(|event| &event.event_type))
    .bind(column(|event| &event.event_version))
    .bind(column(|event| &event.payload))
    .bind(metadata)
    .fetch_all(executor)
    .await
}

/// The newest `event_type` event at or before `until_time` of each stream
/// of `aggregate_ids` (of `E`'s aggregate type) that has one, decoded.
pub async fn read_latest_of<'e, E: LogEvent>(
    executor: impl PgExecutor<'e>,
    aggregate_ids: &[String],
    event_type: &str,
    until_time: Option<OffsetDateTime>,
) -> Result<Vec<Recorded<E>>, ReadError> {
    let sql = format!(
        "select distinct on (aggregate_id) {STORED_EVENT_COLUMNS} from events \
         where aggregate_type = $1 and aggregate_id = any($2) and event_type = $3 \
           and ($4::timestamptz is null or recorded_at <= $4) \
         order by aggregate_id, sequence desc"
    );
    let rows = sqlx::query_as::<_, StoredEvent>(&sql)
        .bind(E::AGGREGATE_TYPE)
        .bind(aggregate_ids)
        .bind(event_type)
        .bind(until_time)
        .fetch_all(executor)
        .await?;
    rows.into_iter().map(decoded).collect()
}

/// A page of one stream's stored events, newest first, and the stream's
/// length.
pub async fn read_stream_page(
    pool: &sqlx::PgPool,
    aggregate_type: &str,
    aggregate_id: &str,
    limit: i64,
    offset: i64,
) -> sqlx::Result<(i64, Vec<StoredEvent>)> {
    let total: i64 = sqlx::query_scalar(
        "select count(*) from events where aggregate_type = $1 and aggregate_id = $2",
    )
    .bind(aggregate_type)
    .bind(aggregate_id)
    .fetch_one(pool)
    .await?;
    let sql = format!(
        "select {STORED_EVENT_COLUMNS} from events where aggregate_type = $1 and aggregate_id = $2 \
         order by sequence desc limit $3 offset $4"
    );
    let rows = sqlx::query_as::<_, StoredEvent>(&sql)
        .bind(aggregate_type)
        .bind(aggregate_id)
        .bind(limit)
        .bind(offset)
        .fetch_all(pool)
        .await?;
    Ok((total, rows))
}

static STREAM_OF_TYPES_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "select {STORED_EVENT_COLUMNS} from events \
         where aggregate_type = $1 and aggregate_id = $2 and event_type = any($3) \
         order by sequence"
    )
});

/// The events of types `event_types` of one stream of `E`'s aggregate
/// type, in sequence order, decoded as they stream (a compliance run's
/// results batches are read one at a time).
pub fn read_stream_of_types<'a, E: LogEvent + Send + 'a>(
    pool: &'a sqlx::PgPool,
    aggregate_id: &'a str,
    event_types: &'a [&'a str],
) -> BoxStream<'a, Result<Recorded<E>, ReadError>> {
    use futures_util::{StreamExt, TryStreamExt};
    sqlx::query_as::<_, StoredEvent>(STREAM_OF_TYPES_SQL.as_str())
        .bind(E::AGGREGATE_TYPE)
        .bind(aggregate_id)
        .bind(event_types)
        .fetch(pool)
        .map_err(ReadError::from)
        .map(|row| row.and_then(decoded))
        .boxed()
}

/// Which events a read of the global order returns (every field optional).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogFilter {
    pub aggregate_type: Option<String>,
    pub aggregate_id: Option<String>,
    pub event_type: Option<String>,
    /// Recorded at or after.
    pub from: Option<OffsetDateTime>,
    /// Recorded at or before.
    pub to: Option<OffsetDateTime>,
}

/// A stored event with its seal (ADR 0006), as the log leaves the service.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct SealedEvent {
    #[sqlx(flatten)]
    pub event: StoredEvent,
    /// Its place in the chain, once sealed.
    pub chain_index: Option<i64>,
    /// `h_n` after it, once sealed.
    pub chain_hash: Option<Vec<u8>>,
    /// The signed checkpoint whose tree size is this event's chain index.
    pub checkpoint: Option<String>,
}

/// Up to `limit` settled events after `after` that pass `filter`, in
/// global order, with every payload and their seals. Only settled
/// transactions are read (as projections read them), so a cursor taken
/// from the last event never skips a late commit and never repeats an
/// event.
pub async fn read_settled_filtered(
    conn: &mut PgConnection,
    after: LogPosition,
    limit: i64,
    filter: &LogFilter,
) -> sqlx::Result<Vec<SealedEvent>> {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let columns = STORED_EVENT_COLUMNS
            .split(", ")
            .map(|column| format!("e.{column}"))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "select {columns}, s.chain_index, s.chain_hash, c.note as checkpoint \
             from events e \
             left join event_seals s on s.global_position = e.global_position \
               and s.transaction_id = e.transaction_id::text::bigint \
             left join seal_checkpoints c on c.tree_size = s.chain_index \
             where (e.transaction_id, e.global_position) > ($1::text::xid8, $2) \
               and e.transaction_id < (select events_settled_horizon()) \
               and ($4::text is null or e.aggregate_type = $4) \
               and ($5::text is null or e.aggregate_id = $5) \
               and ($6::text is null or e.event_type = $6) \
               and ($7::timestamptz is null or e.recorded_at >= $7) \
               and ($8::timestamptz is null or e.recorded_at <= $8) \
             order by e.transaction_id, e.global_position \
             limit $3"
        )
    });
    sqlx::query_as::<_, SealedEvent>(SQL.as_str())
        .bind(after.transaction_id.to_string())
        .bind(after.position)
        .bind(limit)
        .bind(&filter.aggregate_type)
        .bind(&filter.aggregate_id)
        .bind(&filter.event_type)
        .bind(filter.from)
        .bind(filter.to)
        .fetch_all(conn)
        .await
}

/// The place in the global order of the event at `global_position`.
pub async fn position_of(
    conn: &mut PgConnection,
    global_position: i64,
) -> sqlx::Result<Option<LogPosition>> {
    let transaction_id: Option<i64> = sqlx::query_scalar(
        "select transaction_id::text::bigint from events where global_position = $1",
    )
    .bind(global_position)
    .fetch_optional(conn)
    .await?;
    Ok(transaction_id.map(|transaction_id| LogPosition {
        transaction_id,
        position: global_position,
    }))
}
