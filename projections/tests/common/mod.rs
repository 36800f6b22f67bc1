//! Test harness for the projector runtime: a fresh database per test, raw
//! appends in explicit transactions, and a counting projection that makes a
//! lost or doubled event visible.

#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sentryops_events::EventMetadata;
use sentryops_projections::store::StoredEvent;
use sentryops_projections::{Projection, ProjectionRuntime, RuntimeOptions};
use sqlx::{PgConnection, PgPool};

/// A fresh, migrated database with the counting projection's table.
pub struct TestDb {
    pub pool: PgPool,
    pub url: String,
}

pub async fn fresh_db() -> TestDb {
    let db = sentryops_projections::testing::fresh_database().await;
    sqlx::query(
        "create table test_applied (position bigint not null, transaction_id bigint not null, runner text not null)",
    )
    .execute(&db.pool)
    .await
    .expect("create the counting table");
    TestDb {
        pool: db.pool,
        url: db.url,
    }
}

/// The distinct runners that wrote `test_applied`.
pub async fn runners(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar("select distinct runner from test_applied order by runner")
        .fetch_all(pool)
        .await
        .expect("runners")
}

/// Options with short intervals so tests run fast.
pub fn fast_options() -> RuntimeOptions {
    RuntimeOptions {
        batch_size: 10,
        rebuild_batch_size: 10,
        poll_interval: Duration::from_millis(50),
        settle_retry: Duration::from_millis(5),
        standby_interval: Duration::from_millis(20),
        error_backoff: Duration::from_millis(50),
    }
}

/// Inserts one event on `conn` (inside whatever transaction it is in) and
/// returns its global position.
pub async fn append_raw(conn: &mut PgConnection, aggregate_id: &str, sequence: i64) -> i64 {
    let metadata = serde_json::to_value(EventMetadata::system().to_map()).expect("json");
    sqlx::query_scalar(
        "insert into events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         values ('probe', $1, $2, 'ProbeRecorded', '1.0', $3, $4) returning global_position",
    )
    .bind(aggregate_id)
    .bind(sequence)
    .bind(serde_json::json!({ "ProbeRecorded": { "n": sequence } }))
    .bind(metadata)
    .fetch_one(conn)
    .await
    .expect("append an event")
}

/// Appends `count` events, each in its own committed transaction.
pub async fn append_many(pool: &PgPool, aggregate_id: &str, count: i64) -> Vec<i64> {
    let mut conn = pool.acquire().await.expect("connection");
    let start: i64 = sqlx::query_scalar("select count(*) from events where aggregate_id = $1")
        .bind(aggregate_id)
        .fetch_one(&mut *conn)
        .await
        .expect("count");
    let mut positions = Vec::new();
    for sequence in start..start + count {
        positions.push(append_raw(&mut conn, aggregate_id, sequence).await);
    }
    positions
}

/// Every position in the log, in the order a fold from scratch visits them.
pub async fn all_positions_in_order(pool: &PgPool) -> Vec<i64> {
    sqlx::query_scalar(
        "select global_position from events order by transaction_id, global_position",
    )
    .fetch_all(pool)
    .await
    .expect("read the log")
}

/// Appends a row per event to `test_applied` (no unique key: a doubled
/// event shows up as two rows). Can be told to fail on a position or to
/// stall inside a batch.
pub struct Counting {
    pub runner: &'static str,
    pub version: i32,
    pub fail_at: AtomicI64,
    pub stall: AtomicBool,
}

impl Counting {
    pub fn new(runner: &'static str) -> Arc<Self> {
        Arc::new(Self {
            runner,
            version: 1,
            fail_at: AtomicI64::new(-1),
            stall: AtomicBool::new(false),
        })
    }
}

#[async_trait]
impl Projection for Counting {
    fn name(&self) -> &'static str {
        "counting"
    }

    fn version(&self) -> i32 {
        self.version
    }

    fn tables(&self) -> &'static [&'static str] {
        &["test_applied"]
    }

    async fn apply(&self, conn: &mut PgConnection, events: &[StoredEvent]) -> anyhow::Result<()> {
        for event in events {
            if event.global_position == self.fail_at.load(Ordering::SeqCst) {
                anyhow::bail!("injected failure at {}", event.global_position);
            }
            sqlx::query(
                "insert into test_applied (position, transaction_id, runner) values ($1, $2, $3)",
            )
            .bind(event.global_position)
            .bind(event.transaction_id)
            .bind(self.runner)
            .execute(&mut *conn)
            .await?;
        }
        if self.stall.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
        Ok(())
    }
}

/// Positions in `test_applied`, in the order they were applied.
pub async fn applied_positions(pool: &PgPool) -> Vec<i64> {
    sqlx::query_scalar("select position from test_applied order by transaction_id, position")
        .fetch_all(pool)
        .await
        .expect("read test_applied")
}

/// A runtime over one projection with fast options.
pub fn runtime_for(pool: &PgPool, projection: Arc<dyn Projection>) -> ProjectionRuntime {
    ProjectionRuntime::new(pool.clone(), vec![projection], fast_options())
}

/// Polls `condition` every 20 ms for up to 10 s.
pub async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..500 {
        if condition().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// Takes leadership of `name` on `conn` once it is free. A stopped runtime's
/// leader connections are dropped, and their backends (which hold the
/// advisory locks until they exit) end a moment later.
pub async fn lead_when_free(conn: &mut sqlx::PgConnection, name: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !sentryops_projections::runtime::try_lead(conn, name)
        .await
        .expect("lock")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "leadership of {name} never came free"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Catches `projection` up until nothing committed is left unsettled, and
/// returns how many events it applied. Right after [`wait_settled`] one pass
/// can still come up short: the horizon is computed afresh by every read,
/// and sits lower for a moment when an older transaction elsewhere ends
/// while it is computed.
pub async fn catch_up_settled(
    conn: &mut sqlx::PgConnection,
    projection: &dyn sentryops_projections::Projection,
    batch_size: i64,
) -> u64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut applied = 0;
    loop {
        let pass =
            sentryops_projections::runtime::catch_up(conn, projection, batch_size, |_, _| {})
                .await
                .expect("catch up");
        applied += pass.applied;
        if !pass.unsettled {
            return applied;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "committed events never settled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Closes a connection the way a crashed runner's ends, and waits until its
/// backend is gone: PostgreSQL releases a session's advisory locks only when
/// the backend exits, a moment after the client hangs up.
pub async fn end_session(mut conn: sqlx::PgConnection, pool: &PgPool) {
    let pid: i32 = sqlx::query_scalar("select pg_backend_pid()")
        .fetch_one(&mut conn)
        .await
        .expect("backend pid");
    sqlx::Connection::close(conn).await.expect("close");
    eventually("the closed session's backend exits", || async {
        sqlx::query_scalar::<_, bool>(
            "select not exists (select 1 from pg_stat_activity where pid = $1) \
             and not exists (select 1 from pg_locks where pid = $1)",
        )
        .bind(pid)
        .fetch_one(pool)
        .await
        .unwrap_or(false)
    })
    .await;
}

/// Waits until every committed event is settled (below the snapshot
/// horizon). Tests share one PostgreSQL cluster, and another test's open
/// transaction holds the horizon back for everybody.
pub async fn wait_settled(pool: &PgPool) {
    eventually("every event is settled", || async {
        sqlx::query_scalar::<_, bool>(
            "select not exists (select 1 from events \
             where transaction_id >= (select events_settled_horizon()))",
        )
        .fetch_one(pool)
        .await
        .unwrap_or(false)
    })
    .await;
}
