//! The projector runtime: one leader loop per projection (DESIGN D4).
//!
//! Leadership is a session-level advisory lock held on a dedicated
//! connection, and every batch is applied **on that same connection**: if the
//! connection dies the lock goes with it and no further batch can commit, so
//! a process that lost leadership cannot keep applying. The checkpoint row is
//! also locked `FOR UPDATE` in each batch transaction, which serializes two
//! appliers even if the lock were somehow bypassed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::PgListener;
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::{watch, Mutex};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::projection::{is_valid_name, Projection};
use crate::rebuild;
use crate::store::{self, LogPosition, StoredEvent};

/// The NOTIFY channel the `events` trigger signals on every append.
pub const EVENTS_CHANNEL: &str = "sentryops_events";

/// Tuning of the runtime; the defaults suit production.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// Events per live batch transaction.
    pub batch_size: i64,
    /// Events per rebuild batch transaction.
    pub rebuild_batch_size: i64,
    /// Polling fallback when no notification arrives.
    pub poll_interval: Duration,
    /// Retry interval while committed events wait behind an open transaction.
    pub settle_retry: Duration,
    /// How often a standby retries to take leadership.
    pub standby_interval: Duration,
    /// Pause after a failed batch before trying again.
    pub error_backoff: Duration,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        Self {
            batch_size: 1000,
            rebuild_batch_size: 10_000,
            poll_interval: Duration::from_millis(500),
            settle_retry: Duration::from_millis(5),
            standby_interval: Duration::from_secs(1),
            error_backoff: Duration::from_secs(1),
        }
    }
}

/// Told about every batch this process commits, right after the commit:
/// caches in front of read models invalidate their entries with it. Called
/// on the runner's task, so it must not block.
pub trait CommitObserver: Send + Sync {
    /// `events` were applied to `projection`'s tables and are visible.
    fn committed(&self, projection: &str, events: &[StoredEvent]);
    /// `projection`'s tables were rebuilt and swapped in.
    fn rebuilt(&self, projection: &str);
}

/// Runs the projections of one process. Cheap to clone.
#[derive(Clone)]
pub struct ProjectionRuntime {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    projections: Vec<Arc<dyn Projection>>,
    options: RuntimeOptions,
    /// The last checkpoint this process committed, per projection.
    progress: HashMap<&'static str, watch::Sender<LogPosition>>,
    shutdown: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    observers: std::sync::RwLock<Vec<Arc<dyn CommitObserver>>>,
}

impl Inner {
    /// The registered observers (a snapshot: registration ends at start).
    fn observers(&self) -> Vec<Arc<dyn CommitObserver>> {
        self.observers
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// The outcome of one catch-up pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatchUp {
    /// Events applied in this pass.
    pub applied: u64,
    /// Where the checkpoint stands now.
    pub checkpoint: LogPosition,
    /// Committed events exist past the checkpoint that are not settled yet.
    pub unsettled: bool,
    /// What the checkpoint row says about the tables.
    pub state: CheckpointState,
}

impl ProjectionRuntime {
    /// A runtime for `projections`; nothing runs until [`Self::start`].
    ///
    /// # Panics
    /// When a projection name is not a safe identifier or is used twice:
    /// both are programming errors caught by any test.
    pub fn new(
        pool: PgPool,
        projections: Vec<Arc<dyn Projection>>,
        options: RuntimeOptions,
    ) -> Self {
        let mut progress = HashMap::new();
        for projection in &projections {
            assert!(
                is_valid_name(projection.name()),
                "invalid projection name {:?}",
                projection.name()
            );
            let previous = progress.insert(projection.name(), watch::channel(LogPosition::START).0);
            assert!(
                previous.is_none(),
                "duplicate projection {}",
                projection.name()
            );
        }
        Self {
            inner: Arc::new(Inner {
                pool,
                projections,
                options,
                progress,
                shutdown: watch::channel(false).0,
                tasks: Mutex::new(Vec::new()),
                observers: std::sync::RwLock::new(Vec::new()),
            }),
        }
    }

    /// The projections this runtime serves.
    pub fn projections(&self) -> &[Arc<dyn Projection>] {
        &self.inner.projections
    }

    /// Adds an observer of committed batches; call before
    /// [`Self::start`]. Each is told of every batch, in registration order.
    pub fn observe(&self, observer: Arc<dyn CommitObserver>) {
        self.inner
            .observers
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(observer);
    }

