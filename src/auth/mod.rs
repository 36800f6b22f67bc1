//! Identity: token signing and verification (SPEC section 2, DESIGN D5).
//!
//! The key ring signs and verifies access tokens, `refresh` makes and
//! parses refresh tokens, and `access` answers (cached) whether a token's
//! session and user still grant access. Login and the endpoints live in
//! `http::auth`.

pub mod access;
pub mod keyring;
pub mod refresh;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use keyring::{AccessClaims, Keyring, TokenError};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

/// Access tokens already verified, by the SHA-256 of their text. A token is
/// immutable and its signature either holds or not, so a second
/// verification of the same bytes could only differ on the clock (checked
/// on every hit) or on the key ring (the cache is emptied when it reloads).
/// Saves the Ed25519 verification, the bulk of a request's auth cost.
type VerifiedTokens = moka::sync::Cache<[u8; 32], AccessClaims>;

fn verified_tokens() -> VerifiedTokens {
    moka::sync::Cache::builder()
        .max_capacity(100_000)
        .time_to_live(Duration::from_secs(300))
        .build()
}

/// The key ring shared by the handlers, reloaded when its file changes (a
/// `keys rotate` on any host reaches every replica that shares the file).
#[derive(Clone)]
pub struct SharedKeyring {
    ring: Arc<RwLock<Arc<Keyring>>>,
    verified: VerifiedTokens,
}

impl SharedKeyring {
    /// Loads the ring from `file` (creating it with one key on first
    /// start), or, without a file, generates a key that lives as long as
    /// this process (and says so in the log).
    pub fn open(file: Option<&PathBuf>, access_ttl: Duration) -> anyhow::Result<Self> {
        let ring = match file {
            Some(path) => {
                if !path.exists() {
                    // First start: create the file every later start (and
                    // every replica sharing it) signs with.
                    let kid = keyring::create_key_file(path)?;
                    tracing::info!(path = %path.display(), active_kid = %kid, "created the token key file");
                }
                Keyring::load(path, access_ttl)?
            }
            None => {
                tracing::warn!(
                    "SENTRYOPS_TOKEN_KEYS_FILE is not set: signing with an ephemeral key; \
                     tokens will not survive a restart or verify on other replicas"
                );
                Keyring::generate(access_ttl)?
            }
        };
        Ok(Self {
            ring: Arc::new(RwLock::new(Arc::new(ring))),
            verified: verified_tokens(),
        })
    }

    /// Verifies an access token (see [`Keyring::verify_access`]), from the
    /// cache of tokens already verified when it can.
    pub fn verify_access(&self, token: &str) -> Result<AccessClaims, TokenError> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(claims) = self.verified.get(&digest) {
            return if claims.exp > OffsetDateTime::now_utc() {
                Ok(claims)
            } else {
                self.verified.invalidate(&digest);
                Err(TokenError::Rejected)
            };
        }
        let claims = self.current().verify_access(token)?;
        self.verified.insert(digest, claims.clone());
        Ok(claims)
    }

    /// Empties the cache of verified tokens (benchmarks measure the cold
    /// path with it).
    pub fn forget_verified(&self) {
        self.verified.invalidate_all();
    }

    /// The current ring.
    pub fn current(&self) -> Arc<Keyring> {
        Arc::clone(
            &self
                .ring
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
    }

    /// Reloads the ring from `file` whenever its modification time changes,
    /// checking every `interval`. A file that fails to load is logged and
    /// the previous ring stays in force.
    pub fn watch(
        &self,
        file: PathBuf,
        access_ttl: Duration,
        interval: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let shared = self.clone();
        let modified = |path: &PathBuf| std::fs::metadata(path).and_then(|m| m.modified()).ok();
        // Taken now, not when the task first runs: a change made in between
        // must count as a change.
        let mut seen: Option<SystemTime> = modified(&file);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let now = modified(&file);
                if now == seen {
                    continue;
                }
                seen = now;
                match Keyring::load(&file, access_ttl) {
                    Ok(ring) => {
                        tracing::info!(active_kid = ring.active_kid(), "token key ring reloaded");
                        *shared
                            .ring
                            .write()
                            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(ring);
                        // A key may have left the ring: verify afresh.
                        shared.verified.invalidate_all();
                    }
                    Err(error) => tracing::error!(
                        error = format!("{error:#}"),
                        "token key file rejected; keeping the previous ring"
                    ),
                }
            }
        })
    }
}
