//! The write side: aggregates decide, events record (STYLE "Aggregates
//! decide; apply folds").
//!
//! [`Commands`] is the one door of commands to the event store: it loads an
//! aggregate's stream through `sentryops_projections::store` (decoded and
//! upcast by the one decoder), folds it with the aggregate's own `apply`,
//! lets the aggregate decide, and appends the new events with typed
//! metadata (a fresh `command_id`) in one statement, whose `RETURNING`
//! gives the events' positions in the global order, so that the API can
//! wait for its read models (read-your-writes) and return
//! `X-Event-Position`. cqrs-es gives the `Aggregate` trait, the event sink
//! and the given/when/then test framework; storage is ours.

pub mod asset;
pub mod compliance_run;
pub mod dependency;
pub mod session;
pub mod tag;
pub mod text;
pub mod user;

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, AggregateError};
use sentryops_events::{EventMetadata, LogEvent};
use sentryops_projections::store::{self, AppendError, Appended, NewEvent, ReadError, StreamRange};
use sentryops_projections::LogPosition;
use sqlx::PgPool;

/// The command side of the service.
pub struct Commands {
    pool: PgPool,
}

/// A command's failure: the aggregate refused it, or the store failed.
pub type CommandResult<E> = Result<Option<LogPosition>, AggregateError<E>>;

/// A command that ran: the aggregate's state after it, the events it
/// decided, and where the append put them.
pub struct Executed<A: Aggregate> {
    pub state: A,
    pub events: Vec<A::Event>,
    pub appended: Appended,
}

fn store_error<E: std::error::Error>(error: AppendError) -> AggregateError<E> {
    match error {
        AppendError::Conflict => AggregateError::AggregateConflict,
        // The API tells an unreachable database (503) and a statement out
        // of time (503 with Retry-After) from other failures (500).
        AppendError::Database(error) => AggregateError::UnexpectedError(Box::new(error)),
    }
}

fn read_error<E: std::error::Error>(error: ReadError) -> AggregateError<E> {
    match error {
        ReadError::Database(error) => AggregateError::UnexpectedError(Box::new(error)),
        decode @ ReadError::Decode { .. } => AggregateError::DeserializationError(Box::new(decode)),
    }
}

fn unexpected<E: std::error::Error>(error: serde_json::Error) -> AggregateError<E> {
    AggregateError::UnexpectedError(Box::new(error))
}

/// The metadata of one command, as stored.
fn stored_metadata<E: std::error::Error>(
    metadata: &EventMetadata,
) -> Result<serde_json::Value, AggregateError<E>> {
    serde_json::to_value(metadata.to_map()).map_err(unexpected)
}

/// `events` of the stream `aggregate_id`, numbered from `first`.
fn new_events<A: Aggregate>(
    aggregate_id: &str,
    first: i64,
    events: &[A::Event],
) -> Result<Vec<NewEvent>, AggregateError<A::Error>>
where
    A::Event: LogEvent,
{
    events
        .iter()
        .zip(first..)
        .map(|(event, sequence)| NewEvent::of(aggregate_id, sequence, event).map_err(unexpected))
        .collect()
}

/// Lets `state` decide `command`; the events it wrote, already applied.
async fn decide<A: Aggregate>(
    state: &mut A,
    command: A::Command,
    services: &A::Services,
) -> Result<Vec<A::Event>, AggregateError<A::Error>> {
    let sink = EventSink::default();
    state
        .handle(command, services, &sink)
        .await
        .map_err(AggregateError::UserError)?;
    Ok(sink.collect().await)
}

impl Commands {
    /// Command handlers over `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// The aggregate `aggregate_id` of type `A` folded from its stream, and
    /// the stream's last sequence.
    pub async fn load<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<(A, i64), AggregateError<A::Error>>
    where
        A::Event: LogEvent,
    {
        let events =
            store::read_stream::<A::Event>(&self.pool, aggregate_id, StreamRange::default())
                .await
                .map_err(read_error)?;
        let last = events.last().map_or(0, |recorded| recorded.stored.sequence);
        let mut state = A::default();
        for recorded in events {
            state.apply(recorded.event);
        }
        Ok((state, last))
    }

    /// Loads the aggregate, runs `command`, appends what it decided.
    pub async fn execute<A: Aggregate>(
        &self,
        aggregate_id: &str,
        command: A::Command,
        services: &A::Services,
        metadata: &EventMetadata,
    ) -> Result<Executed<A>, AggregateError<A::Error>>
    where
        A::Event: LogEvent,
    {
        let (mut state, last) = self.load::<A>(aggregate_id).await?;
        let events = decide(&mut state, command, services).await?;
        let appended = store::append(
            &self.pool,
            &new_events::<A>(aggregate_id, last + 1, &events)?,
            &stored_metadata(metadata)?,
        )
        .await
        .map_err(store_error)?;
        Ok(Executed {
            state,
            events,
            appended,
        })
    }

    /// [`Commands::execute`], answering with the last position only.
    async fn run<A>(
        &self,
        aggregate_id: &str,
        command: A::Command,
        metadata: &EventMetadata,
    ) -> CommandResult<A::Error>
    where
        A: Aggregate<Services = ()>,
        A::Event: LogEvent,
    {
        let executed = self
            .execute::<A>(aggregate_id, command, &(), metadata)
            .await?;
        Ok(executed.appended.last_position())
    }

