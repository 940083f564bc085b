//! The license client against a real HTTP server that signs real leases.

mod common;

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use domain::lease::{LeaseError, SignedLease};
use ledger_client::{
    Action, CLOCK_FILE, ClientError, Decision, Denial, LEASE_FILE, LeaseRejection, LicenseClient, ManualTime, Status,
    ValidationCode,
};

fn lease_file(dir: &std::path::Path) -> std::path::PathBuf {
    dir.join(LEASE_FILE)
}

fn assert_valid(status: &Status, offline: bool) {
    match status {
        Status::Valid { offline: o, .. } => assert_eq!(*o, offline, "{status:?}"),
        other => panic!("expected a valid status, got {other:?}"),
    }
}

fn rejection(result: Result<Status, ClientError>) -> LeaseRejection {
    match result {
        Err(ClientError::LeaseRejected(why)) => why,
        other => panic!("expected the lease to be rejected, got {other:?}"),
    }
}

#[tokio::test]
async fn online_validation_sends_a_fresh_nonce_and_stores_the_signed_lease() {
    let server = FakeServer::start(signing_key(1)).await;
    let dir = tempfile::tempdir().unwrap();
    let time = manual_time();
    let client =
        LicenseClient::new(config(&server.url, dir.path(), vec![signing_key(1).verifying_key()], &time)).unwrap();
    assert_eq!(client.status(), Status::NoLease);

    let status = client.validate().await.unwrap();
    let Status::Valid { code, tier, limits, features, lease_expires_at, offline, warnings } = status else {
        panic!("expected valid, got {status:?}");
    };
    assert_eq!((code, tier.as_str(), limits.max_users, offline), (ValidationCode::Valid, "starter", 5, false));
    assert_eq!(features, ["basic_analytics"]);
    assert_eq!(warnings, ["renewal due in 30 days"]);
    // The lease ends 7 days after the server's time, not the client's.
    assert_eq!(lease_expires_at, (server_start().to_datetime() + chrono::Duration::days(7)));

    // What was stored is exactly what the server signed.
    let stored: SignedLease = serde_json::from_slice(&std::fs::read(lease_file(dir.path())).unwrap()).unwrap();
    assert_eq!(Some(&stored), server.state().last_lease.as_ref());
    let body = stored.verify(&signing_key(1).verifying_key(), LICENSE_KEY).unwrap();
    assert!(dir.path().join(CLOCK_FILE).exists());

    // The request: a 128-bit base64url nonce, the client's wall clock, the deployment.
    client.validate().await.unwrap();
    let requests = server.state().validations.clone();
    let nonces: Vec<&str> = requests.iter().map(|r| r["nonce"].as_str().unwrap()).collect();
    assert_eq!(URL_SAFE_NO_PAD.decode(nonces[0]).unwrap().len(), 16);
    assert_ne!(nonces[0], nonces[1], "every request has its own nonce");
    assert_eq!(body.nonce, nonces[0]);
    assert_eq!(requests[0]["clientTime"], "2026-03-01T12:00:00.123456Z");
    assert_eq!(requests[0]["clientInfo"]["deployment_id"], DEPLOYMENT);
    assert_eq!(requests[0]["licenseKey"], LICENSE_KEY);
}

#[tokio::test]
async fn with_the_server_down_the_lease_holds_offline_until_it_expires_then_no_lease() {
    let server = FakeServer::start(signing_key(1)).await;
    let dir = tempfile::tempdir().unwrap();
    let time = manual_time();
    let client =
        LicenseClient::new(config(&server.url, dir.path(), vec![signing_key(1).verifying_key()], &time)).unwrap();
    assert_valid(&client.validate().await.unwrap(), false);

    server.set_down(true);
    time.advance(7 * DAY - std::time::Duration::from_secs(1));
    let status = client.validate().await.unwrap();
    assert_valid(&status, true);
    let Status::Valid { warnings, .. } = status else { unreachable!() };
    assert!(warnings[0].contains("could not be reached"), "{warnings:?}");
    assert!(client.check(&Action::AddUser { active_users: 4 }).is_allowed());

    time.advance(std::time::Duration::from_secs(1));
    assert_eq!(client.validate().await.unwrap(), Status::NoLease);
    assert_eq!(client.check(&Action::AddUser { active_users: 0 }), Decision::Denied(Denial::NoLease));
    assert!(!client.allows_feature("basic_analytics"));
}

