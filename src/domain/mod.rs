//! The write side: aggregates decide, events record (STYLE "Aggregates
//! decide; apply folds").
//!
//! [`Commands`] is the one door to the event store: it runs a command
//! through cqrs-es with typed metadata and answers with the position the
//! command's events took in the global order (see [`event_store`]), so that the API can wait for
//! its read models (read-your-writes) and return `X-Event-Position`.

pub mod asset;
pub mod compliance_run;
pub mod dependency;
pub mod event_store;
pub mod session;
pub mod tag;
pub mod text;
pub mod user;

use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::{PersistedEventRepository, PersistedEventStore, SerializedEvent};
use cqrs_es::{Aggregate, AggregateError, CqrsFramework, DomainEvent};
use sentryops_events::EventMetadata;
use sentryops_projections::LogPosition;
use sqlx::PgPool;

use event_store::{capture_appended, EventRepository};

/// An aggregate type's command handler.
pub type Handler<A> = CqrsFramework<A, PersistedEventStore<EventRepository, A>>;

/// An aggregate type's command handler over the PostgreSQL event store
/// (plain event store: no snapshots, no cqrs-es queries, DESIGN D2).
fn command_handler<A: Aggregate>(pool: &PgPool, services: A::Services) -> Handler<A> {
    let store = PersistedEventStore::new_event_store(EventRepository::new(pool.clone()));
    CqrsFramework::new(store, Vec::new(), services)
}

/// The command side of the service.
pub struct Commands {
    users: Handler<user::User>,
    sessions: Handler<session::Session>,
    assets: Handler<asset::Asset>,
    tags: Handler<tag::Tag>,
    dependencies: Handler<dependency::Dependency>,
    /// For appends that create many aggregates at once.
    repository: EventRepository,
}

/// A command's failure: the aggregate refused it, or the store failed.
pub type CommandResult<E> = Result<Option<LogPosition>, AggregateError<E>>;

