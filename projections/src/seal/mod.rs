//! Tamper evidence for the event log (SPEC section 7, ADR 0006,
//! docs/EVENT_CHAIN.md).
//!
//! The `seal` projection folds the log, in the settled global order every
//! projection reads, into a hash chain `h_n = SHA-256(h_{n-1} || c_n)` with
//! `h_0` 32 zero bytes, where `c_n` is the RFC 8785 canonical JSON of event
//! n's sealed form ([`SealedForm`]): every stored field, the payload at its
//! stored version with each secret replaced by its digest (so an export,
//! which must not carry secrets, still carries everything the chain
//! covers). It runs like any projection (one leader across replicas, off
//! the append path) and, at least every N events and every T seconds while
//! the head moves, writes a checkpoint signed with the log's own key
//! ([`checkpoint`]). [`verify`] recomputes the chain from the log or from an
//! export and names the first event or checkpoint that disagrees.

pub mod checkpoint;
pub mod verify;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use base64::Engine;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::PgConnection;
use time::OffsetDateTime;

use crate::projection::Projection;
use crate::store::{LogPosition, SealedEvent, StoredEvent};
use checkpoint::SealKey;

/// A chain hash `h_n`.
pub type ChainHash = [u8; 32];

/// `h_0`: the head of the empty log.
pub const GENESIS: ChainHash = [0; 32];

/// `h_n` from `h_{n-1}` and the canonical bytes of event n.
pub fn chain_next(previous: &ChainHash, canonical: &[u8]) -> ChainHash {
    let mut hasher = Sha256::new();
    hasher.update(previous);
    hasher.update(canonical);
    hasher.finalize().into()
}

/// A chain hash as the log's texts write it (standard base64, as the
/// checkpoint's root hash line).
pub fn hash_text(hash: &ChainHash) -> String {
    base64::engine::general_purpose::STANDARD.encode(hash)
}

/// Parses [`hash_text`].
pub fn parse_hash(text: &str) -> Option<ChainHash> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?
        .try_into()
        .ok()
}

/// What the chain covers of one event. Field names are the export's; the
/// canonical bytes are the RFC 8785 form of this object.
#[derive(Debug, Serialize)]
pub struct SealedForm<'a> {
    pub aggregate_id: &'a str,
    pub aggregate_type: &'a str,
    pub event_type: &'a str,
    pub event_version: &'a str,
    pub global_position: i64,
    pub metadata: &'a Value,
    /// The stored payload with secrets digested ([`seal_secrets`]).
    pub payload: &'a Value,
    /// [`recorded_at_text`] of the stored time.
    pub recorded_at: &'a str,
    pub sequence: i64,
    pub transaction_id: i64,
}

impl SealedForm<'_> {
    /// The RFC 8785 (JCS) bytes the chain hashes.
    pub fn canonical_bytes(&self) -> anyhow::Result<Vec<u8>> {
        // The fields in RFC 8785 order (they are ASCII: byte order).
        let mut out = Vec::with_capacity(512);
        let text = |out: &mut Vec<u8>, key: &str, value: &str| -> anyhow::Result<()> {
            out.extend_from_slice(key.as_bytes());
            serde_json::to_writer(&mut *out, value)?;
            Ok(())
        };
        text(&mut out, "{\"aggregate_id\":", self.aggregate_id)?;
        text(&mut out, ",\"aggregate_type\":", self.aggregate_type)?;
        text(&mut out, ",\"event_type\":", self.event_type)?;
        text(&mut out, ",\"event_version\":", self.event_version)?;
        out.extend_from_slice(b",\"global_position\":");
        write_canonical(&mut out, &Value::from(self.global_position))?;
        out.extend_from_slice(b",\"metadata\":");
        write_canonical(&mut out, self.metadata)?;
        out.extend_from_slice(b",\"payload\":");
        write_canonical(&mut out, self.payload)?;
        text(&mut out, ",\"recorded_at\":", self.recorded_at)?;
        out.extend_from_slice(b",\"sequence\":");
        write_canonical(&mut out, &Value::from(self.sequence))?;
        out.extend_from_slice(b",\"transaction_id\":");
        write_canonical(&mut out, &Value::from(self.transaction_id))?;
        out.push(b'}');
        Ok(out)
    }
}

