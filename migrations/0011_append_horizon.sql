-- The settled horizon counts appends only (ADR 0004, issue 11 point 8).
--
-- Readers take events only from transactions that can no longer be in
-- flight (DESIGN D3). The horizon used to be pg_snapshot_xmin: the oldest
-- transaction of the whole cluster that holds an xid, so one idle
-- `begin; select pg_current_xact_id();` in any database of the server
-- stalled every projection, and with it every write's read-your-writes
-- wait. Only a transaction that can still insert into `events` matters.

-- 1. An append is the first write of its transaction (later appends in the
-- same transaction continue it). A transaction that already holds an xid
-- when it first inserts into `events` is refused, so a transaction seen
-- with an xid and without a lock on `events` can never append: the
-- horizon may pass it.
create function events_append_first_write() returns trigger
language plpgsql as $$
declare
    -- This transaction's own mark: a session cannot preset it, since it
    -- names the backend and the transaction's start.
    mark text := pg_backend_pid()::text || ':' || now()::text;
begin
    if current_setting('sentryops.appending', true) is distinct from mark then
        if pg_current_xact_id_if_assigned() is not null then
            raise exception 'an append to events must be the first write of its transaction'
                using errcode = 'object_not_in_prerequisite_state',
                      hint = 'append in a transaction of its own, before any other write';
        end if;
        -- Transaction-local: gone at commit or rollback.
        perform set_config('sentryops.appending', mark, true);
    end if;
    return null;
end;
$$;

create trigger events_append_first_write
    before insert on events
    for each statement execute function events_append_first_write();

-- 2. The horizon: the oldest xid, among the transactions in flight in the
-- caller's snapshot, that may still add an event: one that holds a lock on
-- `events` in this database; one whose own xid lock is not (yet) in the
-- lock table (an xid becomes visible to snapshots a moment before its lock
-- is inserted, so such a transaction cannot be told apart yet); a prepared
-- one (its locks move to a dummy entry when it is prepared); or one that
-- ended since the snapshot was taken (it may have been an append that has
-- just committed: its events are invisible to the snapshot, so the horizon
-- must not pass it). With none, the snapshot's xmax. The lock table is read
-- once, before the prepared transactions and the statuses: a transaction
-- that commits in between is then seen by one of them. STABLE: it reads
-- the caller's snapshot, the one the caller reads `events` with; call it
-- once per statement, `(select events_settled_horizon())`.
create function events_settled_horizon() returns xid8
language plpgsql stable
set search_path from current
as $$
declare
    snapshot pg_snapshot := pg_current_snapshot();
    locked bigint[];
    appending bigint[];
    prepared bigint[];
    horizon xid8;
begin
    if not exists (select from pg_snapshot_xip(snapshot)) then
        return pg_snapshot_xmax(snapshot);
    end if;
    with locks as materialized (
        select locktype, database, relation, mode, granted, virtualtransaction, transactionid
        from pg_locks
    ), appenders as (
        select virtualtransaction from locks
        where locktype = 'relation'
          and database = (select oid from pg_database where datname = current_database())
          and relation = 'events'::regclass
          and mode = 'RowExclusiveLock'
    )
    select coalesce(array_agg(transactionid::text::bigint), '{}'),
           coalesce(array_agg(transactionid::text::bigint)
                    filter (where virtualtransaction in (select virtualtransaction from appenders)),
                    '{}')
      into locked, appending
    from locks
    where locktype = 'transactionid' and mode = 'ExclusiveLock' and granted;
    select coalesce(array_agg(transaction::text::bigint), '{}') into prepared
    from pg_prepared_xacts;
    select min(xip) into horizon
    from pg_snapshot_xip(snapshot) as xip
    where (xip::text::bigint % 4294967296) = any(appending)
       or not ((xip::text::bigint % 4294967296) = any(locked))
       or (xip::text::bigint % 4294967296) = any(prepared)
       or pg_xact_status(xip) is distinct from 'in progress';
    return coalesce(horizon, pg_snapshot_xmax(snapshot));
end;
$$;

-- 3. The appends in flight in this database, oldest first, for operators
-- (`/ready`, `projections status`): these are what hold the horizon now.
create function events_open_appends()
returns table (pid integer, state text, age_seconds float8, application_name text)
language sql stable
set search_path from current
as $$
    select activity.pid, activity.state,
           extract(epoch from now() - activity.xact_start)::float8,
           activity.application_name
    from pg_locks events_lock
    join pg_stat_activity activity on activity.pid = events_lock.pid
    where events_lock.locktype = 'relation'
      and events_lock.database = (select oid from pg_database where datname = current_database())
      and events_lock.relation = 'events'::regclass
      and events_lock.mode = 'RowExclusiveLock'
      and activity.pid <> pg_backend_pid()
    order by activity.xact_start
$$;
