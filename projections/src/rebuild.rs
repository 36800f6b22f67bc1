//! Rebuilding a projection into shadow tables and swapping them in
//! atomically (SPEC section 7, DESIGN D4).
//!
//! The shadow copy lives in its own schema, `shadow_<projection>`, created
//! `LIKE` the live tables (columns, defaults, constraints, indexes). The
//! projection's own code fills it unchanged: the batch transactions set
//! `search_path` to the shadow schema first. Each shadow batch commits with
//! its progress in the checkpoint row, so a stopped rebuild resumes where it
//! was. The final transaction drains what is left, drops the live tables,
//! moves the shadow tables into `public` and installs the new checkpoint and
//! version: readers see the old tables until that commit and the new ones
//! after it, never a mix.
//!
//! This is the one module that builds SQL from identifiers; every identifier
//! comes from a projection's validated name or table list.

use std::time::Duration;

use anyhow::{bail, Context};
use sqlx::{Connection, PgConnection, PgPool};

use crate::projection::{is_valid_name, Projection};
use crate::runtime::{ensure_checkpoint, release_lead, try_lead, RuntimeOptions, EVENTS_CHANNEL};
use crate::store::{self, LogPosition};

/// How a rebuild call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RebuildOutcome {
    /// The shadow tables were swapped in; `events` were folded into them.
    Completed { events: u64 },
    /// Stopped on request after some batches; the next rebuild resumes.
    Stopped { events: u64 },
}

/// Progress callback: `(events folded so far, events in the log)`.
pub type Progress<'a> = dyn FnMut(u64, u64) + Send + 'a;

fn shadow_schema(projection: &dyn Projection) -> anyhow::Result<String> {
    let name = projection.name();
    if !is_valid_name(name) || !projection.tables().iter().all(|t| is_valid_name(t)) {
        bail!("projection {name:?} has a name or table that is not a safe identifier");
    }
    Ok(format!("shadow_{name}"))
}

/// The shadow progress and the code version that made it.
async fn rebuild_checkpoint(
    conn: &mut PgConnection,
    name: &str,
) -> sqlx::Result<Option<(LogPosition, Option<i32>)>> {
    let row: (Option<i64>, Option<i64>, Option<i32>) = sqlx::query_as(
        "select rebuild_transaction_id, rebuild_position, rebuild_version \
         from projection_checkpoints where name = $1",
    )
    .bind(name)
    .fetch_one(conn)
    .await?;
    Ok(match row {
        (Some(transaction_id), Some(position), version) => Some((
            LogPosition {
                transaction_id,
                position,
            },
            version,
        )),
        _ => None,
    })
}

