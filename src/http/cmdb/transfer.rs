//! Assets in and out: CSV export and import, and QR labels of short codes.
//!
//! Import validates each row as `POST /api/v1/assets` does and lists each
//! bad row by its line number (the header is line 1); the valid rows are
//! registered by the asset aggregate and appended in one statement: all of
//! them or none, fast enough for the largest body (1 MiB) well inside the
//! request timeout, and in file order, so an export lists them that way.

use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use qrcode::QrCode;
use serde::Serialize;
use uuid::Uuid;

use super::assets::{register_many, CreateAsset};
use crate::http::error::ApiError;
use crate::http::extract::{ApiPath, Authenticated, Operator, RequestContext};
use crate::http::response::Answer;
use crate::http::AppState;

/// The largest import body API.md allows.
pub const IMPORT_MAX_BYTES: usize = 1024 * 1024;

/// The export's columns, in order; the import reads the same names.
pub const CSV_COLUMNS: [&str; 7] = [
    "short_code",
    "name",
    "asset_type",
    "environment",
    "lifecycle_state",
    "location",
    "description",
];

/// What a spreadsheet would take for the start of a formula (CSV
/// injection, OWASP): such a cell is exported behind a `'`, which the
/// import takes off again.
const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// A cell as exported: defused when a spreadsheet would run it. A cell
/// that starts with `'` gets one more, so that every cell round-trips.
fn defused(cell: &str) -> std::borrow::Cow<'_, str> {
    if cell.starts_with(FORMULA_STARTS) || cell.starts_with('\'') {
        std::borrow::Cow::Owned(format!("'{cell}"))
    } else {
        std::borrow::Cow::Borrowed(cell)
    }
}

/// A cell as imported: the `'` of [`defused`] taken off.
fn restored(cell: &str) -> &str {
    match cell.strip_prefix('\'') {
        Some(rest) if rest.starts_with(FORMULA_STARTS) || rest.starts_with('\'') => rest,
        _ => cell,
    }
}

type ExportRow = (
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
);

/// `GET /api/v1/assets/export`: every asset, oldest first (assets of one
/// import in file order), as the attachment `assets.csv`.
pub async fn export(
    State(state): State<AppState>,
    _caller: Authenticated,
) -> Result<Response, ApiError> {
    let rows: Vec<ExportRow> = sqlx::query_as(
        "select short_code, name, asset_type, environment, lifecycle_state, location, \
             description \
         from assets order by created_at, registration_position, id",
    )
    .fetch_all(&state.pool)
    .await?;
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer
        .write_record(CSV_COLUMNS)
        .map_err(ApiError::internal)?;
    for (short_code, name, asset_type, environment, lifecycle_state, location, description) in &rows
    {
        writer
            .write_record([
                short_code.as_str(),
                &defused(name),
                asset_type,
                environment,
                lifecycle_state,
                &defused(location.as_deref().unwrap_or("")),
                &defused(description.as_deref().unwrap_or("")),
            ])
            .map_err(ApiError::internal)?;
    }
    let body = writer.into_inner().map_err(ApiError::internal)?;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            ),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static("attachment; filename=\"assets.csv\""),
            ),
        ],
        body,
    )
        .into_response())
}

/// One refused row of an import.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_defused_on_export_and_restored_on_import() {
        for cell in [
            "=1+2", "+cmd", "-x", "@sum", "\tx", "plain", "", "'quoted", "'=x", "''", "a=b",
        ] {
            assert_eq!(restored(&defused(cell)), cell);
        }
        assert_eq!(defused("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(defused("web-01"), "web-01");
    }
}

#[derive(Debug, Serialize)]
pub struct RowError {
    /// The row's line number in the file; the header is line 1.
    row: u64,
    error: String,
}

/// The answer of an import.
#[derive(Debug, Serialize)]
pub struct ImportReport {
    created: u64,
    errors: Vec<RowError>,
}

