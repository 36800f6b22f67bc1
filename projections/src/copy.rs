//! Rows in PostgreSQL's binary `COPY` format, for projections that write
//! many rows per batch (the audit timeline: one row per event).
//!
//! Binary `COPY` is the cheapest way into a table: the server neither
//! parses parameter arrays (`unnest($1::jsonb[], …)`) nor text, and a batch
//! goes out in chunks while the next rows are still being built, so the
//! server inserts while the projection folds. The format is PostgreSQL's
//! (`COPY … FROM STDIN (FORMAT binary)`, "Binary Format" in the `COPY`
//! reference): a signature and header, then per row a field count and each
//! field as a length-prefixed value in the type's binary send form, then a
//! trailer. Only the types our projections write are here.

use serde::Serialize;
use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

/// The signature, flags (no OIDs) and an empty header extension.
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// A field count of -1 ends the data.
const TRAILER: &[u8] = &(-1i16).to_be_bytes();

/// The length of a NULL field.
const NULL: &[u8] = &(-1i32).to_be_bytes();

/// Microseconds between the Unix epoch and PostgreSQL's, 2000-01-01 UTC.
const POSTGRES_EPOCH_MICROS: i128 = 946_684_800_000_000;

/// How much is built before it is sent: large enough that the per-message
/// overhead vanishes, small enough that the server starts early.
const CHUNK_BYTES: usize = 256 * 1024;

/// Writes rows into a `COPY … FROM STDIN (FORMAT binary)` started on a
/// connection, sending every [`CHUNK_BYTES`].
pub struct BinaryCopy<'c> {
    copy: sqlx::postgres::PgCopyIn<&'c mut PgConnection>,
    buffer: Vec<u8>,
}

impl<'c> BinaryCopy<'c> {
    /// Starts `statement` (a `COPY table (columns) FROM STDIN (FORMAT
    /// binary)`) on `conn`.
    pub async fn start(conn: &'c mut PgConnection, statement: &str) -> sqlx::Result<Self> {
        let copy = conn.copy_in_raw(statement).await?;
        let mut buffer = Vec::with_capacity(CHUNK_BYTES + 4096);
        buffer.extend_from_slice(HEADER);
        Ok(Self { copy, buffer })
    }

    /// Begins a row of `fields` fields; the caller then writes exactly that
    /// many, in the statement's column order.
    pub fn row(&mut self, fields: i16) -> Row<'_> {
        self.buffer.extend_from_slice(&fields.to_be_bytes());
        Row {
            buffer: &mut self.buffer,
        }
    }

    /// Sends what is built if it reached a chunk.
    pub async fn flush_if_full(&mut self) -> sqlx::Result<()> {
        if self.buffer.len() >= CHUNK_BYTES {
            self.copy.send(self.buffer.as_slice()).await?;
            self.buffer.clear();
        }
        Ok(())
    }

    /// Sends the rest and the trailer and ends the `COPY`: the rows are in
    /// (as part of the caller's transaction) or the error says why not.
    pub async fn finish(mut self) -> sqlx::Result<u64> {
        self.buffer.extend_from_slice(TRAILER);
        self.copy.send(self.buffer.as_slice()).await?;
        self.copy.finish().await
    }
}

/// One row being written: each call writes the next field.
pub struct Row<'b> {
    buffer: &'b mut Vec<u8>,
}

impl Row<'_> {
    fn field(self, bytes: &[u8]) -> Self {
        let length = i32::try_from(bytes.len()).expect("a field under 1 GiB");
        self.buffer.extend_from_slice(&length.to_be_bytes());
        self.buffer.extend_from_slice(bytes);
        self
    }

    /// A `bigint`.
    pub fn int8(self, value: i64) -> Self {
        self.field(&value.to_be_bytes())
    }

    /// A `uuid`.
    pub fn uuid(self, value: Uuid) -> Self {
        self.field(value.as_bytes())
    }

    /// A `timestamptz` (microseconds; finer parts are cut, as the server
    /// would round them when it parses text).
    pub fn timestamptz(self, value: OffsetDateTime) -> Self {
        let micros = value.unix_timestamp_nanos() / 1_000 - POSTGRES_EPOCH_MICROS;
        self.int8(i64::try_from(micros).unwrap_or(i64::MAX))
    }

    /// A `text`.
    pub fn text(self, value: &str) -> Self {
        self.field(value.as_bytes())
    }

    /// A nullable `text`.
    pub fn text_or_null(self, value: Option<&str>) -> Self {
        match value {
            Some(value) => self.text(value),
            None => self.null(),
        }
    }

    /// A `jsonb` serialized straight into the buffer (version byte 1, then
    /// the JSON text), or NULL.
    pub fn jsonb_or_null(self, value: Option<&impl Serialize>) -> Self {
        let Some(value) = value else {
            return self.null();
        };
        let length_at = self.buffer.len();
        self.buffer.extend_from_slice(&[0; 4]);
        self.buffer.push(1);
        serde_json::to_writer(&mut *self.buffer, value)
            .expect("serializing JSON into memory succeeds");
        let length = i32::try_from(self.buffer.len() - length_at - 4).expect("a field under 1 GiB");
        self.buffer[length_at..length_at + 4].copy_from_slice(&length.to_be_bytes());
        self
    }

    /// NULL.
    pub fn null(self) -> Self {
        self.buffer.extend_from_slice(NULL);
        self
    }
}
