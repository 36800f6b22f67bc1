//! The access-token key ring: PASETO v4.public (Ed25519) tokens whose
//! footer names the signing key by its PASERK id (`k4.pid`), and a ring of
//! keys that rotates with a grace window (SPEC section 2).
//!
//! The ring lives in a key file (JSON, mode 0600, path from
//! `SENTRYOPS_TOKEN_KEYS_FILE`) shared by every replica: `sentryops keys
//! rotate` appends a new key and marks the previous one retiring. New tokens
//! are signed by the newest key; a retiring key still verifies until the
//! longest access-token lifetime (plus clock leeway) has passed since it
//! retired, then it is dropped. Secret keys are PASERK `k4.secret` strings
//! and never leave this module except into that file.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use pasetors::claims::{Claims, ClaimsValidationRules};
use pasetors::footer::Footer;
use pasetors::keys::{AsymmetricKeyPair, AsymmetricPublicKey, AsymmetricSecretKey, Generate};
use pasetors::paserk::{FormatAsPaserk, Id};
use pasetors::token::UntrustedToken;
use pasetors::version4::V4;
use pasetors::{public, Public};
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uuid::Uuid;

use sentryops_events::Role;

/// Bound into every access token's signature (PASETO implicit assertion):
/// a token made for another purpose never verifies as an access token.
const ACCESS_ASSERTION: &[u8] = b"sentryops:access:v1";

/// Clock skew tolerated between replicas when retiring keys.
const LEEWAY: Duration = Duration::from_secs(60);

/// One key as stored in the key file.
#[derive(Clone, Serialize, Deserialize)]
struct StoredKey {
    /// PASERK `k4.secret.…`.
    secret: String,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    /// When a newer key replaced it; `None` for the active key.
    #[serde(default, with = "time::serde::rfc3339::option")]
    retiring_since: Option<OffsetDateTime>,
}

/// The key file's content.
#[derive(Clone, Default, Serialize, Deserialize)]
struct KeyFile {
    keys: Vec<StoredKey>,
}

struct Key {
    kid: String,
    secret: AsymmetricSecretKey<V4>,
    public: AsymmetricPublicKey<V4>,
    retiring_since: Option<OffsetDateTime>,
}

impl Key {
    fn from_stored(stored: &StoredKey) -> anyhow::Result<Self> {
        let secret = AsymmetricSecretKey::<V4>::try_from(stored.secret.as_str())
            .map_err(|_| anyhow::anyhow!("a key in the key file is not a PASERK k4.secret"))?;
        let public = AsymmetricPublicKey::<V4>::try_from(&secret)
            .map_err(|_| anyhow::anyhow!("cannot derive a public key"))?;
        let mut kid = String::new();
        Id::from(&public)
            .fmt(&mut kid)
            .map_err(|_| anyhow::anyhow!("cannot format a key id"))?;
        Ok(Self {
            kid,
            secret,
            public,
            retiring_since: stored.retiring_since,
        })
    }
}

/// Whether a public key signs new tokens or only verifies old ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyStatus {
    Active,
    Retiring,
}

/// A verification key as published at `GET /api/v1/auth/keys`.
#[derive(Debug, Clone, Serialize)]
pub struct PublishedKey {
    /// PASERK `k4.pid.…`: the `kid` in token footers.
    pub kid: String,
    /// PASERK `k4.public.…`.
    pub public_key: String,
    pub status: KeyStatus,
    /// When a retiring key stops verifying.
    #[serde(with = "time::serde::rfc3339::option")]
    pub retires_at: Option<OffsetDateTime>,
}

/// The claims of an access token (SPEC section 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessClaims {
    /// The user.
    pub sub: Uuid,
    pub role: Role,
    /// The session (refresh-token family).
    pub sid: Uuid,
    /// Unique token id.
    pub jti: Uuid,
    pub iat: OffsetDateTime,
    pub exp: OffsetDateTime,
}

