-- Compliance read models (SPEC section 4), built by the `compliance`
-- projection from the runs' events.

-- One row per run; `completed` turns true with ComplianceRunCompleted.
-- A run's events are one append, but a projection batch may end inside
-- it, so readers only look at completed runs.
create table compliance_runs (
    run_id               uuid primary key,
    started_at           timestamptz not null,
    finished_at          timestamptz,
    triggered_by_id      uuid not null,
    total_assets         bigint not null,
    org_score            double precision,
    passed_count         bigint,
    failed_count         bigint,
    not_applicable_count bigint,
    severity_failing     jsonb,
    -- The cut the run evaluated: (transaction id, global position).
    event_transaction    bigint not null,
    event_position       bigint not null,
    ruleset_hash         text not null,
    -- The rules as the run saw them: [{id, title, framework, control, severity, digest}].
    rules                jsonb not null,
    completed            boolean not null default false,
    -- Global position of ComplianceRunStarted: ties between equal start times.
    recorded_position    bigint not null
);
create index compliance_runs_newest_idx
    on compliance_runs (started_at desc, recorded_position desc) where completed;

-- Each asset's results in a run: one row per asset with its score, counts
-- and failing rule ids (for drift and reports). The results themselves,
-- with their evidence, stay in the run's `ComplianceResultsRecorded` event
-- numbered `batch_sequence`: copying ~30 MB of JSON per 10,000-asset run
-- into this table would double the cost of a run (ADR 0001).
create table compliance_asset_results (
    run_id         uuid not null,
    asset_id       uuid not null,
    asset_name     text not null,
    score          double precision not null,
    passed         integer not null,
    failed         integer not null,
    not_applicable integer not null,
    failing_rules  text[] not null,
    batch_sequence bigint not null,
    primary key (run_id, asset_id)
);
create index compliance_asset_results_score_idx
    on compliance_asset_results (run_id, score, asset_id);
