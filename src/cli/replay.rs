//! `sentryops replay KIND ID`: an aggregate's state after each event of
//! its stream (who, when, which event, the state), folded by the
//! aggregate's own `apply` from events read through the one door (so
//! upcast like every other reader). Secrets in the state are redacted.

use anyhow::Context;
use cqrs_es::Aggregate;
use sentryops_events::catalog::redact_secrets;
use sentryops_events::decode::LogEvent;
use sentryops_projections::store::{self, StreamRange};
use serde::Serialize;
use serde_json::{json, Value};
use sqlx::PgPool;
use time::format_description::well_known::Rfc3339;

use crate::domain::{asset, compliance_run, dependency, session, tag, user};

/// What `replay` can fold.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ReplayKind {
    Asset,
    User,
    Session,
    Tag,
    Dependency,
    ComplianceRun,
}

/// One step: the event and the state after it.
#[derive(Debug, Serialize)]
pub struct ReplayStep {
    pub sequence: i64,
    pub global_position: i64,
    pub recorded_at: String,
    pub actor: Value,
    pub event_type: String,
    /// The stored version (the event was upcast before `apply`).
    pub event_version: String,
    pub state: Value,
}

/// Reads the stream `id` in `range` and folds it with `apply`, recording
/// the state after each event.
async fn fold<E: LogEvent, S: Serialize>(
    pool: &PgPool,
    id: &str,
    range: StreamRange,
    mut state: S,
    mut apply: impl FnMut(&mut S, E),
) -> anyhow::Result<Vec<ReplayStep>> {
    let events = store::read_stream::<E>(pool, id, range).await?;
    let mut steps = Vec::with_capacity(events.len());
    for recorded in events {
        let stored = recorded.stored;
        apply(&mut state, recorded.event);
        let mut state_json = serde_json::to_value(&state)?;
        redact_secrets(&mut state_json);
        steps.push(ReplayStep {
            sequence: stored.sequence,
            global_position: stored.global_position,
            recorded_at: stored.recorded_at.format(&Rfc3339)?,
            actor: stored.event_metadata().map_or(Value::Null, |metadata| {
                Value::String(metadata.actor.to_string())
            }),
            event_type: stored.event_type,
            event_version: stored.event_version,
            state: state_json,
        });
    }
    Ok(steps)
}

/// An aggregate's own fold.
async fn aggregate<A: Aggregate + Serialize>(
    pool: &PgPool,
    id: &str,
    range: StreamRange,
) -> anyhow::Result<Vec<ReplayStep>>
where
    A::Event: LogEvent,
{
    fold::<A::Event, A>(pool, id, range, A::default(), |state, event| {
        state.apply(event)
    })
    .await
}

/// The steps of `kind` `id`.
pub async fn steps(
    pool: &PgPool,
    kind: ReplayKind,
    id: &str,
    range: StreamRange,
) -> anyhow::Result<Vec<ReplayStep>> {
    match kind {
        ReplayKind::Asset => aggregate::<asset::Asset>(pool, id, range).await,
        ReplayKind::User => aggregate::<user::User>(pool, id, range).await,
        ReplayKind::Session => aggregate::<session::Session>(pool, id, range).await,
        ReplayKind::Tag => aggregate::<tag::Tag>(pool, id, range).await,
        ReplayKind::Dependency => aggregate::<dependency::Dependency>(pool, id, range).await,
        ReplayKind::ComplianceRun => {
            fold(
                pool,
                id,
                range,
                compliance_run::RunState::default(),
                compliance_run::RunState::apply,
            )
            .await
        }
    }
}

/// Prints the steps (JSON with `json`); an error when the stream is empty.
pub async fn replay(
    pool: &PgPool,
    kind: ReplayKind,
    id: &str,
    range: StreamRange,
    json_output: bool,
) -> anyhow::Result<()> {
    let steps = steps(pool, kind, id, range)
        .await
        .with_context(|| format!("cannot replay {id}"))?;
    if steps.is_empty() {
        anyhow::bail!("no events for {kind:?} {id} in that range");
    }
    if json_output {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "aggregate_id": id, "steps": steps }))?
        );
        return Ok(());
    }
    for step in &steps {
        println!(
            "#{} position {}  {}  by {}  {} v{}",
            step.sequence,
            step.global_position,
            step.recorded_at,
            step.actor.as_str().unwrap_or("unknown"),
            step.event_type,
            step.event_version
        );
        println!("{}", serde_json::to_string_pretty(&step.state)?);
    }
    Ok(())
}
