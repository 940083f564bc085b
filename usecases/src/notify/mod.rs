//! Notifications: an outbox that follows the log, decides which e-mails are
//! due, sends them over SMTP, and records each send as an event.
//!
//! The outbox is a projection with its own checkpoint (the snapshot
//! [`SNAPSHOT_NAME`]): it reads the log in order from there and decides a
//! [`Notice`] from each event that calls for one — a license issued
//! (onboarding, with the key), a usage report at 80% or 100% of a limit, a
//! payment failing, a suspension, a reactivation — and, once a second,
//! from the server's clock (the expiry reminder, 30 days before a term that
//! does not renew ends). Decided notices wait in its state until the log
//! says they were sent: each send is recorded as `NotificationSent` on
//! `notification/{id}`, expecting no stream, with an id derived from what
//! made the notice due (`domain::notification`). So:
//! - a restart, or a second process, never sends a recorded notice again:
//!   the state is rebuilt from the snapshot and the log after it, and the
//!   stream is looked up right before each send;
//! - a crash between the SMTP server's acceptance and the append repeats
//!   that one message on the next start (with the same `Message-ID`);
//! - an SMTP failure keeps the notice pending and retries it with a
//!   backoff that doubles from [`RETRY_FIRST`] up to [`RETRY_MAX`], for
//!   ever: nothing due is dropped. A failure of the server (unreachable,
//!   timed out, a 4xx "try later") holds back every e-mail for that backoff,
//!   so an outage costs one attempt per wait, not one per waiting e-mail;
//!   a 5xx refusal of one message holds back that message only;
//! - only a notice that cannot apply any more (its subscription ended, its
//!   key was replaced, a failed payment was paid since, its organization
//!   has no admin; an onboarding waits for one instead) is recorded as
//!   `NotificationSkipped`, with the reason.
//!
//! The first start with notifications on begins at the log's head: turning
//! them on does not send the history. From then on the checkpoint moves
//! only with the state it describes, so nothing decided is lost.
//!
//! Recipients are the organization's active admin users. The license key
//! is derived again from its `LicenseIssued` event when the e-mail is
//! written, exists only in the message in memory, and is never logged.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use domain::backoff::Backoff;
use domain::event::LedgerEvent;
use domain::license::LicenseEvent;
use domain::notification::{
    Notice, NotificationEvent, NotificationId, NotificationSent, NotificationSkipped, SkipReason, UsageLevel,
    expiry_reminder, usage_levels,
};
use domain::organization::Role;
use domain::subscription::{Subscription, SubscriptionEvent};
use domain::usage::UsageEvent;
use domain::{Metadata, SubscriptionId, UserId};
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Mailboxes};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use projections::LedgerState;
use serde::{Deserialize, Serialize};
use store::{Command, ExpectedRevision, NewEvent, READ_PAGE_RECORDS, Rejection, Snapshot, StoreError};

use crate::Ledger;
use crate::command::new_event_id;

pub mod mail;

/// The outbox's snapshot (state and checkpoint in one row). A change to
/// [`OutboxState`]'s shape gets a new name.
pub const SNAPSHOT_NAME: &str = "notification-outbox-v1";
/// How often the outbox looks at the clock and retries, without appends.
pub const TICK: Duration = Duration::from_secs(1);
/// The first retry of a failed send waits this long; each failure doubles it…
pub const RETRY_FIRST: Duration = Duration::from_secs(1);
/// …up to this.
pub const RETRY_MAX: Duration = Duration::from_secs(300);
/// The backoff of a failed send, and of a failing SMTP server.
pub const RETRY: Backoff = Backoff::new(RETRY_FIRST, RETRY_MAX);
/// One SMTP conversation may take this long before it counts as failed.
pub const SMTP_TIMEOUT: Duration = Duration::from_secs(20);
/// E-mails sent per round, at most; the rest wait for the next round.
pub const SENDS_PER_ROUND_MAX: usize = 100;
/// The state is saved at most this often (and only when its checkpoint moved).
pub const SNAPSHOT_EVERY: Duration = Duration::from_secs(5);
const DIGEST_CONTEXT: &str = "ledger 2026-11-29 notification outbox digest v1";

