-- The event store (DESIGN D2, D3).
--
-- postgres-es 0.5 reads and writes the first seven columns and names them in
-- every statement, so the extra columns below are invisible to it. We use
-- jsonb, not the json of postgres-es's shipped DDL, so auditors and
-- projections can index and query payloads.
create table events (
    aggregate_type text   not null,
    aggregate_id   text   not null,
    sequence       bigint not null check (sequence >= 0),
    event_type     text   not null,
    event_version  text   not null,
    payload        jsonb  not null,
    metadata       jsonb  not null,
    -- Unique, but assigned at insert, not at commit: it has gaps and can
    -- become visible out of order. Readers therefore order by
    -- (transaction_id, global_position) and read only below the snapshot
    -- horizon (see projections/src/store.rs).
    global_position bigint generated always as identity,
    transaction_id  xid8        not null default pg_current_xact_id(),
    recorded_at     timestamptz not null default now(),
    primary key (aggregate_type, aggregate_id, sequence)
);

create unique index events_global_position_key on events (global_position);
-- The catch-up reader's order and keyset.
create index events_transaction_order_idx on events (transaction_id, global_position);

-- The order columns are the database's to set, never a writer's: an
-- INSERT or COPY (a restore of an export, say) that supplied a future
-- transaction id would never settle and stall every projection; a past one
-- would be skipped. Forced here on every insert.
create function events_stamp_order() returns trigger
language plpgsql as $$
begin
    new.transaction_id := pg_current_xact_id();
    new.recorded_at := now();
    return new;
end;
$$;

create trigger events_stamp_order
    before insert on events
    for each row execute function events_stamp_order();

-- The log is append-only from the service's side: no UPDATE, no DELETE, no
-- TRUNCATE. A trigger (rather than privileges alone) holds for every role,
-- including the owner that runs migrations.
create function events_refuse_change() returns trigger
language plpgsql as $$
begin
    raise exception 'the event log is append-only: % on events is refused', tg_op
        using errcode = 'insufficient_privilege';
end;
$$;

create trigger events_no_update_delete
    before update or delete on events
    for each row execute function events_refuse_change();

create trigger events_no_truncate
    before truncate on events
    for each statement execute function events_refuse_change();

-- Wake the projector runners. Statement level: one notification per append
-- batch, delivered at commit, so a listener never wakes for an uncommitted
-- event.
create function events_notify_appended() returns trigger
language plpgsql as $$
begin
    perform pg_notify('sentryops_events', '');
    return null;
end;
$$;

create trigger events_notify
    after insert on events
    for each statement execute function events_notify_appended();

-- One row per projection (DESIGN D4). The checkpoint is the pair
-- (last_transaction_id, last_position), compared as a pair, never the
-- position alone. xid8 is kept as bigint here: it is a 64-bit epoch-extended
-- counter that never reaches 2^63 in practice, and bigint binds everywhere.
create table projection_checkpoints (
    name                   text primary key,
    version                integer     not null,
    last_transaction_id    bigint      not null default 0,
    last_position          bigint      not null default 0,
    events_applied         bigint      not null default 0,
    status                 text        not null default 'idle',
    last_error             text,
    -- A rebuild in progress fills shadow tables; its progress survives a
    -- restart so a stopped rebuild resumes instead of starting over.
    rebuild_requested      boolean     not null default false,
    rebuild_transaction_id bigint,
    rebuild_position       bigint,
    -- The code version filling the shadow tables: a rebuild resumes only
    -- with the same version, otherwise it starts over.
    rebuild_version        integer,
    updated_at             timestamptz not null default now()
);