impl Commands {
    /// Command handlers over `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self {
            users: command_handler(&pool, ()),
            sessions: command_handler(&pool, ()),
            assets: command_handler(&pool, ()),
            tags: command_handler(&pool, ()),
            dependencies: command_handler(&pool, ()),
            repository: EventRepository::new(pool),
        }
    }

    /// Runs `command` against the user `user_id`.
    pub async fn user(
        &self,
        user_id: uuid::Uuid,
        command: user::UserCommand,
        metadata: EventMetadata,
    ) -> CommandResult<user::UserError> {
        self.execute(&self.users, &user_id.to_string(), command, metadata)
            .await
    }

    /// Records a fact about a user that no concurrent change can make
    /// wrong (a login succeeded or failed), re-run on a concurrency
    /// conflict (see [`Commands::execute_retrying`]): two logins of one
    /// account at once must both be recorded, not answered 409.
    ///
    /// Unlike the other doors it does not load the whole stream: it folds
    /// only the events that change a user ([`user::STATE_NEUTRAL_EVENTS`]
    /// left out, through a partial index) and appends after the stream's
    /// last sequence. A login's cost then stays flat as the account's
    /// logins pile up, including the failed logins anyone can cause
    /// (ADR 0002).
    pub async fn record_for_user(
        &self,
        user_id: uuid::Uuid,
        command: impl Fn() -> user::UserCommand,
        metadata: EventMetadata,
    ) -> CommandResult<user::UserError> {
        self.record_for_user_with(user_id, command, metadata, &[])
            .await
    }

    /// A successful login: the user's `LoginSucceeded` (and `PasswordRehashed`)
    /// and the new session's `SessionStarted`, in one append. One commit
    /// instead of two per login, and never a login recorded without its
    /// session or a session without its login. It is one command: both
    /// events carry its metadata, `command_id` included. A deactivation
    /// that commits between the fold and the append makes the append
    /// conflict; the re-run then refuses (`UserError::Inactive`).
    pub async fn record_login(
        &self,
        user_id: uuid::Uuid,
        login: impl Fn() -> user::UserCommand,
        session_id: uuid::Uuid,
        start: session::SessionCommand,
        metadata: EventMetadata,
    ) -> CommandResult<user::UserError> {
        let unexpected = |error: Box<dyn std::error::Error + Send + Sync>| {
            AggregateError::UnexpectedError(error)
        };
        let session_metadata =
            serde_json::to_value(metadata.to_map()).map_err(|error| unexpected(Box::new(error)))?;
        let sink = EventSink::default();
        session::Session::default()
            .handle(start, &(), &sink)
            .await
            .map_err(|error| unexpected(Box::new(error)))?;
        let session_events = serialize::<session::Session>(
            &session_id.to_string(),
            1,
            sink.collect().await,
            &session_metadata,
        )
        .map_err(|error| unexpected(Box::new(error)))?;
        self.record_for_user_with(user_id, login, metadata, &session_events)
            .await
    }

    /// [`Commands::record_for_user`], appending `companions` (events of new
    /// streams) in the same statement.
    async fn record_for_user_with(
        &self,
        user_id: uuid::Uuid,
        command: impl Fn() -> user::UserCommand,
        metadata: EventMetadata,
        companions: &[SerializedEvent],
    ) -> CommandResult<user::UserError> {
        let aggregate_id = user_id.to_string();
        let unexpected =
            |error: serde_json::Error| AggregateError::UnexpectedError(Box::new(error));
        let metadata = serde_json::to_value(metadata.to_map()).map_err(unexpected)?;
        retrying_conflicts(|| async {
            let pool = self.repository.pool();
            let last: i64 = sqlx::query_scalar(
                "select coalesce(max(sequence), 0) from events \
                 where aggregate_type = 'user' and aggregate_id = $1",
            )
            .bind(&aggregate_id)
            .fetch_one(pool)
            .await
            .map_err(|error| AggregateError::DatabaseConnectionError(Box::new(error)))?;
            // Literal predicates, so that the partial index of migration
            // 0009 serves the query.
            let state_events: Vec<sqlx::types::Json<sentryops_events::UserEvent>> =
                sqlx::query_scalar(
                    "select payload from events \
                     where aggregate_type = 'user' and aggregate_id = $1 \
                       and event_type not in ('LoginSucceeded', 'LoginFailed') \
                       and sequence <= $2 \
                     order by sequence",
                )
                .bind(&aggregate_id)
                .bind(last)
                .fetch_all(pool)
                .await
                .map_err(|error| AggregateError::DatabaseConnectionError(Box::new(error)))?;
            let mut state = user::User::default();
            for sqlx::types::Json(event) in state_events {
                state.apply(event);
            }
            let sink = EventSink::default();
            state
                .handle(command(), &(), &sink)
                .await
                .map_err(AggregateError::UserError)?;
            let first = usize::try_from(last).unwrap_or(0) + 1;
            let mut events =
                serialize::<user::User>(&aggregate_id, first, sink.collect().await, &metadata)
                    .map_err(unexpected)?;
            events.extend_from_slice(companions);
            let (result, appended) =
                capture_appended(self.repository.persist::<user::User>(&events, None)).await;
            result.map_err(AggregateError::from)?;
            Ok(appended)
        })
        .await
    }

    /// Runs `command` against the session `session_id`.
    pub async fn session(
        &self,
        session_id: uuid::Uuid,
        command: session::SessionCommand,
        metadata: EventMetadata,
    ) -> CommandResult<session::SessionError> {
        self.execute(&self.sessions, &session_id.to_string(), command, metadata)
            .await
    }

    /// Whether `(token_id, token_hash)` is a refresh token the session
    /// `session_id` issued (current or consumed), read from its stream.
    /// What a forged token cannot pass: the per-session limit counts only
    /// tokens that pass it, so nobody can spend a victim's budget by
    /// naming its session.
    pub async fn session_issued(
        &self,
        session_id: uuid::Uuid,
        token_id: uuid::Uuid,
        token_hash: &str,
    ) -> sqlx::Result<bool> {
        let events: Vec<sqlx::types::Json<sentryops_events::session::SessionEvent>> =
            sqlx::query_scalar(
                "select payload from events \
                 where aggregate_type = 'session' and aggregate_id = $1 order by sequence",
            )
            .bind(session_id.to_string())
            .fetch_all(self.repository.pool())
            .await?;
        let mut session = session::Session::default();
        for sqlx::types::Json(event) in events {
            session.apply(event);
        }
        Ok(session.issued(token_id, token_hash))
    }

    /// Runs `command` against the asset `asset_id`. Like every CMDB door it
    /// re-runs on a concurrency conflict: each command decides against the
    /// state it loads, so a re-run answers what the newer state says (the
    /// second of two check-outs gets "already checked out", a stale
    /// `If-Match` gets a version mismatch) instead of a bare 409.
    pub async fn asset(
        &self,
        asset_id: uuid::Uuid,
        command: asset::AssetCommand,
        metadata: EventMetadata,
    ) -> CommandResult<asset::AssetError> {
        self.execute_retrying(
            &self.assets,
            &asset_id.to_string(),
            || command.clone(),
            metadata,
        )
        .await
    }

    /// Registers many new assets in one atomic append (a CSV import): all
    /// of them or none. Each `(id, command)` is decided by the asset
    /// aggregate from its empty state; a stream that is not empty (a short
    /// code taken since the caller checked) fails the whole append with
    /// `AggregateConflict`, and the caller draws again.
    pub async fn register_assets(
        &self,
        registrations: Vec<(uuid::Uuid, asset::AssetCommand)>,
        metadata: EventMetadata,
    ) -> CommandResult<asset::AssetError> {
        self.create_many::<asset::Asset>(registrations, metadata, &())
            .await
    }

    /// Runs each command on a new aggregate of type `A` and appends all
    /// their events in one statement.
    async fn create_many<A: Aggregate>(
        &self,
        commands: Vec<(uuid::Uuid, A::Command)>,
        metadata: EventMetadata,
        services: &A::Services,
    ) -> CommandResult<A::Error> {
        let unexpected =
            |error: serde_json::Error| AggregateError::UnexpectedError(Box::new(error));
        let metadata = serde_json::to_value(metadata.to_map()).map_err(unexpected)?;
        let mut events = Vec::new();
        for (aggregate_id, command) in commands {
            let mut aggregate = A::default();
            let sink = EventSink::default();
            aggregate
                .handle(command, services, &sink)
                .await
                .map_err(AggregateError::UserError)?;
            for (index, event) in sink.collect().await.into_iter().enumerate() {
                events.push(SerializedEvent::new(
                    aggregate_id.to_string(),
                    index + 1,
                    A::TYPE.to_string(),
                    event.event_type(),
                    event.event_version(),
                    serde_json::to_value(&event).map_err(unexpected)?,
                    metadata.clone(),
                ));
            }
        }
        let (result, appended) =
            capture_appended(self.repository.persist::<A>(&events, None)).await;
        result.map_err(AggregateError::from)?;
        Ok(appended)
    }

    /// Records a finished compliance run: its whole stream in one append.
    pub async fn record_compliance_run(
        &self,
        run_id: uuid::Uuid,
        events: &[compliance_run::SerializedRunEvent],
        metadata: EventMetadata,
    ) -> Result<Option<LogPosition>, cqrs_es::persist::PersistenceError> {
        let metadata = serde_json::to_value(metadata.to_map())
            .map_err(|error| cqrs_es::persist::PersistenceError::UnknownError(Box::new(error)))?;
        let events: Vec<(&str, &str, &str)> = events
            .iter()
            .map(|event| {
                (
                    event.event_type.as_str(),
                    event.event_version.as_str(),
                    event.payload.as_str(),
                )
            })
            .collect();
        self.repository
            .append_new_stream(
                sentryops_events::compliance::COMPLIANCE_RUN,
                &run_id.to_string(),
                &events,
                &metadata,
            )
            .await
    }

    /// Runs `command` against the tag `tag_id`.
    pub async fn tag(
        &self,
        tag_id: uuid::Uuid,
        command: tag::TagCommand,
        metadata: EventMetadata,
    ) -> CommandResult<tag::TagError> {
        self.execute_retrying(
            &self.tags,
            &tag_id.to_string(),
            || command.clone(),
            metadata,
        )
        .await
    }

    /// Runs `command` against the dependency edge `dependency_id`.
    pub async fn dependency(
        &self,
        dependency_id: uuid::Uuid,
        command: dependency::DependencyCommand,
        metadata: EventMetadata,
    ) -> CommandResult<dependency::DependencyError> {
        self.execute_retrying(
            &self.dependencies,
            &dependency_id.to_string(),
            || command.clone(),
            metadata,
        )
        .await
    }

    /// Runs the command `make` builds, again on a concurrency conflict
    /// ([`retrying_conflicts`]). Only for commands whose re-run
    /// against newer state is what the caller meant (not a refresh-token
    /// rotation, where a lost race must not look like reuse).
    async fn execute_retrying<A: Aggregate>(
        &self,
        handler: &Handler<A>,
        aggregate_id: &str,
        make: impl Fn() -> A::Command,
        metadata: EventMetadata,
    ) -> CommandResult<A::Error> {
        retrying_conflicts(|| self.execute(handler, aggregate_id, make(), metadata.clone())).await
    }

    /// Executes a command with metadata; `Ok(None)` when it appended nothing.
    async fn execute<A: Aggregate>(
        &self,
        handler: &Handler<A>,
        aggregate_id: &str,
        command: A::Command,
        metadata: EventMetadata,
    ) -> CommandResult<A::Error> {
        let (result, appended) = capture_appended(handler.execute_with_metadata(
            aggregate_id,
            command,
            metadata.to_map(),
        ))
        .await;
        result.map(|()| appended)
    }
}

