//! Verification of the chain and its checkpoints (ADR 0006).
//!
//! One [`ChainVerifier`] serves both sources: the database (the log, the
//! stored seals and the stored checkpoints, read in one snapshot and merged
//! in the settled order) and an `events export` file (each line carries its
//! seal and, at a checkpoint's tree size, the signed note). Both recompute
//! `h_n` from the events themselves, so neither trusts the stored hashes:
//! those only say *where* the log first differs from what was sealed, and
//! the signed checkpoints, whose key the database never sees, say *whether*
//! it does.

use std::collections::BTreeMap;
use std::io::BufRead;

use anyhow::Context;
use serde::Serialize;
use serde_json::Value;
use sqlx::{Connection, PgConnection};
use time::OffsetDateTime;

use super::checkpoint::{CheckpointProblem, OpenedCheckpoint, SealVerifier};
use super::{canonical_of, chain_next, hash_text, parse_hash, ChainHash, SealedForm, GENESIS};
use crate::store::{self, LogPosition};

/// What is wrong with the log at one place of the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventProblem {
    /// The event at this position is not the one that was sealed here.
    Altered,
    /// A sealed event is no longer in the log (deleted, or the tail cut).
    Missing,
    /// An event that was never sealed sits before sealed ones.
    Inserted,
}

/// The first place where the log differs from its seals or checkpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BadEvent {
    /// The place in the chain (1-based), as the log reads now.
    pub chain_index: i64,
    /// The global position concerned, when known.
    pub position: Option<i64>,
    pub problem: EventProblem,
    pub detail: String,
}

/// The first checkpoint that cannot be trusted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BadCheckpoint {
    /// Its tree size (as stored when its text does not parse).
    pub tree_size: Option<u64>,
    pub problem: CheckpointProblem,
    pub detail: String,
}

/// A checkpoint that verified and agrees with the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GoodCheckpoint {
    pub tree_size: u64,
    pub head: String,
    /// The cursor (`<transaction id>:<global position>`) of its last event.
    pub last_cursor: String,
    pub last_position: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub signed_at: OffsetDateTime,
}

impl From<&OpenedCheckpoint> for GoodCheckpoint {
    fn from(checkpoint: &OpenedCheckpoint) -> Self {
        Self {
            tree_size: checkpoint.tree_size,
            head: hash_text(&checkpoint.head),
            last_cursor: format!(
                "{}:{}",
                checkpoint.last.transaction_id, checkpoint.last.position
            ),
            last_position: checkpoint.last.position,
            signed_at: checkpoint.signed_at,
        }
    }
}

/// The result of a verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// No bad event and no bad checkpoint.
    pub ok: bool,
    /// Events recomputed.
    pub events_checked: u64,
    /// Of those, how many the sealer had sealed.
    pub sealed_events: u64,
    /// Events at the tail the sealer has not reached yet (not a fault).
    pub unsealed_events: u64,
    /// The recomputed head: tree size and `h_n`.
    pub tree_size: u64,
    pub head: String,
    pub checkpoints_checked: u64,
    pub checkpoints_valid: u64,
    /// Events up to the last good checkpoint: what a signature vouches
    /// for. The sealed events after it (at most N events or T seconds'
    /// worth) are checked against stored hashes only.
    pub covered_events: u64,
    pub first_bad_event: Option<BadEvent>,
    pub first_bad_checkpoint: Option<BadCheckpoint>,
    /// The newest checkpoint that verified and matched the log.
    pub last_good_checkpoint: Option<GoodCheckpoint>,
    /// Where the walk started, when it started at a checkpoint.
    pub verified_from: Option<GoodCheckpoint>,
    /// The verifier key checkpoints were checked with.
    pub key: Option<String>,
}

/// One stored seal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealRow {
    pub chain_index: i64,
    pub position: LogPosition,
    pub hash: ChainHash,
}

/// Recomputes the chain from events fed in the settled order and compares
/// it with the seals and checkpoints fed beside them.
pub struct ChainVerifier {
    key: Option<SealVerifier>,
    index: i64,
    head: ChainHash,
    /// Opened checkpoints waiting for the walk to reach their tree size.
    pending: BTreeMap<u64, Vec<OpenedCheckpoint>>,
    first_unsealed: Option<(i64, i64)>,
    report: VerifyReport,
}

