//! `audit_timeline`: one row per event of every aggregate (SPEC section 7),
//! the read model behind `GET /api/v1/audit`.
//!
//! A batch becomes one binary `COPY` ([`crate::copy`]), which keeps a
//! rebuild over millions of events fast. A batch is applied exactly once
//! (its transaction also moves the checkpoint), so plain inserts suffice: a
//! row that is already there fails the batch loudly instead of being
//! skipped, since it could only mean a broken checkpoint. Row ids are
//! derived from the event position, so a rebuild reproduces the live table
//! row for row.

use async_trait::async_trait;
use sentryops_events::describe;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::copy::BinaryCopy;
use crate::projection::Projection;
use crate::store::StoredEvent;

/// Namespace of audit entry ids (UUIDv5 over the event position).
const AUDIT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x5e7a_0b5c_2f1d_4c8e_9a3b_6d1e_0f2a_7c41);

/// The audit timeline projection.
pub struct AuditTimeline;

/// The stable id of the audit entry of the event at `position`.
pub fn audit_entry_id(position: i64) -> Uuid {
    Uuid::new_v5(&AUDIT_ID_NAMESPACE, &position.to_be_bytes())
}

/// The columns a batch writes, in the `COPY`'s order.
const COPY_STATEMENT: &str =
    "copy audit_timeline (event_position, id, created_at, actor_id, action, \
     entity_type, entity_id, before, after, source_ip, user_agent, request_id, correlation_id) \
     from stdin (format binary)";
const COPY_FIELDS: i16 = 13;

#[async_trait]
impl Projection for AuditTimeline {
    fn name(&self) -> &'static str {
        "audit_timeline"
    }

    fn version(&self) -> i32 {
        1
    }

    fn tables(&self) -> &'static [&'static str] {
        &["audit_timeline"]
    }

    async fn apply(&self, conn: &mut PgConnection, events: &[StoredEvent]) -> anyhow::Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let mut copy = BinaryCopy::start(conn, COPY_STATEMENT).await?;
        for event in events {
            let facts = describe(
                &event.aggregate_type,
                &event.event_type,
                &event.event_version,
                event.payload.as_deref(),
            );
            // Metadata that does not parse still gets an entry: the timeline
            // never drops an event; it records an unknown actor instead.
            let metadata = event.event_metadata().ok();
            let metadata = metadata.as_ref();
            let actor = metadata.map(|metadata| metadata.actor.to_string());
            copy.row(COPY_FIELDS)
                .int8(event.global_position)
                .uuid(audit_entry_id(event.global_position))
                .timestamptz(metadata.map_or(event.recorded_at, |metadata| metadata.occurred_at))
                .text(actor.as_deref().unwrap_or("unknown"))
                .text(&facts.action)
                .text(&event.aggregate_type)
                .text(&event.aggregate_id)
                .jsonb_or_null(facts.before.as_ref())
                .jsonb_or_null(facts.after.as_ref())
                .text_or_null(metadata.and_then(|m| m.ip.as_deref()))
                .text_or_null(metadata.and_then(|m| m.user_agent.as_deref()))
                .text_or_null(metadata.and_then(|m| m.request_id.as_deref()))
                .text_or_null(metadata.and_then(|m| m.correlation_id.as_deref()));
            copy.flush_if_full().await?;
        }
        copy.finish().await?;
        Ok(())
    }
}
