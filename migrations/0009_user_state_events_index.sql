-- no-transaction
-- Recording a login folds only the events that change a user (ADR 0002):
-- this index holds a user stream's other events, so the fold reads a
-- handful of entries however many logins the account has seen. Built
-- concurrently, so that appends (logins included) go on while it builds
-- on a large log; hence no transaction around this migration.
create index concurrently if not exists events_user_state_idx on events (aggregate_id, sequence)
    where aggregate_type = 'user' and event_type not in ('LoginSucceeded', 'LoginFailed');
