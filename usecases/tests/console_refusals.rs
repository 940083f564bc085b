//! Refused console sign-ins in the log (issue 15: every staff action, and
//! every refused try, attributed): bounded per staff user and day as the
//! portal's are, and per day for those that name no staff user, so a
//! hostile caller cannot fill the log; an invalid link is not recorded.

use domain::UserId;
use domain::event::StoredEvent;
use domain::signin::{self, CONSOLE_UNKNOWN_REFUSALS_PER_DAY_MAX, REFUSALS_PER_USER_PER_DAY_MAX, SignInEvent};
use domain::staff::StaffId;
use usecases::console::{Method, Refusal, Refused, record_refusal};
use usecases::{Ledger, LedgerConfig};

async fn ledger(dir: &std::path::Path) -> Ledger {
    let config = LedgerConfig {
        data_dir: dir.to_path_buf(),
        database_url: None,
        clock: "system".into(),
        operator_token: Some("o".repeat(40)),
        auditor_token: Some("a".repeat(40)),
        policy: Default::default(),
    };
    Ledger::open(&config).await.expect("the ledger opens")
}

async fn stream_len(ledger: &Ledger, stream: &domain::StreamId) -> usize {
    ledger.log.read_stream(stream, 1, 10_000).await.unwrap().len()
}

/// The first event of a stream.
async fn first(ledger: &Ledger, stream: &domain::StreamId) -> SignInEvent {
    let record = ledger.log.read_stream(stream, 1, 1).await.unwrap().remove(0);
    let payload = record.payload.as_deref().unwrap_or_default();
    SignInEvent::decode(&record.header.event_type, record.header.schema_version, payload).unwrap().unwrap()
}

#[tokio::test]
async fn refusals_are_recorded_up_to_the_days_bounds_and_an_invalid_link_never() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = ledger(dir.path()).await;
    let head = ledger.log.head().await.unwrap().sequence;
    record_refusal(&ledger, Refused::Staff(Refusal::Invalid), "192.0.2.1").await.unwrap();
    assert_eq!(ledger.log.head().await.unwrap().sequence, head, "an invalid link names nobody: not recorded");

    // A provider's overlong subject is cut; an unverified address is named.
    let long = "s".repeat(signin::SUBJECT_CHARS_MAX * 4);
    let unverified = Refused::Unverified { email: Some(" Eve@Example.test".into()), subject: long };
    record_refusal(&ledger, unverified, "192.0.2.1").await.unwrap();
    let stream = signin::console_refusals_stream(ledger.today());
    let SignInEvent::ConsoleSignInRefused(e) = first(&ledger, &stream).await else { panic!("a console refusal") };
    assert_eq!(
        (e.method.as_str(), e.reason.as_str(), e.email.as_deref()),
        ("oidc", "unverified_email", Some("eve@example.test"))
    );
    assert_eq!(e.subject.map(|s| s.len()), Some(signin::SUBJECT_CHARS_MAX));

    let unknown = || Refused::Unknown { method: Method::Link, email: Some("x@example.test".into()), subject: None };
    for _ in 0..CONSOLE_UNKNOWN_REFUSALS_PER_DAY_MAX + 5 {
        record_refusal(&ledger, unknown(), "192.0.2.1").await.expect("beyond the bound, not an error");
    }
    assert_eq!(stream_len(&ledger, &stream).await, CONSOLE_UNKNOWN_REFUSALS_PER_DAY_MAX as usize);

    let staff_id = StaffId(uuid::Uuid::from_u128(0x5a01));
    for _ in 0..REFUSALS_PER_USER_PER_DAY_MAX + 5 {
        record_refusal(&ledger, Refused::Staff(Refusal::Used { staff_id }), "192.0.2.2").await.unwrap();
    }
    let stream = signin::refusals_stream(UserId(staff_id.0), ledger.today());
    assert_eq!(stream_len(&ledger, &stream).await, REFUSALS_PER_USER_PER_DAY_MAX as usize);
    let SignInEvent::SignInRefused(e) = first(&ledger, &stream).await else { panic!("a staff user's refusal") };
    assert_eq!((e.organization_id, e.user_id, e.reason.as_str()), (signin::VENDOR, UserId(staff_id.0), "used"));
}
