//! API integration tests: one binary, a fresh database per test.

mod assets;
mod audit;
mod auth;
mod cmdb;
mod compat;
mod compliance;
mod demo;
mod event_store;
mod events;
mod hardening;
mod helpers;
mod links;
mod platform;
mod ratelimit;
mod rbac;
mod replay;
mod seal;
mod transfer;
mod upcasting;
mod users;
