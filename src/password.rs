//! Password hashing with Argon2id (SPEC section 2), on the blocking pool
//! behind a concurrency bound so that a login flood cannot starve the async
//! runtime.

use std::sync::Arc;

use anyhow::Context;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

use crate::config::{PasswordHashing, Secret};

/// Hashes and verifies passwords.
#[derive(Clone)]
pub struct Passwords {
    params: Params,
    permits: Arc<Semaphore>,
}

impl Passwords {
    /// A hasher with the configured cost and concurrency bound.
    pub fn new(config: PasswordHashing) -> anyhow::Result<Self> {
        let params = Params::new(
            config.memory_kib,
            config.iterations,
            config.parallelism,
            None,
        )
        .map_err(|error| anyhow::anyhow!("invalid Argon2 parameters: {error}"))?;
        Ok(Self {
            params,
            permits: Arc::new(Semaphore::new(config.max_concurrent.max(1))),
        })
    }

    fn argon2(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    /// A PHC-format Argon2id hash of `password` with a fresh salt.
    pub async fn hash(&self, password: &Secret) -> anyhow::Result<String> {
        // The permit moves into the blocking job: if the request is dropped
        // meanwhile, the hash still counts against the bound until it ends.
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .context("hasher closed")?;
        let argon2 = self.argon2();
        let password = password.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            argon2
                .hash_password(password.expose().as_bytes())
                .map(|hash| hash.to_string())
                .map_err(|error| anyhow::anyhow!("hashing failed: {error}"))
        })
        .await
        .context("hashing task failed")?
    }

    /// Whether a stored hash was made with other parameters than the
    /// configured ones (or another algorithm) and should be upgraded after
    /// a successful login.
    pub fn needs_rehash(&self, hash: &str) -> bool {
        let Ok(parsed) = PasswordHash::new(hash) else {
            return true;
        };
        let param = |name: &str| {
            parsed
                .params
                .get_str(name)
                .and_then(|value| value.parse::<u32>().ok())
        };
        parsed.algorithm.as_str() != "argon2id"
            || param("m") != Some(self.params.m_cost())
            || param("t") != Some(self.params.t_cost())
            || param("p") != Some(self.params.p_cost())
    }

    /// Whether `password` matches `hash`. A malformed hash verifies as
    /// false; it never panics.
    pub async fn verify(&self, password: &Secret, hash: &str) -> bool {
        let Ok(permit) = Arc::clone(&self.permits).acquire_owned().await else {
            return false;
        };
        let argon2 = self.argon2();
        let password = password.clone();
        let hash = hash.to_string();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            match PasswordHash::new(&hash) {
                Ok(parsed) => argon2
                    .verify_password(password.expose().as_bytes(), &parsed)
                    .is_ok(),
                Err(_) => false,
            }
        })
        .await
        .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> Passwords {
        Passwords::new(PasswordHashing {
            memory_kib: 256,
            iterations: 1,
            parallelism: 1,
            max_concurrent: 1,
        })
        .expect("valid parameters")
    }

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let passwords = cheap();
        let hash = passwords
            .hash(&Secret::new("correct horse"))
            .await
            .expect("hashes");
        assert!(hash.starts_with("$argon2id$"));
        assert!(passwords.verify(&Secret::new("correct horse"), &hash).await);
        assert!(!passwords.verify(&Secret::new("wrong horse"), &hash).await);
    }

    #[tokio::test]
    async fn hashes_made_with_other_parameters_need_a_rehash() {
        let cheap = cheap();
        let hash = cheap.hash(&Secret::new("pw")).await.expect("hash");
        assert!(!cheap.needs_rehash(&hash));
        let stronger = Passwords::new(PasswordHashing {
            memory_kib: 512,
            iterations: 2,
            parallelism: 1,
            max_concurrent: 1,
        })
        .expect("valid");
        assert!(stronger.needs_rehash(&hash));
        assert!(stronger.needs_rehash("not a hash"));
    }

    #[tokio::test]
    async fn a_malformed_hash_verifies_as_false() {
        let passwords = cheap();
        for garbage in [
            "",
            "$argon2id$",
            "not a hash",
            "$argon2id$v=19$m=1,t=1,p=1$$",
        ] {
            assert!(
                !passwords.verify(&Secret::new("x"), garbage).await,
                "{garbage}"
            );
        }
    }
}
