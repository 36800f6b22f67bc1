-- Compliance runs write tens of MB of JSON (results batches into `events`). lz4 compresses and
-- decompresses them several times faster than the default pglz, at a
-- similar ratio for JSON. Only values written from now on use it; old
-- values stay readable. A server built without lz4 keeps pglz.
do $$
begin
    alter table events alter column payload set compression lz4;
exception when feature_not_supported or invalid_parameter_value then
    raise notice 'lz4 is not available; keeping the default compression';
end
$$;