    /// Starts one leader loop per projection.
    pub async fn start(&self) {
        let mut tasks = self.inner.tasks.lock().await;
        for projection in &self.inner.projections {
            let inner = Arc::clone(&self.inner);
            let projection = Arc::clone(projection);
            tasks.push(tokio::spawn(async move { lead(inner, projection).await }));
        }
    }

    /// Follows the checkpoints this process commits for `name` (benchmarks
    /// and tests measure catch-up with it). `None` for an unknown name.
    pub fn subscribe(&self, name: &str) -> Option<watch::Receiver<LogPosition>> {
        self.inner.progress.get(name).map(watch::Sender::subscribe)
    }

    /// Stops every loop and waits for them; leadership locks are released as
    /// their connections close. A batch in flight is rolled back.
    pub async fn stop(&self) {
        self.inner.shutdown.send_replace(true);
        let tasks = std::mem::take(&mut *self.inner.tasks.lock().await);
        for task in tasks {
            task.abort();
            let _ = task.await;
        }
    }

    /// Waits until every projection has passed `target`, at most `timeout`.
    /// Returns whether they did. Works whichever process leads a projection:
    /// the progress this process commits wakes the waiter at once; the
    /// checkpoint table, read in one statement for all projections, is
    /// consulted at the start only for projections never led here, and then
    /// on a short tick (for those another process leads). Under many
    /// concurrent writers this keeps the waiters off the database.
    pub async fn wait_for(&self, target: LogPosition, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut pending: Vec<(&'static str, watch::Receiver<LogPosition>)> = self
            .inner
            .projections
            .iter()
            .map(|projection| {
                let name = projection.name();
                (name, self.inner.progress[name].subscribe())
            })
            .collect();
        let mut read_table = pending
            .iter()
            .any(|(_, progress)| *progress.borrow() == LogPosition::START);
        loop {
            pending.retain_mut(|(_, progress)| *progress.borrow_and_update() < target);
            if pending.is_empty() {
                return true;
            }
            if read_table {
                if let Ok(stored) = stored_checkpoints(&self.inner.pool).await {
                    pending.retain(|(name, _)| {
                        stored
                            .iter()
                            .find(|(stored_name, _)| stored_name == name)
                            .is_none_or(|(_, position)| *position < target)
                    });
                    if pending.is_empty() {
                        return true;
                    }
                }
            }
            let (_, progress) = &mut pending[0];
            tokio::select! {
                changed = progress.changed() => {
                    read_table = false;
                    if changed.is_err() {
                        // The runtime is gone: only the table can tell.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        read_table = true;
                    }
                }
                _ = tokio::time::sleep(Duration::from_millis(20)) => read_table = true,
                _ = tokio::time::sleep_until(deadline) => return false,
            }
        }
    }
}

/// Every stored checkpoint, by projection name.
async fn stored_checkpoints(pool: &PgPool) -> sqlx::Result<Vec<(String, LogPosition)>> {
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        "select name, last_transaction_id, last_position from projection_checkpoints",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(name, transaction_id, position)| {
            (
                name,
                LogPosition {
                    transaction_id,
                    position,
                },
            )
        })
        .collect())
}

/// The checkpoint stored for `name`, if its row exists.
pub async fn stored_checkpoint(pool: &PgPool, name: &str) -> sqlx::Result<Option<LogPosition>> {
    let row: Option<(i64, i64)> = sqlx::query_as(
        "select last_transaction_id, last_position from projection_checkpoints where name = $1",
    )
    .bind(name)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|(transaction_id, position)| LogPosition {
        transaction_id,
        position,
    }))
}

/// The advisory-lock key of a projection, derived in SQL so every process
/// and every tool agrees on it.
pub(crate) const LOCK_KEY_SQL: &str = "hashtextextended('sentryops.projection.' || $1, 0)";

/// Tries to take leadership of `name` on `conn` without waiting.
pub async fn try_lead(conn: &mut PgConnection, name: &str) -> sqlx::Result<bool> {
    sqlx::query_scalar(&format!("select pg_try_advisory_lock({LOCK_KEY_SQL})"))
        .bind(name)
        .fetch_one(conn)
        .await
}

/// Gives leadership of `name` back.
pub async fn release_lead(conn: &mut PgConnection, name: &str) -> sqlx::Result<bool> {
    sqlx::query_scalar(&format!("select pg_advisory_unlock({LOCK_KEY_SQL})"))
        .bind(name)
        .fetch_one(conn)
        .await
}

