//! Bootstrap admin and demo data, both created through commands so they are
//! events like everything else.

pub mod cmdb;

use sentryops_events::{Actor, EventMetadata, Role};

use crate::config::Secret;
use crate::domain::user::{Email, FullName};
use crate::http::error::ApiError;
use crate::http::users::{register, NewUser};
use crate::http::AppState;

/// The demo password of every demo user. Documented in the README as demo
/// credentials to change; never used unless `--demo` is given.
pub const DEMO_PASSWORD: &str = "SentryOps-demo-2026";

/// The demo accounts: one per role.
pub const DEMO_USERS: [(&str, &str, Role); 4] = [
    ("admin@sentryops.local", "Demo Admin", Role::Admin),
    ("operator@sentryops.local", "Demo Operator", Role::Operator),
    ("viewer@sentryops.local", "Demo Viewer", Role::Viewer),
    ("auditor@sentryops.local", "Demo Auditor", Role::Auditor),
];

/// Registers a user unless one with that email exists. Returns whether it
/// was created.
async fn register_once(
    state: &AppState,
    email: &str,
    full_name: &str,
    role: Role,
    password: Secret,
    mfa_enabled: bool,
) -> anyhow::Result<bool> {
    let new_user = NewUser {
        email: Email::parse(email).map_err(|reason| anyhow::anyhow!("{email}: {reason}"))?,
        full_name: FullName::parse(full_name)
            .map_err(|reason| anyhow::anyhow!("{full_name}: {reason}"))?,
        password,
        role,
        mfa_enabled,
    };
    match register(state, new_user, EventMetadata::system()).await {
        Ok((_, position)) => {
            // Usable at once: a login reads the users read model.
            if let Some(position) = position {
                state.await_read_models(position).await;
            }
            Ok(true)
        }
        Err(ApiError::Conflict(_)) => Ok(false),
        Err(error) => Err(anyhow::anyhow!("registering {email}: {error}")),
    }
}

/// Creates the bootstrap admin from the environment on first start.
pub async fn ensure_bootstrap_admin(state: &AppState) -> anyhow::Result<()> {
    if let Some(admin) = &state.config.bootstrap_admin {
        if register_once(
            state,
            &admin.email,
            "Bootstrap Admin",
            Role::Admin,
            admin.password.clone(),
            false,
        )
        .await?
        {
            tracing::info!("created the bootstrap admin");
        }
    }
    Ok(())
}

/// Loads the demo data (idempotent): one account per role, the asset
/// owners (some with MFA, some without) and the demo CMDB.
pub async fn load(state: &AppState) -> anyhow::Result<()> {
    let mut users = 0;
    for (email, name, role) in DEMO_USERS {
        if register_once(state, email, name, role, Secret::new(DEMO_PASSWORD), false).await? {
            users += 1;
        }
    }
    let mut owners = Vec::new();
    for (email, name, role, mfa_enabled) in cmdb::OWNERS {
        if register_once(
            state,
            email,
            name,
            role,
            Secret::new(DEMO_PASSWORD),
            mfa_enabled,
        )
        .await?
        {
            users += 1;
        }
        owners.push(
            Email::parse(email)
                .map_err(|reason| anyhow::anyhow!("{email}: {reason}"))?
                .user_id(),
        );
    }
    let assets = cmdb::load(state, &owners).await?;
    let first_run = record_first_compliance_run(state).await?;
    tracing::info!(users, assets, first_run, "demo data loaded");
    Ok(())
}

/// A first compliance run, triggered by the demo admin, so the score,
/// report and results have something to show; none when a run exists.
async fn record_first_compliance_run(state: &AppState) -> anyhow::Result<bool> {
    let runs: i64 = sqlx::query_scalar(
        "select count(*) from events where aggregate_type = $1 and sequence = 1",
    )
    .bind(sentryops_events::compliance::COMPLIANCE_RUN)
    .fetch_one(&state.pool)
    .await?;
    if runs > 0 {
        return Ok(false);
    }
    let admin = Email::parse(DEMO_USERS[0].0)
        .map_err(|reason| anyhow::anyhow!("{}: {reason}", DEMO_USERS[0].0))?
        .user_id();
    let recorded = crate::compliance::run::run(
        &state.pool,
        &state.commands,
        &state.rules,
        admin,
        EventMetadata::new(Actor::User(admin)),
    )
    .await?;
    if let Some(position) = recorded.position {
        state.await_read_models(position).await;
    }
    Ok(true)
}