fn unreadable_upload(status: StatusCode) -> ApiError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge
    } else {
        ApiError::invalid_field("file", "the upload could not be read")
    }
}

/// The CSV of an import: the `file` part of a multipart upload, or the
/// raw body.
async fn upload(state: &AppState, request: Request) -> Result<Bytes, ApiError> {
    let multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("multipart/form-data"));
    if !multipart {
        return Bytes::from_request(request, state)
            .await
            .map_err(|rejection| unreadable_upload(rejection.status()));
    }
    let mut form = Multipart::from_request(request, state)
        .await
        .map_err(|rejection| unreadable_upload(rejection.status()))?;
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|error| unreadable_upload(error.status()))?
    {
        if field.name() == Some("file") {
            return field
                .bytes()
                .await
                .map_err(|error| unreadable_upload(error.status()));
        }
    }
    Err(ApiError::invalid_field(
        "file",
        "a multipart upload needs a `file` part",
    ))
}

/// Where each known column sits in the file.
struct ColumnIndex {
    name: usize,
    asset_type: usize,
    environment: Option<usize>,
    lifecycle_state: Option<usize>,
    location: Option<usize>,
    description: Option<usize>,
}

impl ColumnIndex {
    /// Reads the header: `name` and `asset_type` are required, the other
    /// export columns optional (`short_code` is ignored: every row gets a
    /// fresh code), anything else is refused.
    fn from_header(header: &csv::StringRecord) -> Result<Self, ApiError> {
        let names: Vec<String> = header
            .iter()
            .map(|name| name.trim().to_lowercase())
            .collect();
        let position = |column: &str| names.iter().position(|name| name == column);
        let unknown: Vec<&str> = names
            .iter()
            .map(String::as_str)
            .filter(|name| !CSV_COLUMNS.contains(name))
            .collect();
        if !unknown.is_empty() {
            return Err(ApiError::invalid_field(
                "file",
                format!(
                    "unknown column(s) {}; expected {}",
                    unknown.join(", "),
                    CSV_COLUMNS.join(",")
                ),
            ));
        }
        match (position("name"), position("asset_type")) {
            (Some(name), Some(asset_type)) => Ok(Self {
                name,
                asset_type,
                environment: position("environment"),
                lifecycle_state: position("lifecycle_state"),
                location: position("location"),
                description: position("description"),
            }),
            _ => Err(ApiError::invalid_field(
                "file",
                "the header must name the columns name and asset_type",
            )),
        }
    }

    /// The registration a row asks for; empty cells are absent values.
    fn request(&self, record: &csv::StringRecord) -> CreateAsset {
        let cell = |index: usize| restored(record.get(index).unwrap_or("")).to_string();
        let optional = |index: Option<usize>| {
            index
                .and_then(|index| record.get(index))
                .map(restored)
                .map(str::trim)
                .filter(|value| !value.is_empty())
                .map(str::to_string)
        };
        CreateAsset {
            name: cell(self.name),
            asset_type: cell(self.asset_type).trim().to_string(),
            environment: optional(self.environment),
            lifecycle_state: optional(self.lifecycle_state),
            location: optional(self.location),
            description: optional(self.description),
            ..CreateAsset::default()
        }
    }
}