/// Where e-mail goes. `smtp_url` may carry credentials: it is never
/// printed or logged.
#[derive(Clone)]
pub struct Settings {
    /// `smtp://host:port` (plain), `smtp://host:587?tls=required`
    /// (STARTTLS), `smtps://host:465` (TLS); `user:password@` for AUTH.
    pub smtp_url: String,
    /// The From address, e.g. `Ledger <billing@example.com>`.
    pub from: String,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings").field("smtp_url", &"…").field("from", &self.from).finish()
    }
}

/// The SMTP client and the sender's address.
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    /// `host:port`, for logs (never the URL, which may hold a password).
    pub server: String,
}

impl Mailer {
    /// Checks the settings; connects only when sending.
    pub fn new(settings: &Settings) -> anyhow::Result<Self> {
        let url = url_host(&settings.smtp_url)
            .context("--smtp-url must be smtp://HOST[:PORT][?tls=required|opportunistic] or smtps://HOST[:PORT]")?;
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(&settings.smtp_url)
            .map_err(|e| anyhow::anyhow!("--smtp-url is not usable: {e}"))?
            .timeout(Some(SMTP_TIMEOUT))
            .build();
        let from: Mailbox = settings
            .from
            .parse()
            .map_err(|e| anyhow::anyhow!("--mail-from {:?} is not an e-mail address: {e}", settings.from))?;
        Ok(Self { transport, from, server: url })
    }

    async fn send(&self, message: Message) -> Result<(), lettre::transport::smtp::Error> {
        self.transport.send(message).await.map(|_| ())
    }
}

/// `host:port` of an SMTP URL, without credentials.
fn url_host(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme != "smtp" && scheme != "smtps" {
        return None;
    }
    let authority = rest.split(['/', '?']).next()?;
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    (!host.is_empty()).then(|| host.to_owned())
}

/// A decided notice, waiting to be sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    pub notice: Notice,
    /// The log sequence it was decided at: notices go out in this order.
    pub decided_at: u64,
}

/// What the outbox keeps between rounds and across restarts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OutboxState {
    /// The last sequence read: the checkpoint.
    pub sequence: u64,
    /// Decided, not yet recorded as sent or skipped.
    pub pending: BTreeMap<NotificationId, Pending>,
    /// Recorded as sent or skipped, as far as the log was read (16 bytes
    /// per notification ever sent).
    pub done: BTreeSet<NotificationId>,
}

impl OutboxState {
    fn known(&self, id: &NotificationId) -> bool {
        self.done.contains(id) || self.pending.contains_key(id)
    }

    /// Adds a notice unless it is known.
    fn add(&mut self, notice: Notice, decided_at: u64) -> bool {
        let id = notice.id();
        if self.known(&id) {
            return false;
        }
        // A metric that already has its 100% warning this month does not
        // get an 80% one afterwards.
        if let Notice::UsageWarning { level: UsageLevel::Approaching, .. } = &notice {
            let mut reached = notice.clone();
            if let Notice::UsageWarning { level, .. } = &mut reached {
                *level = UsageLevel::Reached;
            }
            if self.known(&reached.id()) {
                return false;
            }
        }
        self.pending.insert(id, Pending { notice, decided_at });
        true
    }

    fn finish(&mut self, id: NotificationId) {
        self.pending.remove(&id);
        self.done.insert(id);
    }

    /// Decides what one record calls for. `ledger` includes the record.
    fn apply(&mut self, record: &domain::Record, event: Option<LedgerEvent>, ledger: &LedgerState, state: &Ledger) {
        let sequence = record.header.sequence;
        self.sequence = sequence;
        match event {
            Some(LedgerEvent::License(LicenseEvent::LicenseIssued(issued))) => {
                self.add(
                    Notice::Onboarding {
                        organization_id: issued.organization_id,
                        subscription_id: issued.subscription_id,
                        license_id: issued.license_id,
                    },
                    sequence,
                );
            }
            Some(LedgerEvent::Usage(UsageEvent::UsageReported(report))) => {
                let Some(subscription) = ledger.subscriptions.get(&report.subscription_id) else { return };
                let (Some(organization_id), Some((spec, extra_gb))) =
                    (subscription.organization_id, subscription.spec_on(&state.catalog, report.day))
                else {
                    return;
                };
                let month = ledger.usage.get(&report.subscription_id).map(|u| u.month(report.day).total);
                let checks = usage_levels(&month.unwrap_or_default(), spec, extra_gb);
                for notice in
                    domain::notification::usage_warnings(organization_id, report.subscription_id, report.day, &checks)
                {
                    self.add(notice, sequence);
                }
            }
            Some(LedgerEvent::Subscription(event)) => {
                if let Some(notice) = dunning_notice(record, event, ledger) {
                    self.add(notice, sequence);
                }
            }
            Some(LedgerEvent::Notification(event)) => self.finish(event.id()),
            _ => {}
        }
    }

