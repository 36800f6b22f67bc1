//! `sentryops events export`: the event log in global order, as NDJSON or
//! CSV on stdout, with a progress bar on stderr. Both formats carry the
//! line of `GET /api/v1/events` ([`exported_line`]): secrets as digests,
//! each event's seal and checkpoint, so an NDJSON export verifies offline
//! (`sentryops audit verify --file`).

use std::io::Write;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sentryops_projections::seal::{exported_line, write_exported_line};
use sentryops_projections::store::{read_settled_filtered, LogFilter, SealedEvent};
use sentryops_projections::LogPosition;
use sqlx::PgPool;

use super::ExportFormat;

const BATCH: i64 = 5000;

/// The CSV columns: the fields of an exported line.
const CSV_COLUMNS: [&str; 13] = [
    "global_position",
    "transaction_id",
    "recorded_at",
    "aggregate_type",
    "aggregate_id",
    "sequence",
    "event_type",
    "event_version",
    "payload",
    "metadata",
    "chain_index",
    "chain_hash",
    "checkpoint",
];

/// Writes every settled event after global position `after`.
pub async fn export(pool: &PgPool, after: i64, format: ExportFormat) -> anyhow::Result<()> {
    // One snapshot for the whole export: the seals on its lines then form
    // one prefix of the order, as the sealer wrote them, so the export
    // verifies offline exactly as the log did at that moment.
    let mut conn = pool.begin().await?;
    sqlx::query("set transaction isolation level repeatable read, read only")
        .execute(&mut *conn)
        .await?;
    let mut cursor = if after <= 0 {
        LogPosition::START
    } else {
        let transaction_id: Option<i64> = sqlx::query_scalar(
            "select transaction_id::text::bigint from events where global_position = $1",
        )
        .bind(after)
        .fetch_optional(&mut *conn)
        .await?;
        LogPosition {
            transaction_id: transaction_id
                .with_context(|| format!("no event at position {after}"))?,
            position: after,
        }
    };
    let total: i64 = sqlx::query_scalar(
        "select count(*) from events where (transaction_id, global_position) > ($1::text::xid8, $2)",
    )
    .bind(cursor.transaction_id.to_string())
    .bind(cursor.position)
    .fetch_one(&mut *conn)
    .await?;
    let bar =
        ProgressBar::with_draw_target(Some(total.max(0) as u64), ProgressDrawTarget::stderr())
            .with_style(
                ProgressStyle::with_template("[{bar:40}] {pos}/{len} events ({per_sec})")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
    let stdout = std::io::stdout();
    let out = std::io::BufWriter::new(stdout.lock());
    let mut sink = match format {
        ExportFormat::Csv => {
            let mut writer = csv::Writer::from_writer(out);
            writer.write_record(CSV_COLUMNS)?;
            Sink::Csv(Box::new(writer))
        }
        ExportFormat::Ndjson => Sink::Ndjson(out, Vec::with_capacity(1024)),
    };
    loop {
        let events = read_settled_filtered(&mut conn, cursor, BATCH, &LogFilter::default()).await?;
        let Some(last) = events.last().map(|sealed| sealed.event.log_position()) else {
            break;
        };
        for event in events {
            sink.write(event)?;
            bar.inc(1);
        }
        cursor = last;
    }
    sink.finish()?;
    bar.finish_and_clear();
    Ok(())
}

enum Sink<W: Write> {
    Csv(Box<csv::Writer<W>>),
    /// The output and the buffer each line is written into.
    Ndjson(W, Vec<u8>),
}

impl<W: Write> Sink<W> {
    fn write(&mut self, event: SealedEvent) -> anyhow::Result<()> {
        // The stored payload, at its stored version (not upcast): the export
        // is the log as written.
        match self {
            Sink::Csv(writer) => {
                let line = exported_line(&event)?;
                let text = |field: &str| match &line[field] {
                    serde_json::Value::Null => String::new(),
                    serde_json::Value::String(text) => text.clone(),
                    other => other.to_string(),
                };
                writer.write_record(CSV_COLUMNS.map(text))?
            }
            Sink::Ndjson(out, line) => {
                line.clear();
                write_exported_line(&event, line)?;
                line.push(b'\n');
                out.write_all(line)?;
            }
        }
        Ok(())
    }

    fn finish(self) -> anyhow::Result<()> {
        match self {
            Sink::Csv(mut writer) => writer.flush()?,
            Sink::Ndjson(mut out, _) => out.flush()?,
        }
        Ok(())
    }
}
