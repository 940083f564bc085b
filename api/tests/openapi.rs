//! The OpenAPI document is served and matches the router: every path it
//! documents is routed (an unrouted path would answer the fallback's 404).

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

#[tokio::test]
async fn every_documented_operation_is_routed() {
    let dir = tempfile::tempdir().unwrap();
    let config = ledger_api::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_owned(),
        database_url: None,
        clock: "manual:2026-01-10T00:00:00Z".into(),
        operator_token: Some("o".repeat(40)),
        auditor_token: Some("a".repeat(40)),
        policy: Default::default(),
    };
    let app = ledger_api::app(ledger_api::open(&config).await.unwrap());
    let response =
        app.clone().oneshot(Request::get("/api/v1/openapi.json").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let document: serde_json::Value =
        serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    let paths = document["paths"].as_object().unwrap();
    let nil = uuid::Uuid::nil().to_string();
    let mut checked = 0;
    for (path, operations) in paths {
        let concrete = ["{org_id}", "{user_id}", "{token_id}", "{license_id}"]
            .iter()
            .fold(path.clone(), |path, parameter| path.replace(parameter, &nil));
        for method in operations.as_object().unwrap().keys() {
            let method: Method = method.to_uppercase().parse().unwrap();
            let request = Request::builder().method(method.clone()).uri(&concrete).body(Body::empty()).unwrap();
            let status = app.clone().oneshot(request).await.unwrap().status();
            // Without credentials a routed operation answers 401, or 200/503
            // for the public ones; never the fallback's 404 or a 405.
            assert_ne!(status, StatusCode::NOT_FOUND, "{method} {path} is documented but not routed");
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path} is documented but not routed");
            checked += 1;
        }
    }
    // The router serves 23 operations: these 22 and the document itself.
    assert_eq!(checked, 22, "every operation of the router is documented");
}