impl ChainVerifier {
    /// A walk from the start of the log; checkpoints are checked with
    /// `key` (none: only the chain is checked).
    pub fn new(key: Option<SealVerifier>) -> Self {
        let report = VerifyReport {
            ok: true,
            events_checked: 0,
            sealed_events: 0,
            unsealed_events: 0,
            tree_size: 0,
            head: hash_text(&GENESIS),
            checkpoints_checked: 0,
            checkpoints_valid: 0,
            covered_events: 0,
            first_bad_event: None,
            first_bad_checkpoint: None,
            last_good_checkpoint: None,
            verified_from: None,
            key: key.as_ref().map(|key| key.text().to_string()),
        };
        Self {
            key,
            index: 0,
            head: GENESIS,
            pending: BTreeMap::new(),
            first_unsealed: None,
            report,
        }
    }

    /// A walk that trusts `checkpoint` (already opened) and starts after it.
    pub fn from_checkpoint(key: SealVerifier, checkpoint: &OpenedCheckpoint) -> Self {
        let mut verifier = Self::new(Some(key));
        verifier.index = checkpoint.tree_size as i64;
        verifier.head = checkpoint.head;
        verifier.report.verified_from = Some(checkpoint.into());
        verifier.report.last_good_checkpoint = Some(checkpoint.into());
        verifier
    }

    fn bad_event(&mut self, bad: BadEvent) {
        if self.report.first_bad_event.is_none() {
            self.report.first_bad_event = Some(bad);
        }
    }

    fn bad_checkpoint(&mut self, bad: BadCheckpoint) {
        if self.report.first_bad_checkpoint.is_none() {
            self.report.first_bad_checkpoint = Some(bad);
        }
    }

    /// A signed checkpoint to check; `stored_tree_size` names it when its
    /// text is unreadable.
    pub fn checkpoint(&mut self, stored_tree_size: Option<u64>, note: &str) {
        let Some(key) = &self.key else {
            return;
        };
        self.report.checkpoints_checked += 1;
        match key.open(note) {
            Err(problem) => {
                let detail = match problem {
                    CheckpointProblem::UnknownKey => {
                        "not signed by the log's key (signed by another key, or not at all)"
                    }
                    CheckpointProblem::BadSignature => {
                        "the log key's signature does not verify: the checkpoint text was altered"
                    }
                    _ => "not a readable SentryOps checkpoint of this log",
                };
                self.bad_checkpoint(BadCheckpoint {
                    tree_size: stored_tree_size,
                    problem,
                    detail: detail.to_string(),
                });
            }
            Ok(opened)
                if opened.tree_size as i64 <= self.index
                    && self
                        .report
                        .verified_from
                        .as_ref()
                        .is_none_or(|start| opened.tree_size > start.tree_size) =>
            {
                // The walk is past it and cannot compare heads any more:
                // a checkpoint must come before (or with) the event that
                // completes it, so one moved later is not trusted.
                self.bad_checkpoint(BadCheckpoint {
                    tree_size: Some(opened.tree_size),
                    problem: CheckpointProblem::Misplaced,
                    detail: format!(
                        "found after chain index {}, past its own tree size",
                        self.index
                    ),
                });
            }
            Ok(opened) if opened.tree_size as i64 <= self.index => {
                // Before the start of a walk from a checkpoint: only its
                // signature can be checked, and the start's own head.
                let start = self.report.verified_from.as_ref();
                if start.is_some_and(|start| start.tree_size == opened.tree_size)
                    && opened.head != self.head
                {
                    self.bad_checkpoint(BadCheckpoint {
                        tree_size: Some(opened.tree_size),
                        problem: CheckpointProblem::ContradictedByLog,
                        detail: "two signed checkpoints of one tree size disagree".into(),
                    });
                } else {
                    self.report.checkpoints_valid += 1;
                }
            }
            Ok(opened) => self
                .pending
                .entry(opened.tree_size)
                .or_default()
                .push(opened),
        }
    }

