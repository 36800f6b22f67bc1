//! The CMDB read models (SPEC section 3): `assets` (with `asset_tags`),
//! `tags`, `dependencies` and `checkouts`, one projection each so that each
//! rebuilds on its own.
//!
//! Deleting an asset removes it from every list here (its row, its tags,
//! its edges; the aggregate checks it in first), while its events, and so
//! its history and `as_of` views, stay in the log.

use async_trait::async_trait;
use sentryops_events::cmdb::{
    AssetChange, AssetEvent, DependencyEvent, TagEvent, ASSET, DEPENDENCY, TAG,
};
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
                    if let TagEvent::TagDeleted = event.decode::<TagEvent>()? {
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

/// The columns an `AssetUpdated` sets (`Some`), with their new values.
#[derive(Default)]
struct ColumnUpdate {
    name: Option<String>,
    environment: Option<&'static str>,
    location: Option<Option<String>>,
    description: Option<Option<String>>,
    owner_id: Option<Option<Uuid>>,
    attributes: Option<serde_json::Map<String, serde_json::Value>>,
    custom_fields: Option<serde_json::Map<String, serde_json::Value>>,
}

async fn apply_asset(conn: &mut PgConnection, event: &StoredEvent) -> anyhow::Result<()> {
    let id = Uuid::parse_str(&event.aggregate_id)?;
    let asset_event = event.decode::<AssetEvent>()?;
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
            // One statement whatever changed: each column with a flag that
            // says whether the event sets it (a location may be set to null).
            let mut update = ColumnUpdate::default();
            for change in changes {
                match change {
                    AssetChange::Name { after, .. } => update.name = Some(after),
                    AssetChange::Environment { after, .. } => {
                        update.environment = Some(after.as_str())
                    }
                    AssetChange::Location { after, .. } => update.location = Some(after),
                    AssetChange::Description { after, .. } => update.description = Some(after),
                    AssetChange::OwnerId { after, .. } => update.owner_id = Some(after),
                    AssetChange::Attributes { after, .. } => update.attributes = Some(after),
                    AssetChange::CustomFields { after, .. } => update.custom_fields = Some(after),
                }
            }
            sqlx::query(
                "update assets set \
                     name = case when $4 then $5 else name end, \
                     environment = case when $6 then $7 else environment end, \
                     location = case when $8 then $9 else location end, \
                     description = case when $10 then $11 else description end, \
                     owner_id = case when $12 then $13 else owner_id end, \
                     attributes = case when $14 then $15 else attributes end, \
                     custom_fields = case when $16 then $17 else custom_fields end, \
                     version = version + 1, updated_at = $2, event_position = $3 \
                 where id = $1",
            )
            .bind(id)
            .bind(event.recorded_at)
            .bind(event.global_position)
            .bind(update.name.is_some())
            .bind(update.name)
            .bind(update.environment.is_some())
            .bind(update.environment)
            .bind(update.location.is_some())
            .bind(update.location.flatten())
            .bind(update.description.is_some())
            .bind(update.description.flatten())
            .bind(update.owner_id.is_some())
            .bind(update.owner_id.flatten())
            .bind(update.attributes.is_some())
            .bind(update.attributes.map(serde_json::Value::Object))
            .bind(update.custom_fields.is_some())
            .bind(update.custom_fields.map(serde_json::Value::Object))
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
            match event.decode::<TagEvent>()? {
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
                DEPENDENCY => match event.decode::<DependencyEvent>()? {
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
                    if let AssetEvent::AssetDeleted = event.decode::<AssetEvent>()? {
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
            match event.decode::<AssetEvent>()? {
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
