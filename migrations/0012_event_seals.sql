-- Tamper evidence (SPEC section 7, docs/EVENT_CHAIN.md, ADR 0006).
--
-- `event_seals` is the `seal` projection's table: one row per event in the
-- settled global order, with the chain hash h_n after it. It can be rebuilt
-- like any read model (the chain is a pure function of the log), which is
-- why it proves nothing on its own: the signed checkpoints below do.
create table event_seals (
    -- 1-based place in the chain: the tree size of a checkpoint taken here.
    chain_index     bigint primary key check (chain_index > 0),
    transaction_id  bigint not null,
    global_position bigint not null unique,
    chain_hash      bytea  not null check (length(chain_hash) = 32)
);

-- Signed checkpoints: C2SP tlog-checkpoint signed notes over the chain head.
-- Not a projection table: a rebuild never touches them, and the service
-- never changes or deletes one (the same trigger rule as `events`). The
-- columns beside `note` are a convenience for queries; verification reads
-- only the signed note.
create table seal_checkpoints (
    tree_size       bigint primary key check (tree_size > 0),
    transaction_id  bigint      not null,
    global_position bigint      not null,
    head_hash       bytea       not null check (length(head_hash) = 32),
    signed_at       timestamptz not null,
    key_name        text        not null,
    note            text        not null
);

create function seal_checkpoints_refuse_change() returns trigger
language plpgsql as $$
begin
    raise exception 'checkpoints are append-only: % on seal_checkpoints is refused', tg_op
        using errcode = 'insufficient_privilege';
end;
$$;

create trigger seal_checkpoints_no_update_delete
    before update or delete on seal_checkpoints
    for each row execute function seal_checkpoints_refuse_change();

create trigger seal_checkpoints_no_truncate
    before truncate on seal_checkpoints
    for each statement execute function seal_checkpoints_refuse_change();
