//! Black-box tests of what the server does at its edge, on the real
//! `ledger` binary: the client address behind a trusted proxy (rate limits,
//! the audit's source IP), the per-address limiter forgetting idle clients,
//! problem+json for every refusal the framework makes (bad paths and
//! queries, wrong methods), who may read `/metrics` and `/ready`'s figures,
//! the `Bearer` scheme in any case, org tokens that expire, and the webhook
//! refusal warnings kept to a trickle.
//!
//! Each test runs on both backends (`backends!` at the bottom).

#[allow(dead_code)]
#[macro_use]
mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use common::{AUDITOR, Backend, Body, OPERATOR, Server, id};
use reqwest::Method;
use serde_json::{Value, json};

backends!(
    behind_a_trusted_proxy_the_client_is_the_forwarded_address,
    the_per_address_limiter_forgets_idle_clients,
    framework_refusals_are_problem_json_and_append_nothing,
    metrics_need_a_token_or_their_own_listener,
    the_bearer_scheme_is_case_insensitive,
    org_tokens_can_expire,
    refused_webhooks_are_logged_at_most_once_per_interval,
);

/// A loopback client address: 127.0.0.`n`.
fn client(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
}

/// An HTTP client whose connections come from `from`.
fn http_from(from: IpAddr) -> reqwest::Client {
    reqwest::Client::builder().local_address(from).timeout(Duration::from_secs(30)).build().unwrap()
}

/// A validation of an unknown key from `from`, through a proxy that says
/// the client is `forwarded`; the status.
async fn validate_via(s: &Server, from: IpAddr, forwarded: Option<&str>) -> u16 {
    let mut request =
        http_from(from).post(s.url("/api/v1/license/validate")).json(&json!({ "licenseKey": "LK1-nope" }));
    if let Some(forwarded) = forwarded {
        request = request.header("x-forwarded-for", forwarded);
    }
    let response = request.send().await.unwrap();
    s.conformed(&Method::POST, "/api/v1/license/validate", response).await.status().as_u16()
}

/// The value of a metric line `name{labels} value` in `/metrics`.
async fn gauge(s: &Server, line_start: &str) -> Option<u64> {
    let text = s.get("/metrics", Some(OPERATOR)).await.text;
    text.lines().find_map(|l| l.strip_prefix(line_start)?.trim().parse().ok())
}

/// `--trusted-proxy 127.0.0.1`: a request from it counts against the
/// forwarded client's address (the right-most one the proxy did not just
/// pass on), any other peer's `X-Forwarded-For` is ignored, and the audit
/// records the client's address.
async fn behind_a_trusted_proxy_the_client_is_the_forwarded_address(backend: Backend) {
    let s = backend.start_with(&["--trusted-proxy", "127.0.0.1", "--validations-per-address-per-minute", "2"]).await;
    let proxy = client(1);
    // Two clients behind the proxy: each has its own two validations.
    for forwarded in ["203.0.113.7", "203.0.113.8"] {
        assert_eq!(validate_via(&s, proxy, Some(forwarded)).await, 200);
        assert_eq!(validate_via(&s, proxy, Some(forwarded)).await, 200);
        assert_eq!(validate_via(&s, proxy, Some(forwarded)).await, 429, "{forwarded}'s third");
    }
    // A client cannot pick its address by adding a forged hop on the left:
    // the right-most untrusted address is the client.
    assert_eq!(validate_via(&s, proxy, Some("198.51.100.1, 203.0.113.9")).await, 200);
    assert_eq!(validate_via(&s, proxy, Some("198.51.100.2, 203.0.113.9")).await, 200);
    assert_eq!(validate_via(&s, proxy, Some("198.51.100.3,203.0.113.9")).await, 429);
    // A peer that is not a trusted proxy is its own address, whatever it says.
    let direct = client(5);
    assert_eq!(validate_via(&s, direct, Some("192.0.2.1")).await, 200);
    assert_eq!(validate_via(&s, direct, Some("192.0.2.2")).await, 200);
    assert_eq!(validate_via(&s, direct, Some("192.0.2.3")).await, 429);
    // The proxy itself, without a header, is limited as itself.
    assert_eq!(validate_via(&s, proxy, None).await, 200);

    // The audit's source IP is the client's.
    let created = http_from(proxy)
        .post(s.url("/api/v1/organizations"))
        .bearer_auth(OPERATOR)
        .header("x-forwarded-for", "198.51.100.23")
        .json(&json!({ "name": "Proxied" }))
        .send()
        .await
        .unwrap();
    let created = s.conformed(&Method::POST, "/api/v1/organizations", created).await;
    assert_eq!(created.status(), 201);
    let org = id(&created.json::<Value>().await.unwrap()["id"]);
    let audit = s.audit(&org).await;
    assert_eq!(audit[0]["sourceIp"], "198.51.100.23", "{audit:?}");
    let spoofed = http_from(direct)
        .post(s.url("/api/v1/organizations"))
        .bearer_auth(OPERATOR)
        .header("x-forwarded-for", "198.51.100.24")
        .json(&json!({ "name": "Direct" }))
        .send()
        .await
        .unwrap();
    let spoofed = s.conformed(&Method::POST, "/api/v1/organizations", spoofed).await;
    let org = id(&spoofed.json::<Value>().await.unwrap()["id"]);
    assert_eq!(s.audit(&org).await[0]["sourceIp"], "127.0.0.5");
}

