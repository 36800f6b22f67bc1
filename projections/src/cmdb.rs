//! The CMDB read models (SPEC section 3): `assets` (with `asset_tags`),
//! `tags`, `dependencies` and `checkouts`, one projection each so that each
//! rebuilds on its own.
//!
//! Deleting an asset removes it from every list here (its row, its tags,
//! its edges; the aggregate checks it in first), while its events, and so
//! its history and `as_of` views, stay in the log.

use async_trait::async_trait;
use sentryops_events::cmdb::{AssetEvent, DependencyEvent, TagEvent, ASSET, DEPENDENCY, TAG};
use serde::Deserialize;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::projection::Projection;
use crate::store::StoredEvent;

/// The name of [`AssetsProjection`].
pub const ASSETS: &str = "assets";
/// The name of [`TagsProjection`].
pub const TAGS: &str = "tags";

/// `assets` and `asset_tags`.
pub struct AssetsProjection;

#[async_trait]
impl Projection for AssetsProjection {
    fn name(&self) -> &'static str {
        ASSETS
    }

    fn version(&self) -> i32 {
        // 2: `registration_position`.
        2
    }

    fn tables(&self) -> &'static [&'static str] {
        &["assets", "asset_tags"]
    }

    async fn apply(&self, conn: &mut PgConnection, events: &[StoredEvent]) -> anyhow::Result<()> {
        for event in events {
            match event.aggregate_type.as_str() {
                ASSET => apply_asset(conn, event).await?,
                TAG => {
                    if let TagEvent::TagDeleted = TagEvent::deserialize(&event.payload)? {
                        // A deleted tag leaves every asset.
                        sqlx::query("delete from asset_tags where tag_id = $1")
                            .bind(Uuid::parse_str(&event.aggregate_id)?)
                            .execute(&mut *conn)
                            .await?;
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
}

async fn apply_asset(conn: &mut PgConnection, event: &StoredEvent) -> anyhow::Result<()> {
    let id = Uuid::parse_str(&event.aggregate_id)?;
    let asset_event = AssetEvent::deserialize(&event.payload)?;
    // Every event of the stream is one version step, as in the aggregate.
    let bump = "update assets set version = version + 1, updated_at = $2, event_position = $3 \
                where id = $1";
    match asset_event {
        AssetEvent::AssetRegistered {
            short_code,
            name,
            asset_type,
            lifecycle_state,
            environment,
            location,
            description,
            owner_id,
            attributes,
            custom_fields,
            ..
        } => {
            sqlx::query(
                "insert into assets (id, short_code, name, asset_type, lifecycle_state, environment, \
                     location, description, owner_id, attributes, custom_fields, version, \
                     created_at, updated_at, event_position, registration_position) \
                 values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 1, $12, $12, $13, $13) \
                 on conflict (id) do nothing",
            )
            .bind(id)
            .bind(short_code)
            .bind(name)
            .bind(asset_type.as_str())
            .bind(lifecycle_state.as_str())
            .bind(environment.as_str())
            .bind(location)
            .bind(description)
            .bind(owner_id)
            .bind(serde_json::Value::Object(attributes))
            .bind(serde_json::Value::Object(custom_fields))
            .bind(event.recorded_at)
            .bind(event.global_position)
            .execute(&mut *conn)
            .await?;
            return Ok(());
        }
        AssetEvent::AssetUpdated { changes } => {
            // One statement whatever changed: the changes travel as JSON.
            sqlx::query(
                "update assets set \
                     name = case when $4 ? 'name' then $4->'name'->>'after' else name end, \
                     environment = case when $4 ? 'environment' then $4->'environment'->>'after' else environment end, \
                     location = case when $4 ? 'location' then $4->'location'->>'after' else location end, \
                     description = case when $4 ? 'description' then $4->'description'->>'after' else description end, \
                     owner_id = case when $4 ? 'owner_id' then ($4->'owner_id'->>'after')::uuid else owner_id end, \
                     attributes = case when $4 ? 'attributes' then $4->'attributes'->'after' else attributes end, \
                     custom_fields = case when $4 ? 'custom_fields' then $4->'custom_fields'->'after' else custom_fields end, \
                     version = version + 1, updated_at = $2, event_position = $3 \
                 where id = $1",
            )
            .bind(id)
            .bind(event.recorded_at)
            .bind(event.global_position)
            .bind(serde_json::to_value(&changes)?)
            .execute(&mut *conn)
            .await?;
            return Ok(());
        }
        AssetEvent::AssetLifecycleChanged { to, .. } => {
            sqlx::query("update assets set lifecycle_state = $2 where id = $1")
                .bind(id)
                .bind(to.as_str())
                .execute(&mut *conn)
                .await?;
        }
        AssetEvent::AssetDeleted => {
            sqlx::query("delete from asset_tags where asset_id = $1")
                .bind(id)
                .execute(&mut *conn)
                .await?;
            sqlx::query("delete from assets where id = $1")
                .bind(id)
                .execute(&mut *conn)
                .await?;
            return Ok(());
        }
        AssetEvent::AssetTagged { tag_id } => {
            sqlx::query(
                "insert into asset_tags (asset_id, tag_id) values ($1, $2) on conflict do nothing",
            )
            .bind(id)
            .bind(tag_id)
            .execute(&mut *conn)
            .await?;
        }
        AssetEvent::AssetUntagged { tag_id } => {
            sqlx::query("delete from asset_tags where asset_id = $1 and tag_id = $2")
                .bind(id)
                .bind(tag_id)
                .execute(&mut *conn)
                .await?;
        }
        AssetEvent::AssetCheckedOut { .. } | AssetEvent::AssetCheckedIn { .. } => {}
    }
    sqlx::query(bump)
        .bind(id)
        .bind(event.recorded_at)
        .bind(event.global_position)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// `tags`.
pub struct TagsProjection;

#[async_trait]
impl Projection for TagsProjection {
    fn name(&self) -> &'static str {
        TAGS
    }

    fn version(&self) -> i32 {
        1
    }

    fn tables(&self) -> &'static [&'static str] {
        &["tags"]
    }

    async fn apply(&self, conn: &mut PgConnection, events: &[StoredEvent]) -> anyhow::Result<()> {
        for event in events.iter().filter(|e| e.aggregate_type == TAG) {
            let id = Uuid::parse_str(&event.aggregate_id)?;
            match TagEvent::deserialize(&event.payload)? {
                TagEvent::TagCreated { name, color, .. } => {
                    sqlx::query(
                        "insert into tags (id, name, color, created_at) values ($1, $2, $3, $4) \
                         on conflict (id) do update set name = excluded.name, color = excluded.color, \
                             created_at = excluded.created_at",
                    )
                    .bind(id)
                    .bind(name)
                    .bind(color)
                    .bind(event.recorded_at)
                    .execute(&mut *conn)
                    .await?;
                }
                TagEvent::TagDeleted => {
                    sqlx::query("delete from tags where id = $1")
                        .bind(id)
                        .execute(&mut *conn)
                        .await?;
                }
            }
        }
        Ok(())
    }
}

/// `dependencies`: the live edges between live assets.
pub struct DependenciesProjection;

#[async_trait]
impl Projection for DependenciesProjection {
    fn name(&self) -> &'static str {
        "dependencies"
    }

    fn version(&self) -> i32 {
        1
    }

    fn tables(&self) -> &'static [&'static str] {
        &["dependencies"]
    }

    async fn apply(&self, conn: &mut PgConnection, events: &[StoredEvent]) -> anyhow::Result<()> {
        for event in events {
            let id = || Uuid::parse_str(&event.aggregate_id);
            match event.aggregate_type.as_str() {
                DEPENDENCY => match DependencyEvent::deserialize(&event.payload)? {
                    DependencyEvent::DependencyAdded {
                        source_asset_id,
                        target_asset_id,
                        kind,
                        ..
                    } => {
                        sqlx::query(
                            "insert into dependencies (id, source_asset_id, target_asset_id, kind, created_at) \
                             values ($1, $2, $3, $4, $5) on conflict (id) do nothing",
                        )
                        .bind(id()?)
                        .bind(source_asset_id)
                        .bind(target_asset_id)
                        .bind(kind)
                        .bind(event.recorded_at)
                        .execute(&mut *conn)
                        .await?;
                    }
                    DependencyEvent::DependencyRemoved => {
                        sqlx::query("delete from dependencies where id = $1")
                            .bind(id()?)
                            .execute(&mut *conn)
                            .await?;
                    }
                },
                ASSET => {
                    if let AssetEvent::AssetDeleted = AssetEvent::deserialize(&event.payload)? {
                        sqlx::query(
                            "delete from dependencies where source_asset_id = $1 or target_asset_id = $1",
                        )
                        .bind(id()?)
                        .execute(&mut *conn)
                        .await?;
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// `checkouts`: every check-out, open or returned.
pub struct CheckoutsProjection;

#[async_trait]
impl Projection for CheckoutsProjection {
    fn name(&self) -> &'static str {
        "checkouts"
    }

    fn version(&self) -> i32 {
        1
    }

    fn tables(&self) -> &'static [&'static str] {
        &["checkouts"]
    }

    async fn apply(&self, conn: &mut PgConnection, events: &[StoredEvent]) -> anyhow::Result<()> {
        for event in events.iter().filter(|e| e.aggregate_type == ASSET) {
            match AssetEvent::deserialize(&event.payload)? {
                AssetEvent::AssetCheckedOut {
                    checkout_id,
                    holder_id,
                    notes,
                } => {
                    sqlx::query(
                        "insert into checkouts (id, asset_id, holder_id, notes, checked_out_at) \
                         values ($1, $2, $3, $4, $5) on conflict (id) do nothing",
                    )
                    .bind(checkout_id)
                    .bind(Uuid::parse_str(&event.aggregate_id)?)
                    .bind(holder_id)
                    .bind(notes)
                    .bind(event.recorded_at)
                    .execute(&mut *conn)
                    .await?;
                }
                AssetEvent::AssetCheckedIn { checkout_id } => {
                    sqlx::query(
                        "update checkouts set checked_in_at = $2 where id = $1 and checked_in_at is null",
                    )
                    .bind(checkout_id)
                    .bind(event.recorded_at)
                    .execute(&mut *conn)
                    .await?;
                }
                // A deleted asset leaves the check-outs (its stream keeps
                // them for history and `as_of`).
                AssetEvent::AssetDeleted => {
                    sqlx::query("delete from checkouts where asset_id = $1")
                        .bind(Uuid::parse_str(&event.aggregate_id)?)
                        .execute(&mut *conn)
                        .await?;
                }
                _ => {}
            }
        }
        Ok(())
    }
}