/// Why a token was refused. The API answers every case with the same 401;
/// the distinction is for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("not a v4.public token")]
    Malformed,
    #[error("the footer names no known key")]
    UnknownKey,
    #[error("signature, expiry or validity window rejected")]
    Rejected,
    #[error("claims missing or of the wrong type")]
    BadClaims,
}

/// The keys this process signs and verifies with.
pub struct Keyring {
    /// Newest first; the first is the active (signing) key.
    keys: Vec<Key>,
    access_ttl: Duration,
}

fn format_time(at: OffsetDateTime) -> anyhow::Result<String> {
    Ok(at.format(&Rfc3339)?)
}

impl Keyring {
    /// A ring with one freshly generated key (tests, first start).
    pub fn generate(access_ttl: Duration) -> anyhow::Result<Self> {
        Self::from_file_content(
            &KeyFile {
                keys: vec![new_stored_key()?],
            },
            access_ttl,
            OffsetDateTime::now_utc(),
        )
    }

    /// Loads the key file at `path`.
    pub fn load(path: &Path, access_ttl: Duration) -> anyhow::Result<Self> {
        let file = read_key_file(path)?;
        Self::from_file_content(&file, access_ttl, OffsetDateTime::now_utc())
            .with_context(|| format!("key file {}", path.display()))
    }

    fn from_file_content(
        file: &KeyFile,
        access_ttl: Duration,
        now: OffsetDateTime,
    ) -> anyhow::Result<Self> {
        let mut stored: Vec<&StoredKey> = file.keys.iter().collect();
        stored.sort_by_key(|key| std::cmp::Reverse(key.created_at));
        let mut keys = Vec::new();
        for (index, stored) in stored.into_iter().enumerate() {
            let key = Key::from_stored(stored)?;
            // The newest key signs whatever its record says; older keys
            // verify only within their grace window.
            if index == 0 || retires_at(key.retiring_since, access_ttl).is_some_and(|at| at > now) {
                keys.push(key);
            }
        }
        if keys.is_empty() {
            bail!("no signing key");
        }
        Ok(Self { keys, access_ttl })
    }

    /// How long access tokens live.
    pub fn access_ttl(&self) -> Duration {
        self.access_ttl
    }

    /// The id of the key that signs new tokens.
    pub fn active_kid(&self) -> &str {
        &self.keys[0].kid
    }

    /// Signs an access token for `claims.sub` in session `claims.sid`.
    pub fn issue_access(
        &self,
        sub: Uuid,
        role: Role,
        sid: Uuid,
        now: OffsetDateTime,
    ) -> anyhow::Result<(String, AccessClaims)> {
        let claims = AccessClaims {
            sub,
            role,
            sid,
            jti: Uuid::new_v4(),
            iat: now,
            exp: now + self.access_ttl,
        };
        Ok((self.sign(&claims)?, claims))
    }

    fn sign(&self, access: &AccessClaims) -> anyhow::Result<String> {
        let key = &self.keys[0];
        let error = |e: pasetors::errors::Error| anyhow::anyhow!("token signing failed: {e:?}");
        let mut claims = Claims::new().map_err(error)?;
        claims.subject(&access.sub.to_string()).map_err(error)?;
        claims
            .add_additional("role", access.role.as_str())
            .map_err(error)?;
        claims.add_additional("typ", "access").map_err(error)?;
        claims
            .add_additional("sid", access.sid.to_string())
            .map_err(error)?;
        claims
            .token_identifier(&access.jti.to_string())
            .map_err(error)?;
        claims.issued_at(&format_time(access.iat)?).map_err(error)?;
        claims
            .not_before(&format_time(access.iat)?)
            .map_err(error)?;
        claims
            .expiration(&format_time(access.exp)?)
            .map_err(error)?;
        let mut footer = Footer::new();
        footer.key_id(&Id::from(&key.public));
        public::sign(&key.secret, &claims, Some(&footer), Some(ACCESS_ASSERTION)).map_err(error)
    }