#[tokio::test]
async fn a_5xx_falls_back_offline_and_a_429_is_honoured_for_its_retry_after() {
    let server = FakeServer::start(signing_key(1)).await;
    let dir = tempfile::tempdir().unwrap();
    let time = manual_time();
    let client =
        LicenseClient::new(config(&server.url, dir.path(), vec![signing_key(1).verifying_key()], &time)).unwrap();
    client.validate().await.unwrap();

    server.set_mode(Mode::Unavailable);
    assert_valid(&client.validate().await.unwrap(), true);

    server.set_mode(Mode::RateLimited { seconds: 120 });
    assert_valid(&client.validate().await.unwrap(), true);
    let asked = server.state().validations.len();
    assert_valid(&client.validate().await.unwrap(), true);
    assert_eq!(server.state().validations.len(), asked, "within Retry-After the server is not asked");

    server.set_mode(Mode::Valid);
    time.advance(std::time::Duration::from_secs(121));
    assert_valid(&client.validate().await.unwrap(), false);
    assert_eq!(server.state().validations.len(), asked + 1);
}

#[tokio::test]
async fn a_400_is_an_error_not_a_fallback() {
    let server = FakeServer::start(signing_key(1)).await;
    let dir = tempfile::tempdir().unwrap();
    let time = manual_time();
    let client =
        LicenseClient::new(config(&server.url, dir.path(), vec![signing_key(1).verifying_key()], &time)).unwrap();
    server.set_mode(Mode::BadRequest);
    match client.validate().await {
        Err(ClientError::Http { status: 400, body }) => assert!(body.contains("bad nonce"), "{body}"),
        other => panic!("expected a 400 error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_wall_clock_moved_back_is_clock_tampered_and_never_slows_time() {
    let server = FakeServer::start(signing_key(1)).await;
    let dir = tempfile::tempdir().unwrap();
    let time = manual_time();
    let client =
        LicenseClient::new(config(&server.url, dir.path(), vec![signing_key(1).verifying_key()], &time)).unwrap();
    client.validate().await.unwrap();
    server.set_down(true);

    time.advance(DAY);
    // The client can only notice a clock going back from what it has seen.
    assert_valid(&client.validate().await.unwrap(), true);
    let seen = time_wall(&time);
    time.set_wall(seen - chrono::Duration::minutes(10));
    assert_eq!(client.status(), Status::ClockTampered);
    assert_eq!(client.validate().await.unwrap(), Status::ClockTampered);
    assert_eq!(client.check(&Action::AccessFeature("basic_analytics")), Decision::Denied(Denial::ClockTampered));

    // Within the tolerance (an NTP step): allowed, but time still counts.
    time.set_wall(seen - chrono::Duration::minutes(4));
    assert_valid(&client.status(), true);
    time.advance(6 * DAY - std::time::Duration::from_secs(1));
    assert_valid(&client.status(), true);
    // The wall clock says 4 minutes less than 7 days passed; the monotonic
    // clock says 7 days did. The larger estimate wins.
    time.advance(std::time::Duration::from_secs(1));
    assert_eq!(client.status(), Status::NoLease);
}

#[tokio::test]
async fn a_wall_clock_set_before_the_signed_client_time_is_clock_tampered() {
    let server = FakeServer::start(signing_key(1)).await;
    let dir = tempfile::tempdir().unwrap();
    let time = manual_time();
    let pinned = vec![signing_key(1).verifying_key()];
    let client = LicenseClient::new(config(&server.url, dir.path(), pinned.clone(), &time)).unwrap();
    client.validate().await.unwrap();
    drop(client);
    // Even without the marks file, the lease's own signed clientTime is a floor.
    std::fs::remove_file(dir.path().join(CLOCK_FILE)).unwrap();
    let earlier = Arc::new(ManualTime::new(client_start() - chrono::Duration::hours(1)));
    let restarted = LicenseClient::new(config(&dead_url().await, dir.path(), pinned, &earlier)).unwrap();
    assert_eq!(restarted.status(), Status::ClockTampered);
}

#[tokio::test]
async fn a_restart_keeps_the_lease_and_the_high_water_marks() {
    let server = FakeServer::start(signing_key(1)).await;
    let dir = tempfile::tempdir().unwrap();
    let pinned = vec![signing_key(1).verifying_key()];
    let time = manual_time();
    let client = LicenseClient::new(config(&server.url, dir.path(), pinned.clone(), &time)).unwrap();
    client.validate().await.unwrap();
    server.set_down(true);
    time.advance(3 * DAY);
    // A plain check (no validation) raises the marks and, an interval
    // having passed, writes them.
    assert!(client.status().is_valid());
    drop(client);
    let three_days = client_start() + chrono::Duration::days(3);

    // Restarted with the clock set back 10 minutes: the persisted wall mark catches it.
    let back = Arc::new(ManualTime::new(three_days - chrono::Duration::minutes(10)));
    let restarted = LicenseClient::new(config(&server.url, dir.path(), pinned.clone(), &back)).unwrap();
    assert_eq!(restarted.validate().await.unwrap(), Status::ClockTampered);
    drop(restarted);

    // Set back 3 minutes (within the tolerance): the lease is still there,
    // and the 3 days already counted stay counted.
    let slightly_back = Arc::new(ManualTime::new(three_days - chrono::Duration::minutes(3)));
    let restarted = LicenseClient::new(config(&server.url, dir.path(), pinned, &slightly_back)).unwrap();
    assert_valid(&restarted.validate().await.unwrap(), true);
    slightly_back.advance(4 * DAY - std::time::Duration::from_secs(1));
    assert_valid(&restarted.status(), true);
    // Without the server-time mark the wall clock would allow 3 more minutes.
    slightly_back.advance(std::time::Duration::from_secs(1));
    assert_eq!(restarted.status(), Status::NoLease);
}

#[tokio::test]
async fn a_lease_file_with_any_one_byte_changed_is_no_lease() {
    let server = FakeServer::start(signing_key(1)).await;
    let dir = tempfile::tempdir().unwrap();
    let pinned = vec![signing_key(1).verifying_key()];
    let time = manual_time();
    LicenseClient::new(config(&server.url, dir.path(), pinned.clone(), &time)).unwrap().validate().await.unwrap();
    let original = std::fs::read(lease_file(dir.path())).unwrap();
    let offline = dead_url().await;
    // Every position, so that no byte of the file escapes the signature
    // (the JSON punctuation, the field names, base64's unused low bits).
    for at in 0..original.len() {
        let mut edited = original.clone();
        edited[at] ^= 0x01;
        std::fs::write(lease_file(dir.path()), &edited).unwrap();
        let client = LicenseClient::new(config(&offline, dir.path(), pinned.clone(), &time)).unwrap();
        assert_eq!(client.status(), Status::NoLease, "byte {at} edited was accepted");
    }
    std::fs::write(lease_file(dir.path()), &original).unwrap();
    let client = LicenseClient::new(config(&offline, dir.path(), pinned, &time)).unwrap();
    assert_valid(&client.status(), true);
}

#[tokio::test]
async fn a_lease_signed_by_another_key_is_rejected_even_if_the_server_lists_that_key() {
    let impostor = FakeServer::start(signing_key(66)).await;
    let dir = tempfile::tempdir().unwrap();
    let pinned = vec![signing_key(1).verifying_key()];
    let time = manual_time();
    let mut cfg = config(&impostor.url, dir.path(), pinned.clone(), &time);
    cfg.learn_lease_keys = true;
    let client = LicenseClient::new(cfg).unwrap();
    assert_eq!(rejection(client.validate().await), LeaseRejection::Lease(LeaseError::BadSignature));
    assert!(!lease_file(dir.path()).exists());
    assert_eq!(client.status(), Status::NoLease);
    assert_eq!(client.lease_keys(), pinned, "an unauthenticated key list taught nothing");

    // A lease file from a deployment of another server is no lease here.
    let elsewhere = tempfile::tempdir().unwrap();
    let theirs = vec![signing_key(66).verifying_key()];
    LicenseClient::new(config(&impostor.url, elsewhere.path(), theirs.clone(), &time))
        .unwrap()
        .validate()
        .await
        .unwrap();
    std::fs::copy(lease_file(elsewhere.path()), lease_file(dir.path())).unwrap();
    let offline = dead_url().await;
    assert_eq!(LicenseClient::new(config(&offline, dir.path(), pinned, &time)).unwrap().status(), Status::NoLease);
    // The same file is a good lease under the key that signed it, on the
    // deployment (key pair) it was bound to; on any other it is no lease.
    assert_eq!(
        LicenseClient::new(config(&offline, dir.path(), theirs.clone(), &time)).unwrap().status(),
        Status::NoLease
    );
    let key_file = ledger_client::DEPLOYMENT_KEY_FILE;
    std::fs::copy(elsewhere.path().join(key_file), dir.path().join(key_file)).unwrap();
    assert_valid(&LicenseClient::new(config(&offline, dir.path(), theirs, &time)).unwrap().status(), true);
}

#[tokio::test]
async fn a_lease_for_another_license_key_or_deployment_is_rejected() {
    let server = FakeServer::start(signing_key(1)).await;
    let dir = tempfile::tempdir().unwrap();
    let pinned = vec![signing_key(1).verifying_key()];
    let time = manual_time();
    let client = LicenseClient::new(config(&server.url, dir.path(), pinned.clone(), &time)).unwrap();
    server.set_mode(Mode::BindTo(OTHER_LICENSE_KEY));
    assert_eq!(rejection(client.validate().await), LeaseRejection::Lease(LeaseError::OtherKey));
    server.set_mode(Mode::OtherDeployment);
    assert_eq!(rejection(client.validate().await), LeaseRejection::OtherDeployment("elsewhere".into()));
    server.set_mode(Mode::NoClientTime);
    assert_eq!(rejection(client.validate().await), LeaseRejection::ClientTimeMismatch);
    server.set_mode(Mode::OtherDeploymentKey);
    assert_eq!(rejection(client.validate().await), LeaseRejection::OtherDeploymentKey);
    let asked = server.state().validations.last().cloned().unwrap();
    assert_eq!(asked["deploymentKey"], client.deployment_public_key(), "the request presents the deployment key");
    assert_eq!(asked["challenge"].as_str().map(str::len), Some(domain::deployment_key::CHALLENGE_CHARS));
    assert!(!lease_file(dir.path()).exists());
    assert_eq!(client.status(), Status::NoLease);

    // A genuine lease file of another license key, copied over, is no lease.
    server.set_mode(Mode::Valid);
    let other = tempfile::tempdir().unwrap();
    let mut other_cfg = config(&server.url, other.path(), pinned.clone(), &time);
    other_cfg.license_key = OTHER_LICENSE_KEY.into();
    assert_valid(&LicenseClient::new(other_cfg).unwrap().validate().await.unwrap(), false);
    std::fs::copy(lease_file(other.path()), lease_file(dir.path())).unwrap();
    let offline = dead_url().await;
    assert_eq!(LicenseClient::new(config(&offline, dir.path(), pinned, &time)).unwrap().status(), Status::NoLease);
}

#[tokio::test]
async fn a_replayed_lease_with_a_stale_nonce_is_rejected_and_changes_nothing() {
    let server = FakeServer::start(signing_key(1)).await;
    let dir = tempfile::tempdir().unwrap();
    let time = manual_time();
    let client =
        LicenseClient::new(config(&server.url, dir.path(), vec![signing_key(1).verifying_key()], &time)).unwrap();
    client.validate().await.unwrap();
    let stored = std::fs::read(lease_file(dir.path())).unwrap();
    let marks = std::fs::read(dir.path().join(CLOCK_FILE)).unwrap();

    // Six days later a man in the middle answers with that (genuine) old
    // lease; accepting it would re-anchor the clock and restart the grace.
    time.advance(6 * DAY);
    server.set_mode(Mode::ReplayLast);
    assert_eq!(rejection(client.validate().await), LeaseRejection::StaleNonce);
    assert_eq!(std::fs::read(lease_file(dir.path())).unwrap(), stored);
    assert_eq!(std::fs::read(dir.path().join(CLOCK_FILE)).unwrap(), marks);
    time.advance(DAY);
    assert_eq!(client.status(), Status::NoLease, "the grace was not restarted");
}

#[tokio::test]
async fn a_revoked_answer_drops_the_lease_so_it_cannot_be_used_offline() {
    let server = FakeServer::start(signing_key(1)).await;
    let dir = tempfile::tempdir().unwrap();
    let pinned = vec![signing_key(1).verifying_key()];
    let time = manual_time();
    let client = LicenseClient::new(config(&server.url, dir.path(), pinned.clone(), &time)).unwrap();
    client.validate().await.unwrap();
    assert!(lease_file(dir.path()).exists());

    server.set_mode(Mode::Invalid("REVOKED"));
    assert_eq!(client.validate().await.unwrap(), Status::Invalid { code: ValidationCode::Revoked });
    assert!(!lease_file(dir.path()).exists());
    assert_eq!(
        client.check(&Action::AccessFeature("basic_analytics")),
        Decision::Denied(Denial::Invalid(ValidationCode::Revoked))
    );

    server.set_down(true);
    assert_eq!(client.validate().await.unwrap(), Status::Invalid { code: ValidationCode::Revoked });
    let restarted = LicenseClient::new(config(&server.url, dir.path(), pinned, &time)).unwrap();
    assert_eq!(restarted.validate().await.unwrap(), Status::NoLease);

    // Reinstated: a valid answer works again.
    server.set_down(false);
    server.set_mode(Mode::Valid);
    assert_valid(&client.validate().await.unwrap(), false);
}

#[tokio::test]
async fn a_refusal_not_signed_for_this_request_is_ignored_and_the_lease_kept() {
    let server = FakeServer::start(signing_key(1)).await;
    let dir = tempfile::tempdir().unwrap();
    let pinned = vec![signing_key(1).verifying_key()];
    let time = manual_time();
    let client = LicenseClient::new(config(&server.url, dir.path(), pinned, &time)).unwrap();
    client.validate().await.unwrap();
    let stored = std::fs::read(lease_file(dir.path())).unwrap();

    // A man in the middle (or a proxy) says "revoked" without the server's
    // signature, replays a signed refusal of another request, or signs
    // with a key of its own: each is no answer, and the lease holds offline.
    let ignored = |status: Status| {
        assert_valid(&status, true);
        let Status::Valid { warnings, .. } = &status else { unreachable!() };
        assert!(warnings.iter().any(|w| w.contains("REVOKED") && w.contains("ignored")), "{warnings:?}");
    };
    server.set_mode(Mode::UnsignedInvalid("REVOKED"));
    ignored(client.validate().await.unwrap());
    server.set_mode(Mode::InvalidForAnotherNonce("REVOKED"));
    ignored(client.validate().await.unwrap());
    server.state().signer = signing_key(9);
    server.set_mode(Mode::Invalid("REVOKED"));
    ignored(client.validate().await.unwrap());
    assert_eq!(std::fs::read(lease_file(dir.path())).unwrap(), stored, "the lease is kept");
    assert!(client.allows_feature("basic_analytics"));

    // The server's own signed refusal of this request switches it off.
    server.state().signer = signing_key(1);
    assert_eq!(client.validate().await.unwrap(), Status::Invalid { code: ValidationCode::Revoked });
    assert!(!lease_file(dir.path()).exists());
}

#[tokio::test]
async fn plain_http_needs_an_explicit_opt_in() {
    let server = FakeServer::start(signing_key(1)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&server.url, dir.path(), vec![signing_key(1).verifying_key()], &manual_time());
    cfg.allow_plain_http = false;
    assert!(matches!(LicenseClient::new(cfg), Err(ClientError::Config(why)) if why.contains("allow_plain_http")));
    assert!(server.state().validations.is_empty(), "nothing was sent");
}

#[tokio::test]
async fn checks_follow_the_enforcement_rules_from_the_lease() {
    let server = FakeServer::start(signing_key(1)).await;
    let dir = tempfile::tempdir().unwrap();
    let time = manual_time();
    let client =
        LicenseClient::new(config(&server.url, dir.path(), vec![signing_key(1).verifying_key()], &time)).unwrap();
    assert_eq!(client.check(&Action::AddUser { active_users: 0 }), Decision::Denied(Denial::NoLease));
    client.validate().await.unwrap();
    server.set_down(true);
    assert!(client.check(&Action::AddUser { active_users: 4 }).is_allowed());
    assert_eq!(client.check(&Action::AddUser { active_users: 5 }), Decision::Denied(Denial::LimitReached { limit: 5 }));
    assert!(client.check(&Action::ApiCall { calls_this_month: 9_999 }).is_allowed());
    assert!(!client.check(&Action::UploadData { data_volume_gb: ledger_client::Decimal::from(1000) }).is_allowed());
    assert!(client.allows_feature("basic_analytics"));
    assert!(!client.allows_feature("white_labeling"));
}

#[tokio::test]
async fn lease_keys_are_learned_only_from_a_list_naming_the_pinned_key_that_verified_and_signed_by_it() {
    let server = FakeServer::start(signing_key(1)).await;
    let dir = tempfile::tempdir().unwrap();
    let time = manual_time();
    let pinned = signing_key(1).verifying_key();
    let next = signing_key(2).verifying_key();
    let stranger = signing_key(3).verifying_key();
    let mut cfg = config(&server.url, dir.path(), vec![pinned], &time);
    cfg.learn_lease_keys = true;
    let client = LicenseClient::new(cfg).unwrap();

    // A list that does not name the pinned key is not the server's: ignored.
    server.state().advertised = (stranger, Some(next));
    client.validate().await.unwrap();
    assert_eq!(client.lease_keys(), [pinned]);

    // A next key the current one did not sign: anyone could have listed it.
    server.state().advertised = (pinned, Some(next));
    server.state().sign_next = false;
    client.validate().await.unwrap();
    assert_eq!(client.lease_keys(), [pinned]);

    // The server's list (current = pinned, next announced and signed by
    // it): learned.
    server.state().sign_next = true;
    client.validate().await.unwrap();
    assert_eq!(client.lease_keys(), [pinned, next]);

    // After the rotation the learned key verifies the new leases.
    server.state().signer = signing_key(2);
    assert_valid(&client.validate().await.unwrap(), false);
}

fn time_wall(time: &ManualTime) -> chrono::DateTime<chrono::Utc> {
    ledger_client::TimeSource::wall(time)
}