    /// The next event in the settled order, its canonical bytes, and the
    /// seal stored at its position (if any).
    pub fn event(&mut self, position: LogPosition, canonical: &[u8], seal: Option<SealRow>) {
        self.index += 1;
        self.head = chain_next(&self.head, canonical);
        self.report.events_checked += 1;
        let index = self.index;
        match seal {
            Some(seal) => {
                self.report.sealed_events += 1;
                // Events read unsealed before a sealed one were sealed all
                // the same when the seal's index counts them (a read that
                // raced the sealer); otherwise they were slipped in.
                let unsealed = self.first_unsealed.take();
                if let Some((unsealed_index, unsealed_position)) =
                    unsealed.filter(|_| seal.chain_index < index)
                {
                    self.bad_event(BadEvent {
                        chain_index: unsealed_index,
                        position: Some(unsealed_position),
                        problem: EventProblem::Inserted,
                        detail: format!(
                            "never sealed, yet the sealed event at position {} follows it",
                            position.position
                        ),
                    });
                }
                if seal.chain_index > index {
                    self.bad_event(BadEvent {
                        chain_index: index,
                        position: Some(position.position),
                        problem: EventProblem::Missing,
                        detail: format!(
                            "the event at position {} was sealed as chain index {}: {} sealed \
                             event(s) before it are gone",
                            position.position,
                            seal.chain_index,
                            seal.chain_index - index
                        ),
                    });
                } else if seal.chain_index < index {
                    self.bad_event(BadEvent {
                        chain_index: index,
                        position: Some(position.position),
                        problem: EventProblem::Inserted,
                        detail: format!(
                            "the event at position {} was sealed as chain index {}: {} \
                             event(s) before it were never sealed",
                            position.position,
                            seal.chain_index,
                            index - seal.chain_index
                        ),
                    });
                } else if seal.hash != self.head {
                    self.bad_event(BadEvent {
                        chain_index: index,
                        position: Some(position.position),
                        problem: EventProblem::Altered,
                        detail: format!(
                            "the event at position {} (or one before it) is not what was sealed",
                            position.position
                        ),
                    });
                }
            }
            None => {
                self.report.unsealed_events += 1;
                if self.first_unsealed.is_none() {
                    self.first_unsealed = Some((index, position.position));
                }
            }
        }
        if let Some(checkpoints) = self.pending.remove(&(index as u64)) {
            for checkpoint in checkpoints {
                if checkpoint.head == self.head {
                    self.report.checkpoints_valid += 1;
                    self.report.last_good_checkpoint = Some((&checkpoint).into());
                } else {
                    let since = self
                        .report
                        .last_good_checkpoint
                        .as_ref()
                        .map_or(0, |good| good.tree_size);
                    self.bad_checkpoint(BadCheckpoint {
                        tree_size: Some(checkpoint.tree_size),
                        problem: CheckpointProblem::ContradictedByLog,
                        detail: format!(
                            "signed at tree size {} with another head than the log's",
                            checkpoint.tree_size
                        ),
                    });
                    // A checkpoint covers sealed events only: an unsealed
                    // one inside its range was slipped in afterwards.
                    if let Some((unsealed_index, unsealed_position)) = self.first_unsealed {
                        self.bad_event(BadEvent {
                            chain_index: unsealed_index,
                            position: Some(unsealed_position),
                            problem: EventProblem::Inserted,
                            detail: format!(
                                "never sealed, yet inside the signed checkpoint at tree size {}",
                                checkpoint.tree_size
                            ),
                        });
                    }
                    self.bad_event(BadEvent {
                        chain_index: since as i64 + 1,
                        position: None,
                        problem: EventProblem::Altered,
                        detail: format!(
                            "the log differs from the signed checkpoint at tree size {} \
                             somewhere after chain index {since}",
                            checkpoint.tree_size
                        ),
                    });
                }
            }
        }
    }

    /// A stored seal whose event is not in the log.
    pub fn orphan_seal(&mut self, seal: SealRow) {
        self.bad_event(BadEvent {
            chain_index: seal.chain_index,
            position: Some(seal.position.position),
            problem: EventProblem::Missing,
            detail: format!(
                "sealed at chain index {}, no longer in the log at {}:{}",
                seal.chain_index, seal.position.transaction_id, seal.position.position
            ),
        });
    }

