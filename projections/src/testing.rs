//! Test support shared by every test suite of the workspace (feature
//! `testing`): a fresh, migrated database per test on the server named by
//! `TEST_DATABASE_URL`. Never compiled into the service.

use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};

use crate::MIGRATOR;

/// The server tests create their databases on.
pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// `url` with its database name replaced by `database`.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, rest) = url.rsplit_once('/').expect("a database URL has a path");
    let query = rest
        .split_once('?')
        .map(|(_, query)| format!("?{query}"))
        .unwrap_or_default();
    format!("{base}/{database}{query}")
}

/// Creates an empty database named `sentryops_test_<random>`; returns its
/// URL. `scripts/test` drops leftovers of earlier runs.
pub async fn create_database() -> String {
    let name = format!("sentryops_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&admin_url())
        .await
        .expect("PostgreSQL reachable at TEST_DATABASE_URL");
    sqlx::query(&format!("create database \"{name}\""))
        .execute(&mut admin)
        .await
        .expect("create the test database");
    with_database(&admin_url(), &name)
}

/// A fresh, migrated database and a pool on it.
pub struct TestDatabase {
    pub url: String,
    pub pool: PgPool,
}

/// Creates and migrates a fresh database.
pub async fn fresh_database() -> TestDatabase {
    let url = create_database().await;
    let pool = PgPoolOptions::new()
        .max_connections(30)
        .connect(&url)
        .await
        .expect("connect to the test database");
    MIGRATOR.run(&pool).await.expect("migrations apply");
    TestDatabase { url, pool }
}
