//! Checkpoints: the chain head at a tree size, signed with the log's
//! Ed25519 key as a C2SP `tlog-checkpoint` inside a C2SP signed note
//! (docs/EVENT_CHAIN.md). The note format is Cloudflare's `signed_note`
//! and the body `tlog_tiles`'s, so any tooling that reads those specs reads
//! ours.
//!
//! The body carries two extension lines, both opaque to other tools:
//! `sentryops-time <RFC 3339 UTC>` (when it was signed) and
//! `sentryops-last <transaction id>:<global position>` (the last event it
//! covers, the cursor of `GET /api/v1/events`).

use std::path::Path;

use anyhow::{bail, Context};
use base64::Engine;
use signed_note::{Note, Signer, StandardSigner, StandardVerifier, VerifierList};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tlog_tiles::{Checkpoint, Hash};

use super::ChainHash;
use crate::store::LogPosition;

/// The signed-note algorithm byte of Ed25519.
const ALG_ED25519: u8 = 0x01;

/// The log's signing key, read from its own key file (never the database).
#[derive(Clone)]
pub struct SealKey {
    signer: StandardSigner,
    verifier_key: String,
}

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The private key never reaches a log line.
        f.debug_struct("SealKey")
            .field("verifier_key", &self.verifier_key)
            .finish_non_exhaustive()
    }
}

impl SealKey {
    /// A new key named `name` (the checkpoint origin, e.g.
    /// `sentryops.example.com/log`): the private key text
    /// (`PRIVATE+KEY+name+id+base64`) and the key.
    pub fn generate(name: &str) -> anyhow::Result<(String, Self)> {
        if !signed_note::is_key_name_valid(name) {
            bail!("a key name must be non-empty, without spaces or '+'");
        }
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|error| anyhow::anyhow!("no randomness: {error}"))?;
        let signing = ed25519_dalek::SigningKey::from_bytes(&seed);
        let public = [&[ALG_ED25519][..], signing.verifying_key().as_bytes()].concat();
        let id = signed_note::key_id(name, &public);
        let private = format!(
            "PRIVATE+KEY+{name}+{id:08x}+{}",
            base64::engine::general_purpose::STANDARD.encode([&[ALG_ED25519][..], &seed].concat())
        );
        let key = Self::parse(&private)?;
        Ok((private, key))
    }

    /// Parses the private key text.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let text = text.trim();
        let signer = StandardSigner::new(text)
            .map_err(|error| anyhow::anyhow!("not a signed-note Ed25519 private key: {error}"))?;
        // PRIVATE+KEY+name+id+base64: the base64 may itself hold '+'.
        let seed_b64 = text.splitn(5, '+').nth(4).unwrap_or_default();
        let seed = base64::engine::general_purpose::STANDARD
            .decode(seed_b64)
            .context("not a signed-note Ed25519 private key")?;
        let seed: [u8; 32] = seed
            .get(1..)
            .and_then(|seed| seed.try_into().ok())
            .context("not a signed-note Ed25519 private key")?;
        let verifying = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();
        let verifier_key = signed_note::new_ed25519_verifier_key(signer.name(), &verifying);
        Ok(Self {
            signer,
            verifier_key,
        })
    }

    /// Reads the private key file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the seal key file {}", path.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            if std::fs::metadata(path).is_ok_and(|meta| meta.permissions().mode() & 0o077 != 0) {
                tracing::warn!(
                    file = %path.display(),
                    "the seal key file is readable by group or others; make it mode 0600"
                );
            }
        }
        Self::parse(&text).with_context(|| format!("seal key file {}", path.display()))
    }

    /// The key's name: the origin line of every checkpoint it signs.
    pub fn name(&self) -> &str {
        self.signer.name()
    }

    /// The public verifier key text (`name+id+base64`), to publish.
    pub fn verifier_key(&self) -> &str {
        &self.verifier_key
    }

    /// The verifier of this key's signatures.
    pub fn verifier(&self) -> SealVerifier {
        SealVerifier::parse(&self.verifier_key).expect("a key's own verifier key parses")
    }

    /// The signed note of the checkpoint `(tree_size, head)` taken at
    /// `last` at `signed_at`.
    pub fn sign(
        &self,
        tree_size: u64,
        head: &ChainHash,
        last: LogPosition,
        signed_at: OffsetDateTime,
    ) -> anyhow::Result<String> {
        let time = signed_at
            .to_offset(time::UtcOffset::UTC)
            .replace_nanosecond(0)
            .context("time")?
            .format(&Rfc3339)?;
        let extension = format!(
            "sentryops-time {time}\nsentryops-last {}:{}\n",
            last.transaction_id, last.position
        );
        let body = Checkpoint::new(self.name(), tree_size, Hash(*head), &extension)
            .map_err(|error| anyhow::anyhow!("{error}"))?
            .to_bytes();
        let mut note = Note::new(&body, &[]).map_err(|error| anyhow::anyhow!("{error}"))?;
        note.add_sigs(&[&self.signer as &dyn Signer])
            .map_err(|error| anyhow::anyhow!("{error}"))?;
        Ok(String::from_utf8(note.to_bytes())?)
    }
}

/// The public key a verifier trusts (`name+id+base64(0x01 || key)`).
pub struct SealVerifier {
    text: String,
    name: String,
    verifier: StandardVerifier,
}

impl std::fmt::Debug for SealVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl Clone for SealVerifier {
    fn clone(&self) -> Self {
        Self::parse(&self.text).expect("parsed before")
    }
}

