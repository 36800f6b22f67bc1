-- `q` of GET /api/v1/assets: one search column and two indexes that also
-- carry the enum filters, so that a search and its exact total stay a few
-- milliseconds at 100,000 assets (docs/BENCHMARKS.md, issue 4).
--
-- `search_text` is the name and the short code, lower-cased once on write
-- instead of on every row a search re-checks; the unit separator between
-- them cannot occur in a `q` (it is refused there), so no match
-- spans the two.
create extension if not exists btree_gin;

alter table assets
    add column search_text text not null
    generated always as (lower(name) || chr(31) || lower(short_code)) stored;

-- The distinct two-character substrings of a text: a `q` of two characters
-- has no trigram, and without this index it scans every asset.
create function asset_search_bigrams(text) returns text[]
    language sql immutable strict parallel safe
    return array(select distinct substr($1, i, 2) from generate_series(1, length($1) - 1) as i order by 1);

drop index assets_name_trgm_idx;
drop index assets_short_code_trgm_idx;
create index assets_search_trgm_idx on assets
    using gin (search_text gin_trgm_ops, asset_type, environment, lifecycle_state);
create index assets_search_bigram_idx on assets
    using gin (asset_search_bigrams(search_text), asset_type, environment, lifecycle_state);
