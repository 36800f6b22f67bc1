//! API integration tests: one binary, a fresh database per test.

mod audit;
mod auth;
mod cmdb;
mod event_store;
mod helpers;
mod platform;
mod ratelimit;
mod rbac;
mod users;
