//! The OpenAPI document is served and matches the router: every path it
//! documents is routed (an unrouted path would answer the fallback's 404).
//! It describes every answer's body and every error; and the check that
//! every black-box reply conforms to it (`common::openapi`) refuses what
//! does not.

#[allow(dead_code, unused_macros)]
mod common;

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
    // read from `app` in lib.rs.
    let source = include_str!("../src/lib.rs");
    let body = &source[source.find("pub fn app(").expect("lib.rs has `app`")..];
    let body = &body[..body.find("\n}\n").expect("`app` ends")];
    let mut undocumented = Vec::new();
    for line in body.lines() {
        let Some(at) = line.find(".route(\"") else { continue };
        let (path, handlers) =
            line[at + ".route(\"".len()..].split_once('"').expect("a route path is a string literal");
        for (call, method) in [("get(", "get"), ("post(", "post")] {
            if !handlers.contains(call) || [("get", "/openapi.json")].contains(&(method, path)) {
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

/// Every operation documents a body for each of its answers: a schema for
/// every success but a 204, and `Problem` as problem+json for every error,
/// with 401 and 403 wherever a credential is taken (the public routes are
/// named); and the refusals that belong to no route are declared.
#[test]
fn every_answer_and_every_error_has_a_body_in_the_document() {
    use utoipa::OpenApi;
    let document = serde_json::to_value(ledger_api::openapi::ApiDoc::openapi()).unwrap();
    let public = [
        "/health",
        "/ready",
        "/metrics",
        "/api/v1/keys",
        "/api/v1/license/validate",
        "/api/v1/license/challenge",
        "/api/v1/usage/report",
        "/api/v1/openapi.json",
    ];
    let public =
        |path: &str| public.contains(&path) || path.starts_with("/api/v1/webhooks/") || path == "/api/v1/checkout";
    let problem = serde_json::json!({ "$ref": "#/components/schemas/Problem" });
    let mut faults = Vec::new();
    let mut responses_seen = 0;
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let responses = operation["responses"].as_object().unwrap();
            for (status, response) in responses {
                responses_seen += 1;
                let content = response["content"].as_object();
                let schema_of = |content_type: &str| content.and_then(|c| c.get(content_type)).map(|m| &m["schema"]);
                // `/ready`'s 503 is its own shape (a load balancer reads it).
                let own_shape = path == "/ready" && status == "503";
                let success = status.starts_with('2');
                if success && status != "204" {
                    if content.is_none_or(|c| c.values().any(|m| m.get("schema").is_none())) {
                        faults.push(format!("{method} {path} {status}: no body schema"));
                    }
                } else if !success && !own_shape && schema_of("application/problem+json") != Some(&problem) {
                    faults.push(format!("{method} {path} {status}: not a Problem as problem+json"));
                }
            }
            if !public(path) {
                for status in ["401", "403"] {
                    if !responses.contains_key(status) {
                        faults.push(format!("{method} {path}: takes a credential but does not document {status}"));
                    }
                }
            }
        }
    }
    for name in ["Unrouted", "MethodNotAllowed"] {
        let declared = &document["components"]["responses"][name]["content"]["application/problem+json"]["schema"];
        if declared != &problem {
            faults.push(format!("components response {name} is not a Problem"));
        }
    }
    assert!(responses_seen >= 100, "only {responses_seen} responses documented");
    assert!(faults.is_empty(), "{}", faults.join("\n"));
}

/// The check every black-box reply goes through refuses what does not
/// conform: a wrong type, a missing field, a field the document does not
/// name, an undocumented status or content type, an unrouted path's
/// non-problem body. And the replies `Server::send` got were checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reply_check_refuses_what_the_document_does_not_describe() {
    use common::openapi;
    use reqwest::{Method, StatusCode};
    use serde_json::{Value, json};

    let backend = common::Backend::sqlite().await;
    let s = backend.start().await;
    let org = s.create_org("Conformance").await;
    s.create_subscription(&org, "professional", "2026-01-01", true).await;
    let path = format!("/api/v1/subscriptions/{org}");
    let real = s.get(&path, Some(common::OPERATOR)).await;
    assert!(openapi::checked() >= 3, "Server::send checks every reply ({} checked)", openapi::checked());
    let document = openapi::document_of(&s).await;
    let reply = |status: u16, content_type: Option<&str>, json: Value| common::Reply {
        status: StatusCode::from_u16(status).unwrap(),
        content_type: content_type.map(str::to_owned),
        text: if json.is_null() { String::new() } else { json.to_string() },
        json,
    };
    let get = Method::GET;
    let checked = document.check(&get, &path, &real).expect("the real reply conforms");
    assert_eq!((checked.operation.as_str(), checked.validated), ("GET /api/v1/subscriptions/{org_id}", true));

    let details = real.json.clone();
    let invalid = "does not validate against its schema";
    let mut refused = Vec::new();
    let mut wrong_type = details.clone();
    wrong_type["tier"] = json!(5);
    refused.push(("a wrong type", invalid, reply(200, Some("application/json"), wrong_type)));
    let mut money = details.clone();
    money["billing"]["amountDue"] = json!(2500.0);
    refused.push(("money as a number", invalid, reply(200, Some("application/json"), money)));
    let mut missing = details.clone();
    missing.as_object_mut().unwrap().remove("tier");
    refused.push(("a missing field", invalid, reply(200, Some("application/json"), missing)));
    let mut extra = details.clone();
    extra["undocumented"] = json!(true);
    refused.push((
        "a field the document does not name",
        "('undocumented' was unexpected)",
        reply(200, Some("application/json"), extra),
    ));
    refused.push((
        "an undocumented status",
        "status 418 is not documented",
        reply(418, Some("application/json"), details.clone()),
    ));
    refused.push((
        "an undocumented content type",
        "content type text/plain is not documented",
        reply(200, Some("text/plain"), details.clone()),
    ));
    refused.push((
        "a problem without its code",
        "\"code\" is a required property",
        reply(404, Some("application/problem+json"), json!({"status": 404})),
    ));
    for (what, why, bad) in refused {
        let failure = document.check(&get, &path, &bad).expect_err(what);
        assert!(failure.contains(&format!("GET {path}")) && failure.contains("body:"), "{what}: {failure}");
        assert!(failure.contains(why), "{what}: expected {why:?} in {failure}");
    }

    // The refusals of no route: checked against the declared responses.
    let unrouted = s.get("/api/v1/no-such-path?x=1", Some(common::OPERATOR)).await;
    assert_eq!(document.check(&get, "/api/v1/no-such-path", &unrouted).unwrap().operation, "GET (unrouted)");
    let html = common::Reply { content_type: Some("text/html".into()), ..reply(404, None, Value::Null) };
    assert!(document.check(&get, "/api/v1/no-such-path", &html).is_err(), "an unrouted path answers problem+json");
    let refused =
        s.send(Method::DELETE, "/api/v1/organizations", Some(common::OPERATOR), common::Body::None, &[]).await;
    refused.problem(405, "method_not_allowed");
}
