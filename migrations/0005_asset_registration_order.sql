-- The global position of each asset's registration event. Assets
-- registered in one transaction (a CSV import) share `created_at`; this
-- orders them as they were registered, so an export lists an import's rows
-- in file order. Filled by the `assets` projection (version 2, rebuilt at
-- start).
alter table assets add column registration_position bigint;