/// Creates the checkpoint row of a projection if it is new: a new projection
/// starts at the beginning of the log with the code's version.
pub async fn ensure_checkpoint(
    conn: &mut PgConnection,
    projection: &dyn Projection,
) -> sqlx::Result<()> {
    sqlx::query(
        "insert into projection_checkpoints (name, version) values ($1, $2) \
         on conflict (name) do nothing",
    )
    .bind(projection.name())
    .bind(projection.version())
    .execute(conn)
    .await?;
    Ok(())
}

async fn lead(inner: Arc<Inner>, projection: Arc<dyn Projection>) {
    let mut shutdown = inner.shutdown.subscribe();
    while !*shutdown.borrow_and_update() {
        let mut led = false;
        if let Err(error) = lead_once(&inner, projection.as_ref(), &mut shutdown, &mut led).await {
            tracing::error!(
                projection = projection.name(),
                error = format!("{error:#}"),
                "projection runner failed; retrying"
            );
            // A standby that could not reach the database says nothing
            // about the projection, which another process may run fine.
            if led {
                record_failure(&inner.pool, projection.name(), &error).await;
            }
            tokio::select! {
                _ = shutdown.changed() => {}
                _ = tokio::time::sleep(inner.options.error_backoff) => {}
            }
        }
    }
}

async fn record_failure(pool: &PgPool, name: &str, error: &anyhow::Error) {
    let message: String = format!("{error:#}").chars().take(1000).collect();
    let result = sqlx::query(
        "update projection_checkpoints set status = 'failed', last_error = $2, updated_at = now() \
         where name = $1",
    )
    .bind(name)
    .bind(message)
    .execute(pool)
    .await;
    if let Err(error) = result {
        tracing::warn!(projection = name, %error, "could not record the projection failure");
    }
}

