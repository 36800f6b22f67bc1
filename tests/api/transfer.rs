//! CSV export and import, and QR labels (API.md "CMDB").

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::json;

use crate::assets::{create_asset, names};
use crate::helpers::{spawn_app, Caller, TestApp, TestResponse};

async fn import(app: &TestApp, caller: &Caller, content_type: &str, body: Vec<u8>) -> TestResponse {
    app.send(
        Request::post("/api/v1/assets/import")
            .header("authorization", format!("Bearer {}", caller.token))
            .header("content-type", content_type)
            .body(Body::from(body))
            .expect("request"),
    )
    .await
}

async fn export(app: &TestApp, caller: &Caller) -> TestResponse {
    let exported = app
        .call(caller, "GET", "/api/v1/assets/export", None, &[])
        .await;
    assert_eq!(exported.status, StatusCode::OK, "{}", exported.text);
    exported
}

/// The rows of an export without the short codes (a re-import draws new
/// ones).
fn rows_without_codes(csv: &str) -> Vec<String> {
    csv.lines()
        .map(|line| {
            line.split_once(',')
                .map_or(line, |(_, rest)| rest)
                .to_string()
        })
        .collect()
}

#[tokio::test]
async fn an_export_imported_into_an_empty_database_exports_the_same_rows() {
    let source = spawn_app().await;
    let operator = source.caller("operator").await;
    for body in [
        json!({ "name": "web-01", "asset_type": "host", "location": "rack 1, row \"B\"" }),
        json!({ "name": "core-sw", "asset_type": "network_device", "environment": "staging",
                "lifecycle_state": "maintenance", "description": "two\nlines" }),
        json!({ "name": "crm", "asset_type": "software_license", "environment": "dev" }),
        // A spreadsheet would run this: exported defused, imported as is.
        json!({ "name": "=HYPERLINK(\"http://x\")", "asset_type": "service" }),
    ] {
        create_asset(&source, &operator, body).await;
    }
    let exported = export(&source, &operator).await;
    assert_eq!(
        exported.header("content-type"),
        Some("text/csv; charset=utf-8")
    );
    assert_eq!(
        exported.header("content-disposition"),
        Some("attachment; filename=\"assets.csv\"")
    );
    assert!(exported.text.starts_with(
        "short_code,name,asset_type,environment,lifecycle_state,location,description\n"
    ));
    source.stop().await;

    let target = spawn_app().await;
    let operator = target.caller("operator").await;
    let imported = import(
        &target,
        &operator,
        "text/csv",
        exported.text.clone().into_bytes(),
    )
    .await;
    assert_eq!(imported.status, StatusCode::OK, "{}", imported.text);
    assert_eq!(
        imported.json()["data"],
        json!({ "created": 4, "errors": [] })
    );
    assert!(imported.header("x-event-position").is_some());
    let again = export(&target, &operator).await;
    assert_eq!(
        rows_without_codes(&again.text),
        rows_without_codes(&exported.text)
    );
    target.stop().await;
}

#[tokio::test]
async fn bad_rows_are_listed_by_line_and_good_rows_still_import() {
    let app = spawn_app().await;
    let operator = app.caller("operator").await;
    let csv = "name,asset_type,environment\n\
               ok-1,host,prod\n\
               ,host,prod\n\
               bad-type,server,prod\n\
               \"multi\nline\",service,\n\
               bad-env,host,qa\n";
    let imported = import(&app, &operator, "text/csv", csv.as_bytes().to_vec()).await;
    assert_eq!(imported.status, StatusCode::OK, "{}", imported.text);
    let report = imported.json()["data"].clone();
    // A line break is a control character: no name may hold one.
    assert_eq!(report["created"], 1);
    let rows: Vec<i64> = report["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|error| error["row"].as_i64().expect("row"))
        .collect();
    assert_eq!(rows, [3, 4, 5, 7], "{report}");
    assert!(report["errors"][1]["error"]
        .as_str()
        .expect("message")
        .contains("asset_type"));

    // Multipart with a `file` part.
    let boundary = "sentryops-boundary";
    let multipart = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.csv\"\r\n\
         Content-Type: text/csv\r\n\r\nname,asset_type\nfrom-form,cloud_resource\n\r\n--{boundary}--\r\n"
    );
    let uploaded = import(
        &app,
        &operator,
        &format!("multipart/form-data; boundary={boundary}"),
        multipart.into_bytes(),
    )
    .await;
    assert_eq!(uploaded.status, StatusCode::OK, "{}", uploaded.text);
    assert_eq!(uploaded.json()["data"]["created"], 1);

    let before = app.event_count().await;
    for header in ["name,asset_type,colour\nx,host,red\n", "name\nx\n", ""] {
        import(&app, &operator, "text/csv", header.as_bytes().to_vec())
            .await
            .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    }
    let mut oversized = b"name,asset_type\n".to_vec();
    while oversized.len() <= 1024 * 1024 {
        oversized.extend_from_slice(b"some-host-with-a-long-name,host\n");
    }
    import(&app, &operator, "text/csv", oversized)
        .await
        .assert_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    assert_eq!(
        app.event_count().await,
        before,
        "refused imports append nothing"
    );
    app.stop().await;
}

