//! The projector runtime against a real PostgreSQL (issue 2, "Done when").

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use sentryops_projections::audit_timeline::AuditTimeline;
use sentryops_projections::rebuild::{rebuild_on, RebuildOutcome};
use sentryops_projections::runtime::{catch_up, stored_checkpoint, try_lead};
use sentryops_projections::{LogPosition, Projection, ProjectionRuntime};
use sqlx::{Connection, PgPool};

async fn audit_positions(pool: &PgPool) -> Vec<i64> {
    sqlx::query_scalar("select event_position from audit_timeline order by event_position")
        .fetch_all(pool)
        .await
        .expect("read audit_timeline")
}

async fn log_position_of(pool: &PgPool, position: i64) -> LogPosition {
    let transaction_id: i64 = sqlx::query_scalar(
        "select transaction_id::text::bigint from events where global_position = $1",
    )
    .bind(position)
    .fetch_one(pool)
    .await
    .expect("event exists");
    LogPosition {
        transaction_id,
        position,
    }
}

/// Waits (at most 10 s) until `runtime` has projected every event in the
/// log; returns the global position of the last one.
async fn caught_up_with_the_log(pool: &PgPool, runtime: &ProjectionRuntime) -> i64 {
    let last = *all_positions_in_order(pool).await.last().expect("events");
    assert!(
        runtime
            .wait_for(log_position_of(pool, last).await, Duration::from_secs(10))
            .await
    );
    last
}

/// Done-when 1: an event whose transaction took a lower global_position but
/// commits after a higher one is still projected.
#[tokio::test]
async fn a_late_committing_lower_position_is_still_projected() {
    let db = fresh_db().await;
    let runtime = runtime_for(&db.pool, Arc::new(AuditTimeline));
    runtime.start().await;

    let mut early = sqlx::PgConnection::connect(&db.url).await.expect("connect");
    let mut late = sqlx::PgConnection::connect(&db.url).await.expect("connect");
    let mut slow_tx = early.begin().await.expect("begin");
    let low = append_raw(&mut slow_tx, "slow", 0).await;
    let mut fast_tx = late.begin().await.expect("begin");
    let high = append_raw(&mut fast_tx, "fast", 0).await;
    assert!(low < high, "the slow transaction took the lower position");
    fast_tx
        .commit()
        .await
        .expect("commit the higher position first");

    // The higher position is committed and visible, but the lower one is
    // still in flight: the runner must not move past it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(audit_positions(&db.pool).await, Vec::<i64>::new());

    slow_tx
        .commit()
        .await
        .expect("commit the lower position last");
    let target = log_position_of(&db.pool, high)
        .await
        .max(log_position_of(&db.pool, low).await);
    assert!(runtime.wait_for(target, Duration::from_secs(10)).await);
    assert_eq!(audit_positions(&db.pool).await, vec![low, high]);
    runtime.stop().await;
}

/// DESIGN D3: a position-only checkpoint loses events under concurrent
/// writers; ours must not lose one.
#[tokio::test]
async fn sixteen_concurrent_writers_lose_no_event() {
    let db = fresh_db().await;
    let runtime = runtime_for(&db.pool, Arc::new(AuditTimeline));
    runtime.start().await;
    let mut writers = Vec::new();
    for writer in 0..16 {
        let url = db.url.clone();
        writers.push(tokio::spawn(async move {
            let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect");
            for sequence in 0..40 {
                let mut tx = conn.begin().await.expect("begin");
                append_raw(&mut tx, &format!("writer-{writer}"), sequence).await;
                // Hold some transactions open so commits interleave out of
                // position order.
                if (sequence + writer) % 3 == 0 {
                    tokio::time::sleep(Duration::from_millis(3)).await;
                }
                tx.commit().await.expect("commit");
            }
        }));
    }
    for writer in writers {
        writer.await.expect("writer finished");
    }
    let positions = all_positions_in_order(&db.pool).await;
    assert_eq!(positions.len(), 16 * 40);
    let last = *positions.last().expect("events");
    let target = log_position_of(&db.pool, last).await;
    assert!(runtime.wait_for(target, Duration::from_secs(20)).await);
    let mut expected = positions.clone();
    expected.sort_unstable();
    assert_eq!(audit_positions(&db.pool).await, expected);
    runtime.stop().await;
}

