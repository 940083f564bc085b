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
        validations_per_address_per_minute: 0,
        notifications: None,
        usage: Default::default(),
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
    assert!(checked >= 20, "only {checked} operations documented");

    // And the other way: every operation the router serves is documented,
    // read from `app` in lib.rs, except the document itself and the GET twin
    // of the validation POST (the seed's client sends only a header).
    let source = include_str!("../src/lib.rs");
    let body = &source[source.find("pub fn app(").expect("lib.rs has `app`")..];
    let body = &body[..body.find("\n}\n").expect("`app` ends")];
    let mut undocumented = Vec::new();
    for line in body.lines() {
        let Some(at) = line.find(".route(\"") else { continue };
        let (path, handlers) =
            line[at + ".route(\"".len()..].split_once('"').expect("a route path is a string literal");
        for (call, method) in [("get(", "get"), ("post(", "post")] {
            if !handlers.contains(call)
                || [("get", "/openapi.json"), ("get", "/license/validate")].contains(&(method, path))
            {
                continue;
            }
            let documented = [path.to_owned(), format!("/api/v1{path}")]
                .iter()
                .any(|full| paths.get(full).is_some_and(|operations| operations.get(method).is_some()));
            if !documented {
                undocumented.push(format!("{method} {path}"));
            }
        }
    }
    assert!(undocumented.is_empty(), "served but not in the OpenAPI document: {undocumented:?}");
}

/// Every schema the document refers to is in it, so a client generated
/// from it (or a validator reading it) finds every response body and
/// every error's problem+json.
#[test]
fn every_schema_the_document_refers_to_is_in_it() {
    use utoipa::OpenApi;
    let document = serde_json::to_value(ledger_api::openapi::ApiDoc::openapi()).unwrap();
    let schemas = document["components"]["schemas"].as_object().cloned().unwrap_or_default();
    let mut refs = Vec::new();
    collect_refs(&document, &mut refs);
    assert!(refs.iter().any(|r| r == "#/components/schemas/Problem"), "errors refer to the Problem schema");
    let missing: Vec<&String> = refs
        .iter()
        .filter(|r| r.strip_prefix("#/components/schemas/").is_none_or(|name| !schemas.contains_key(name)))
        .collect();
    assert!(missing.is_empty(), "referred to but not in the document: {missing:?}");
}

fn collect_refs(value: &serde_json::Value, refs: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            if let Some(serde_json::Value::String(target)) = map.get("$ref") {
                refs.push(target.clone());
            }
            map.values().for_each(|v| collect_refs(v, refs));
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_refs(v, refs)),
        _ => {}
    }
}
