//! The route × role matrix (SPEC section 1): every route of
//! `ROUTE_FLOORS`, called without a token and as each role, answers 401,
//! 403, or gets past authorization, as its floor says.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use sentryops::http::{Floor, ROUTE_FLOORS};
use serde_json::json;

use crate::helpers::{spawn_app, TestApp};

const PASSWORD: &str = "correct horse battery";
const ROLES: [&str; 4] = ["viewer", "operator", "admin", "auditor"];

async fn fresh_token(app: &TestApp, role: &str) -> String {
    let response = app
        .send(
            Request::post("/api/v1/auth/login")
                .header("content-type", "application/json")
                .body(Body::from(
                    json!({ "email": format!("{role}@rbac.example.com"), "password": PASSWORD })
                        .to_string(),
                ))
                .expect("request"),
        )
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text);
    response.json()["data"]["access_token"]
        .as_str()
        .expect("token")
        .to_string()
}

fn allowed(floor: Floor, role: &str) -> bool {
    match floor {
        Floor::Public | Floor::Any => true,
        Floor::Operator => role == "operator" || role == "admin",
        Floor::Admin => role == "admin",
        Floor::Auditor => role == "auditor" || role == "admin",
    }
}

#[tokio::test]
async fn every_route_enforces_its_floor_for_every_role() {
    let app = spawn_app().await;
    for role in ROLES {
        let created = app
            .create_user(&format!("{role}@rbac.example.com"), role)
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    }
    let some_id = uuid::Uuid::new_v4().to_string();
    for (method, template, floor) in ROUTE_FLOORS {
        let path = template
            .replace("{id}", &some_id)
            .replace("{entity_type}", "user")
            .replace("{entity_id}", &some_id)
            .replace("{tag_id}", &some_id)
            .replace("{asset_id}", &some_id);
        let request = |token: Option<&str>| {
            let mut builder = Request::builder()
                .method(*method)
                .uri(&path)
                .header("content-type", "application/json");
            if let Some(token) = token {
                builder = builder.header("authorization", format!("Bearer {token}"));
            }
            builder.body(Body::from("{}")).expect("request")
        };
        let anonymous = app.send(request(None)).await;
        if *floor == Floor::Public {
            assert_ne!(
                anonymous.status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} is public"
            );
        } else {
            assert_eq!(
                anonymous.status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} without a token"
            );
        }
        for role in ROLES {
            // A fresh session per call: some routes end the caller's sessions.
            let token = fresh_token(&app, role).await;
            let response = app.send(request(Some(&token))).await;
            if allowed(*floor, role) {
                assert!(
                    response.status != StatusCode::UNAUTHORIZED
                        && response.status != StatusCode::FORBIDDEN,
                    "{method} {path} as {role}: {} {}",
                    response.status,
                    response.text
                );
            } else {
                response.assert_error(StatusCode::FORBIDDEN, "forbidden");
            }
        }
    }
    app.stop().await;
}
