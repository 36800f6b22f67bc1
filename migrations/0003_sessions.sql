-- sessions: one row per refresh-token family, for the per-request check
-- that an access token's session is still open (SPEC section 2). The
-- single-use rule itself lives in the session aggregate, not here.
create table sessions (
    id                 uuid primary key,
    user_id            uuid        not null,
    created_at         timestamptz not null,
    refresh_expires_at timestamptz not null,
    last_rotated_at    timestamptz,
    revoked_at         timestamptz,
    revoked_reason     text,
    event_position     bigint      not null
);
create index sessions_user_idx on sessions (user_id, created_at desc);
