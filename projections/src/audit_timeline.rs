//! `audit_timeline`: one row per event of every aggregate (SPEC section 7),
//! the read model behind `GET /api/v1/audit`.
//!
//! A batch becomes one multi-row insert (`unnest` of arrays), which keeps a
//! rebuild over millions of events fast. Row ids are derived from the event
//! position, so a rebuild reproduces the live table row for row.

use async_trait::async_trait;
use sentryops_events::{describe, EventMetadata};
use serde_json::Value;
use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

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

#[derive(Default)]
struct Columns {
    position: Vec<i64>,
    id: Vec<Uuid>,
    created_at: Vec<OffsetDateTime>,
    actor_id: Vec<String>,
    action: Vec<String>,
    entity_type: Vec<String>,
    entity_id: Vec<String>,
    before: Vec<Option<Value>>,
    after: Vec<Option<Value>>,
    source_ip: Vec<Option<String>>,
    user_agent: Vec<Option<String>>,
    request_id: Vec<Option<String>>,
    correlation_id: Vec<Option<String>>,
}

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
        let mut columns = Columns::default();
        for event in events {
            let facts = describe(
                &event.aggregate_type,
                &event.event_type,
                &event.event_version,
                event.payload.as_deref(),
            );
            // Metadata that does not parse still gets an entry: the timeline
            // never drops an event; it records an unknown actor instead.
            let metadata = EventMetadata::from_json(&event.metadata).ok();
            columns.position.push(event.global_position);
            columns.id.push(audit_entry_id(event.global_position));
            columns.created_at.push(
                metadata
                    .as_ref()
                    .map_or(event.recorded_at, |metadata| metadata.occurred_at),
            );
            columns.actor_id.push(metadata.as_ref().map_or_else(
                || "unknown".to_string(),
                |metadata| metadata.actor.to_string(),
            ));
            columns.action.push(facts.action);
            columns.entity_type.push(event.aggregate_type.clone());
            columns.entity_id.push(event.aggregate_id.clone());
            columns.before.push(facts.before);
            columns.after.push(facts.after);
            let metadata = metadata.as_ref();
            columns.source_ip.push(metadata.and_then(|m| m.ip.clone()));
            columns
                .user_agent
                .push(metadata.and_then(|m| m.user_agent.clone()));
            columns
                .request_id
                .push(metadata.and_then(|m| m.request_id.clone()));
            columns
                .correlation_id
                .push(metadata.and_then(|m| m.correlation_id.clone()));
        }
        sqlx::query(
            "insert into audit_timeline (event_position, id, created_at, actor_id, action, \
                 entity_type, entity_id, before, after, source_ip, user_agent, request_id, \
                 correlation_id) \
             select * from unnest($1::bigint[], $2::uuid[], $3::timestamptz[], $4::text[], \
                 $5::text[], $6::text[], $7::text[], $8::jsonb[], $9::jsonb[], $10::text[], \
                 $11::text[], $12::text[], $13::text[]) \
             on conflict (event_position) do nothing",
        )
        .bind(&columns.position)
        .bind(&columns.id)
        .bind(&columns.created_at)
        .bind(&columns.actor_id)
        .bind(&columns.action)
        .bind(&columns.entity_type)
        .bind(&columns.entity_id)
        .bind(&columns.before)
        .bind(&columns.after)
        .bind(&columns.source_ip)
        .bind(&columns.user_agent)
        .bind(&columns.request_id)
        .bind(&columns.correlation_id)
        .execute(conn)
        .await?;
        Ok(())
    }
}
