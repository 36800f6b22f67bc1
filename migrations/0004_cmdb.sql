-- CMDB read models (SPEC section 3, API.md "CMDB"). Written only by the
-- projections `assets`, `tags`, `dependencies` and `checkouts`; the
-- uniqueness rules live in the aggregates, the unique indexes here only
-- mirror them.
create extension if not exists pg_trgm;

create table assets (
    id              uuid primary key,
    short_code      text        not null unique,
    name            text        not null,
    asset_type      text        not null,
    lifecycle_state text        not null,
    environment     text        not null,
    location        text,
    description     text,
    owner_id        uuid,
    attributes      jsonb       not null default '{}',
    custom_fields   jsonb       not null default '{}',
    version         bigint      not null,
    created_at      timestamptz not null,
    updated_at      timestamptz not null,
    event_position  bigint      not null
);
-- Lists are newest first, filtered by any mix of these.
create index assets_newest_idx on assets (created_at desc, id desc);
create index assets_kind_idx on assets (asset_type, environment, lifecycle_state, created_at desc);
create index assets_owner_idx on assets (owner_id) where owner_id is not null;
-- `q`: case-insensitive substring of the name or the short code.
create index assets_name_trgm_idx on assets using gin (lower(name) gin_trgm_ops);
create index assets_short_code_trgm_idx on assets using gin (lower(short_code) gin_trgm_ops);

create table asset_tags (
    asset_id uuid not null,
    tag_id   uuid not null,
    primary key (asset_id, tag_id)
);
create index asset_tags_tag_idx on asset_tags (tag_id);

create table tags (
    id         uuid primary key,
    name       text        not null,
    color      text        not null,
    created_at timestamptz not null
);
create unique index tags_name_idx on tags (lower(name));

create table dependencies (
    id              uuid primary key,
    source_asset_id uuid        not null,
    target_asset_id uuid        not null,
    kind            text,
    created_at      timestamptz not null,
    unique (source_asset_id, target_asset_id)
);
create index dependencies_target_idx on dependencies (target_asset_id);

create table checkouts (
    id             uuid primary key,
    asset_id       uuid        not null,
    holder_id      uuid        not null,
    notes          text,
    checked_out_at timestamptz not null,
    checked_in_at  timestamptz
);
create unique index checkouts_open_idx on checkouts (asset_id) where checked_in_at is null;
create index checkouts_history_idx on checkouts (asset_id, checked_out_at desc);
