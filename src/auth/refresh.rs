//! Refresh tokens: opaque, random, single use (SPEC section 2).
//!
//! A token is `sor1.` + base64url(session id ‖ token id ‖ 32 random bytes).
//! Only the SHA-256 of the random part is ever recorded (in the session's
//! events), so the log cannot be used to mint a token. The prefix keeps a
//! refresh token from ever parsing as an access token and the other way
//! round.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};
use uuid::Uuid;

const PREFIX: &str = "sor1.";

/// A refresh token, parsed.
#[derive(Clone)]
pub struct RefreshToken {
    pub session_id: Uuid,
    pub token_id: Uuid,
    secret: [u8; 32],
}

impl std::fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshToken")
            .field("session_id", &self.session_id)
            .field("token_id", &self.token_id)
            .field("secret", &"[redacted]")
            .finish()
    }
}

impl RefreshToken {
    /// A new token for `session_id` with fresh randomness.
    pub fn generate(session_id: Uuid) -> anyhow::Result<Self> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|error| anyhow::anyhow!("no randomness: {error}"))?;
        Ok(Self {
            session_id,
            token_id: Uuid::new_v4(),
            secret,
        })
    }

    /// Parses a presented token; `None` for anything that is not one.
    pub fn parse(text: &str) -> Option<Self> {
        let bytes = URL_SAFE_NO_PAD.decode(text.strip_prefix(PREFIX)?).ok()?;
        let bytes: &[u8; 64] = bytes.as_slice().try_into().ok()?;
        Some(Self {
            session_id: Uuid::from_slice(&bytes[..16]).ok()?,
            token_id: Uuid::from_slice(&bytes[16..32]).ok()?,
            secret: bytes[32..].try_into().ok()?,
        })
    }

    /// The wire form, handed to the client once.
    pub fn encode(&self) -> String {
        let mut bytes = Vec::with_capacity(64);
        bytes.extend_from_slice(self.session_id.as_bytes());
        bytes.extend_from_slice(self.token_id.as_bytes());
        bytes.extend_from_slice(&self.secret);
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Hex SHA-256 of the secret: what the session records.
    pub fn secret_hash(&self) -> String {
        Sha256::digest(self.secret)
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_round_trips_and_hides_its_secret() {
        let token = RefreshToken::generate(Uuid::new_v4()).expect("token");
        let text = token.encode();
        assert!(text.starts_with("sor1."));
        let parsed = RefreshToken::parse(&text).expect("parses");
        assert_eq!(parsed.session_id, token.session_id);
        assert_eq!(parsed.token_id, token.token_id);
        assert_eq!(parsed.secret_hash(), token.secret_hash());
        assert_eq!(token.secret_hash().len(), 64);
        assert!(!format!("{token:?}").contains(&text[40..60]));
    }

    #[test]
    fn anything_else_does_not_parse() {
        let good = RefreshToken::generate(Uuid::new_v4())
            .expect("token")
            .encode();
        for bad in [
            "",
            "sor1.",
            "v4.public.abc",
            &good[..good.len() - 2],
            &good.replacen("sor1.", "sor2.", 1),
            &format!("{good}AA"),
        ] {
            assert!(RefreshToken::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn two_tokens_never_share_a_secret() {
        let session = Uuid::new_v4();
        let a = RefreshToken::generate(session).expect("token");
        let b = RefreshToken::generate(session).expect("token");
        assert_ne!(a.secret_hash(), b.secret_hash());
        assert_ne!(a.token_id, b.token_id);
    }
}
