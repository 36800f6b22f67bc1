-- Read models. Only projectors write these tables (SPEC: nothing but a
-- projector writes a read model). No foreign keys between them: a projection
-- is rebuilt into a shadow copy and swapped on its own.

-- audit_timeline: one row per event, every aggregate (SPEC section 7).
create table audit_timeline (
    event_position bigint primary key,
    -- UUIDv5 of event_position: unique by construction, so no index of
    -- its own (every index slows the rebuild of millions of rows).
    id             uuid        not null,
    created_at     timestamptz not null,
    actor_id       text        not null,
    action         text        not null,
    entity_type    text        not null,
    entity_id      text        not null,
    before         jsonb,
    after          jsonb,
    source_ip      text,
    user_agent     text,
    request_id     text,
    correlation_id text
);
create index audit_timeline_entity_idx on audit_timeline (entity_type, entity_id, event_position desc);
create index audit_timeline_actor_idx on audit_timeline (actor_id, event_position desc);
create index audit_timeline_action_idx on audit_timeline (action, event_position desc);
create index audit_timeline_created_idx on audit_timeline (created_at);

-- users: the identity read model. Email uniqueness is enforced by the user
-- aggregate's id (derived from the normalized email), not by this table.
create table users (
    id            uuid primary key,
    email         text        not null,
    full_name     text        not null,
    role          text        not null,
    is_active     boolean     not null,
    mfa_enabled   boolean     not null,
    password_hash text        not null,
    created_at    timestamptz not null,
    updated_at    timestamptz not null,
    event_position bigint     not null
);
create index users_email_idx on users (lower(email));
create index users_created_idx on users (created_at, id);