/// Done-when 2a: a runner that fails mid-batch, and one stopped while a
/// batch is in flight, neither lose nor double-apply an event once
/// restarted.
#[tokio::test]
async fn a_runner_stopped_mid_batch_neither_loses_nor_doubles() {
    let db = fresh_db().await;
    let positions = append_many(&db.pool, "a", 45).await;
    wait_settled(&db.pool).await;

    // A failure in the middle of the third batch rolls that batch back.
    let failing = Counting::new("first");
    failing.fail_at.store(positions[25], Ordering::SeqCst);
    let runtime = runtime_for(&db.pool, failing.clone());
    runtime.start().await;
    eventually("the runner reports the failure", || async {
        sqlx::query_scalar::<_, Option<String>>(
            "select last_error from projection_checkpoints where name = 'counting'",
        )
        .fetch_optional(&db.pool)
        .await
        .ok()
        .flatten()
        .flatten()
        .is_some()
    })
    .await;
    runtime.stop().await;
    let applied = applied_positions(&db.pool).await;
    assert_eq!(applied, positions[..20].to_vec(), "whole batches only");
    let checkpoint = stored_checkpoint(&db.pool, "counting")
        .await
        .expect("read")
        .expect("row");
    assert_eq!(checkpoint.position, positions[19]);

    // Restart, and stop it while a batch is in flight (stalled inside the
    // transaction): the batch must roll back.
    let stalling = Counting::new("second");
    stalling.stall.store(true, Ordering::SeqCst);
    let runtime = runtime_for(&db.pool, stalling.clone());
    runtime.start().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    runtime.stop().await;
    assert_eq!(applied_positions(&db.pool).await, positions[..20].to_vec());

    // A healthy restart finishes the job exactly once.
    let healthy = Counting::new("third");
    let runtime = runtime_for(&db.pool, healthy);
    runtime.start().await;
    let target = log_position_of(&db.pool, *positions.last().expect("events")).await;
    assert!(runtime.wait_for(target, Duration::from_secs(10)).await);
    runtime.stop().await;
    assert_eq!(
        applied_positions(&db.pool).await,
        all_positions_in_order(&db.pool).await
    );
}

/// Done-when 2b: a rebuild stopped midway resumes without losing or
/// doubling an event.
#[tokio::test]
async fn a_rebuild_stopped_midway_resumes_exactly_once() {
    let db = fresh_db().await;
    append_many(&db.pool, "a", 35).await;
    wait_settled(&db.pool).await;
    let projection = Counting::new("live");
    let mut conn = db.pool.acquire().await.expect("conn").detach();
    assert!(try_lead(&mut conn, "counting").await.expect("lock"));
    sentryops_projections::runtime::ensure_checkpoint(&mut conn, projection.as_ref())
        .await
        .expect("checkpoint row");
    catch_up_settled(&mut conn, projection.as_ref(), 10).await;
    assert_eq!(
        applied_positions(&db.pool).await,
        all_positions_in_order(&db.pool).await
    );

    let outcome = rebuild_on(
        &mut conn,
        &db.pool,
        projection.as_ref(),
        &fast_options(),
        &mut |_, _| {},
        Some(2),
    )
    .await
    .expect("first part of the rebuild");
    assert_eq!(outcome, RebuildOutcome::Stopped { events: 20 });
    // Events keep arriving while the rebuild is stopped.
    append_many(&db.pool, "b", 7).await;
    wait_settled(&db.pool).await;
    end_session(conn, &db.pool).await;

    let mut conn = db.pool.acquire().await.expect("conn").detach();
    assert!(try_lead(&mut conn, "counting").await.expect("lock"));
    let outcome = rebuild_on(
        &mut conn,
        &db.pool,
        projection.as_ref(),
        &fast_options(),
        &mut |_, _| {},
        None,
    )
    .await
    .expect("resumed rebuild");
    assert_eq!(outcome, RebuildOutcome::Completed { events: 42 });
    assert_eq!(
        applied_positions(&db.pool).await,
        all_positions_in_order(&db.pool).await
    );
}