    /// Adds the reminders the clock says are due.
    fn scan_clock(&mut self, ledger: &LedgerState, today: chrono::NaiveDate) {
        for subscription in ledger.subscriptions.values() {
            if let Some(notice) = expiry_reminder(subscription, today) {
                self.add(notice, self.sequence);
            }
        }
    }
}

/// The dunning notice a subscription event calls for: each failed
/// payment, the suspension, and the return to active.
fn dunning_notice(record: &domain::Record, event: SubscriptionEvent, ledger: &LedgerState) -> Option<Notice> {
    let id = record.header.stream_id.as_str().strip_prefix("subscription/")?;
    let subscription_id = SubscriptionId(id.parse().ok()?);
    let organization_id = ledger.subscriptions.get(&subscription_id)?.organization_id?;
    let trigger = record.header.event_id;
    match event {
        SubscriptionEvent::PaymentFailed(_) => {
            Some(Notice::PaymentFailed { organization_id, subscription_id, trigger })
        }
        SubscriptionEvent::SubscriptionSuspended(_) => {
            Some(Notice::Suspended { organization_id, subscription_id, trigger })
        }
        SubscriptionEvent::PaymentSucceeded(paid) if paid.reactivated => {
            Some(Notice::Restored { organization_id, subscription_id, trigger })
        }
        _ => None,
    }
}

/// A failed send's next attempt, and a delivered but unrecorded one.
#[derive(Debug)]
struct Attempts {
    retry: Backoff,
    next: Option<Instant>,
    /// Accepted by the SMTP server, not yet recorded: only the append is
    /// retried, never the e-mail.
    delivered: Option<NotificationSent>,
}

impl Default for Attempts {
    fn default() -> Self {
        Self { retry: RETRY, next: None, delivered: None }
    }
}

impl Attempts {
    /// Counts a failure and sets the next attempt; the wait.
    fn failed(&mut self) -> Duration {
        let delay = self.retry.failed();
        self.next = Some(Instant::now() + delay);
        delay
    }
}

/// The outbox: its state, what it is retrying, and its SMTP client.
pub struct Outbox {
    state: OutboxState,
    attempts: HashMap<NotificationId, Attempts>,
    /// The checkpoint last saved, and when.
    saved: Option<(u64, Instant)>,
    /// The chain hash of the record at the checkpoint, saved with it so a
    /// log rolled back behind it is noticed (`projections::check_snapshots`).
    chain: Option<domain::record::Hash>,
    mailer: Mailer,
    /// The SMTP server failed (unreachable, timed out, "try later"): no
    /// e-mail is attempted before then, so an outage costs one attempt per
    /// backoff, not one per waiting e-mail.
    server_paused_until: Option<Instant>,
    /// Server failures in a row, for that backoff.
    server_retry: Backoff,
    /// When the clock's notices were last looked for.
    clock_scanned: Option<Instant>,
}

/// What a pending notice comes to when it is due.
enum Compose {
    Send {
        message: Box<Message>,
        recipients: Vec<UserId>,
        message_id: String,
    },
    Skip(SkipReason),
    /// Not yet: an onboarding e-mail waits for the organization's first admin.
    Wait,
}

impl Outbox {
    /// Loads the state from its snapshot; on the very first start, begins
    /// at the log's head and saves that at once. The server loads it before
    /// anything else can append, so a first start misses nothing after it.
    /// A snapshot this version cannot read stops the start: it is a bug to
    /// look at, not a reason to begin again and e-mail the history.
    pub async fn load(app: &Ledger, mailer: Mailer) -> anyhow::Result<Self> {
        let (state, chain) = match app.log.load_snapshot(SNAPSHOT_NAME).await? {
            Some(snapshot) => (
                domain::codec::decode::<OutboxState>(&snapshot.state)
                    .map_err(|e| anyhow::anyhow!("the notification outbox's snapshot does not decode: {e}"))?,
                snapshot.chain_hash,
            ),
            None => {
                let head = app.log.head().await?;
                (OutboxState { sequence: head.sequence, ..OutboxState::default() }, Some(head.chain_hash))
            }
        };
        let mut outbox = Self {
            state,
            attempts: HashMap::new(),
            saved: None,
            chain,
            mailer,
            server_paused_until: None,
            server_retry: RETRY,
            clock_scanned: None,
        };
        outbox.save(app).await?;
        Ok(outbox)
    }

