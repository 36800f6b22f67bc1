//! The write side: aggregates decide, events record (STYLE "Aggregates
//! decide; apply folds").
//!
//! [`Commands`] is the one door to the event store: it runs a command
//! through cqrs-es with typed metadata and answers with the position the
//! command's events took in the global order, so that the API can wait for
//! its read models (read-your-writes) and return `X-Event-Position`.

pub mod user;

use cqrs_es::persist::PersistedEventStore;
use cqrs_es::{Aggregate, AggregateError, CqrsFramework};
use postgres_es::{PostgresCqrs, PostgresEventRepository};
use sentryops_events::EventMetadata;
use sentryops_projections::store::position_of_command;
use sentryops_projections::LogPosition;
use sqlx::PgPool;

/// An aggregate type's command handler over the PostgreSQL event store
/// (plain event store: no snapshots, no cqrs-es queries, DESIGN D2).
fn command_handler<A: Aggregate>(pool: &PgPool, services: A::Services) -> PostgresCqrs<A> {
    let store = PersistedEventStore::new_event_store(PostgresEventRepository::new(pool.clone()));
    CqrsFramework::new(store, Vec::new(), services)
}

/// The command side of the service.
pub struct Commands {
    pool: PgPool,
    users: PostgresCqrs<user::User>,
}

/// A command's failure: the aggregate refused it, or the store failed.
pub type CommandResult<E> = Result<Option<LogPosition>, AggregateError<E>>;

impl Commands {
    /// Command handlers over `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self {
            users: command_handler(&pool, ()),
            pool,
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

    /// Executes a command with metadata; `Ok(None)` when it appended nothing.
    async fn execute<A: Aggregate>(
        &self,
        handler: &PostgresCqrs<A>,
        aggregate_id: &str,
        command: A::Command,
        metadata: EventMetadata,
    ) -> CommandResult<A::Error> {
        let command_id = metadata.command_id;
        handler
            .execute_with_metadata(aggregate_id, command, metadata.to_map())
            .await?;
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(|error| AggregateError::DatabaseConnectionError(Box::new(error)))?;
        position_of_command(&mut conn, A::TYPE, aggregate_id, command_id)
            .await
            .map_err(|error| AggregateError::DatabaseConnectionError(Box::new(error)))
    }
}
