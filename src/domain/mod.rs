//! The write side: aggregates decide, events record (STYLE "Aggregates
//! decide; apply folds").
//!
//! [`Commands`] is the one door to the event store: it runs a command
//! through cqrs-es with typed metadata and answers with the position the
//! command's events took in the global order (see [`event_store`]), so that the API can wait for
//! its read models (read-your-writes) and return `X-Event-Position`.

pub mod event_store;
pub mod session;
pub mod user;

use cqrs_es::persist::PersistedEventStore;
use cqrs_es::{Aggregate, AggregateError, CqrsFramework};
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
}

/// A command's failure: the aggregate refused it, or the store failed.
pub type CommandResult<E> = Result<Option<LogPosition>, AggregateError<E>>;

impl Commands {
    /// Command handlers over `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self {
            users: command_handler(&pool, ()),
            sessions: command_handler(&pool, ()),
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
