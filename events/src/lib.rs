//! The SentryOps event vocabulary, shared by the service, the projections,
//! the replay tooling and the auditors' tools.
//!
//! Events are named in the past tense (`UserRegistered`), carry a schema
//! version, and never change shape silently: a shape change bumps the version
//! and adds an upcaster, and [`catalog::EVENT_CATALOG`] pins every type string
//! and version so that a rename fails CI.
//!
//! Invariant: this crate depends on neither axum nor sqlx.

pub mod audit;
pub mod catalog;
pub mod cmdb;
pub mod compliance;
pub mod decode;
pub mod metadata;
pub mod session;
pub mod user;

pub use audit::{describe, AuditFacts};
pub use decode::{decode, AnyEvent, DecodeError, LogEvent};
pub use metadata::{Actor, EventMetadata};
pub use user::{Role, UserEvent};