    pub fn state(&self) -> &OutboxState {
        &self.state
    }

    /// One round: the clock's notices, the log's news, the due sends, and
    /// the snapshot when it is time.
    pub async fn round(&mut self, app: &Ledger) -> anyhow::Result<()> {
        // Read models that do not match the log (a rollback) decide nothing.
        if app.projections.failed().is_some() {
            return Ok(());
        }
        // The clock's notices once a tick, however often appends wake the
        // outbox: the scan reads every subscription.
        if self.clock_scanned.is_none_or(|at| at.elapsed() >= TICK) {
            let ledger = app.projections.read().await;
            self.state.scan_clock(&ledger, app.today());
            self.clock_scanned = Some(Instant::now());
        }
        self.follow(app).await?;
        self.send_due(app).await?;
        // A snapshot only replaces one of an earlier checkpoint; the state at
        // a checkpoint follows from the log up to it (and the clock).
        let stale = self.saved.is_none_or(|(saved, at)| self.state.sequence > saved && at.elapsed() >= SNAPSHOT_EVERY);
        if stale {
            self.save(app).await?;
        }
        Ok(())
    }

    async fn save(&mut self, app: &Ledger) -> Result<(), StoreError> {
        let bytes = domain::codec::encode(&self.state);
        let digest =
            domain::record::Hash(*blake3::Hasher::new_derive_key(DIGEST_CONTEXT).update(&bytes).finalize().as_bytes());
        let snapshot = Snapshot {
            name: SNAPSHOT_NAME.into(),
            sequence: self.state.sequence,
            chain_hash: self.chain,
            digest,
            state: bytes,
        };
        app.log.save_snapshot(snapshot, app.now()).await?;
        self.saved = Some((self.state.sequence, Instant::now()));
        Ok(())
    }

    /// Reads the log from the checkpoint up to what the read models include.
    async fn follow(&mut self, app: &Ledger) -> anyhow::Result<()> {
        let until = app.projections.applied();
        while self.state.sequence < until {
            let page = app.log.read_page(self.state.sequence + 1..=until, READ_PAGE_RECORDS).await?;
            if page.is_empty() {
                break;
            }
            let mut decoded = Vec::with_capacity(page.len());
            for record in &page {
                let event = match &record.payload {
                    Some(payload) => LedgerEvent::decode(&record.header, payload)
                        .with_context(|| format!("record {} does not decode", record.header.sequence))?,
                    None => None,
                };
                decoded.push(event);
            }
            let ledger = app.projections.read().await;
            for (record, event) in page.iter().zip(decoded) {
                self.state.apply(record, event, &ledger, app);
                self.chain = Some(record.chain_hash);
            }
        }
        Ok(())
    }

    async fn send_due(&mut self, app: &Ledger) -> Result<(), StoreError> {
        let now = Instant::now();
        let mut due: Vec<(u64, NotificationId)> = self
            .state
            .pending
            .iter()
            .filter(|(id, _)| self.attempts.get(id).and_then(|a| a.next).is_none_or(|next| next <= now))
            .map(|(id, pending)| (pending.decided_at, *id))
            .collect();
        due.sort();
        due.truncate(SENDS_PER_ROUND_MAX);
        for (_, id) in due {
            if self.server_paused_until.is_some_and(|until| until > Instant::now()) {
                break;
            }
            self.deliver(app, id).await?;
        }
        Ok(())
    }

