//! The data-subject routes and commands (issue 16) against the real
//! binary, on both backends: `POST /api/v1/privacy/erasures`, `GET
//! /api/v1/privacy/exports`, `ledger privacy export|erase`. Only a staff
//! admin may (403 for the auditor and an organization's admin, without
//! echoing the request); an active user is refused (409) with nothing
//! appended; an erasure answers what it erased, and again the same; the
//! export lists the subject's records, erased ones marked; the command
//! line finds a user's organization by itself and writes the export to a
//! file only its owner may read.

// Each test binary compiles `common` and uses a part of it.
#[allow(dead_code)]
#[macro_use]
mod common;

use common::{AUDITOR, Backend, OPERATOR, Server, id};
use serde_json::{Value, json};

backends!(a_user_is_erased_over_the_api_and_only_a_staff_admin_may, the_command_line_exports_and_erases_a_user_by_id);

/// An organization with a subscription, its admin's API token, and a user
/// (`erin@…`) whom the admin added.
async fn organization(s: &Server, email: &str) -> (String, String, String) {
    let org = s.create_org("Erasure Test").await;
    s.create_subscription(&org, "starter", "2026-01-01", true).await;
    let admin = s
        .post(&format!("/api/v1/organizations/{org}/tokens"), Some(OPERATOR), json!({ "role": "admin" }))
        .await
        .expect(201);
    let admin = admin["token"].as_str().unwrap().to_owned();
    let body = json!({ "email": email, "role": "viewer" });
    let user = s.post(&format!("/api/v1/organizations/{org}/users"), Some(&admin), body).await.expect(201);
    (org, admin, id(&user["id"]))
}

/// Every page of an export over the API, three records a page.
async fn export(s: &Server, query: &str) -> (Value, Vec<Value>) {
    let first = s.get(&format!("/api/v1/privacy/exports?{query}&limit=3"), Some(OPERATOR)).await.expect(200);
    let mut records: Vec<Value> = first["records"].as_array().unwrap().clone();
    let mut next = first["next"].as_u64();
    while let Some(after) = next {
        let page = s.get(&format!("/api/v1/privacy/exports?{query}&limit=3&after={after}"), Some(OPERATOR)).await;
        let page = page.expect(200);
        assert!(page["readModels"].is_null(), "only the first page has the read models: {page}");
        records.extend(page["records"].as_array().unwrap().iter().cloned());
        next = page["next"].as_u64();
    }
    (first["readModels"].clone(), records)
}

