//! The contract between the runtime and a read-model builder.

use async_trait::async_trait;
use sqlx::PgConnection;

use crate::store::StoredEvent;

/// A named, versioned read-model builder.
///
/// `apply` writes to its tables by their unqualified names: the runtime sets
/// the `search_path` so that the same code fills the live tables or, during a
/// rebuild, their shadow copies. It runs inside the runtime's transaction,
/// which also advances the checkpoint, so a batch is applied exactly once or
/// not at all; writes should still be idempotent upserts.
#[async_trait]
pub trait Projection: Send + Sync + 'static {
    /// Stable name: keys the checkpoint and the leadership lock. Lowercase
    /// ASCII letters, digits and `_` only (it names the shadow schema).
    fn name(&self) -> &'static str;

    /// Bump when the way events are folded changes: a stored version older
    /// than this triggers a rebuild at start.
    fn version(&self) -> i32;

    /// The tables this projection owns, created by a migration in `public`.
    fn tables(&self) -> &'static [&'static str];

    /// Whether batches must carry every payload. By default the large
    /// compliance results are left out (see
    /// [`crate::store::PROJECTED_EVENT_COLUMNS`]); the sealer hashes them.
    fn reads_large_payloads(&self) -> bool {
        false
    }

    /// Folds a batch of events, in global order, into the tables.
    async fn apply(&self, conn: &mut PgConnection, events: &[StoredEvent]) -> anyhow::Result<()>;

    /// Called by the leader after every catch-up pass, outside a batch
    /// transaction, at least every polling interval: work that is due by
    /// time rather than by events (the sealer's timed checkpoint).
    async fn tick(&self, _conn: &mut PgConnection) -> anyhow::Result<()> {
        Ok(())
    }
}

/// Whether a projection name is safe to use as part of an SQL identifier.
pub(crate) fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 48
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}