    /// Runs `command` against the user `user_id`.
    pub async fn user(
        &self,
        user_id: uuid::Uuid,
        command: user::UserCommand,
        metadata: EventMetadata,
    ) -> CommandResult<user::UserError> {
        self.run::<user::User>(&user_id.to_string(), command, &metadata)
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
        let mut session = session::Session::default();
        let started = decide(&mut session, start, &())
            .await
            .map_err(|error| AggregateError::UnexpectedError(Box::new(error)))?;
        let session_events = new_events::<session::Session>(&session_id.to_string(), 1, &started)
            .map_err(|error| AggregateError::UnexpectedError(Box::new(error)))?;
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
        companions: &[NewEvent],
    ) -> CommandResult<user::UserError> {
        let aggregate_id = user_id.to_string();
        let metadata = stored_metadata(&metadata)?;
        retrying_conflicts(|| async {
            let (last, state_events) =
                store::read_user_state::<sentryops_events::UserEvent>(&self.pool, &aggregate_id)
                    .await
                    .map_err(read_error)?;
            let mut state = user::User::default();
            for recorded in state_events {
                state.apply(recorded.event);
            }
            let decided = decide(&mut state, command(), &()).await?;
            let mut events = new_events::<user::User>(&aggregate_id, last + 1, &decided)?;
            events.extend_from_slice(companions);
            let appended = store::append(&self.pool, &events, &metadata)
                .await
                .map_err(store_error)?;
            Ok(appended.last_position())
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
        self.run::<session::Session>(&session_id.to_string(), command, &metadata)
            .await
    }

    /// Rotates a session's refresh token (never re-run on a conflict: a
    /// lost race must not read as reuse); the outcome comes from the
    /// events the rotation appended.
    pub async fn rotate_refresh_token(
        &self,
        session_id: uuid::Uuid,
        command: session::SessionCommand,
        metadata: EventMetadata,
    ) -> Result<
        (session::RotationOutcome, Option<LogPosition>),
        AggregateError<session::SessionError>,
    > {
        let executed = self
            .execute::<session::Session>(&session_id.to_string(), command, &(), &metadata)
            .await?;
        Ok((
            session::RotationOutcome::of(&executed.state, &executed.events),
            executed.appended.last_position(),
        ))
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
    ) -> Result<bool, AggregateError<session::SessionError>> {
        let (session, _) = self
            .load::<session::Session>(&session_id.to_string())
            .await?;
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
        self.run_retrying::<asset::Asset>(&asset_id.to_string(), || command.clone(), metadata)
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
    ) -> CommandResult<A::Error>
    where
        A::Event: LogEvent,
    {
        let mut events = Vec::new();
        for (aggregate_id, command) in commands {
            let mut aggregate = A::default();
            let decided = decide(&mut aggregate, command, services).await?;
            events.extend(new_events::<A>(&aggregate_id.to_string(), 1, &decided)?);
        }
        let appended = store::append(&self.pool, &events, &stored_metadata(&metadata)?)
            .await
            .map_err(store_error)?;
        Ok(appended.last_position())
    }

    /// Records a finished compliance run: its whole stream in one append.
    pub async fn record_compliance_run(
        &self,
        run_id: uuid::Uuid,
        events: Vec<compliance_run::SerializedRunEvent>,
        metadata: EventMetadata,
    ) -> Result<Option<LogPosition>, AppendError> {
        let metadata = serde_json::to_value(metadata.to_map())
            .map_err(|error| AppendError::Database(sqlx::Error::Encode(Box::new(error))))?;
        let run_id = run_id.to_string();
        let events: Vec<NewEvent> = events
            .into_iter()
            .zip(1..)
            .map(|(event, sequence)| NewEvent {
                aggregate_type: sentryops_events::compliance::COMPLIANCE_RUN.to_string(),
                aggregate_id: run_id.clone(),
                sequence,
                event_type: event.event_type,
                event_version: event.event_version,
                payload: event.payload,
            })
            .collect();
        Ok(store::append(&self.pool, &events, &metadata)
            .await?
            .last_position())
    }

    /// Runs `command` against the tag `tag_id`.
    pub async fn tag(
        &self,
        tag_id: uuid::Uuid,
        command: tag::TagCommand,
        metadata: EventMetadata,
    ) -> CommandResult<tag::TagError> {
        self.run_retrying::<tag::Tag>(&tag_id.to_string(), || command.clone(), metadata)
            .await
    }

    /// Runs `command` against the dependency edge `dependency_id`.
    pub async fn dependency(
        &self,
        dependency_id: uuid::Uuid,
        command: dependency::DependencyCommand,
        metadata: EventMetadata,
    ) -> CommandResult<dependency::DependencyError> {
        self.run_retrying::<dependency::Dependency>(
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
    async fn run_retrying<A>(
        &self,
        aggregate_id: &str,
        make: impl Fn() -> A::Command,
        metadata: EventMetadata,
    ) -> CommandResult<A::Error>
    where
        A: Aggregate<Services = ()>,
        A::Event: LogEvent,
    {
        retrying_conflicts(|| self.run::<A>(aggregate_id, make(), &metadata)).await
    }
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