async fn a_user_is_erased_over_the_api_and_only_a_staff_admin_may(backend: Backend) {
    let s = backend.start().await;
    let email = "erin.api@example.test";
    let (org, admin, user) = organization(&s, email).await;
    let erasure = json!({ "subject": { "user": { "organizationId": org, "userId": user } }, "reason": "request" });

    let head = s.head().await;
    for token in [AUDITOR, admin.as_str()] {
        let refused = s.post("/api/v1/privacy/erasures", Some(token), erasure.clone()).await;
        assert!(!refused.text.contains(&user), "a refusal does not echo the request: {}", refused.text);
        refused.problem(403, "forbidden");
        let query = format!("/api/v1/privacy/exports?user={org}/{user}");
        s.get(&query, Some(token)).await.problem(403, "forbidden");
    }
    s.post("/api/v1/privacy/erasures", Some(OPERATOR), erasure.clone()).await.problem(409, "subject_active");
    let two = json!({ "subject": { "user": { "organizationId": org, "userId": user }, "staff": { "staffId": user } } });
    s.post("/api/v1/privacy/erasures", Some(OPERATOR), two).await.problem(400, "validation_failed");
    let both = format!("/api/v1/privacy/exports?organization={org}&staff={user}");
    s.get(&both, Some(OPERATOR)).await.problem(400, "validation_failed");
    assert_eq!(s.head().await, head, "nothing was appended by a refusal");

    let (read_models, before) = export(&s, &format!("user={org}/{user}")).await;
    assert_eq!(read_models["profile"]["email"], email, "{read_models}");
    assert!(!before.is_empty() && before.iter().all(|r| r["erased"] == false), "{before:?}");
    assert!(before.iter().any(|r| r["type"] == "UserAdded"), "the user's own record is listed: {before:?}");

    s.post(&format!("/api/v1/organizations/{org}/users/{user}/deactivate"), Some(&admin), json!({})).await.expect(200);
    let erased = s.post("/api/v1/privacy/erasures", Some(OPERATOR), erasure.clone()).await.expect(200);
    let count = erased["erasedRecords"].as_u64().unwrap();
    assert!(count >= before.len() as u64, "{erased} against {} exported", before.len());
    assert_eq!(erased["erasureSequences"].as_array().unwrap().len(), 1, "{erased}");
    let head = s.head().await;
    assert_eq!(s.post("/api/v1/privacy/erasures", Some(OPERATOR), erasure).await.expect(200), erased);
    assert_eq!(s.head().await, head, "erasing again appends nothing");

    let (read_models, after) = export(&s, &format!("user={org}/{user}")).await;
    assert!(!read_models.to_string().contains(email), "the read models forgot the address: {read_models}");
    let listed: Vec<u64> = before.iter().map(|r| r["sequence"].as_u64().unwrap()).collect();
    for record in after.iter().filter(|r| listed.contains(&r["sequence"].as_u64().unwrap())) {
        assert_eq!(record["erased"], true, "{record}");
        assert!(record["metadata"].is_null(), "{record}");
    }
    assert!(!after.iter().any(|r| r.to_string().contains(email)), "the export holds the address no more");

    // The organization goes on: another user, a role change.
    let body = json!({ "email": "nina@example.test", "role": "viewer" });
    let nina = s.post(&format!("/api/v1/organizations/{org}/users"), Some(&admin), body).await.expect(201);
    let role = format!("/api/v1/organizations/{org}/users/{}/role", id(&nina["id"]));
    s.post(&role, Some(&admin), json!({ "role": "analyst" })).await.expect(200);
    s.stop().await;
}

async fn the_command_line_exports_and_erases_a_user_by_id(backend: Backend) {
    let s = backend.start().await;
    let email = "erin.cli@example.test";
    let (org, admin, user) = organization(&s, email).await;
    s.post(&format!("/api/v1/organizations/{org}/users/{user}/deactivate"), Some(&admin), json!({})).await.expect(200);
    s.stop().await;

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("export.json");
    let out = backend.cli(&["privacy", "export", "--user", &user, "--out", file.to_str().unwrap()]).await;
    assert!(out.status.success(), "export: {}", String::from_utf8_lossy(&out.stderr));
    let exported: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(exported["subject"]["user"]["organizationId"], org.as_str(), "{exported}");
    assert_eq!(exported["readModels"]["profile"]["email"], email, "{exported}");
    let records = exported["records"].as_array().unwrap();
    assert!(records.iter().any(|r| r["type"] == "UserAdded"), "{exported}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o077, 0, "the owner's only");
    }

    let erased = backend.cli(&["privacy", "erase", "--user", &user]).await;
    assert!(erased.status.success(), "erase: {}", String::from_utf8_lossy(&erased.stderr));
    let answer: Value = serde_json::from_slice(&erased.stdout).unwrap();
    assert_eq!(answer["erasedRecords"].as_u64(), Some(records.len() as u64), "{answer}");
    let again = backend.cli(&["privacy", "erase", "--user", &user]).await;
    assert_eq!(serde_json::from_slice::<Value>(&again.stdout).unwrap(), answer, "erasing again answers the same");

    let unknown = backend.cli(&["privacy", "erase", "--user", "00000000-0000-7000-8000-0000000000ff"]).await;
    assert!(!unknown.status.success(), "an unknown user is refused");
    let s = backend.start().await;
    let (_, after) = export(&s, &format!("user={org}/{user}")).await;
    assert!(after.iter().all(|r| r["erased"] == true), "{after:?}");
    s.stop().await;
}