#[tokio::test]
async fn qr_labels_encode_the_short_code_as_png_and_svg() {
    let app = spawn_app().await;
    let operator = app.caller("operator").await;
    let viewer = app.caller("viewer").await;
    let asset = create_asset(
        &app,
        &operator,
        json!({ "name": "printer", "asset_type": "host" }),
    )
    .await;
    let id = asset["id"].as_str().expect("id");
    let png = app
        .send(
            Request::get(format!("/api/v1/assets/{id}/qr.png"))
                .header("authorization", format!("Bearer {}", viewer.token))
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    assert_eq!(png.status, StatusCode::OK);
    assert_eq!(png.header("content-type"), Some("image/png"));
    let short_code = asset["short_code"].as_str().expect("code");
    let code = qrcode::QrCode::new(short_code.as_bytes()).expect("code");
    // The picture holds the code's modules: decode it and sample the
    // centre of each module (8 px each, after a 4-module quiet zone).
    let mut decoder = png::Decoder::new(std::io::Cursor::new(png.bytes.clone()))
        .read_info()
        .expect("a PNG");
    let mut pixels = vec![0; decoder.output_buffer_size().expect("size")];
    let frame = decoder.next_frame(&mut pixels).expect("frame");
    let width = code.width();
    assert_eq!(frame.width as usize, (width + 8) * 8);
    let dark_in_png: Vec<bool> = (0..width * width)
        .map(|index| {
            let (row, column) = (index / width + 4, index % width + 4);
            pixels[(row * 8 + 4) * frame.width as usize + column * 8 + 4] == 0
        })
        .collect();
    let dark_in_code: Vec<bool> = code
        .to_colors()
        .into_iter()
        .map(|color| color == qrcode::Color::Dark)
        .collect();
    assert_eq!(dark_in_png, dark_in_code);
    let svg = app
        .call(
            &viewer,
            "GET",
            &format!("/api/v1/assets/{id}/qr.svg"),
            None,
            &[],
        )
        .await;
    assert_eq!(svg.status, StatusCode::OK);
    assert_eq!(svg.header("content-type"), Some("image/svg+xml"));
    assert!(svg.text.contains("<svg"), "{}", svg.text);
    let expected = code
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(256, 256)
        .quiet_zone(true)
        .build();
    assert_eq!(svg.text, expected);
    for format in ["png", "svg"] {
        app.call(
            &viewer,
            "GET",
            &format!("/api/v1/assets/{}/qr.{format}", uuid::Uuid::new_v4()),
            None,
            &[],
        )
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    }
    app.stop().await;
}

/// A search's page is found one of two ways (through the search indexes
/// for up to 1,000 matches, by walking the newest-first index beyond):
/// both give newest first, file order within one import, and exact totals.
#[tokio::test]
async fn searches_with_few_and_many_matches_page_alike() {
    let app = spawn_app().await;
    let operator = app.caller("operator").await;
    let mut csv = String::from("name,asset_type,environment\n");
    for n in 0..1_001 {
        csv.push_str(&format!("bulk-{n:04},host,prod\n"));
    }
    let imported = import(&app, &operator, "text/csv", csv.into_bytes()).await;
    assert_eq!(imported.status, StatusCode::OK, "{}", imported.text);
    assert_eq!(imported.json()["data"]["created"], 1_001);
    let page = |query: &'static str| {
        let app = &app;
        let operator = &operator;
        async move {
            let listed = app
                .call(
                    operator,
                    "GET",
                    &format!("/api/v1/assets?{query}"),
                    None,
                    &[],
                )
                .await;
            assert_eq!(listed.status, StatusCode::OK, "{}", listed.text);
            let total = listed.json()["data"]["total"].as_i64().expect("total");
            (names(&listed), total)
        }
    };
    // Many: every row.
    assert_eq!(
        page("q=BULK&limit=3").await,
        (
            vec!["bulk-1000".into(), "bulk-0999".into(), "bulk-0998".into()],
            1_001
        )
    );
    assert_eq!(
        page("q=bulk&environment=prod&offset=999").await,
        (vec!["bulk-0001".into(), "bulk-0000".into()], 1_001)
    );
    // Few: a hundred of them, and none of another environment.
    assert_eq!(
        page("q=bulk-09&limit=2&offset=1").await,
        (vec!["bulk-0998".into(), "bulk-0997".into()], 100)
    );
    assert_eq!(page("q=bulk&environment=dev").await, (vec![], 0));
    // Two characters (the bigram index; no short code has `k-`) and one
    // (a scan; no short code has `u`).
    assert_eq!(
        page("q=k-&limit=1").await,
        (vec!["bulk-1000".into()], 1_001)
    );
    assert_eq!(page("q=bulk-1000").await, (vec!["bulk-1000".into()], 1));
    assert_eq!(page("q=u&offset=1001").await, (vec![], 1_001));
    app.stop().await;
}
