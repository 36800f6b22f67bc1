-- Recording a login folds only the events that change a user (ADR 0002):
-- this index holds a user stream's other events, so the fold reads a
-- handful of entries however many logins the account has seen.
create index events_user_state_idx on events (aggregate_id, sequence)
    where aggregate_type = 'user' and event_type not in ('LoginSucceeded', 'LoginFailed');