    async fn deliver(&mut self, app: &Ledger, id: NotificationId) -> Result<(), StoreError> {
        let Some(pending) = self.state.pending.get(&id).cloned() else { return Ok(()) };
        // Recorded by another process, or before a restart from an older
        // snapshot: the log is the judge.
        if app.log.stream_revision(&id.stream()).await? > 0 {
            tracing::info!(notification = %id, kind = pending.notice.kind(), "notification already recorded; not sent again");
            self.state.finish(id);
            self.attempts.remove(&id);
            return Ok(());
        }
        let delivered = self.attempts.get(&id).and_then(|a| a.delivered.clone());
        let event = match delivered {
            Some(sent) => NotificationEvent::NotificationSent(sent),
            None => {
                let composed = {
                    let ledger = app.projections.read().await;
                    compose(app, &ledger, &self.mailer.from, id, &pending.notice)
                };
                match composed {
                    Compose::Wait => {
                        self.attempts.entry(id).or_default().next = Some(Instant::now() + TICK);
                        return Ok(());
                    }
                    Compose::Skip(reason) => NotificationEvent::NotificationSkipped(NotificationSkipped {
                        id,
                        notice: pending.notice,
                        reason,
                    }),
                    Compose::Send { message, recipients, message_id } => {
                        let Some(sent) = self.send(app, id, pending.notice, *message, recipients, message_id).await
                        else {
                            return Ok(());
                        };
                        NotificationEvent::NotificationSent(sent)
                    }
                }
            }
        };
        self.record(app, id, event).await
    }

    /// Hands a message to the SMTP server; what to record once it accepted
    /// it, or `None` after a failure (the notice waits for its next attempt).
    async fn send(
        &mut self,
        app: &Ledger,
        id: NotificationId,
        notice: Notice,
        message: Message,
        recipients: Vec<UserId>,
        message_id: String,
    ) -> Option<NotificationSent> {
        let kind = notice.kind();
        let attempts = self.attempts.entry(id).or_default();
        if let Err(error) = self.mailer.send(message).await {
            app.metrics.notification(kind, "failed");
            let mut delay = attempts.failed();
            // A refusal of this message (5xx: a recipient, its size)
            // concerns it alone; anything else is the server's, and holds
            // back every e-mail.
            if !error.is_permanent() {
                delay = self.server_retry.failed();
                self.server_paused_until = Some(Instant::now() + delay);
            }
            tracing::warn!(
                notification = %id, kind, server = %self.mailer.server, failures = attempts.retry.failures(),
                retry_in_s = delay.as_secs(), %error, "notification not sent; will retry"
            );
            return None;
        }
        self.server_retry.succeeded();
        self.server_paused_until = None;
        let recipients_count = recipients.len();
        let sent = NotificationSent { id, notice, recipients, message_id };
        attempts.delivered = Some(sent.clone());
        tracing::info!(notification = %id, kind, recipients = recipients_count, "notification sent");
        Some(sent)
    }

    /// Records a notice as sent or skipped, expecting its stream not to
    /// exist (another process may have recorded it just before).
    async fn record(&mut self, app: &Ledger, id: NotificationId, event: NotificationEvent) -> Result<(), StoreError> {
        let kind = match &event {
            NotificationEvent::NotificationSent(sent) => sent.notice.kind(),
            NotificationEvent::NotificationSkipped(skipped) => skipped.notice.kind(),
        };
        let metadata = Metadata { actor: Some("notifications".into()), ..Metadata::default() };
        let command = Command {
            stream_id: id.stream(),
            expected: ExpectedRevision::NoStream,
            idempotency: None,
            events: vec![NewEvent::from_event(&event, new_event_id(), app.now(), &metadata)],
        };
        match app.log.append_one(command).await {
            // Recorded now, or by another process just before.
            Ok(Ok(_)) | Ok(Err(Rejection::WrongRevision { .. })) => {
                match &event {
                    NotificationEvent::NotificationSkipped(skipped) => {
                        app.metrics.notification(kind, "skipped");
                        tracing::info!(notification = %id, kind, reason = skipped.reason.as_str(), "notification skipped");
                    }
                    NotificationEvent::NotificationSent(_) => app.metrics.notification(kind, "sent"),
                }
                self.state.finish(id);
                self.attempts.remove(&id);
                Ok(())
            }
            Ok(Err(rejection)) => {
                tracing::error!(notification = %id, kind, %rejection, "notification not recorded");
                self.attempts.entry(id).or_default().failed();
                Ok(())
            }
            Err(error) => {
                self.attempts.entry(id).or_default().failed();
                Err(error)
            }
        }
    }
}