/// Each client address the validation limiter has seen is an entry; once
/// an address has been idle long enough for its allowance to be whole
/// again, its entry is dropped (`ledger_rate_limiter_keys`).
async fn the_per_address_limiter_forgets_idle_clients(backend: Backend) {
    let s = backend.start_with(&["--trusted-proxy", "127.0.0.1"]).await;
    let line = "ledger_rate_limiter_keys{limiter=\"validations_per_address\"} ";
    for n in 0..200u32 {
        let forwarded = format!("10.1.{}.{}", n / 256, n % 256);
        assert_eq!(validate_via(&s, client(1), Some(&forwarded)).await, 200);
    }
    let held = gauge(&s, line).await.expect("the limiter's size is a metric");
    assert!((1..=200).contains(&held), "{held} addresses held after 200 distinct clients");
    // The limiters are swept every 10 s: within two sweeps every idle
    // address is gone.
    let deadline = std::time::Instant::now() + Duration::from_secs(21);
    while gauge(&s, line).await != Some(0) {
        assert!(std::time::Instant::now() < deadline, "idle addresses were not dropped: {:?}", gauge(&s, line).await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Refusals made before a handler runs (a path segment that is not a
/// UUID, a query that does not parse, a missing query field, a method the
/// route does not have) are problem+json with a code, like every other
/// refusal, on every kind of route, and append nothing.
async fn framework_refusals_are_problem_json_and_append_nothing(backend: Backend) {
    let s = backend.start().await;
    let org = s.create_org("Acme").await;
    s.create_subscription(&org, "starter", "2026-01-01", true).await;
    let before = s.head().await;
    let op = Some(OPERATOR);
    let bad_input = [
        (Method::GET, "/api/v1/subscriptions/not-a-uuid".to_owned()),
        (Method::GET, "/api/v1/organizations?limit=-1".to_owned()),
        (Method::GET, format!("/api/v1/enforcement/{org}/check")),
        (Method::GET, "/api/v1/audit?cursor=minus-one".to_owned()),
        (Method::GET, "/api/v1/organizations/not-a-uuid/licenses".to_owned()),
        (Method::GET, "/api/v1/organizations/not-a-uuid/invoices".to_owned()),
        (Method::GET, format!("/api/v1/organizations/{org}/usage?period=2026-01&period=2026-02")),
        (Method::GET, "/api/v1/organizations/not-a-uuid/usage".to_owned()),
        (Method::POST, "/api/v1/subscriptions/not-a-uuid/upgrade".to_owned()),
        (Method::POST, "/api/v1/organizations/not-a-uuid/users/also-not/deactivate".to_owned()),
        (Method::POST, "/api/v1/licenses/not-a-uuid/deployments/edge-1/release".to_owned()),
        (Method::POST, "/api/v1/licenses/not-a-uuid/revoke".to_owned()),
    ];
    for (method, path) in bad_input {
        let reply = s.send(method.clone(), &path, op, Body::Json(json!({})), &[]).await;
        println!("case: {method} {path}: {} {}", reply.status, reply.text);
        reply.problem(400, "validation_failed");
    }
    let wrong_method = [
        (Method::DELETE, "/api/v1/organizations".to_owned()),
        (Method::PUT, format!("/api/v1/subscriptions/{org}")),
        (Method::GET, "/api/v1/billing/runs".to_owned()),
        (Method::POST, "/health".to_owned()),
        (Method::PATCH, "/api/v1/license/validate".to_owned()),
        (Method::GET, "/api/v1/webhooks/stripe".to_owned()),
    ];
    for (method, path) in wrong_method {
        let reply = s.send(method.clone(), &path, op, Body::None, &[]).await;
        println!("case: {method} {path}: {} {}", reply.status, reply.text);
        reply.problem(405, "method_not_allowed");
    }
    s.get("/api/v1/nowhere", op).await.problem(404, "not_found");
    assert_eq!(s.head().await, before, "refusals append nothing");
}

/// `/metrics` answers only the operator, the auditor and the metrics token
/// (401 without a credential, 403 for an organization's token); with
/// `--metrics-listen` it is served there and not on the API's address.
/// `/health` and `/ready` stay public, but `/ready` shows its figures only
/// to the same callers.
async fn metrics_need_a_token_or_their_own_listener(backend: Backend) {
    const METRICS_TOKEN: &str = "metrics-scraper-token-0123456789abcdef";
    let s = backend.start_with_env(&[], &[("LEDGER_METRICS_TOKEN", METRICS_TOKEN)]).await;
    let org = s.create_org("Acme").await;
    s.create_subscription(&org, "starter", "2026-01-01", true).await;
    let issued =
        s.post(&format!("/api/v1/organizations/{org}/tokens"), Some(OPERATOR), json!({ "role": "admin" })).await;
    let admin = id(&issued.expect(201)["token"]);
    s.get("/metrics", None).await.problem(401, "unauthorized");
    s.get("/metrics", Some("garbage")).await.problem(401, "unauthorized");
    s.get("/metrics", Some(&admin)).await.problem(403, "forbidden");
    for token in [OPERATOR, AUDITOR, METRICS_TOKEN] {
        let reply = s.get("/metrics", Some(token)).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert!(reply.text.contains("active_subscriptions_total{tier=\"starter\"} 1"), "{}", reply.text);
    }
    let head = s.head().await;
    assert_eq!(s.get("/ready", None).await.expect(200), json!({ "status": "ready" }));
    assert_eq!(s.get("/ready", Some(&admin)).await.expect(200), json!({ "status": "ready" }));
    for token in [OPERATOR, AUDITOR, METRICS_TOKEN] {
        let ready = s.get("/ready", Some(token)).await.expect(200);
        assert_eq!(ready, json!({ "status": "ready", "head": head, "applied": head }));
    }
    assert_eq!(s.get("/health", None).await.expect(200), json!({ "status": "ok" }));
    s.stop().await;

    // Its own listener: no token there, and none of it on the API's address.
    let s = backend.start_with(&["--metrics-listen", "127.0.0.1:0"]).await;
    let address = s
        .output()
        .iter()
        .find_map(|l| l.strip_prefix("stdout: ledger metrics on http://")?.split_whitespace().next().map(String::from))
        .unwrap_or_else(|| panic!("the metrics address is printed: {:?}", s.output()));
    let scraped = reqwest::get(format!("http://{address}")).await.unwrap();
    assert_eq!(scraped.status(), 200);
    assert!(scraped.text().await.unwrap().contains("active_subscriptions_total{tier=\"starter\"} 1"));
    s.get("/metrics", Some(OPERATOR)).await.problem(404, "not_found");
    let elsewhere = reqwest::get(format!("http://{address}/api/v1/organizations")).await.unwrap();
    assert_eq!(elsewhere.status(), 404, "the metrics listener serves metrics only");
}

/// RFC 9110: the authentication scheme is case-insensitive.
async fn the_bearer_scheme_is_case_insensitive(backend: Backend) {
    let s = backend.start().await;
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let authorization = format!("{scheme} {OPERATOR}");
        let reply =
            s.send(Method::GET, "/api/v1/organizations", None, Body::None, &[("authorization", &authorization)]).await;
        assert_eq!(reply.status, 200, "{scheme}: {}", reply.text);
    }
    for wrong in [format!("Basic {OPERATOR}"), format!("Bearer{OPERATOR}"), format!("Bearers {OPERATOR}")] {
        let reply = s.send(Method::GET, "/api/v1/organizations", None, Body::None, &[("authorization", &wrong)]).await;
        reply.problem(401, "unauthorized");
    }
}

/// An org token issued with `expiresAt` works until then (by the system
/// clock, a transport check) and answers 401 after; the time must be in
/// the future and at most 366 days ahead. The event records the expiry.
async fn org_tokens_can_expire(backend: Backend) {
    let s = backend.start().await;
    let org = s.create_org("Acme").await;
    let tokens = format!("/api/v1/organizations/{org}/tokens");
    let rfc3339 = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let now = chrono::Utc::now();
    let before = s.head().await;
    for bad in [
        json!("yesterday"),
        json!(rfc3339(now - chrono::Duration::seconds(5))),
        json!(rfc3339(now + chrono::Duration::days(367))),
        json!(12),
    ] {
        let body = json!({ "role": "viewer", "expiresAt": bad });
        s.post(&tokens, Some(OPERATOR), body).await.problem(400, "validation_failed");
    }
    assert_eq!(s.head().await, before, "refused tokens append nothing");

    let expires = rfc3339(now + chrono::Duration::seconds(3));
    let issued = s.post(&tokens, Some(OPERATOR), json!({ "role": "viewer", "expiresAt": expires })).await.expect(201);
    assert_eq!(issued["expiresAt"], expires.as_str());
    let token = id(&issued["token"]);
    let lasting = id(&s.post(&tokens, Some(OPERATOR), json!({ "role": "viewer" })).await.expect(201)["token"]);
    s.get(&format!("/api/v1/organizations/{org}/licenses"), Some(&token)).await.expect(200);
    tokio::time::sleep(Duration::from_secs(4)).await;
    s.get(&format!("/api/v1/organizations/{org}/licenses"), Some(&token)).await.problem(401, "unauthorized");
    s.get(&format!("/api/v1/organizations/{org}/licenses"), Some(&lasting)).await.expect(200);

    // Stored in the token's event, at its new schema version.
    let log = backend.open_log().await;
    let records = log.read_stream(&domain::StreamId::new(format!("org/{org}")).unwrap(), 1, 100).await.unwrap();
    let issued: Vec<_> = records.iter().filter(|r| r.header.event_type == "ApiTokenIssued").collect();
    assert_eq!(issued.len(), 2);
    for record in &issued {
        assert_eq!(record.header.schema_version, 2);
    }
    use domain::event::StoredEvent;
    use domain::organization::OrganizationEvent;
    let decoded =
        OrganizationEvent::decode("ApiTokenIssued", 2, issued[0].payload.as_deref().unwrap()).unwrap().unwrap();
    let OrganizationEvent::ApiTokenIssued(event) = decoded else { panic!("{decoded:?}") };
    assert_eq!(event.expires_at.map(|t| t.to_rfc3339()), Some(expires));
}

/// Fifty badly signed webhooks in a burst are all refused, but logged as
/// one warning; the next warning, an interval later, counts the ones it
/// left out.
async fn refused_webhooks_are_logged_at_most_once_per_interval(backend: Backend) {
    let s = backend.start_with_env(&[], &[("STRIPE_WEBHOOK_SECRET", "whsec_edge_test_secret_0123456789")]).await;
    let refuse = || async {
        let header = [("stripe-signature", "t=1,v1=00")];
        s.send(Method::POST, "/api/v1/webhooks/stripe", None, Body::Raw(b"{}".to_vec()), &header)
            .await
            .problem(400, "invalid_signature");
    };
    for _ in 0..50 {
        refuse().await;
    }
    let warnings = || s.output().into_iter().filter(|l| l.contains("stripe webhook refused")).collect::<Vec<_>>();
    let logged = warnings();
    assert_eq!(logged.len(), 1, "{logged:#?}");
    tokio::time::sleep(Duration::from_secs(11)).await;
    refuse().await;
    let logged = warnings();
    assert_eq!(logged.len(), 2, "{logged:#?}");
    assert!(logged[1].contains("suppressed=49"), "{}", logged[1]);
}