    /// Verifies an access token: a known key by the footer's `kid`, the
    /// signature with the access assertion, `exp`/`nbf`/`iat` against the
    /// clock, and the claims' shapes with `typ = access`.
    pub fn verify_access(&self, token: &str) -> Result<AccessClaims, TokenError> {
        let untrusted =
            UntrustedToken::<Public, V4>::try_from(token).map_err(|_| TokenError::Malformed)?;
        let mut footer = Footer::new();
        footer
            .parse_bytes(untrusted.untrusted_footer())
            .map_err(|_| TokenError::Malformed)?;
        let kid = footer
            .get_claim("kid")
            .and_then(|kid| kid.as_str())
            .ok_or(TokenError::UnknownKey)?;
        let key = self
            .keys
            .iter()
            .find(|key| key.kid == kid)
            .ok_or(TokenError::UnknownKey)?;
        let trusted = public::verify(
            &key.public,
            &untrusted,
            &ClaimsValidationRules::new(),
            None,
            Some(ACCESS_ASSERTION),
        )
        .map_err(|_| TokenError::Rejected)?;
        let claims = trusted.payload_claims().ok_or(TokenError::BadClaims)?;
        let text = |name: &str| claims.get_claim(name).and_then(|value| value.as_str());
        let uuid = |name: &str| text(name).and_then(|value| Uuid::parse_str(value).ok());
        let time =
            |name: &str| text(name).and_then(|value| OffsetDateTime::parse(value, &Rfc3339).ok());
        if text("typ") != Some("access") {
            return Err(TokenError::BadClaims);
        }
        Ok(AccessClaims {
            sub: uuid("sub").ok_or(TokenError::BadClaims)?,
            role: text("role")
                .and_then(Role::parse)
                .ok_or(TokenError::BadClaims)?,
            sid: uuid("sid").ok_or(TokenError::BadClaims)?,
            jti: uuid("jti").ok_or(TokenError::BadClaims)?,
            iat: time("iat").ok_or(TokenError::BadClaims)?,
            exp: time("exp").ok_or(TokenError::BadClaims)?,
        })
    }

    /// The public keys, for other services to verify tokens.
    pub fn published(&self) -> Vec<PublishedKey> {
        self.keys
            .iter()
            .enumerate()
            .map(|(index, key)| {
                let mut public_key = String::new();
                // Formatting a valid key into a String cannot fail.
                let _ = key.public.fmt(&mut public_key);
                PublishedKey {
                    kid: key.kid.clone(),
                    public_key,
                    status: if index == 0 {
                        KeyStatus::Active
                    } else {
                        KeyStatus::Retiring
                    },
                    retires_at: if index == 0 {
                        None
                    } else {
                        retires_at(key.retiring_since, self.access_ttl)
                    },
                }
            })
            .collect()
    }
}

fn retires_at(
    retiring_since: Option<OffsetDateTime>,
    access_ttl: Duration,
) -> Option<OffsetDateTime> {
    retiring_since.map(|since| since + access_ttl + LEEWAY)
}

fn new_stored_key() -> anyhow::Result<StoredKey> {
    let pair = AsymmetricKeyPair::<V4>::generate()
        .map_err(|e| anyhow::anyhow!("key generation failed: {e:?}"))?;
    let mut secret = String::new();
    pair.secret
        .fmt(&mut secret)
        .map_err(|_| anyhow::anyhow!("cannot format a secret key"))?;
    Ok(StoredKey {
        secret,
        created_at: OffsetDateTime::now_utc(),
        retiring_since: None,
    })
}

fn read_key_file(path: &Path) -> anyhow::Result<KeyFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read key file {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("key file {} is not valid", path.display()))
}

fn write_key_file(path: &Path, file: &KeyFile) -> anyhow::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let temporary = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut out = options
        .open(&temporary)
        .with_context(|| format!("cannot write {}", temporary.display()))?;
    out.write_all(serde_json::to_string_pretty(file)?.as_bytes())?;
    out.sync_all()?;
    std::fs::rename(&temporary, path)
        .with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}