/// One leadership term: take the lock, then catch up whenever woken, until
/// shutdown (`Ok`) or an error (the connection, and so the lock, is dropped).
/// Sets `led` once the lock is held.
async fn lead_once(
    inner: &Inner,
    projection: &dyn Projection,
    shutdown: &mut watch::Receiver<bool>,
    led: &mut bool,
) -> anyhow::Result<()> {
    let name = projection.name();
    let mut conn = inner.pool.acquire().await?.detach();
    while !try_lead(&mut conn, name).await? {
        tokio::select! {
            _ = shutdown.changed() => return Ok(conn.close().await?),
            _ = tokio::time::sleep(inner.options.standby_interval) => {}
        }
    }
    *led = true;
    tracing::info!(projection = name, "took projection leadership");
    let mut listener = PgListener::connect_with(&inner.pool).await?;
    listener.listen(EVENTS_CHANNEL).await?;
    ensure_checkpoint(&mut conn, projection).await?;
    // A failure recorded by an earlier term is history now.
    sqlx::query(
        "update projection_checkpoints set status = 'running', last_error = null, updated_at = now() \
         where name = $1 and status = 'failed'",
    )
    .bind(name)
    .execute(&mut conn)
    .await?;
    let progress = &inner.progress[name];
    let mut settle_wait = inner.options.settle_retry;
    loop {
        let pass = catch_up(
            &mut conn,
            projection,
            inner.options.batch_size,
            |checkpoint, events| {
                for observer in inner.observers() {
                    observer.committed(name, events);
                }
                progress.send_replace(checkpoint);
            },
        )
        .await?;
        match pass.state {
            CheckpointState::RebuildDue => {
                rebuild::rebuild_on(
                    &mut conn,
                    &inner.pool,
                    projection,
                    &inner.options,
                    &mut |_, _| {},
                    None,
                )
                .await
                .context("rebuild")?;
                for observer in inner.observers() {
                    observer.rebuilt(name);
                }
                if let Some(checkpoint) = stored_checkpoint(&inner.pool, name).await? {
                    progress.send_replace(checkpoint);
                }
                continue;
            }
            CheckpointState::NewerThanCode { stored } => {
                // A newer version of the service built these tables (a
                // rolling deploy): folding with older code would corrupt
                // them. Give leadership up and wait for the newer process.
                tracing::warn!(
                    projection = name,
                    stored_version = stored,
                    code_version = projection.version(),
                    "read model was built by newer code; standing by"
                );
                drop(listener);
                conn.close().await?;
                tokio::select! {
                    _ = shutdown.changed() => {}
                    _ = tokio::time::sleep(inner.options.poll_interval * 20) => {}
                }
                return Ok(());
            }
            CheckpointState::Current => {
                projection
                    .tick(&mut conn)
                    .await
                    .with_context(|| format!("projection {name} tick"))?;
            }
        }
        // While committed events wait behind an open transaction, retry
        // soon, backing off towards the polling interval so that one idle
        // session elsewhere does not make the runner spin.
        let wait = if pass.unsettled {
            settle_wait = if pass.applied > 0 {
                inner.options.settle_retry
            } else {
                (settle_wait * 2).min(inner.options.poll_interval)
            };
            settle_wait
        } else {
            settle_wait = inner.options.settle_retry;
            inner.options.poll_interval
        };
        tokio::select! {
            _ = shutdown.changed() => {
                drop(listener);
                return Ok(conn.close().await?);
            }
            notification = listener.recv() => {
                notification?;
                // One pass serves every notification already received.
                while listener.next_buffered().is_some() {}
            }
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// What the checkpoint row says about the tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointState {
    /// Built by this code version; catch up normally.
    Current,
    /// A rebuild is requested, in progress, or the code is newer.
    RebuildDue,
    /// The tables were built by a newer code version.
    NewerThanCode { stored: i32 },
}

/// Applies every settled event past the live checkpoint, batch by batch,
/// each batch and its checkpoint in one transaction. The caller must lead
/// the projection on `conn`. A pass that finds nothing writes nothing (no
/// transaction id is used, no WAL is written).
pub async fn catch_up(
    conn: &mut PgConnection,
    projection: &dyn Projection,
    batch_size: i64,
    mut on_commit: impl FnMut(LogPosition, &[StoredEvent]),
) -> anyhow::Result<CatchUp> {
    let name = projection.name();
    let mut applied = 0u64;
    loop {
        let mut tx = conn.begin().await?;
        let row: Option<(i64, i64, i32, bool, bool)> = sqlx::query_as(
            "select last_transaction_id, last_position, version, rebuild_requested, \
                    rebuild_position is not null \
             from projection_checkpoints where name = $1",
        )
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?;
        let (transaction_id, position, stored_version, requested, in_progress) =
            row.with_context(|| format!("no checkpoint row for projection {name}"))?;
        let checkpoint = LogPosition {
            transaction_id,
            position,
        };
        let state = if stored_version > projection.version() {
            CheckpointState::NewerThanCode {
                stored: stored_version,
            }
        } else if requested || in_progress || stored_version < projection.version() {
            CheckpointState::RebuildDue
        } else {
            CheckpointState::Current
        };
        if state != CheckpointState::Current {
            tx.rollback().await?;
            return Ok(CatchUp {
                applied,
                checkpoint,
                unsettled: false,
                state,
            });
        }
        let events =
            store::read_settled_for_projection(&mut tx, projection, checkpoint, batch_size).await?;
        let Some(last) = events.last().map(|event| event.log_position()) else {
            tx.rollback().await?;
            let unsettled = store::has_unsettled_after(conn, checkpoint).await?;
            return Ok(CatchUp {
                applied,
                checkpoint,
                unsettled,
                state,
            });
        };
        // Lock the row only now that there is something to write, and make
        // sure nobody moved the checkpoint since it was read (the advisory
        // lock already excludes that; this is the second fence).
        let locked: (i64, i64) = sqlx::query_as(
            "select last_transaction_id, last_position from projection_checkpoints \
             where name = $1 for update",
        )
        .bind(name)
        .fetch_one(&mut *tx)
        .await?;
        if locked != (checkpoint.transaction_id, checkpoint.position) {
            tx.rollback().await?;
            anyhow::bail!(
                "the checkpoint of {name} moved under this runner; another process applies it"
            );
        }
        projection
            .apply(&mut tx, &events)
            .await
            .with_context(|| format!("projection {name} failed on a batch ending at {last:?}"))?;
        sqlx::query(
            "update projection_checkpoints \
             set last_transaction_id = $2, last_position = $3, \
                 events_applied = events_applied + $4, status = 'running', last_error = null, \
                 updated_at = now() \
             where name = $1",
        )
        .bind(name)
        .bind(last.transaction_id)
        .bind(last.position)
        .bind(events.len() as i64)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        applied += events.len() as u64;
        on_commit(last, &events);
    }
}