impl SealVerifier {
    /// Parses a verifier key text.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let text = text.trim();
        let verifier = StandardVerifier::new(text)
            .map_err(|error| anyhow::anyhow!("not a signed-note verifier key: {error}"))?;
        Ok(Self {
            text: text.to_string(),
            name: text.split('+').next().unwrap_or_default().to_string(),
            verifier,
        })
    }

    /// Reads a verifier key file (`checkpoint.pub`).
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the verifier key {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("verifier key {}", path.display()))
    }

    /// The verifier key text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Opens a signed checkpoint: the signature must be this key's and
    /// verify, and the body must be a checkpoint of this key's origin with
    /// both SentryOps extension lines.
    pub fn open(&self, note_text: &str) -> Result<OpenedCheckpoint, CheckpointProblem> {
        let note =
            Note::from_bytes(note_text.as_bytes()).map_err(|_| CheckpointProblem::Malformed)?;
        let known = VerifierList::new(vec![Box::new(self.verifier.clone())]);
        note.verify(&known).map_err(|error| match error {
            signed_note::NoteError::UnverifiedNote => CheckpointProblem::UnknownKey,
            signed_note::NoteError::InvalidSignature { .. } => CheckpointProblem::BadSignature,
            _ => CheckpointProblem::Malformed,
        })?;
        let checkpoint =
            Checkpoint::from_bytes(note.text()).map_err(|_| CheckpointProblem::Malformed)?;
        if checkpoint.origin() != self.name {
            return Err(CheckpointProblem::Malformed);
        }
        let mut signed_at = None;
        let mut last = None;
        for line in checkpoint.extension().lines() {
            if let Some(time) = line.strip_prefix("sentryops-time ") {
                signed_at = OffsetDateTime::parse(time, &Rfc3339).ok();
            } else if let Some(cursor) = line.strip_prefix("sentryops-last ") {
                last = cursor.split_once(':').and_then(|(tx, position)| {
                    Some(LogPosition {
                        transaction_id: tx.parse().ok()?,
                        position: position.parse().ok()?,
                    })
                });
            }
        }
        let (Some(signed_at), Some(last)) = (signed_at, last) else {
            return Err(CheckpointProblem::Malformed);
        };
        Ok(OpenedCheckpoint {
            tree_size: checkpoint.size(),
            head: checkpoint.hash().0,
            signed_at,
            last,
        })
    }
}

/// A checkpoint whose signature verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedCheckpoint {
    pub tree_size: u64,
    pub head: ChainHash,
    pub signed_at: OffsetDateTime,
    /// The last event it covers.
    pub last: LogPosition,
}

/// Why a checkpoint cannot be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckpointProblem {
    /// Not a signed note of a SentryOps checkpoint.
    Malformed,
    /// No signature by the trusted key (signed by another key, or none).
    UnknownKey,
    /// The trusted key's signature does not verify: the text was altered.
    BadSignature,
    /// Signed, but the log's chain at its tree size has another head.
    ContradictedByLog,
    /// Signed, but the log holds fewer events than it covers (a cut tail).
    BeyondLog,
    /// Signed, but in an export after the event that completes it, where
    /// it can no longer be compared with the chain.
    Misplaced,
    /// The key is known but no checkpoint covers the sealed events.
    Missing,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn position(transaction_id: i64, position: i64) -> LogPosition {
        LogPosition {
            transaction_id,
            position,
        }
    }

    #[test]
    fn a_signed_checkpoint_opens_with_its_key_and_reads_as_a_c2sp_checkpoint() {
        let (private, key) = SealKey::generate("sentryops.test/log").unwrap();
        assert!(private.starts_with("PRIVATE+KEY+sentryops.test/log+"));
        let at = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let note = key.sign(42, &[7; 32], position(900, 1234), at).unwrap();
        let opened = key.verifier().open(&note).unwrap();
        assert_eq!(
            opened,
            OpenedCheckpoint {
                tree_size: 42,
                head: [7; 32],
                signed_at: at,
                last: position(900, 1234),
            }
        );
        // The text as the specs lay it out: origin, size, base64 hash,
        // extensions, a blank line, one em-dash signature line.
        let lines: Vec<&str> = note.lines().collect();
        assert_eq!(lines[0], "sentryops.test/log");
        assert_eq!(lines[1], "42");
        assert_eq!(
            lines[2],
            base64::engine::general_purpose::STANDARD.encode([7u8; 32])
        );
        assert_eq!(lines[3], "sentryops-time 2027-01-15T08:00:00Z");
        assert_eq!(lines[4], "sentryops-last 900:1234");
        assert_eq!(lines[5], "");
        assert!(lines[6].starts_with("— sentryops.test/log "));
        // The same key reloaded from its text signs identically.
        let reloaded = SealKey::parse(&private).unwrap();
        assert_eq!(reloaded.verifier_key(), key.verifier_key());
        assert_eq!(
            reloaded
                .sign(42, &[7; 32], position(900, 1234), at)
                .unwrap(),
            note
        );
    }

    #[test]
    fn an_altered_or_foreign_checkpoint_does_not_open() {
        let (_, key) = SealKey::generate("sentryops.test/log").unwrap();
        let (_, other) = SealKey::generate("sentryops.test/log").unwrap();
        let at = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let note = key.sign(42, &[7; 32], position(900, 1234), at).unwrap();
        let verifier = key.verifier();
        assert_eq!(
            verifier.open(&note.replacen("\n42\n", "\n43\n", 1)),
            Err(CheckpointProblem::BadSignature)
        );
        let foreign = other.sign(42, &[7; 32], position(900, 1234), at).unwrap();
        assert_eq!(verifier.open(&foreign), Err(CheckpointProblem::UnknownKey));
        assert_eq!(
            verifier.open("not a note"),
            Err(CheckpointProblem::Malformed)
        );
        assert!(SealKey::generate("two words").is_err());
        assert!(SealVerifier::parse("garbage").is_err());
    }
}