/// Done-when 3: two runtimes on one database never both apply the same
/// projection, including across a leader change.
#[tokio::test]
async fn two_runtimes_never_both_apply() {
    let db = fresh_db().await;
    let first = runtime_for(&db.pool, Counting::new("first"));
    let second = runtime_for(&db.pool, Counting::new("second"));
    first.start().await;
    second.start().await;
    for wave in 0..5 {
        append_many(&db.pool, &format!("wave-{wave}"), 20).await;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let last = *all_positions_in_order(&db.pool)
        .await
        .last()
        .expect("events");
    let target = log_position_of(&db.pool, last).await;
    assert!(first.wait_for(target, Duration::from_secs(10)).await);
    let runners = runners(&db.pool).await;
    assert_eq!(
        runners.len(),
        1,
        "one leader applied everything: {runners:?}"
    );

    // Stop the leader; the standby takes over and continues exactly once.
    if runners[0] == "first" {
        first.stop().await;
    } else {
        second.stop().await;
    }
    append_many(&db.pool, "after-failover", 30).await;
    let last = *all_positions_in_order(&db.pool)
        .await
        .last()
        .expect("events");
    let target = log_position_of(&db.pool, last).await;
    let survivor = if runners[0] == "first" {
        &second
    } else {
        &first
    };
    assert!(survivor.wait_for(target, Duration::from_secs(10)).await);
    assert_eq!(
        applied_positions(&db.pool).await,
        all_positions_in_order(&db.pool).await
    );
    let doubled: i64 = sqlx::query_scalar(
        "select count(*) from (select position from test_applied group by position having count(*) > 1) d",
    )
    .fetch_one(&db.pool)
    .await
    .expect("count");
    assert_eq!(doubled, 0);
    first.stop().await;
    second.stop().await;
}

async fn table_digest(pool: &PgPool, table: &str, order: &str) -> (i64, String) {
    sqlx::query_as(&format!(
        "select count(*), coalesce(md5(string_agg(t::text, '|' order by {order})), '') from {table} t"
    ))
    .fetch_one(pool)
    .await
    .expect("digest")
}

/// Columns, constraints and indexes of a live table, as text.
async fn table_schema(pool: &PgPool, table: &str) -> Vec<String> {
    sqlx::query_scalar(
        "select 'column ' || column_name || ' ' || data_type || ' ' || is_nullable \
           from information_schema.columns where table_schema = 'public' and table_name = $1 \
         union all \
         select 'constraint ' || conname || ' ' || pg_get_constraintdef(oid) \
           from pg_constraint where conrelid = format('public.%I', $1::text)::regclass \
         union all \
         select 'index ' || indexdef from pg_indexes where schemaname = 'public' and tablename = $1 \
         order by 1",
    )
    .bind(table)
    .fetch_all(pool)
    .await
    .expect("schema")
}

/// Done-when 4: a rebuild yields tables identical row by row to the live
/// ones, and readers see the old tables until the swap.
#[tokio::test]
async fn a_rebuild_matches_the_live_tables_and_swaps_atomically() {
    let db = fresh_db().await;
    append_many(&db.pool, "a", 25).await;
    let runtime = runtime_for(&db.pool, Arc::new(AuditTimeline));
    runtime.start().await;
    let last = caught_up_with_the_log(&db.pool, &runtime).await;
    runtime.stop().await;
    let live = table_digest(&db.pool, "audit_timeline", "event_position").await;
    assert_eq!(live.0, 25);
    let live_schema = table_schema(&db.pool, "audit_timeline").await;

    // Damage the live table, as a buggy old projection version would have.
    sqlx::query("update audit_timeline set action = 'wrong' where event_position = $1")
        .bind(last)
        .execute(&db.pool)
        .await
        .expect("tamper with the read model");
    let damaged = table_digest(&db.pool, "audit_timeline", "event_position").await;
    assert_ne!(damaged, live);

    let projection = AuditTimeline;
    let mut conn = db.pool.acquire().await.expect("conn").detach();
    lead_when_free(&mut conn, projection.name()).await;
    let outcome = rebuild_on(
        &mut conn,
        &db.pool,
        &projection,
        &fast_options(),
        &mut |_, _| {},
        Some(1),
    )
    .await
    .expect("partial rebuild");
    assert_eq!(outcome, RebuildOutcome::Stopped { events: 10 });
    // Mid-rebuild: readers still see the old (damaged) table, the shadow is
    // partly filled.
    assert_eq!(
        table_digest(&db.pool, "audit_timeline", "event_position").await,
        damaged
    );
    let shadow_rows: i64 =
        sqlx::query_scalar("select count(*) from shadow_audit_timeline.audit_timeline")
            .fetch_one(&db.pool)
            .await
            .expect("shadow readable");
    assert_eq!(shadow_rows, 10);

    let outcome = rebuild_on(
        &mut conn,
        &db.pool,
        &projection,
        &fast_options(),
        &mut |_, _| {},
        None,
    )
    .await
    .expect("rebuild completes");
    assert_eq!(outcome, RebuildOutcome::Completed { events: 25 });
    assert_eq!(
        table_digest(&db.pool, "audit_timeline", "event_position").await,
        live
    );
    assert_eq!(
        table_schema(&db.pool, "audit_timeline").await,
        live_schema,
        "same columns, constraints and index names after the swap"
    );
    let shadow_left: bool = sqlx::query_scalar(
        "select exists (select 1 from pg_namespace where nspname = 'shadow_audit_timeline')",
    )
    .fetch_one(&db.pool)
    .await
    .expect("query");
    assert!(!shadow_left, "the shadow schema is dropped after the swap");
}

/// A projection whose code version is newer than its stored version is
/// rebuilt when the runtime starts.
#[tokio::test]
async fn a_newer_code_version_rebuilds_at_start() {
    let db = fresh_db().await;
    append_many(&db.pool, "a", 12).await;
    let runtime = runtime_for(&db.pool, Counting::new("v1"));
    runtime.start().await;
    caught_up_with_the_log(&db.pool, &runtime).await;
    runtime.stop().await;

    let mut v2 = Counting::new("v2");
    Arc::get_mut(&mut v2).expect("unique").version = 2;
    let runtime = runtime_for(&db.pool, v2);
    runtime.start().await;
    eventually("the stored version is bumped", || async {
        sqlx::query_scalar::<_, i32>(
            "select version from projection_checkpoints where name = 'counting'",
        )
        .fetch_one(&db.pool)
        .await
        .map(|version| version == 2)
        .unwrap_or(false)
    })
    .await;
    runtime.stop().await;
    let runners = runners(&db.pool).await;
    assert_eq!(
        runners,
        vec!["v2".to_string()],
        "the table was rebuilt by v2"
    );
    assert_eq!(
        applied_positions(&db.pool).await,
        all_positions_in_order(&db.pool).await
    );
}

/// Done-when 5: UPDATE, DELETE and TRUNCATE on `events` are refused.
#[tokio::test]
async fn the_event_log_is_append_only() {
    let db = fresh_db().await;
    append_many(&db.pool, "a", 2).await;
    for statement in [
        "update events set payload = '{}'::jsonb",
        "delete from events",
        "truncate events",
    ] {
        let error = sqlx::query(statement)
            .execute(&db.pool)
            .await
            .expect_err(statement);
        let message = error.to_string();
        assert!(message.contains("append-only"), "{statement}: {message}");
    }
    let count: i64 = sqlx::query_scalar("select count(*) from events")
        .fetch_one(&db.pool)
        .await
        .expect("count");
    assert_eq!(count, 2);
}

/// A stopped rebuild resumes only under the code version that started it;
/// a newer version starts the shadow over.
#[tokio::test]
async fn a_rebuild_started_by_other_code_starts_over() {
    let db = fresh_db().await;
    append_many(&db.pool, "a", 30).await;
    wait_settled(&db.pool).await;
    let v1 = Counting::new("v1");
    let mut conn = db.pool.acquire().await.expect("conn").detach();
    assert!(try_lead(&mut conn, "counting").await.expect("lock"));
    let outcome = rebuild_on(
        &mut conn,
        &db.pool,
        v1.as_ref(),
        &fast_options(),
        &mut |_, _| {},
        Some(1),
    )
    .await
    .expect("partial rebuild by v1");
    assert_eq!(outcome, RebuildOutcome::Stopped { events: 10 });

    let mut v2 = Counting::new("v2");
    Arc::get_mut(&mut v2).expect("unique").version = 2;
    let outcome = rebuild_on(
        &mut conn,
        &db.pool,
        v2.as_ref(),
        &fast_options(),
        &mut |_, _| {},
        None,
    )
    .await
    .expect("rebuild by v2");
    assert_eq!(outcome, RebuildOutcome::Completed { events: 30 });
    let runners = runners(&db.pool).await;
    assert_eq!(
        runners,
        vec!["v2".to_string()],
        "no row folded by v1 survives"
    );
    assert_eq!(
        applied_positions(&db.pool).await,
        all_positions_in_order(&db.pool).await
    );
}

/// `projections rebuild` while a server leads: the leader rebuilds on
/// request and the tool follows it to the end.
#[tokio::test]
async fn a_tool_rebuild_is_carried_out_by_the_running_leader() {
    let db = fresh_db().await;
    append_many(&db.pool, "a", 25).await;
    let leader = runtime_for(&db.pool, Counting::new("leader"));
    leader.start().await;
    let last = caught_up_with_the_log(&db.pool, &leader).await;
    sqlx::query("delete from test_applied where position = $1")
        .bind(last)
        .execute(&db.pool)
        .await
        .expect("damage the read model");

    let tool = Counting::new("tool");
    let outcome = tokio::time::timeout(
        Duration::from_secs(20),
        sentryops_projections::rebuild::rebuild_now(
            &db.pool,
            tool.as_ref(),
            &fast_options(),
            &mut |_, _| {},
        ),
    )
    .await
    .expect("the tool does not hang")
    .expect("rebuild succeeds");
    assert!(
        matches!(outcome, RebuildOutcome::Completed { .. }),
        "{outcome:?}"
    );
    leader.stop().await;
    let runners = runners(&db.pool).await;
    assert_eq!(
        runners,
        vec!["leader".to_string()],
        "the leader did the work"
    );
    assert_eq!(
        applied_positions(&db.pool).await,
        all_positions_in_order(&db.pool).await
    );
}

/// When the leader's rebuild fails, the tool reports it instead of waiting.
#[tokio::test]
async fn a_tool_rebuild_reports_the_leaders_failure() {
    let db = fresh_db().await;
    let positions = append_many(&db.pool, "a", 25).await;
    let failing = Counting::new("leader");
    let leader = runtime_for(&db.pool, failing.clone());
    leader.start().await;
    let target = log_position_of(&db.pool, *positions.last().expect("events")).await;
    assert!(leader.wait_for(target, Duration::from_secs(10)).await);
    failing.fail_at.store(positions[12], Ordering::SeqCst);

    // The tool runs the same (failing) code: whether it follows the leader
    // or takes over once the leader gives up, the failure must surface.
    let result = tokio::time::timeout(
        Duration::from_secs(20),
        sentryops_projections::rebuild::rebuild_now(
            &db.pool,
            failing.as_ref(),
            &fast_options(),
            &mut |_, _| {},
        ),
    )
    .await
    .expect("the tool does not hang");
    leader.stop().await;
    let error = result.expect_err("the failure is reported");
    assert!(
        format!("{error:#}").contains("injected failure"),
        "{error:#}"
    );
}

/// A writer cannot choose the order columns: an export restored with its
/// transaction ids would otherwise stall or be skipped by every projection.
#[tokio::test]
async fn the_store_stamps_transaction_id_and_recorded_at_itself() {
    let db = fresh_db().await;
    let mut conn = db.pool.acquire().await.expect("conn");
    let mut tx = conn.begin().await.expect("begin");
    let (stored, own): (i64, i64) = sqlx::query_as(
        "with inserted as ( \
             insert into events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
                                 payload, metadata, transaction_id, recorded_at) \
             values ('probe', 'x', 0, 'ProbeRecorded', '1.0', '{}', '{}', '999999999', '2000-01-01') \
             returning transaction_id) \
         select transaction_id::text::bigint, pg_current_xact_id()::text::bigint from inserted",
    )
    .fetch_one(&mut *tx)
    .await
    .expect("insert");
    tx.commit().await.expect("commit");
    assert_eq!(stored, own);
    let recorded_recently: bool =
        sqlx::query_scalar("select recorded_at > now() - interval '1 minute' from events")
            .fetch_one(&db.pool)
            .await
            .expect("read");
    assert!(recorded_recently);
}

