//! `sentryops events export`: the event log in global order, as NDJSON or
//! CSV on stdout, with a progress bar on stderr. Secret payload keys are
//! redacted (the hashes stay in the store, never in an export).

use std::io::Write;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sentryops_events::catalog::redact_secrets;
use sentryops_projections::store::{read_settled, StoredEvent};
use sentryops_projections::LogPosition;
use sqlx::PgPool;
use time::format_description::well_known::Rfc3339;

use super::ExportFormat;

const BATCH: i64 = 5000;

/// Writes every settled event after global position `after`.
pub async fn export(pool: &PgPool, after: i64, format: ExportFormat) -> anyhow::Result<()> {
    let mut conn = pool.acquire().await?;
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
            writer.write_record([
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
            ])?;
            Sink::Csv(Box::new(writer))
        }
        ExportFormat::Ndjson => Sink::Ndjson(out),
    };
    loop {
        let events = read_settled(&mut conn, cursor, BATCH).await?;
        let Some(last) = events.last().map(StoredEvent::log_position) else {
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
    Ndjson(W),
}

impl<W: Write> Sink<W> {
    fn write(&mut self, event: StoredEvent) -> anyhow::Result<()> {
        // The stored payload, at its stored version (not upcast): the export
        // is the log as written.
        let mut payload: serde_json::Value =
            serde_json::from_str(event.payload.as_deref().unwrap_or("null"))?;
        redact_secrets(&mut payload);
        let recorded_at = event.recorded_at.format(&Rfc3339)?;
        match self {
            Sink::Csv(writer) => writer.write_record([
                event.global_position.to_string(),
                event.transaction_id.to_string(),
                recorded_at,
                event.aggregate_type,
                event.aggregate_id,
                event.sequence.to_string(),
                event.event_type,
                event.event_version,
                payload.to_string(),
                event.metadata.to_string(),
            ])?,
            Sink::Ndjson(out) => {
                // The shape of `GET /api/v1/events`, one line per event.
                let line = crate::http::events::exported_event(&event)?;
                serde_json::to_writer(&mut *out, &line)?;
                out.write_all(b"\n")?;
            }
        }
        Ok(())
    }

    fn finish(self) -> anyhow::Result<()> {
        match self {
            Sink::Csv(mut writer) => writer.flush()?,
            Sink::Ndjson(mut out) => out.flush()?,
        }
        Ok(())
    }
}