    /// The report, after checking what the log did not reach.
    pub fn finish(mut self) -> VerifyReport {
        let beyond: Vec<OpenedCheckpoint> = std::mem::take(&mut self.pending)
            .into_values()
            .flatten()
            .collect();
        for checkpoint in beyond {
            self.bad_checkpoint(BadCheckpoint {
                tree_size: Some(checkpoint.tree_size),
                problem: CheckpointProblem::BeyondLog,
                detail: format!(
                    "covers {} events up to position {}; the log holds {}",
                    checkpoint.tree_size, checkpoint.last.position, self.index
                ),
            });
            self.bad_event(BadEvent {
                chain_index: self.index + 1,
                position: None,
                problem: EventProblem::Missing,
                detail: format!(
                    "the log ends at chain index {}, but a signed checkpoint covers {} events \
                     (up to position {})",
                    self.index, checkpoint.tree_size, checkpoint.last.position
                ),
            });
        }
        // With a key, sealed events must be covered by a signature:
        // without one, stored hashes prove nothing (anyone can recompute
        // them), so a log or export stripped of its checkpoints fails.
        if self.key.is_some()
            && self.report.sealed_events > 0
            && self.report.last_good_checkpoint.is_none()
        {
            self.bad_checkpoint(BadCheckpoint {
                tree_size: None,
                problem: CheckpointProblem::Missing,
                detail: "no signed checkpoint covers the sealed events".into(),
            });
        }
        self.report.covered_events = self
            .report
            .last_good_checkpoint
            .as_ref()
            .map_or(0, |good| good.tree_size);
        self.report.tree_size = self.index as u64;
        self.report.head = hash_text(&self.head);
        self.report.ok =
            self.report.first_bad_event.is_none() && self.report.first_bad_checkpoint.is_none();
        self.report
    }
}

/// Rows per read of the log and of the seals (a compliance results
/// payload can be large: a few batches of them, never the log).
const BATCH: i64 = 1000;

/// Verifies the log in the database, in one read-only snapshot and below
/// one settled horizon taken in it (recomputed per read it could move and
/// leave seals without their events). `from_checkpoint`: start at the
/// newest checkpoint that verifies *and* that the log still reaches (its
/// last event is there and hashes to its head), instead of the start of
/// the log; every checkpoint's signature is still checked.
pub async fn verify_database(
    conn: &mut PgConnection,
    key: Option<SealVerifier>,
    from_checkpoint: bool,
    extra_checkpoints: &[String],
) -> anyhow::Result<VerifyReport> {
    let mut tx = conn.begin().await?;
    sqlx::query("set transaction isolation level repeatable read, read only")
        .execute(&mut *tx)
        .await?;
    let horizon = store::settled_horizon(&mut tx).await?;
    let checkpoints: Vec<(i64, String)> =
        sqlx::query_as("select tree_size, note from seal_checkpoints order by tree_size")
            .fetch_all(&mut *tx)
            .await?;
    let mut start = None;
    if let (Some(key), true) = (&key, from_checkpoint) {
        for (_, note) in checkpoints.iter().rev() {
            let Ok(opened) = key.open(note) else {
                continue;
            };
            if anchor_holds(&mut tx, &opened, horizon).await? {
                start = Some(opened);
            }
            break;
        }
    }
    let mut verifier = match (&key, &start) {
        (Some(key), Some(start)) => ChainVerifier::from_checkpoint(key.clone(), start),
        _ => ChainVerifier::new(key),
    };
    for (tree_size, note) in &checkpoints {
        verifier.checkpoint(u64::try_from(*tree_size).ok(), note);
    }
    for note in extra_checkpoints {
        verifier.checkpoint(None, note);
    }
    let mut event_cursor = start
        .as_ref()
        .map_or(LogPosition::START, |start| start.last);
    let mut seal_cursor = start.as_ref().map_or(0, |start| start.tree_size as i64);
    let mut events = std::collections::VecDeque::new();
    let mut seals = std::collections::VecDeque::new();
    let (mut events_done, mut seals_done) = (false, false);
    loop {
        if events.is_empty() && !events_done {
            let batch = store::read_settled_below(&mut tx, event_cursor, BATCH, horizon).await?;
            events_done = (batch.len() as i64) < BATCH;
            if let Some(last) = batch.last() {
                event_cursor = last.log_position();
            }
            events.extend(batch);
        }
        if seals.is_empty() && !seals_done {
            let batch = read_seals(&mut tx, seal_cursor, BATCH, horizon).await?;
            seals_done = (batch.len() as i64) < BATCH;
            if let Some(last) = batch.last() {
                seal_cursor = last.chain_index;
            }
            seals.extend(batch);
        }
        match (events.pop_front(), seals.front().copied()) {
            (None, None) => break,
            (None, Some(seal)) => {
                seals.pop_front();
                verifier.orphan_seal(seal);
            }
            (Some(event), seal) => {
                let position = event.log_position();
                match seal {
                    Some(seal) if seal.position == position => {
                        seals.pop_front();
                        verifier.event(position, &canonical_of(&event)?, Some(seal));
                    }
                    Some(seal) if order_key(seal.position) < order_key(position) => {
                        seals.pop_front();
                        verifier.orphan_seal(seal);
                        events.push_front(event);
                    }
                    _ => verifier.event(position, &canonical_of(&event)?, None),
                }
            }
        }
    }
    tx.rollback().await?;
    Ok(verifier.finish())
}