/// Builds the e-mail of a due notice from the read models, or says why not.
fn compose(app: &Ledger, ledger: &LedgerState, from: &Mailbox, id: NotificationId, notice: &Notice) -> Compose {
    let today = app.today();
    let Some(organization) = ledger.organizations.get(&notice.organization_id()) else {
        return Compose::Skip(SkipReason::Obsolete);
    };
    let Some(subscription) = ledger.subscriptions.get(&notice.subscription_id()) else {
        return Compose::Skip(SkipReason::Obsolete);
    };
    if subscription.status_on(today).is_ended() {
        return Compose::Skip(SkipReason::Obsolete);
    }
    let Some(about) = about(&organization.created.name, subscription, today) else {
        return Compose::Skip(SkipReason::Obsolete);
    };
    let mail = match notice {
        Notice::Onboarding { license_id, .. } => onboarding(app, ledger, organization, *license_id, &about),
        Notice::ExpiryReminder { .. } => (expiry_reminder(subscription, today).as_ref() == Some(notice))
            .then(|| mail::expiry_reminder(&about, today)),
        Notice::UsageWarning { metric, level, month, .. } => {
            let values = ledger.usage.get(&notice.subscription_id()).map(|u| u.month(*month).total).unwrap_or_default();
            // The month's latest limits known: an upgrade since may have
            // raised them past the value.
            let limits_on = today.min(domain::calendar::last_of_month(*month));
            subscription.spec_on(&app.catalog, limits_on).and_then(|(spec, extra_gb)| {
                // A correction may have brought the month back under the level.
                let check = usage_levels(&values, spec, extra_gb).into_iter().find(|c| c.metric == *metric);
                check.filter(|check| check.level >= *level).map(|check| mail::usage_warning(&about, *month, &check))
            })
        }
        // Each dunning notice only while it is still true: a payment
        // failure paid since, or a suspension lifted since, is not sent.
        Notice::PaymentFailed { .. } => match subscription.dunning {
            Some(dunning) if !dunning.suspended => Some(mail::payment_failed(&about, dunning.suspend_at)),
            _ => None,
        },
        Notice::Suspended { .. } => subscription.dunning.filter(|d| d.suspended).map(|_| mail::suspended(&about)),
        Notice::Restored { .. } => subscription.dunning.is_none().then(|| mail::restored(&about)),
    };
    match mail {
        Some(mail) => message(from, id, &organization.state, notice, mail),
        None => Compose::Skip(SkipReason::Obsolete),
    }
}

/// The onboarding e-mail with its license key, while the key is the one to
/// use (issued, neither superseded nor revoked).
fn onboarding(
    app: &Ledger,
    ledger: &LedgerState,
    organization: &projections::OrganizationEntry,
    license_id: domain::LicenseId,
    about: &mail::About,
) -> Option<mail::Mail> {
    let license = ledger.licenses.get(&license_id)?;
    let (Some(issued), None, None) = (&license.issued, &license.superseded, &license.revoked) else { return None };
    // A key issued after another of the same subscription is an upgrade's.
    let upgrade = organization.licenses.iter().filter(|other| **other != license_id).any(|other| {
        ledger.licenses.get(other).and_then(|l| l.issued.as_ref()).is_some_and(|earlier| {
            earlier.subscription_id == issued.subscription_id && earlier.issued_at <= issued.issued_at
        })
    });
    let key = domain::keys::license_key(&app.keys.license, issued.license_id, issued.nonce);
    Some(mail::onboarding(about, &key, upgrade))
}

/// The message of a mail to the organization's active admins; an
/// onboarding e-mail waits for its first admin, anything else without one
/// is skipped.
fn message(
    from: &Mailbox,
    id: NotificationId,
    organization: &domain::organization::Organization,
    notice: &Notice,
    mail: mail::Mail,
) -> Compose {
    let admins: Vec<(UserId, &str)> = organization
        .users
        .iter()
        .filter(|(_, user)| user.active && user.role == Some(Role::Admin))
        .map(|(id, user)| (*id, user.email.as_str()))
        .collect();
    let mut to = Mailboxes::new();
    let mut recipients = Vec::new();
    for (user_id, email) in admins {
        // Addresses were checked when the user was added; one that the
        // SMTP library still refuses is left out, not the whole message.
        if let Ok(address) = email.parse::<lettre::Address>() {
            to.push(Mailbox::new(None, address));
            recipients.push(user_id);
        }
    }
    if recipients.is_empty() {
        return match notice {
            Notice::Onboarding { .. } => Compose::Wait,
            _ => Compose::Skip(SkipReason::NoRecipient),
        };
    }
    // The same Message-ID on every attempt: a message repeated after a
    // crash is recognisable as the same one.
    let message_id = format!("<{id}@{}>", from.email.domain());
    let message = Message::builder()
        .from(from.clone())
        .mailbox(lettre::message::header::To::from(to))
        .subject(mail.subject)
        .message_id(Some(message_id.clone()))
        .header(ContentType::TEXT_PLAIN)
        .body(mail.body);
    match message {
        Ok(message) => Compose::Send { message: Box::new(message), recipients, message_id },
        Err(error) => {
            tracing::error!(notification = %id, %error, "notification e-mail could not be built");
            Compose::Skip(SkipReason::Obsolete)
        }
    }
}

