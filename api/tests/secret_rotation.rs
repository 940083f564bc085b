//! Rotating the server secret behind the keyed hashes of license keys and
//! API tokens (`usecases::secret_rotation`), against the real binary on
//! SQLite and PostgreSQL: `prepare-secret`, `rotate-secret`,
//! `retire-secret`, with a server running on each stage. Keys, API tokens
//! and staff service tokens issued before keep working during and after
//! the rotation; once the old secret is retired, a server holding only the
//! old secret finds none of them.

#[allow(dead_code)]
#[macro_use]
mod common;

use common::{Backend, OPERATOR, Server, id};
use serde_json::{Value, json};

const VALIDATE: &str = "/api/v1/license/validate";

/// An organization with an admin token and a license key.
struct Customer {
    org: String,
    admin: String,
    key: String,
}

async fn customer(s: &Server, name: &str) -> Customer {
    let org = s.create_org(name).await;
    let tokens = format!("/api/v1/organizations/{org}/tokens");
    let issued = s.post(&tokens, Some(OPERATOR), json!({ "role": "admin" })).await.expect(201);
    let admin = id(&issued["token"]);
    let body = json!({ "organizationId": org, "tier": "starter", "startDate": "2026-01-01", "autoRenew": true });
    let created = s.post("/api/v1/subscriptions", Some(OPERATOR), body).await.expect(201);
    Customer { org, admin, key: id(&created["licenseKey"]) }
}

/// The key's validation code and whether the admin token is accepted.
async fn works(s: &Server, c: &Customer) -> (String, u16) {
    let answer: Value = s.post(VALIDATE, None, json!({ "licenseKey": c.key })).await.expect(200);
    let licenses = format!("/api/v1/organizations/{}/licenses", c.org);
    let status = s.get(&licenses, Some(&c.admin)).await.status.as_u16();
    (answer["code"].as_str().unwrap_or_default().to_owned(), status)
}

/// A staff admin's service token (`ls1_…`).
async fn service_token(s: &Server) -> String {
    let body = json!({ "name": "rotation check", "role": "staff_admin", "expiresInDays": 30 });
    let issued = s.post("/api/v1/staff/tokens", Some(OPERATOR), body).await.expect(201);
    id(&issued["token"])
}

/// The status of a staff admin's read with the service token.
async fn service_status(s: &Server, token: &str) -> u16 {
    s.get("/api/v1/staff/tokens", Some(token)).await.status.as_u16()
}

async fn cli_json(backend: &Backend, args: &[&str]) -> Value {
    let output = backend.cli(args).await;
    assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("JSON on stdout")
}

fn secret_file(backend: &Backend) -> std::path::PathBuf {
    backend.data_dir().join("keys/secret")
}

async fn keys_and_tokens_survive_a_secret_rotation_and_the_old_secret_then_matches_nothing(backend: Backend) {
    let s = backend.start().await;
    let before = customer(&s, "Acme").await;
    assert_eq!(works(&s, &before).await, ("VALID".into(), 200));
    let service = service_token(&s).await;
    assert_eq!(service_status(&s, &service).await, 200);
    s.stop().await;
    let old_secret = std::fs::read(secret_file(&backend)).expect("the secret");

    // Announced: servers accept both, make everything with the old one.
    let prepared = cli_json(&backend, &["keys", "prepare-secret"]).await;
    let s = backend.start().await;
    assert_eq!(works(&s, &before).await, ("VALID".into(), 200));
    let announced = customer(&s, "Beta").await;
    s.stop().await;

    // Rotated: the new secret is current, the old one still accepted.
    let rotated = cli_json(&backend, &["keys", "rotate-secret"]).await;
    assert_eq!(rotated["newSecretId"], prepared["nextSecretId"]);
    let output = backend.cli(&["keys", "rotate-secret"]).await;
    assert!(!output.status.success(), "nothing is announced any more");
    let s = backend.start().await;
    assert_eq!(works(&s, &before).await, ("VALID".into(), 200));
    assert_eq!(works(&s, &announced).await, ("VALID".into(), 200));
    let during = customer(&s, "Gamma").await;
    assert_eq!(works(&s, &during).await, ("VALID".into(), 200));
    assert_eq!(service_status(&s, &service).await, 200, "the service token under the old secret");
    let service_during = service_token(&s).await;

    // Retired while the server runs: every hash made again under the new
    // secret, so the running server (holding both) keeps answering.
    let retired = cli_json(&backend, &["keys", "retire-secret"]).await;
    assert_eq!(retired["retiredSecretId"], rotated["oldSecretId"]);
    assert_eq!(retired["licenseKeysRehashed"], 2, "the keys of Acme and Beta: {retired}");
    assert_eq!(retired["tokensRehashed"], 2, "{retired}");
    assert_eq!(retired["serviceTokensRehashed"], 1, "the one issued before the rotation: {retired}");
    assert!(!backend.data_dir().join("keys/secret.previous").exists());
    for c in [&before, &announced, &during] {
        assert_eq!(works(&s, c).await, ("VALID".into(), 200));
    }
    assert_eq!(service_status(&s, &service).await, 200);
    s.stop().await;
    let again = cli_json(&backend, &["keys", "prepare-secret"]).await;
    assert_ne!(again["nextSecretId"], prepared["nextSecretId"], "a fresh secret for the next rotation");
    std::fs::remove_file(backend.data_dir().join("keys/secret.next")).unwrap();

    // Restarted on the new secret alone: everything still works, the
    // service token made under the old secret too (its MAC is the old
    // secret's; its stored hash is now the new one's).
    let s = backend.start().await;
    for c in [&before, &announced, &during] {
        assert_eq!(works(&s, c).await, ("VALID".into(), 200));
    }
    for token in [&service, &service_during] {
        assert_eq!(service_status(&s, token).await, 200, "{token}");
    }
    s.stop().await;

    // A server holding only the old secret: no stored hash matches.
    let new_secret = std::fs::read(secret_file(&backend)).unwrap();
    std::fs::write(secret_file(&backend), &old_secret).unwrap();
    let s = backend.start().await;
    for c in [&before, &announced, &during] {
        assert_eq!(works(&s, c).await, ("NOT_FOUND".into(), 401));
    }
    for token in [&service, &service_during] {
        assert_eq!(service_status(&s, token).await, 401, "{token}");
    }
    s.stop().await;
    std::fs::write(secret_file(&backend), &new_secret).unwrap();
}

backends!(keys_and_tokens_survive_a_secret_rotation_and_the_old_secret_then_matches_nothing);
