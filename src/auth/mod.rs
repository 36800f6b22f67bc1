//! Identity: token signing and verification (SPEC section 2, DESIGN D5).
//!
//! Login, sessions and the bearer-token extractor arrive with the rest of
//! the identity issue; this module holds the key ring they build on.

pub mod keyring;
pub mod refresh;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use keyring::Keyring;

/// The key ring shared by the handlers, reloaded when its file changes (a
/// `keys rotate` on any host reaches every replica that shares the file).
#[derive(Clone)]
pub struct SharedKeyring {
    ring: Arc<RwLock<Arc<Keyring>>>,
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
        })
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