/// Appends the RFC 8785 (JCS) bytes of `value` to `out`, with no buffer
/// per object (`serde_jcs` buffers and re-parses every object's keys,
/// which made the allocator the largest cost of sealing and verify).
/// Strings are written by `serde_json`, whose escapes are JCS's (the two
/// quotes, backslash, `\b \t \n \f \r`, other controls as lowercase
/// `\u00xx`); integers of at most 2^53 in magnitude as themselves; other
/// numbers by `serde_jcs` (ECMAScript's number form). Object keys sort by
/// UTF-16 code units. Tested against `serde_jcs` as the oracle.
pub fn write_canonical(out: &mut Vec<u8>, value: &Value) -> anyhow::Result<()> {
    const EXACT: u64 = 1 << 53;
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(number) => {
            use std::io::Write;
            if let Some(integer) = number.as_i64().filter(|i| i.unsigned_abs() <= EXACT) {
                write!(out, "{integer}")?;
            } else if let Some(integer) = number.as_u64().filter(|u| *u <= EXACT) {
                write!(out, "{integer}")?;
            } else {
                out.extend_from_slice(&serde_jcs::to_vec(number)?);
            }
        }
        Value::String(text) => serde_json::to_writer(&mut *out, text)?,
        Value::Array(items) => {
            out.push(b'[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_canonical(out, item)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|(a, _), (b, _)| a.encode_utf16().cmp(b.encode_utf16()));
            out.push(b'{');
            for (index, (key, item)) in entries.into_iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, key)?;
                out.push(b':');
                write_canonical(out, item)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

/// The sealed payload of a stored event: its JSON with the value of every
/// secret key ([`sentryops_events::catalog::SECRET_PAYLOAD_KEYS`], at any
/// depth) replaced by `"sha256:<hex of SHA-256 of its canonical JSON>"`.
/// The secrets are high-entropy hashes already, so their digests disclose
/// nothing, yet a changed secret changes the chain.
pub fn seal_secrets(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                if sentryops_events::catalog::SECRET_PAYLOAD_KEYS.contains(&key.as_str()) {
                    let mut canonical = Vec::new();
                    // Writing into memory cannot fail; a number JCS cannot
                    // write (none parsed from JSON) digests as empty.
                    if write_canonical(&mut canonical, child).is_err() {
                        canonical.clear();
                    }
                    let digest: [u8; 32] = Sha256::digest(canonical).into();
                    *child = Value::String(format!("sha256:{}", hex_lower(&digest)));
                } else {
                    seal_secrets(child);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(seal_secrets),
        _ => {}
    }
}

fn hex_lower(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// The one text of a stored time: UTC, microseconds (PostgreSQL's
/// precision), `Z`: `2026-12-03T17:53:45.123456Z`.
/// Fails only for a year beyond 9999, which the text cannot hold.
pub fn recorded_at_text(at: OffsetDateTime) -> anyhow::Result<String> {
    const FORMAT: &[time::format_description::BorrowedFormatItem<'static>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    Ok(at.to_offset(time::UtcOffset::UTC).format(FORMAT)?)
}

/// A stored event's payload in sealed form.
pub fn sealed_payload(event: &StoredEvent) -> anyhow::Result<Value> {
    let text = event
        .payload
        .as_deref()
        .context("the payload was left out of this read")?;
    let mut payload: Value = serde_json::from_str(text)
        .with_context(|| format!("payload at position {}", event.global_position))?;
    seal_secrets(&mut payload);
    Ok(payload)
}

/// The canonical bytes of a stored event.
pub fn canonical_of(event: &StoredEvent) -> anyhow::Result<Vec<u8>> {
    let payload = sealed_payload(event)?;
    let recorded_at = recorded_at_text(event.recorded_at)?;
    let metadata: Value = serde_json::from_str(&event.metadata)?;
    SealedForm {
        aggregate_id: &event.aggregate_id,
        aggregate_type: &event.aggregate_type,
        event_type: &event.event_type,
        event_version: &event.event_version,
        global_position: event.global_position,
        metadata: &metadata,
        payload: &payload,
        recorded_at: &recorded_at,
        sequence: event.sequence,
        transaction_id: event.transaction_id,
    }
    .canonical_bytes()
}

/// An event as it leaves the service (`GET /api/v1/events` and `sentryops
/// events export` alike): every stored column, the payload at its stored
/// version in sealed form (secrets as digests), the time in its one text,
/// the cursor, and the seal: `chain_index`, `chain_hash` (null until
/// sealed) and, at a checkpoint's tree size, the signed `checkpoint`. Each
/// line holds exactly what [`verify::verify_export`] needs.
pub fn exported_line(sealed: &SealedEvent) -> anyhow::Result<Value> {
    let event = &sealed.event;
    let mut line = serde_json::json!({
        "global_position": event.global_position,
        "transaction_id": event.transaction_id,
        "cursor": event.log_position().cursor(),
        "recorded_at": recorded_at_text(event.recorded_at)?,
        "aggregate_type": event.aggregate_type,
        "aggregate_id": event.aggregate_id,
        "sequence": event.sequence,
        "event_type": event.event_type,
        "event_version": event.event_version,
        "payload": sealed_payload(event)?,
        "metadata": serde_json::from_str::<Value>(&event.metadata)?,
        "chain_index": sealed.chain_index,
        "chain_hash": sealed
            .chain_hash
            .as_deref()
            .and_then(|hash| <ChainHash>::try_from(hash).ok())
            .map(|hash| hash_text(&hash)),
    });
    if let Some(note) = &sealed.checkpoint {
        line["checkpoint"] = Value::String(note.clone());
    }
    Ok(line)
}

/// Writes the [`exported_line`] of `sealed` to `out` as one compact JSON
/// object (the same object, keys in the same order), without building a
/// `Value` tree where the stored text can go out as it is: the metadata
/// always, the payload when it holds no secret key. The NDJSON paths
/// (`GET /api/v1/events`, `events export`) write every line through it; a
/// tree per line spent most of their time in the allocator.
pub fn write_exported_line(sealed: &SealedEvent, out: &mut Vec<u8>) -> anyhow::Result<()> {
    use std::io::Write;
    let event = &sealed.event;
    let payload = event
        .payload
        .as_deref()
        .context("the payload was left out of this read")?;
    let text = |out: &mut Vec<u8>, text: &str| serde_json::to_writer(out, text);
    out.extend_from_slice(b"{\"aggregate_id\":");
    text(out, &event.aggregate_id)?;
    out.extend_from_slice(b",\"aggregate_type\":");
    text(out, &event.aggregate_type)?;
    out.extend_from_slice(b",\"chain_hash\":");
    match sealed
        .chain_hash
        .as_deref()
        .and_then(|hash| <ChainHash>::try_from(hash).ok())
    {
        Some(hash) => write!(out, "\"{}\"", hash_text(&hash))?,
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"chain_index\":");
    match sealed.chain_index {
        Some(index) => write!(out, "{index}")?,
        None => out.extend_from_slice(b"null"),
    }
    if let Some(note) = &sealed.checkpoint {
        out.extend_from_slice(b",\"checkpoint\":");
        text(out, note)?;
    }
    let position = event.log_position();
    write!(
        out,
        ",\"cursor\":\"{}:{}\",\"event_type\":",
        position.transaction_id, position.position
    )?;
    text(out, &event.event_type)?;
    out.extend_from_slice(b",\"event_version\":");
    text(out, &event.event_version)?;
    write!(
        out,
        ",\"global_position\":{},\"metadata\":",
        event.global_position
    )?;
    push_compact_json(out, &event.metadata);
    out.extend_from_slice(b",\"payload\":");
    if holds_a_secret_key(payload) {
        serde_json::to_writer(&mut *out, &sealed_payload(event)?)?;
    } else {
        push_compact_json(out, payload);
    }
    out.extend_from_slice(b",\"recorded_at\":");
    text(out, &recorded_at_text(event.recorded_at)?)?;
    write!(
        out,
        ",\"sequence\":{},\"transaction_id\":{}}}",
        event.sequence, event.transaction_id
    )?;
    Ok(())
}

/// Whether a stored JSON text may hold one of the secret keys. PostgreSQL
/// writes `jsonb` keys unescaped (it escapes only quotes, backslashes and
/// control characters), so a key that is there appears as `"name"`; a
/// value that merely looks like one only costs the slow path.
fn holds_a_secret_key(stored: &str) -> bool {
    sentryops_events::catalog::SECRET_PAYLOAD_KEYS
        .iter()
        .any(|key| {
            stored.match_indices(key).any(|(at, _)| {
                stored[..at].ends_with('"') && stored[at + key.len()..].starts_with('"')
            })
        })
}

/// Appends a valid JSON text without the whitespace between its tokens
/// (`jsonb`'s text puts a space after every `:` and `,`).
fn push_compact_json(out: &mut Vec<u8>, json: &str) {
    let (mut in_string, mut escaped) = (false, false);
    out.reserve(json.len());
    for &byte in json.as_bytes() {
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
        } else if byte == b'"' {
            in_string = true;
        } else if matches!(byte, b' ' | b'\n' | b'\r' | b'\t') {
            continue;
        }
        out.push(byte);
    }
}

/// When checkpoints are written.
#[derive(Debug, Clone)]
pub struct SealOptions {
    /// Signs checkpoints; without it the chain is kept but nothing is signed.
    pub key: Option<SealKey>,
    /// A checkpoint at least every this many events…
    pub every_events: u64,
    /// …and, while the head moves, at least this often.
    pub every: Duration,
    /// Where the newest checkpoint is also written (`checkpoint`), for
    /// publication outside the database.
    pub publish_dir: Option<PathBuf>,
}

impl Default for SealOptions {
    fn default() -> Self {
        Self {
            key: None,
            every_events: 1000,
            every: Duration::from_secs(60),
            publish_dir: None,
        }
    }
}

/// The source of "now" for checkpoint times (tests inject one).
pub type Clock = Arc<dyn Fn() -> OffsetDateTime + Send + Sync>;

/// The `seal` projection.
pub struct Sealer {
    options: SealOptions,
    clock: Clock,
}

impl Sealer {
    /// A sealer on the system clock.
    pub fn new(options: SealOptions) -> Self {
        Self::with_clock(options, Arc::new(OffsetDateTime::now_utc))
    }

    /// A sealer on `clock`.
    pub fn with_clock(options: SealOptions, clock: Clock) -> Self {
        Self { options, clock }
    }

    /// The signing key, if one is configured.
    pub fn key(&self) -> Option<&SealKey> {
        self.options.key.as_ref()
    }

    /// Writes a checkpoint of `(tree_size, head)` when one is due: by
    /// count always, by time when `by_time`. Serialized with any other
    /// writer by the table's key (a duplicate tree size is skipped).
    async fn checkpoint_if_due(
        &self,
        conn: &mut PgConnection,
        tree_size: i64,
        head: &ChainHash,
        last: LogPosition,
        by_time: bool,
    ) -> anyhow::Result<()> {
        let Some(key) = &self.options.key else {
            return Ok(());
        };
        let latest: Option<(i64, OffsetDateTime, Vec<u8>, i64, i64)> = sqlx::query_as(
            "select tree_size, signed_at, head_hash, transaction_id, global_position \
             from seal_checkpoints order by tree_size desc limit 1",
        )
        .fetch_optional(&mut *conn)
        .await?;
        let now = (self.clock)();
        let latest_size = latest.as_ref().map_or(0, |latest| latest.0);
        if tree_size <= latest_size {
            return Ok(());
        }
        let by_count = (tree_size - latest_size) as u64 >= self.options.every_events;
        let by_clock = by_time
            && latest.as_ref().is_none_or(|latest| {
                now - latest.1 >= time::Duration::try_from(self.options.every).unwrap_or_default()
            });
        if !(by_count || by_clock) {
            return Ok(());
        }
        // Sign only what the log itself says: recompute the chain from the
        // last signed head over the events since, instead of trusting the
        // stored seals (rewritten with the events, they would otherwise get
        // a fresh signature; a rebuild over an altered log likewise).
        let (mut recomputed, mut cursor) = match &latest {
            Some((_, _, head, transaction_id, position)) => (
                <ChainHash>::try_from(head.as_slice()).unwrap_or(GENESIS),
                LogPosition {
                    transaction_id: *transaction_id,
                    position: *position,
                },
            ),
            None => (GENESIS, LogPosition::START),
        };
        let mut counted = latest_size;
        while cursor != last {
            // Bounded by `last`, not by a fresh horizon: every event up to
            // it was read as settled already, and a fresh horizon can sit
            // lower for a moment (an older transaction elsewhere ending while
            // it is computed), which would look like a cut log.
            let batch =
                crate::store::read_settled_below(conn, cursor, 1000, last.transaction_id + 1)
                    .await?;
            if batch.is_empty() {
                break;
            }
            for event in batch.iter().take_while(|event| {
                (event.transaction_id, event.global_position)
                    <= (last.transaction_id, last.position)
            }) {
                recomputed = chain_next(&recomputed, &canonical_of(event)?);
                counted += 1;
                cursor = event.log_position();
            }
            if batch.len() < 1000 {
                break;
            }
        }
        if cursor != last || counted != tree_size || recomputed != *head {
            anyhow::bail!(
                "refusing to sign a checkpoint at tree size {tree_size}: the log since the \
                 checkpoint at tree size {latest_size} does not hash to the sealed head \
                 (run `sentryops audit verify`)"
            );
        }
        let note = key.sign(tree_size as u64, head, last, now)?;
        sqlx::query(
            "insert into seal_checkpoints \
             (tree_size, transaction_id, global_position, head_hash, signed_at, key_name, note) \
             values ($1, $2, $3, $4, $5, $6, $7) on conflict (tree_size) do nothing",
        )
        .bind(tree_size)
        .bind(last.transaction_id)
        .bind(last.position)
        .bind(&head[..])
        .bind(now)
        .bind(key.name())
        .bind(&note)
        .execute(&mut *conn)
        .await?;
        if let Some(dir) = &self.options.publish_dir {
            publish(dir, tree_size, &note);
        }
        Ok(())
    }
}

/// Writes `note` to `dir/checkpoint` unless the file there is as new
/// already. Best effort: a full disk must not stop the sealing (the
/// checkpoint is in the database), so a failure is logged. Written before
/// the batch commits, which cannot mislead: a checkpoint speaks of
/// committed events only, and a tree size always has the same head.
fn publish(dir: &std::path::Path, tree_size: i64, note: &str) {
    let target = dir.join("checkpoint");
    let published_size = std::fs::read_to_string(&target).ok().and_then(|text| {
        text.lines()
            .nth(1)
            .and_then(|size| size.parse::<i64>().ok())
    });
    if published_size.is_some_and(|size| size >= tree_size) {
        return;
    }
    let temporary = dir.join(format!(
        ".checkpoint.{}.{}.tmp",
        std::process::id(),
        tree_size
    ));
    let written = std::fs::File::create(&temporary)
        .and_then(|mut file| {
            use std::io::Write;
            file.write_all(note.as_bytes())?;
            file.sync_all()
        })
        .and_then(|()| std::fs::rename(&temporary, &target));
    if let Err(error) = written {
        let _ = std::fs::remove_file(&temporary);
        tracing::warn!(
            %error,
            dir = %dir.display(),
            "could not publish the newest checkpoint"
        );
    }
}

/// The newest seal: `(chain index, hash, position)`.
async fn chain_head(
    conn: &mut PgConnection,
) -> sqlx::Result<Option<(i64, ChainHash, LogPosition)>> {
    let row: Option<(i64, Vec<u8>, i64, i64)> = sqlx::query_as(
        "select chain_index, chain_hash, transaction_id, global_position \
         from event_seals order by chain_index desc limit 1",
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|(index, hash, transaction_id, position)| {
        (
            index,
            hash.try_into().unwrap_or(GENESIS),
            LogPosition {
                transaction_id,
                position,
            },
        )
    }))
}

#[async_trait]
impl Projection for Sealer {
    fn name(&self) -> &'static str {
        "seal"
    }

    fn version(&self) -> i32 {
        1
    }

    fn tables(&self) -> &'static [&'static str] {
        &["event_seals"]
    }

    fn reads_large_payloads(&self) -> bool {
        true
    }

    async fn apply(&self, conn: &mut PgConnection, events: &[StoredEvent]) -> anyhow::Result<()> {
        let Some(last) = events.last() else {
            return Ok(());
        };
        let (mut index, mut head) = chain_head(conn)
            .await?
            .map_or((0, GENESIS), |(index, hash, _)| (index, hash));
        let mut indexes = Vec::with_capacity(events.len());
        let mut transactions = Vec::with_capacity(events.len());
        let mut positions = Vec::with_capacity(events.len());
        let mut hashes: Vec<Vec<u8>> = Vec::with_capacity(events.len());
        for event in events {
            head = chain_next(&head, &canonical_of(event)?);
            index += 1;
            indexes.push(index);
            transactions.push(event.transaction_id);
            positions.push(event.global_position);
            hashes.push(head.to_vec());
        }
        sqlx::query(
            "insert into event_seals (chain_index, transaction_id, global_position, chain_hash) \
             select * from unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bytea[])",
        )
        .bind(&indexes)
        .bind(&transactions)
        .bind(&positions)
        .bind(&hashes)
        .execute(&mut *conn)
        .await?;
        self.checkpoint_if_due(conn, index, &head, last.log_position(), false)
            .await
    }

    async fn tick(&self, conn: &mut PgConnection) -> anyhow::Result<()> {
        if self.options.key.is_none() {
            return Ok(());
        }
        let Some((index, head, last)) = chain_head(conn).await? else {
            return Ok(());
        };
        self.checkpoint_if_due(conn, index, &head, last, true).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sealed_event(payload: &str, metadata: &str, sealed: bool) -> SealedEvent {
        SealedEvent {
            event: StoredEvent {
                global_position: 42,
                transaction_id: 7_000_000_001,
                aggregate_type: "user".into(),
                aggregate_id: "a \"quoted\" id\n".into(),
                sequence: 3,
                event_type: "UserRegistered".into(),
                event_version: "2.0".into(),
                payload: Some(payload.into()),
                metadata: metadata.into(),
                recorded_at: time::macros::datetime!(2026-12-04 21:00:00.123456 UTC),
            },
            chain_index: sealed.then_some(40),
            chain_hash: sealed.then(|| vec![7; 32]),
            checkpoint: sealed.then(|| "log\n40\nroot\n\n— key sig\n".into()),
        }
    }

    #[test]
    fn the_written_line_is_the_exported_line() {
        // Texts as PostgreSQL writes `jsonb`: a space after `:` and `,`,
        // and strings that hold both, quotes, escapes and non-ASCII.
        let payloads = [
            r#"{"UserRegistered": {"email": "a, b: c@x.example", "name": "é \"q\" \\ \u0001", "n": [1, 2.5, -3e-7]}}"#,
            r#"{"SessionStarted": {"token_hash": "abc", "nested": {"password_hash": "p"}}}"#,
            r#"{"Note": {"text": "password_hash", "list": [{"x": null}, true, false]}}"#,
            r#"{"Empty": {}}"#,
        ];
        let metadata =
            r#"{"actor": "admin@x.example", "request_id": "r 1", "extra": {"k": [1, 2]}}"#;
        for payload in payloads {
            for sealed in [false, true] {
                let event = sealed_event(payload, metadata, sealed);
                let mut written = Vec::new();
                write_exported_line(&event, &mut written).expect("written");
                let text = std::str::from_utf8(&written).expect("utf-8");
                assert!(!text.contains('\n'), "one line: {text}");
                let parsed: Value = serde_json::from_slice(&written).expect(text);
                assert_eq!(parsed, exported_line(&event).expect("line"), "{text}");
            }
        }
        // The secret keys never go out as they are stored.
        let mut written = Vec::new();
        write_exported_line(&sealed_event(payloads[1], metadata, true), &mut written)
            .expect("written");
        let text = String::from_utf8(written).expect("utf-8");
        assert!(
            !text.contains(r#""abc""#) && !text.contains(r#""p""#),
            "{text}"
        );
    }

    #[test]
    fn the_canonical_writer_agrees_with_serde_jcs() {
        let values = [
            json!(null),
            json!([
                true,
                false,
                0,
                -0.0,
                1.0,
                1.5,
                -3e-7,
                1e21,
                1e-7,
                123456789012345680000.0
            ]),
            json!(9_007_199_254_740_992_i64),
            json!(9_007_199_254_740_993_i64),
            json!(-9_007_199_254_740_993_i64),
            json!(u64::MAX),
            json!(i64::MIN),
            json!({"b": 1, "a": {"z": [], "y": {}}, "": "empty key"}),
            json!({"\u{e000}": 1, "\u{1f600}": 2, "\u{ffff}": 3, "a\u{10000}": 4, "a": 5}),
            json!("quotes \" and \\ and \u{0001}\u{001f}\u{007f} \n\t\r\u{0008}\u{000c} / é 😀"),
            json!({"UserRegistered": {"email": "a@x", "n": [1, 2.5, {"k": null}]}}),
        ];
        for value in values {
            let mut written = Vec::new();
            write_canonical(&mut written, &value).expect("written");
            assert_eq!(
                String::from_utf8(written).expect("utf-8"),
                String::from_utf8(serde_jcs::to_vec(&value).expect("jcs")).expect("utf-8"),
                "{value}"
            );
        }
        let metadata = json!({"actor": "x", "é": [1.0e-9]});
        let payload = json!({"A": {"password_hash": "h", "n": 2}});
        let form = SealedForm {
            aggregate_id: "id \"q\"",
            aggregate_type: "asset",
            event_type: "AssetRegistered",
            event_version: "2.0",
            global_position: 9_007_199_254_740_993,
            metadata: &metadata,
            payload: &payload,
            recorded_at: "2026-12-03T17:53:45.123456Z",
            sequence: 4,
            transaction_id: -1,
        };
        assert_eq!(
            form.canonical_bytes().expect("canonical"),
            serde_jcs::to_vec(&form).expect("jcs")
        );
    }

    #[test]
    fn the_canonical_form_is_rfc_8785_of_every_field() {
        let metadata = json!({"b": 1, "a": "x"});
        let payload = json!({"z": [1.0, 2.5], "é": null, "a": true});
        let form = SealedForm {
            aggregate_id: "id",
            aggregate_type: "asset",
            event_type: "AssetRegistered",
            event_version: "1.0",
            global_position: 7,
            metadata: &metadata,
            payload: &payload,
            recorded_at: "2026-12-03T17:53:45.123456Z",
            sequence: 1,
            transaction_id: 800,
        };
        assert_eq!(
            String::from_utf8(form.canonical_bytes().unwrap()).unwrap(),
            r#"{"aggregate_id":"id","aggregate_type":"asset","event_type":"AssetRegistered","event_version":"1.0","global_position":7,"metadata":{"a":"x","b":1},"payload":{"a":true,"z":[1,2.5],"é":null},"recorded_at":"2026-12-03T17:53:45.123456Z","sequence":1,"transaction_id":800}"#
        );
    }

    #[test]
    fn secrets_are_sealed_as_their_digest_at_any_depth() {
        let mut payload = json!({"password_hash": "$argon2id$x", "inner": [{"token_hash": "abc"}], "email": "a@b"});
        seal_secrets(&mut payload);
        // SHA-256 of the JSON string "abc" (with its quotes).
        let abc = hex_lower(&Sha256::digest(br#""abc""#));
        assert_eq!(
            payload["inner"][0]["token_hash"],
            json!(format!("sha256:{abc}"))
        );
        assert!(payload["password_hash"]
            .as_str()
            .unwrap()
            .starts_with("sha256:"));
        assert_eq!(payload["email"], json!("a@b"));
    }

    #[test]
    fn the_chain_starts_at_zero_and_depends_on_order() {
        let one = chain_next(&GENESIS, b"one");
        let mut expected = Sha256::new();
        expected.update([0u8; 32]);
        expected.update(b"one");
        assert_eq!(one, <[u8; 32]>::from(expected.finalize()));
        let ab = chain_next(&chain_next(&GENESIS, b"a"), b"b");
        let ba = chain_next(&chain_next(&GENESIS, b"b"), b"a");
        assert_ne!(ab, ba);
        assert_eq!(parse_hash(&hash_text(&ab)), Some(ab));
    }

    #[test]
    fn recorded_at_has_one_text() {
        let at = OffsetDateTime::from_unix_timestamp_nanos(1_764_784_425_123_456_000).unwrap();
        assert_eq!(recorded_at_text(at).unwrap(), "2025-12-03T17:53:45.123456Z");
        let whole = OffsetDateTime::from_unix_timestamp(1_764_784_425).unwrap();
        assert_eq!(
            recorded_at_text(whole).unwrap(),
            "2025-12-03T17:53:45.000000Z"
        );
    }
}