/// An idle catch-up pass writes nothing: it uses no transaction id, so a
/// runner waiting behind an open transaction does not burn xids or WAL.
#[tokio::test]
async fn an_idle_catch_up_pass_uses_no_transaction_id() {
    let db = fresh_db().await;
    append_many(&db.pool, "a", 3).await;
    wait_settled(&db.pool).await;
    let projection = Counting::new("idle");
    let mut conn = db.pool.acquire().await.expect("conn").detach();
    assert!(try_lead(&mut conn, "counting").await.expect("lock"));
    sentryops_projections::runtime::ensure_checkpoint(&mut conn, projection.as_ref())
        .await
        .expect("row");
    assert_eq!(
        catch_up_settled(&mut conn, projection.as_ref(), 10).await,
        3
    );
    // A row lock (FOR UPDATE) would stamp the locker's xid into xmax, and
    // any write would create a new row version (xmin).
    let row_versions = || async {
        sqlx::query_as::<_, (String, String)>(
            "select xmin::text, xmax::text from projection_checkpoints where name = 'counting'",
        )
        .fetch_one(&db.pool)
        .await
        .expect("row")
    };
    let before = row_versions().await;
    for _ in 0..10 {
        let pass = catch_up(&mut conn, projection.as_ref(), 10, |_, _| {})
            .await
            .expect("idle pass");
        assert_eq!(pass.applied, 0);
    }
    assert_eq!(row_versions().await, before);
}

