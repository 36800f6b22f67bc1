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
begin
    if current_setting('sentryops.appending', true) is distinct from 'on' then
        if pg_current_xact_id_if_assigned() is not null then
            raise exception 'an append to events must be the first write of its transaction'
                using errcode = 'object_not_in_prerequisite_state',
                      hint = 'append in a transaction of its own, before any other write';
        end if;
        -- Transaction-local: gone at commit or rollback.
        perform set_config('sentryops.appending', 'on', true);
    end if;
    return null;
end;
$$;

create trigger events_append_first_write
    before insert on events
    for each statement execute function events_append_first_write();

-- 2. The horizon: the oldest xid, among the transactions in flight in the
-- caller's snapshot, that is an append (holds a lock on `events` in this
-- database) or that ended since the snapshot was taken (it may have been
-- an append that has just committed: its events are invisible to the
-- snapshot, so the horizon must not pass it). With none, the snapshot's
-- xmax. The lock table is read before the transaction statuses, in that
-- order: a transaction that commits in between is then seen by one of
-- the two. STABLE: it reads the caller's snapshot, the one the caller
-- reads `events` with; call it once per statement, `(select
-- events_settled_horizon())`.
create function events_settled_horizon() returns xid8
language plpgsql stable
set search_path from current
as $$
declare
    snapshot pg_snapshot := pg_current_snapshot();
    appending bigint[];
    horizon xid8;
begin
    if not exists (select from pg_snapshot_xip(snapshot)) then
        return pg_snapshot_xmax(snapshot);
    end if;
    select coalesce(array_agg(own.transactionid::text::bigint), '{}') into appending
    from pg_locks events_lock
    join pg_locks own on own.virtualtransaction = events_lock.virtualtransaction
    where events_lock.locktype = 'relation'
      and events_lock.database = (select oid from pg_database where datname = current_database())
      and events_lock.relation = 'events'::regclass
      and events_lock.mode = 'RowExclusiveLock'
      and own.locktype = 'transactionid'
      and own.mode = 'ExclusiveLock'
      and own.granted;
    select min(xip) into horizon
    from pg_snapshot_xip(snapshot) as xip
    where (xip::text::bigint % 4294967296) = any(appending)
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