fn about(organization: &str, subscription: &Subscription, today: chrono::NaiveDate) -> Option<mail::About> {
    let tier = subscription.tier_on(today)?.tier;
    Some(mail::About {
        organization: organization.to_owned(),
        tier: tier.to_string(),
        start_date: subscription.start_date?,
        end_date: subscription.end_date?,
    })
}

/// Runs a loaded outbox for good: a round every [`TICK`] and after appends.
pub async fn run(app: Ledger, mut outbox: Outbox) {
    tracing::info!(server = %outbox.mailer.server, from_sequence = outbox.state.sequence, "notifications on");
    let mut appends = app.log.watch_appends();
    loop {
        if let Err(error) = outbox.round(&app).await {
            tracing::warn!(%error, "notification outbox round failed; trying again");
        }
        let _ = tokio::time::timeout(TICK, appends.changed()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::notification::UsageMetric;
    use domain::{OrganizationId, SubscriptionId};
    use uuid::Uuid;

    fn warning(level: UsageLevel, month: u32) -> Notice {
        Notice::UsageWarning {
            organization_id: OrganizationId(Uuid::from_u128(1)),
            subscription_id: SubscriptionId(Uuid::from_u128(2)),
            metric: UsageMetric::ApiCalls,
            level,
            month: chrono::NaiveDate::from_ymd_opt(2026, month, 1).unwrap(),
        }
    }

    #[test]
    fn a_notice_is_kept_once_and_no_80_percent_warning_follows_a_100_percent_one() {
        let mut state = OutboxState::default();
        assert!(state.add(warning(UsageLevel::Approaching, 1), 5));
        assert!(!state.add(warning(UsageLevel::Approaching, 1), 6), "already pending");
        assert!(state.add(warning(UsageLevel::Reached, 1), 7), "100% after 80%");
        state.finish(warning(UsageLevel::Approaching, 1).id());
        state.finish(warning(UsageLevel::Reached, 1).id());
        assert!(state.pending.is_empty());
        assert!(!state.add(warning(UsageLevel::Approaching, 1), 8), "recorded: never again");
        assert!(state.add(warning(UsageLevel::Reached, 2), 9));
        assert!(!state.add(warning(UsageLevel::Approaching, 2), 10), "80% after 100% of the same month");
        assert_eq!(state.pending[&warning(UsageLevel::Reached, 2).id()].decided_at, 9);
    }

    #[test]
    fn retries_double_from_one_second_to_five_minutes() {
        let mut retry = RETRY;
        let waits: Vec<u64> = (1..=12).map(|_| retry.failed().as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(RETRY.delay(u32::MAX), RETRY_MAX);
    }

    #[test]
    fn the_smtp_url_is_checked_and_its_credentials_never_shown() {
        let settings = |url: &str, from: &str| Settings { smtp_url: url.into(), from: from.into() };
        let mailer = Mailer::new(&settings("smtp://user:s3cret@mail.example.com:2525", "Ledger <b@example.com>"));
        assert_eq!(mailer.unwrap().server, "mail.example.com:2525");
        assert!(Mailer::new(&settings("smtps://mail.example.com", "b@example.com")).is_ok());
        assert!(Mailer::new(&settings("smtp://mail.example.com:587?tls=required", "b@example.com")).is_ok());
        for bad in ["http://mail.example.com", "mail.example.com", "smtp://", "smtp://h?tls=sometimes"] {
            assert!(Mailer::new(&settings(bad, "b@example.com")).is_err(), "{bad}");
        }
        assert!(Mailer::new(&settings("smtp://h", "not an address")).is_err());
        let shown = format!("{:?}", settings("smtp://user:s3cret@h", "b@example.com"));
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}