/// A rebuild run while nothing leads, at a moment when an older
/// transaction keeps committed events from settling, waits for them before
/// its swap: it ends caught up with the log instead of leaving the tail to a
/// runner that may not be running.
#[tokio::test]
async fn a_rebuild_waits_for_committed_events_to_settle_before_its_swap() {
    let db = fresh_db().await;
    append_many(&db.pool, "before", 3).await;
    let mut early = sqlx::PgConnection::connect(&db.url).await.expect("connect");
    let mut slow_tx = early.begin().await.expect("begin");
    let low = append_raw(&mut slow_tx, "slow", 0).await;
    let committed = append_many(&db.pool, "after", 2).await;

    let tool = Counting::new("tool");
    let options = fast_options();
    let mut progress = |_, _| {};
    let rebuild = sentryops_projections::rebuild::rebuild_now(
        &db.pool,
        tool.as_ref(),
        &options,
        &mut progress,
    );
    let late_commit = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        slow_tx
            .commit()
            .await
            .expect("commit the older transaction");
    };
    let (outcome, ()) = tokio::join!(rebuild, late_commit);
    assert!(
        matches!(
            outcome.expect("rebuild succeeds"),
            RebuildOutcome::Completed { events: 6 }
        ),
        "every event, the late one included"
    );
    let applied = applied_positions(&db.pool).await;
    assert!(applied.contains(&low), "{applied:?}");
    assert!(committed.iter().all(|p| applied.contains(p)), "{applied:?}");
    assert_eq!(applied, all_positions_in_order(&db.pool).await);
}