/// `POST /api/v1/assets/import`: multipart `file` or a raw CSV body of at
/// most 1 MiB → `{created, errors: [{row, error}]}`. A row refused for its
/// content is listed and the others are registered together; a failure of
/// the service itself (database unreachable) registers none.
pub async fn import(
    State(state): State<AppState>,
    operator: Operator,
    context: RequestContext,
    request: Request,
) -> Result<Answer<ImportReport>, ApiError> {
    let body = upload(&state, request).await?;
    let body = body.strip_prefix(b"\xef\xbb\xbf").unwrap_or(&body);
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(body);
    let columns =
        ColumnIndex::from_header(reader.headers().map_err(|error| {
            ApiError::invalid_field("file", format!("not readable CSV: {error}"))
        })?)?;
    let mut report = ImportReport {
        created: 0,
        errors: Vec::new(),
    };
    let mut valid = Vec::new();
    for record in reader.records() {
        let record = match record {
            Ok(record) => record,
            Err(error) => {
                report.errors.push(RowError {
                    row: error.position().map_or(0, csv::Position::line),
                    error: format!("not readable CSV: {error}"),
                });
                continue;
            }
        };
        let row = record.position().map_or(0, csv::Position::line);
        match columns.request(&record).validate(&state).await {
            Ok(asset) => valid.push(asset),
            Err(refused) if refused.status().is_client_error() => report.errors.push(RowError {
                row,
                error: refused.to_string(),
            }),
            Err(failure) => return Err(failure),
        }
    }
    if valid.is_empty() {
        return Ok(Answer::ok(report));
    }
    let created = valid.len() as u64;
    let position = register_many(&state, valid, &context.metadata(operator.actor)).await?;
    report.created = created;
    if let Some(position) = position {
        state.await_read_models(position).await;
    }
    Ok(Answer::ok(report).with_position(position))
}

async fn short_code(state: &AppState, id: Uuid) -> Result<String, ApiError> {
    sqlx::query_scalar("select short_code from assets where id = $1")
        .bind(id)
        .fetch_optional(&state.pool)
        .await?
        .ok_or(ApiError::NotFound("asset"))
}

/// Pixels per QR module in the PNG.
const PNG_MODULE_PIXELS: usize = 8;
/// The quiet zone around the code, in modules (the standard's minimum).
const QUIET_MODULES: usize = 4;

/// The code as an 8-bit grayscale PNG with its quiet zone.
fn render_png(code: &QrCode) -> Result<Vec<u8>, ApiError> {
    let modules = code.width();
    let colors = code.to_colors();
    let side_modules = modules + 2 * QUIET_MODULES;
    let side = side_modules * PNG_MODULE_PIXELS;
    let mut pixels = vec![255u8; side * side];
    for (index, color) in colors.iter().enumerate() {
        if *color != qrcode::Color::Dark {
            continue;
        }
        let (row, column) = (
            index / modules + QUIET_MODULES,
            index % modules + QUIET_MODULES,
        );
        for y in row * PNG_MODULE_PIXELS..(row + 1) * PNG_MODULE_PIXELS {
            pixels[y * side + column * PNG_MODULE_PIXELS..][..PNG_MODULE_PIXELS].fill(0);
        }
    }
    let side = u32::try_from(side).map_err(ApiError::internal)?;
    let mut png = Vec::new();
    let mut encoder = png::Encoder::new(&mut png, side, side);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(ApiError::internal)?;
    writer
        .write_image_data(&pixels)
        .map_err(ApiError::internal)?;
    writer.finish().map_err(ApiError::internal)?;
    Ok(png)
}

fn qr_of(short_code: &str) -> Result<QrCode, ApiError> {
    QrCode::new(short_code.as_bytes()).map_err(ApiError::internal)
}

fn image(content_type: &'static str, body: Vec<u8>) -> Response {
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response()
}

/// `GET /api/v1/assets/{id}/qr.png`.
pub async fn qr_png(
    State(state): State<AppState>,
    _caller: Authenticated,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Response, ApiError> {
    let code = qr_of(&short_code(&state, id).await?)?;
    Ok(image("image/png", render_png(&code)?))
}

/// `GET /api/v1/assets/{id}/qr.svg`.
pub async fn qr_svg(
    State(state): State<AppState>,
    _caller: Authenticated,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Response, ApiError> {
    let code = qr_of(&short_code(&state, id).await?)?;
    let svg = code
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(256, 256)
        .quiet_zone(true)
        .build();
    Ok(image("image/svg+xml", svg.into_bytes()))
}