/// Whether the log still reaches `checkpoint`: the seal at its tree size
/// names its last event, that event is there, and it hashes, after the
/// seal before it, to the checkpoint's head.
async fn anchor_holds(
    conn: &mut PgConnection,
    checkpoint: &OpenedCheckpoint,
    horizon: i64,
) -> anyhow::Result<bool> {
    let size = checkpoint.tree_size as i64;
    let seals = read_seals(conn, size - 2, 2, horizon).await?;
    let (previous, at) = match seals.as_slice() {
        [at] if size == 1 && at.chain_index == 1 => (GENESIS, *at),
        [before, at] if before.chain_index == size - 1 && at.chain_index == size => {
            (before.hash, *at)
        }
        _ => return Ok(false),
    };
    if at.position != checkpoint.last {
        return Ok(false);
    }
    let before =
        store::read_settled_below(conn, before_position(checkpoint.last), 1, horizon).await?;
    let Some(event) = before
        .first()
        .filter(|event| event.log_position() == checkpoint.last)
    else {
        return Ok(false);
    };
    Ok(chain_next(&previous, &canonical_of(event)?) == checkpoint.head)
}

/// The place just before `position` in the order (so a read "after" it
/// starts at `position` itself).
fn before_position(position: LogPosition) -> LogPosition {
    LogPosition {
        transaction_id: position.transaction_id,
        position: position.position - 1,
    }
}

fn order_key(position: LogPosition) -> (i64, i64) {
    (position.transaction_id, position.position)
}

async fn read_seals(
    conn: &mut PgConnection,
    after_index: i64,
    limit: i64,
    horizon: i64,
) -> sqlx::Result<Vec<SealRow>> {
    let rows: Vec<(i64, i64, i64, Vec<u8>)> = sqlx::query_as(
        "select chain_index, transaction_id, global_position, chain_hash from event_seals \
         where chain_index > $1 and transaction_id < $3 order by chain_index limit $2",
    )
    .bind(after_index)
    .bind(limit)
    .bind(horizon)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(chain_index, transaction_id, position, hash)| SealRow {
            chain_index,
            position: LogPosition {
                transaction_id,
                position,
            },
            hash: hash.try_into().unwrap_or(GENESIS),
        })
        .collect())
}

/// One line of an `events export` (or of `GET /api/v1/events` NDJSON).
#[derive(Debug, serde::Deserialize)]
struct ExportLine {
    global_position: i64,
    transaction_id: i64,
    recorded_at: String,
    aggregate_type: String,
    aggregate_id: String,
    sequence: i64,
    event_type: String,
    event_version: String,
    payload: Value,
    metadata: Value,
    chain_index: Option<i64>,
    chain_hash: Option<String>,
    checkpoint: Option<String>,
}

/// Verifies an export read from `input` (a full export: from the start of
/// the log), offline: nothing but the file, `key` and any published
/// checkpoints is consulted.
pub fn verify_export(
    input: impl BufRead,
    key: Option<SealVerifier>,
    extra_checkpoints: &[String],
) -> anyhow::Result<VerifyReport> {
    let mut verifier = ChainVerifier::new(key);
    for note in extra_checkpoints {
        verifier.checkpoint(None, note);
    }
    for (number, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let event: ExportLine = serde_json::from_str(&line)
            .with_context(|| format!("line {} is not an exported event", number + 1))?;
        if let Some(note) = &event.checkpoint {
            verifier.checkpoint(None, note);
        }
        let position = LogPosition {
            transaction_id: event.transaction_id,
            position: event.global_position,
        };
        let seal = match (event.chain_index, event.chain_hash.as_deref()) {
            (Some(chain_index), Some(hash)) => Some(SealRow {
                chain_index,
                position,
                hash: parse_hash(hash)
                    .with_context(|| format!("line {}: chain_hash is not a hash", number + 1))?,
            }),
            _ => None,
        };
        let canonical = SealedForm {
            aggregate_id: &event.aggregate_id,
            aggregate_type: &event.aggregate_type,
            event_type: &event.event_type,
            event_version: &event.event_version,
            global_position: event.global_position,
            metadata: &event.metadata,
            payload: &event.payload,
            recorded_at: &event.recorded_at,
            sequence: event.sequence,
            transaction_id: event.transaction_id,
        }
        .canonical_bytes()?;
        verifier.event(position, &canonical, seal);
    }
    Ok(verifier.finish())
}
