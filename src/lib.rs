//! SentryOps: a self-hosted IT operations command center, event-sourced
//! with CQRS read models on PostgreSQL.
//!
//! See `docs/ARCHITECTURE.md` for the bird's-eye view. The event vocabulary
//! is in the `sentryops-events` crate, the projector runtime and read models
//! in `sentryops-projections`; this crate holds the command side
//! ([`domain`]), the REST API ([`http`]), configuration, start-up and the CLI.

pub mod auth;
pub mod cli;
pub mod compliance;
pub mod config;
pub mod demo;
pub mod domain;
pub mod http;
pub mod password;
pub mod ratelimit;
pub mod redis_link;
pub mod startup;
pub mod telemetry;