/// `events` of the aggregate `aggregate_id`, numbered from `first`, as the
/// store appends them.
fn serialize<A: Aggregate>(
    aggregate_id: &str,
    first: usize,
    events: Vec<A::Event>,
    metadata: &serde_json::Value,
) -> Result<Vec<SerializedEvent>, serde_json::Error> {
    events
        .into_iter()
        .enumerate()
        .map(|(index, event)| {
            Ok(SerializedEvent::new(
                aggregate_id.to_string(),
                first + index,
                A::TYPE.to_string(),
                event.event_type(),
                event.event_version(),
                serde_json::to_value(&event)?,
                metadata.clone(),
            ))
        })
        .collect()
}

/// Runs `attempt` again on a concurrency conflict, up to 64 times. Each
/// conflict means another writer won, so contenders drain one per round;
/// a random back-off that widens with every attempt spreads them out so
/// that a burst of N writers needs about N rounds, not N squared
/// collisions.
async fn retrying_conflicts<E, F, Fut>(mut attempt: F) -> CommandResult<E>
where
    E: std::error::Error,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = CommandResult<E>>,
{
    const ATTEMPTS: u32 = 64;
    const MAX_BACKOFF_MS: u32 = 32;
    let mut round = 1;
    loop {
        match attempt().await {
            Err(AggregateError::AggregateConflict) if round < ATTEMPTS => {
                let window = (1u32 << round.min(5)).min(MAX_BACKOFF_MS) + 1;
                let jitter_ms = getrandom::u32().unwrap_or(round) % window;
                tokio::time::sleep(std::time::Duration::from_millis(jitter_ms.into())).await;
                round += 1;
            }
            outcome => return outcome,
        }
    }
}
