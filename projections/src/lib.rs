//! The SentryOps projector runtime and read-model builders (DESIGN D3, D4).
//!
//! A projection is a named, versioned consumer of the global event stream
//! with its own tables. [`runtime::ProjectionRuntime`] runs one leader loop
//! per projection: it reads settled events in `(transaction_id,
//! global_position)` order, applies a batch and the checkpoint in one
//! transaction, wakes on `LISTEN/NOTIFY` with a polling fallback, holds a
//! PostgreSQL advisory lock so that exactly one process applies a projection,
//! and rebuilds into shadow tables with an atomic swap.
//!
//! Invariant: nothing outside this crate writes a read-model table.

pub mod audit_timeline;
pub mod cmdb;
pub mod compliance;
pub mod copy;
pub mod projection;
pub mod rebuild;
pub mod runtime;
pub mod seal;
pub mod sessions;
pub mod status;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;
pub mod users;

use std::sync::Arc;

pub use projection::Projection;
pub use runtime::{ProjectionRuntime, RuntimeOptions};
pub use store::{LogPosition, StoredEvent};

/// Every migration of the SentryOps schema: the event store, checkpoints and
/// read models. Shared by the service, the CLI and the test harnesses.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// The projections this build serves, in the order they are started:
/// the read models, then the log's sealer (its key and intervals come from
/// the service's configuration).
pub fn all(sealer: seal::Sealer) -> Vec<Arc<dyn Projection>> {
    vec![
        Arc::new(audit_timeline::AuditTimeline),
        Arc::new(users::UsersProjection),
        Arc::new(sessions::SessionsProjection),
        Arc::new(cmdb::AssetsProjection),
        Arc::new(cmdb::TagsProjection),
        Arc::new(cmdb::DependenciesProjection),
        Arc::new(cmdb::CheckoutsProjection),
        Arc::new(compliance::ComplianceProjection),
        Arc::new(sealer),
    ]
}