/// Whether the shadow tables still have the live tables' columns (a
/// migration between a stopped rebuild and its resumption changes them).
async fn shadow_matches_live(
    conn: &mut PgConnection,
    projection: &dyn Projection,
    schema: &str,
) -> sqlx::Result<bool> {
    for table in projection.tables() {
        let same: bool = sqlx::query_scalar(
            "select coalesce((select array_agg(column_name::text || ' ' || data_type || ' ' || is_nullable \
                                               order by ordinal_position) \
                              from information_schema.columns where table_schema = $1 and table_name = $3), '{}') \
                  = coalesce((select array_agg(column_name::text || ' ' || data_type || ' ' || is_nullable \
                                               order by ordinal_position) \
                              from information_schema.columns where table_schema = $2 and table_name = $3), '{}')",
        )
        .bind(schema)
        .bind("public")
        .bind(*table)
        .fetch_one(&mut *conn)
        .await?;
        if !same {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Refuses tables the shadow mechanism cannot copy faithfully: names that
/// need quoting (the index rewrite relies on plain names) and column
/// defaults that draw from a sequence owned by the live table.
async fn check_copyable(
    conn: &mut PgConnection,
    projection: &dyn Projection,
) -> anyhow::Result<()> {
    for table in projection.tables() {
        let plain: bool = sqlx::query_scalar("select quote_ident($1) = $1")
            .bind(*table)
            .fetch_one(&mut *conn)
            .await?;
        anyhow::ensure!(plain, "table name {table:?} needs quoting; rename it");
        let serials: i64 = sqlx::query_scalar(
            "select count(*) from information_schema.columns \
             where table_schema = 'public' and table_name = $1 and column_default like 'nextval(%'",
        )
        .bind(*table)
        .fetch_one(&mut *conn)
        .await?;
        anyhow::ensure!(
            serials == 0,
            "table {table} has a serial column; use an identity column or a key derived from events"
        );
    }
    Ok(())
}

async fn schema_exists(conn: &mut PgConnection, schema: &str) -> sqlx::Result<bool> {
    sqlx::query_scalar("select exists (select 1 from pg_namespace where nspname = $1)")
        .bind(schema)
        .fetch_one(conn)
        .await
}

async fn count_events_through(
    conn: &mut PgConnection,
    through: Option<LogPosition>,
) -> sqlx::Result<u64> {
    let count: i64 = match through {
        None => sqlx::query_scalar("select count(*) from events").fetch_one(conn).await?,
        Some(at) => {
            sqlx::query_scalar(
                "select count(*) from events where (transaction_id, global_position) <= ($1::text::xid8, $2)",
            )
            .bind(at.transaction_id.to_string())
            .bind(at.position)
            .fetch_one(conn)
            .await?
        }
    };
    Ok(count.max(0) as u64)
}

/// Creates empty shadow tables and records a rebuild starting at the
/// beginning of the log.
async fn start_shadow(
    conn: &mut PgConnection,
    projection: &dyn Projection,
    schema: &str,
) -> anyhow::Result<()> {
    check_copyable(conn, projection).await?;
    let mut tx = conn.begin().await?;
    sqlx::query(&format!("drop schema if exists \"{schema}\" cascade"))
        .execute(&mut *tx)
        .await?;
    sqlx::query(&format!("create schema \"{schema}\""))
        .execute(&mut *tx)
        .await?;
    for table in projection.tables() {
        sqlx::query(&format!(
            "create table \"{schema}\".\"{table}\" (like public.\"{table}\" including all excluding indexes)"
        ))
        .execute(&mut *tx)
        .await?;
        // Keys (primary, unique, exclusion) now: upserts need them. Other
        // indexes come after the fill, which is several times faster than
        // maintaining them row by row.
        let constraints: Vec<(String, String)> = sqlx::query_as(
            "select conname::text, pg_get_constraintdef(oid) from pg_constraint \
             where conrelid = format('public.%I', $1::text)::regclass and contype in ('p', 'u', 'x') \
             order by conname",
        )
        .bind(*table)
        .fetch_all(&mut *tx)
        .await?;
        for (name, definition) in constraints {
            sqlx::query(&format!(
                "alter table \"{schema}\".\"{table}\" add constraint \"{name}\" {definition}"
            ))
            .execute(&mut *tx)
            .await?;
        }
    }
    // Unique indexes that back no constraint may serve an ON CONFLICT: they
    // must exist during the fill too.
    create_indexes(&mut tx, projection, schema, IndexKind::Unique).await?;
    sqlx::query(
        "update projection_checkpoints \
         set rebuild_transaction_id = 0, rebuild_position = 0, rebuild_version = $2, \
             rebuild_requested = false, status = 'rebuilding', updated_at = now() \
         where name = $1",
    )
    .bind(projection.name())
    .bind(projection.version())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Which of the live tables' indexes (those backing no constraint) to copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IndexKind {
    /// Before the fill: an upsert may need them.
    Unique,
    /// After the fill: building them once is much cheaper than maintaining
    /// them row by row.
    NonUnique,
}

/// The statements that create on the shadow tables the live tables'
/// indexes of `kind` that back no constraint, under the same names (index
/// names stay stable across rebuilds). Each is idempotent, for a rebuild
/// that resumes.
async fn index_definitions(
    conn: &mut PgConnection,
    projection: &dyn Projection,
    schema: &str,
    kind: IndexKind,
) -> anyhow::Result<Vec<String>> {
    let mut statements = Vec::new();
    for table in projection.tables() {
        let definitions: Vec<String> = sqlx::query_scalar(
            "select i.indexdef from pg_indexes i \
             join pg_index x on x.indexrelid = format('public.%I', i.indexname)::regclass \
             where i.schemaname = 'public' and i.tablename = $1 and x.indisunique = $2 \
               and not exists (select 1 from pg_constraint c where c.conindid = x.indexrelid) \
             order by i.indexname",
        )
        .bind(*table)
        .bind(kind == IndexKind::Unique)
        .fetch_all(&mut *conn)
        .await?;
        for definition in definitions {
            let live_table = format!(" ON public.{table} ");
            anyhow::ensure!(
                definition.contains(&live_table),
                "unexpected index definition on {table}: {definition}"
            );
            statements.push(
                definition
                    .replacen(&live_table, &format!(" ON \"{schema}\".\"{table}\" "), 1)
                    .replacen("CREATE INDEX ", "CREATE INDEX IF NOT EXISTS ", 1)
                    .replacen(
                        "CREATE UNIQUE INDEX ",
                        "CREATE UNIQUE INDEX IF NOT EXISTS ",
                        1,
                    ),
            );
        }
    }
    Ok(statements)
}

/// Creates the indexes of `kind` on `conn`, one after the other.
async fn create_indexes(
    conn: &mut PgConnection,
    projection: &dyn Projection,
    schema: &str,
    kind: IndexKind,
) -> anyhow::Result<()> {
    for statement in index_definitions(conn, projection, schema, kind).await? {
        sqlx::query(&statement).execute(&mut *conn).await?;
    }
    Ok(())
}

/// Builds the deferred indexes after the fill, [`INDEX_BUILDS_AT_ONCE`] at
/// a time, each on its own pool connection and in its own transaction: an
/// index build is one sort on one backend, so two overlap on two cores.
/// A build that fails leaves the others built; the resumed rebuild skips
/// them (`IF NOT EXISTS`).
async fn build_deferred_indexes(
    conn: &mut PgConnection,
    pool: &PgPool,
    projection: &dyn Projection,
    schema: &str,
) -> anyhow::Result<()> {
    use futures_util::stream::{self, StreamExt, TryStreamExt};
    let statements = index_definitions(conn, projection, schema, IndexKind::NonUnique).await?;
    stream::iter(statements)
        .map(|statement| async move {
            let mut tx = pool.begin().await?;
            sqlx::query(INDEX_BUILD_MEMORY).execute(&mut *tx).await?;
            sqlx::query(&statement).execute(&mut *tx).await?;
            tx.commit().await?;
            anyhow::Ok(())
        })
        .buffer_unordered(INDEX_BUILDS_AT_ONCE)
        .try_collect::<()>()
        .await
}

/// Rebuilds `projection` on `conn`, which must lead it. Resumes a rebuild
/// that was stopped. `stop_after_batches` stops (as a crash would) after
/// that many shadow batches; tests and tooling use it. A second connection
/// from `pool` reads the next batch while the current one is applied.
pub async fn rebuild_on(
    conn: &mut PgConnection,
    pool: &PgPool,
    projection: &dyn Projection,
    options: &RuntimeOptions,
    progress: &mut Progress<'_>,
    stop_after_batches: Option<usize>,
) -> anyhow::Result<RebuildOutcome> {
    let name = projection.name();
    let schema = shadow_schema(projection)?;
    ensure_checkpoint(conn, projection).await?;
    let resumable = match rebuild_checkpoint(conn, name).await? {
        Some((checkpoint, Some(version)))
            if version == projection.version()
                && schema_exists(conn, &schema).await?
                && shadow_matches_live(conn, projection, &schema).await? =>
        {
            Some(checkpoint)
        }
        _ => None,
    };
    let mut checkpoint = match resumable {
        Some(checkpoint) => checkpoint,
        None => {
            start_shadow(conn, projection, &schema).await?;
            LogPosition::START
        }
    };
    tracing::info!(projection = name, from = ?checkpoint, "rebuilding projection into shadow tables");
    let total = count_events_through(conn, None).await?;
    let mut done = if checkpoint == LogPosition::START {
        0
    } else {
        count_events_through(conn, Some(checkpoint)).await?
    };
    progress(done, total);

    let fill_started = std::time::Instant::now();
    // Reading, folding and writing overlap: a task on its own connection
    // reads batch after batch ahead (up to two waiting), the fold runs
    // here, and the projection's writes stream to the server as they are
    // built (binary `COPY`), so each of the three can use its own core.
    let (sender, mut batches) = tokio::sync::mpsc::channel(2);
    let mut reader_task = Some(tokio::spawn(read_ahead(
        pool.acquire().await?,
        projection.reads_large_payloads(),
        checkpoint,
        options.rebuild_batch_size,
        sender,
    )));
    let mut reader = None;
    let mut events = batches.recv().await.unwrap_or_else(|| Ok(Vec::new()))?;
    let mut batches_applied = 0usize;
    let mut settle_waited = Duration::ZERO;
    let mut settle_target: Option<LogPosition> = None;
    loop {
        let Some(last) = events.last().map(|event| event.log_position()) else {
            // The fill ran dry (the reading task has ended). Events
            // committed by now but not yet settled (an older transaction is
            // open somewhere in the cluster, in any database) would be left
            // to the runner after the swap: read on up to the newest event
            // committed when the fill first ran dry, waiting a bounded time
            // for it to settle, so that a rebuild done while nothing runs
            // the projections still ends caught up. The target is fixed:
            // under steady writes the fill must not chase the log (the swap
            // drains what came since).
            if let Some(task) = reader_task.take() {
                reader = Some(task.await.context("the rebuild's reading task failed")?);
            }
            let Some(reader) = reader.as_mut() else {
                unreachable!("the reading task hands its connection back")
            };
            let target = match settle_target {
                Some(target) => target,
                None => match store::newest_committed(reader).await? {
                    Some(newest) => *settle_target.insert(newest),
                    None => break,
                },
            };
            if checkpoint >= target {
                break;
            }
            if settle_waited >= SETTLE_WAIT {
                tracing::warn!(
                    projection = name,
                    waited_ms = settle_waited.as_millis() as u64,
                    "swapping in with events not yet settled; the runner applies them later"
                );
                break;
            }
            events = store::read_settled_for_projection(
                reader,
                projection,
                checkpoint,
                options.rebuild_batch_size,
            )
            .await?;
            if events.is_empty() {
                tokio::time::sleep(SETTLE_POLL).await;
                settle_waited += SETTLE_POLL;
            }
            continue;
        };
        let mut tx = conn.begin().await?;
        // A shadow batch need not wait for its commit to be flushed: its
        // progress is in the same transaction, so a crash loses both
        // together and the rebuild resumes from what did reach the disk.
        sqlx::query(&format!("set local search_path to \"{schema}\", public"))
            .execute(&mut *tx)
            .await?;
        sqlx::query("set local synchronous_commit to off")
            .execute(&mut *tx)
            .await?;
        projection.apply(&mut tx, &events).await.with_context(|| {
            format!("projection {name} failed rebuilding a batch ending at {last:?}")
        })?;
        sqlx::query(
            "update projection_checkpoints \
             set rebuild_transaction_id = $2, rebuild_position = $3, updated_at = now() \
             where name = $1",
        )
        .bind(name)
        .bind(last.transaction_id)
        .bind(last.position)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        checkpoint = last;
        done += events.len() as u64;
        progress(done, total.max(done));
        batches_applied += 1;
        if stop_after_batches == Some(batches_applied) {
            return Ok(RebuildOutcome::Stopped { events: done });
        }
        events = batches.recv().await.unwrap_or_else(|| Ok(Vec::new()))?;
    }
    drop(reader);
    let fill_ms = fill_started.elapsed().as_millis() as u64;
    let indexes_started = std::time::Instant::now();
    build_deferred_indexes(conn, pool, projection, &schema).await?;
    let indexes_ms = indexes_started.elapsed().as_millis() as u64;
    let swap_started = std::time::Instant::now();

    // The swap: drain the tail and exchange the tables in one transaction.
    let mut tx = conn.begin().await?;
    sqlx::query("select 1 from projection_checkpoints where name = $1 for update")
        .bind(name)
        .execute(&mut *tx)
        .await?;
    sqlx::query(&format!("set local search_path to \"{schema}\", public"))
        .execute(&mut *tx)
        .await?;
    loop {
        let events = store::read_settled_for_projection(
            &mut tx,
            projection,
            checkpoint,
            options.rebuild_batch_size,
        )
        .await?;
        let Some(last) = events.last().map(|event| event.log_position()) else {
            break;
        };
        projection.apply(&mut tx, &events).await?;
        checkpoint = last;
        done += events.len() as u64;
    }
    sqlx::query("set local search_path to public")
        .execute(&mut *tx)
        .await?;
    for table in projection.tables() {
        sqlx::query(&format!("drop table public.\"{table}\""))
            .execute(&mut *tx)
            .await?;
        sqlx::query(&format!(
            "alter table \"{schema}\".\"{table}\" set schema public"
        ))
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query(&format!("drop schema \"{schema}\""))
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "update projection_checkpoints \
         set version = $2, last_transaction_id = $3, last_position = $4, events_applied = $5, \
             rebuild_transaction_id = null, rebuild_position = null, rebuild_version = null, \
             rebuild_requested = false, status = 'running', last_error = null, updated_at = now() \
         where name = $1",
    )
    .bind(name)
    .bind(projection.version())
    .bind(checkpoint.transaction_id)
    .bind(checkpoint.position)
    .bind(done as i64)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    progress(done, total.max(done));
    tracing::info!(
        projection = name,
        events = done,
        fill_ms,
        indexes_ms,
        swap_ms = swap_started.elapsed().as_millis() as u64,
        "projection rebuilt and swapped in"
    );
    Ok(RebuildOutcome::Completed { events: done })
}

/// Reads the log after `after` in batches of `limit` and sends them on, up
/// to the first batch that is not full (which may be empty) or the first
/// error; then hands its connection back. Stops early when the receiver is
/// gone (the rebuild stopped or failed).
async fn read_ahead(
    mut reader: sqlx::pool::PoolConnection<sqlx::Postgres>,
    large_payloads: bool,
    mut after: LogPosition,
    limit: i64,
    sender: tokio::sync::mpsc::Sender<sqlx::Result<Vec<store::StoredEvent>>>,
) -> sqlx::pool::PoolConnection<sqlx::Postgres> {
    loop {
        let batch = store::read_settled_batch(&mut reader, large_payloads, after, limit).await;
        let next = match &batch {
            Ok(events) if events.len() as i64 == limit => events.last().map(|e| e.log_position()),
            _ => None,
        };
        if sender.send(batch).await.is_err() {
            break;
        }
        match next {
            Some(next) => after = next,
            None => break,
        }
    }
    reader
}

/// The sort memory for building a shadow table's deferred indexes: a
/// million-row audit timeline sorts in memory instead of in temporary
/// files. It is the server's memory, for the length of that transaction.
const INDEX_BUILD_MEMORY: &str = "set local maintenance_work_mem to '256MB'";

/// How many deferred indexes are built at once, each with
/// [`INDEX_BUILD_MEMORY`] of the server's memory.
const INDEX_BUILDS_AT_ONCE: usize = 2;

/// How long a rebuild waits, before its swap, for committed events that an
/// older open transaction keeps from settling; and how often it looks.
const SETTLE_WAIT: Duration = Duration::from_secs(10);
const SETTLE_POLL: Duration = Duration::from_millis(20);

/// How long a requested rebuild may show no progress before the tool
/// gives up waiting (the leader keeps going; the tool just stops watching).
const STALL_LIMIT: Duration = Duration::from_secs(300);

/// Rebuilds `projection` from a tool (the CLI): directly when no process
/// leads it, otherwise by asking the leader and following its progress. If
/// the leader goes away, the tool takes over; if the leader's rebuild fails,
/// the tool reports the failure instead of waiting for ever.
pub async fn rebuild_now(
    pool: &PgPool,
    projection: &dyn Projection,
    options: &RuntimeOptions,
    progress: &mut Progress<'_>,
) -> anyhow::Result<RebuildOutcome> {
    let name = projection.name();
    let mut conn = pool.acquire().await?.detach();
    ensure_checkpoint(&mut conn, projection).await?;
    let mut requested = false;
    let mut last_seen: Option<(Option<LogPosition>, i64)> = None;
    let mut last_change = std::time::Instant::now();
    let total = count_events_through(&mut conn, None).await?;
    loop {
        if try_lead(&mut conn, name).await? {
            // Nobody leads (any more): do it here. A rebuild the leader had
            // started resumes from its shadow progress.
            let outcome = rebuild_on(&mut conn, pool, projection, options, progress, None).await;
            release_lead(&mut conn, name).await?;
            conn.close().await?;
            return outcome;
        }
        if !requested {
            sqlx::query(
                "update projection_checkpoints set rebuild_requested = true, updated_at = now() \
                 where name = $1",
            )
            .bind(name)
            .execute(&mut conn)
            .await?;
            sqlx::query("select pg_notify($1, '')")
                .bind(EVENTS_CHANNEL)
                .execute(&mut conn)
                .await?;
            tracing::info!(
                projection = name,
                "another process leads this projection; asked it to rebuild"
            );
            requested = true;
        }
        let (still_requested, status, last_error, applied): (bool, String, Option<String>, i64) =
            sqlx::query_as(
                "select rebuild_requested, status, last_error, events_applied \
                 from projection_checkpoints where name = $1",
            )
            .bind(name)
            .fetch_one(&mut conn)
            .await?;
        let shadow = rebuild_checkpoint(&mut conn, name).await?.map(|(at, _)| at);
        if status == "failed" {
            conn.close().await?;
            bail!(
                "the leader's rebuild of {name} failed: {}",
                last_error.unwrap_or_else(|| "no detail recorded".into())
            );
        }
        match shadow {
            Some(at) => progress(count_events_through(&mut conn, Some(at)).await?, total),
            None if !still_requested => {
                // Picked up, filled and swapped in by the leader.
                conn.close().await?;
                return Ok(RebuildOutcome::Completed {
                    events: applied.max(0) as u64,
                });
            }
            None => {}
        }
        let seen = (shadow, applied);
        if last_seen != Some(seen) {
            last_seen = Some(seen);
            last_change = std::time::Instant::now();
        } else if last_change.elapsed() > STALL_LIMIT {
            conn.close().await?;
            bail!(
                "the rebuild of {name} shows no progress for {} s; see `sentryops projections status`",
                STALL_LIMIT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