/// Creates a key file with one key; refuses to overwrite one.
pub fn create_key_file(path: &Path) -> anyhow::Result<String> {
    if path.exists() {
        bail!(
            "{} exists already; use `sentryops keys rotate`",
            path.display()
        );
    }
    let file = KeyFile {
        keys: vec![new_stored_key()?],
    };
    write_key_file(path, &file)?;
    Ok(Key::from_stored(&file.keys[0])?.kid)
}

/// Rotates the key file: a new active key, the previous one retiring, keys
/// past their grace window dropped. Returns the new key id.
pub fn rotate_key_file(path: &Path, access_ttl: Duration) -> anyhow::Result<String> {
    let mut file = read_key_file(path)?;
    let now = OffsetDateTime::now_utc();
    for key in &mut file.keys {
        key.retiring_since.get_or_insert(now);
    }
    file.keys
        .retain(|key| retires_at(key.retiring_since, access_ttl).is_some_and(|at| at > now));
    let new_key = new_stored_key()?;
    let kid = Key::from_stored(&new_key)?.kid;
    file.keys.push(new_key);
    write_key_file(path, &file)?;
    Ok(kid)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(900);

    fn ring() -> Keyring {
        Keyring::generate(TTL).expect("a ring")
    }

    #[test]
    fn an_issued_token_verifies_with_its_claims_and_names_its_key() {
        let ring = ring();
        let (sub, sid) = (Uuid::new_v4(), Uuid::new_v4());
        let (token, issued) = ring
            .issue_access(sub, Role::Operator, sid, OffsetDateTime::now_utc())
            .expect("signed");
        assert!(token.starts_with("v4.public."));
        let claims = ring.verify_access(&token).expect("verifies");
        assert_eq!(claims.sub, sub);
        assert_eq!(claims.sid, sid);
        assert_eq!(claims.role, Role::Operator);
        assert_eq!(claims.jti, issued.jti);
        let footer = token.rsplit('.').next().expect("footer");
        let mut parsed = Footer::new();
        let bytes = base64_url_decode(footer);
        parsed.parse_bytes(&bytes).expect("footer JSON");
        assert_eq!(
            parsed.get_claim("kid").and_then(|k| k.as_str()),
            Some(ring.active_kid())
        );
        assert!(ring.active_kid().starts_with("k4.pid."));
    }

    fn base64_url_decode(text: &str) -> Vec<u8> {
        // Tiny decoder for the test only (URL-safe, no padding).
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut bits = 0u32;
        let mut count = 0;
        let mut out = Vec::new();
        for byte in text.bytes() {
            let value = ALPHABET.iter().position(|&c| c == byte).expect("base64url") as u32;
            bits = (bits << 6) | value;
            count += 6;
            if count >= 8 {
                count -= 8;
                out.push((bits >> count) as u8);
                bits &= (1 << count) - 1;
            }
        }
        out
    }

    #[test]
    fn tampered_wrong_key_expired_and_future_tokens_are_refused() {
        let ring = ring();
        let now = OffsetDateTime::now_utc();
        let (token, _) = ring
            .issue_access(Uuid::new_v4(), Role::Viewer, Uuid::new_v4(), now)
            .expect("signed");

        // Flip one character of the payload.
        let mut tampered: Vec<char> = token.chars().collect();
        let index = "v4.public.".len() + 5;
        tampered[index] = if tampered[index] == 'A' { 'B' } else { 'A' };
        let tampered: String = tampered.into_iter().collect();
        assert_eq!(ring.verify_access(&tampered), Err(TokenError::Rejected));

        // Another ring's key, even with the same footer shape.
        let other = Keyring::generate(TTL).expect("ring");
        assert_eq!(other.verify_access(&token), Err(TokenError::UnknownKey));

        // Expired and not yet valid.
        let long_ago = now - time::Duration::hours(2);
        let (expired, _) = ring
            .issue_access(Uuid::new_v4(), Role::Viewer, Uuid::new_v4(), long_ago)
            .expect("signed");
        assert_eq!(ring.verify_access(&expired), Err(TokenError::Rejected));
        let later = now + time::Duration::hours(2);
        let (future, _) = ring
            .issue_access(Uuid::new_v4(), Role::Viewer, Uuid::new_v4(), later)
            .expect("signed");
        assert_eq!(ring.verify_access(&future), Err(TokenError::Rejected));

        for garbage in [
            "",
            "v4.public.",
            "v4.local.abc",
            "Bearer x",
            "v2.public.AAAA",
        ] {
            assert!(ring.verify_access(garbage).is_err(), "{garbage:?}");
        }
    }

    #[test]
    fn a_token_for_another_purpose_never_verifies_as_access() {
        let ring = ring();
        let key = &ring.keys[0];
        let mut claims = Claims::new().expect("claims");
        claims.subject(&Uuid::new_v4().to_string()).expect("sub");
        claims.add_additional("typ", "access").expect("typ");
        let mut footer = Footer::new();
        footer.key_id(&Id::from(&key.public));
        // Same key, same footer, no access assertion.
        let token = public::sign(&key.secret, &claims, Some(&footer), None).expect("signed");
        assert_eq!(ring.verify_access(&token), Err(TokenError::Rejected));
    }

    #[test]
    fn rotation_keeps_old_tokens_valid_within_the_grace_window_only() {
        let directory = std::env::temp_dir().join(format!("sentryops-keys-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&directory).expect("temp dir");
        let path = directory.join("keys.json");
        let first_kid = create_key_file(&path).expect("created");
        assert!(
            create_key_file(&path).is_err(),
            "never overwrites a key file"
        );
        let before = Keyring::load(&path, TTL).expect("loads");
        assert_eq!(before.active_kid(), first_kid);
        let (old_token, _) = before
            .issue_access(
                Uuid::new_v4(),
                Role::Admin,
                Uuid::new_v4(),
                OffsetDateTime::now_utc(),
            )
            .expect("signed");

        let second_kid = rotate_key_file(&path, TTL).expect("rotated");
        assert_ne!(second_kid, first_kid);
        let after = Keyring::load(&path, TTL).expect("loads");
        assert_eq!(after.active_kid(), second_kid, "new tokens use the new key");
        assert!(
            after.verify_access(&old_token).is_ok(),
            "old tokens verify during the grace window"
        );
        let published = after.published();
        assert_eq!(published.len(), 2);
        assert_eq!(published[0].status, KeyStatus::Active);
        assert_eq!(published[1].status, KeyStatus::Retiring);
        assert!(published[1].retires_at.is_some());
        assert!(published
            .iter()
            .all(|key| key.public_key.starts_with("k4.public.")));

        // Past the grace window the retired key is gone.
        let file = read_key_file(&path).expect("read");
        let much_later = OffsetDateTime::now_utc() + TTL + LEEWAY + Duration::from_secs(1);
        let expired_ring = Keyring::from_file_content(&file, TTL, much_later).expect("ring");
        assert_eq!(
            expired_ring.verify_access(&old_token),
            Err(TokenError::UnknownKey)
        );
        assert_eq!(expired_ring.published().len(), 1);

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path)
                .expect("metadata")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "the key file is private");
        }
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.contains("k4.secret."));
        std::fs::remove_dir_all(&directory).expect("cleanup");
    }

    #[test]
    fn a_malformed_key_file_is_refused_with_its_path() {
        let path = std::env::temp_dir().join(format!("sentryops-bad-keys-{}.json", Uuid::new_v4()));
        std::fs::write(
            &path,
            r#"{"keys":[{"secret":"k4.secret.nope","created_at":"2026-01-01T00:00:00Z"}]}"#,
        )
        .expect("write");
        let error = Keyring::load(&path, TTL).err().expect("refused");
        assert!(
            format!("{error:#}").contains(&path.display().to_string()),
            "{error:#}"
        );
        assert!(
            !format!("{error:#}").contains("nope"),
            "no key material in errors: {error:#}"
        );
        std::fs::remove_file(&path).expect("cleanup");
    }
}
