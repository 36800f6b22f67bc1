-- Read models mirror the aggregates' uniqueness rules, never enforce them.
-- Rust's and PostgreSQL's lower-casing differ for a few letters (a final
-- sigma, a dotted capital I): two tag names the tag aggregate tells apart
-- could meet in a unique index on lower(name) and stop the projection for
-- good. The index stays, for ordering, without the constraint.
drop index tags_name_idx;
create index tags_name_idx on tags (lower(name));

-- Assets of one import share `created_at`: newest first then follows the
-- order of registration, which the index serves as well.
drop index assets_newest_idx;
create index assets_newest_idx on assets (created_at desc, registration_position desc, id desc);
