//! Identity endpoints. So far `GET /api/v1/auth/keys`: the public keys
//! that verify access tokens, for other services (no auth; API.md).

use axum::extract::State;
use serde::Serialize;

use super::response::Answer;
use super::AppState;
use crate::auth::keyring::PublishedKey;

/// The key set: the active key first, then retiring ones.
#[derive(Debug, Serialize)]
pub struct KeySet {
    keys: Vec<PublishedKey>,
}

/// `GET /api/v1/auth/keys`.
pub async fn keys(State(state): State<AppState>) -> Answer<KeySet> {
    Answer::ok(KeySet {
        keys: state.keyring.current().published(),
    })
}
