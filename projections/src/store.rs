//! Reading the event log in a global order that never skips a late commit
//! (DESIGN D3).
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

use serde::Serialize;
use sqlx::PgConnection;
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
    /// Before the first event.
    pub const START: LogPosition = LogPosition {
        transaction_id: 0,
        position: 0,
    };
}

/// One event as stored, with its place in the global order.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct StoredEvent {
    pub global_position: i64,
    pub transaction_id: i64,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: serde_json::Value,
    pub metadata: serde_json::Value,
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
}

/// The columns of [`StoredEvent`], for every reader of the log.
pub const STORED_EVENT_COLUMNS: &str = "global_position, transaction_id::text::bigint as transaction_id, \
     aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, recorded_at";

/// [`STORED_EVENT_COLUMNS`] as projection runners read them: the payload
/// of a `ComplianceResultsRecorded` event (up to a few hundred KiB of
/// results) comes back as JSON `null`. Every runner reads every batch, and
/// decoding a 10,000-asset run into `serde_json::Value` trees would cost
/// each of them hundreds of MiB; the one projection that needs those
/// results reads them inside PostgreSQL, from `events` (see
/// [`crate::compliance`], ADR 0001). Readers for people (the export) get
/// every payload.
pub const PROJECTED_EVENT_COLUMNS: &str = "global_position, transaction_id::text::bigint as transaction_id, \
     aggregate_type, aggregate_id, sequence, event_type, event_version, \
     case when event_type = 'ComplianceResultsRecorded' then 'null'::jsonb else payload end as payload, \
     metadata, recorded_at";

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
/// left out (see [`PROJECTED_EVENT_COLUMNS`]).
pub async fn read_settled_for_projections(
    conn: &mut PgConnection,
    after: LogPosition,
    limit: i64,
) -> sqlx::Result<Vec<StoredEvent>> {
    read_settled_columns(conn, PROJECTED_EVENT_COLUMNS, after, limit).await
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