/// A projection's code under a bumped version, the fold unchanged (as a
/// release that changes a table's layout, not its meaning, would be).
struct Bumped<P>(P, i32);

#[async_trait::async_trait]
impl<P: Projection> Projection for Bumped<P> {
    fn name(&self) -> &'static str {
        self.0.name()
    }
    fn version(&self) -> i32 {
        self.1
    }
    fn tables(&self) -> &'static [&'static str] {
        self.0.tables()
    }
    fn reads_large_payloads(&self) -> bool {
        self.0.reads_large_payloads()
    }
    async fn apply(
        &self,
        conn: &mut sqlx::PgConnection,
        events: &[sentryops_projections::StoredEvent],
    ) -> anyhow::Result<()> {
        self.0.apply(conn, events).await
    }
}

/// Issue 12: after a version bump the rebuild yields the tables a fold
/// from scratch gives, while the old tables keep serving until the swap.
#[tokio::test]
async fn a_version_bump_rebuilds_what_a_fold_from_scratch_gives_while_the_old_tables_serve() {
    let db = fresh_db().await;
    append_many(&db.pool, "a", 30).await;
    let runtime = runtime_for(&db.pool, Arc::new(AuditTimeline));
    runtime.start().await;
    let last = caught_up_with_the_log(&db.pool, &runtime).await;
    runtime.stop().await;
    // The fold from scratch of the whole log, by the live runner.
    let from_scratch = table_digest(&db.pool, "audit_timeline", "event_position").await;
    assert_eq!(from_scratch.0, 30);
    // What the old version left differs (so a rebuild that did nothing
    // could not pass).
    sqlx::query("update audit_timeline set action = 'old-version' where event_position = $1")
        .bind(last)
        .execute(&db.pool)
        .await
        .expect("the old version's row");
    let old = table_digest(&db.pool, "audit_timeline", "event_position").await;

    // Version 2 starts its rebuild; one batch in, the old tables serve.
    let bumped = Bumped(AuditTimeline, 2);
    let mut conn = db.pool.acquire().await.expect("conn").detach();
    lead_when_free(&mut conn, bumped.name()).await;
    let outcome = rebuild_on(
        &mut conn,
        &db.pool,
        &bumped,
        &fast_options(),
        &mut |_, _| {},
        Some(1),
    )
    .await
    .expect("a partial rebuild");
    assert_eq!(outcome, RebuildOutcome::Stopped { events: 10 });
    end_session(conn, &db.pool).await;
    assert_eq!(
        table_digest(&db.pool, "audit_timeline", "event_position").await,
        old,
        "readers still see the old version's table"
    );
    let stored: i32 =
        sqlx::query_scalar("select version from projection_checkpoints where name = $1")
            .bind(bumped.name())
            .fetch_one(&db.pool)
            .await
            .expect("version");
    assert_eq!(stored, 1);

    // The new code's runtime finishes the rebuild at start and swaps.
    let runtime = runtime_for(&db.pool, Arc::new(Bumped(AuditTimeline, 2)));
    runtime.start().await;
    eventually("version 2 is installed", || async {
        sqlx::query_scalar::<_, i32>(
            "select version from projection_checkpoints where name = 'audit_timeline'",
        )
        .fetch_one(&db.pool)
        .await
        .is_ok_and(|version| version == 2)
    })
    .await;
    runtime.stop().await;
    assert_eq!(
        table_digest(&db.pool, "audit_timeline", "event_position").await,
        from_scratch,
        "row for row what a fold from scratch gives"
    );
}
