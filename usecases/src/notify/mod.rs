//! Notifications: the sender of the outbox the read models keep
//! (`projections::models::notifications`), over SMTP, recording each send
//! as an event.
//!
//! The projection decides a [`Notice`] from each event that calls for one
//! — a license issued (onboarding, with the key), a usage report at 80% or
//! 100% of a limit, a payment failing, a suspension, a reactivation — and
//! keeps it pending until the log says it was sent or skipped. The clock's
//! notice, the expiry reminder 30 days before a term that does not renew
//! ends, is read from the term-end index once a [`TICK`]. The sender keeps
//! nothing that grows with the log: the backoff of the notices it is
//! retrying (at most [`ATTEMPTS_TRACKED_MAX`]) and where it began.
//!
//! Each send is recorded as `NotificationSent` on `notification/{id}`,
//! expecting no stream, with an id derived from what made the notice due
//! (`domain::notification`). So:
//! - a restart, another node, or a former leader waking up never sends a
//!   recorded notice again: the stream is looked up right before each send,
//!   and only the leader sends (see [`crate::leading`]; leadership is
//!   checked before each e-mail);
//! - a crash between the SMTP server's acceptance and the append repeats
//!   that one message on the next start (with the same `Message-ID`); so
//!   can a leader stalled in that gap while another node takes over;
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
//! The first start with notifications on begins at the log's head (the
//! snapshot [`SNAPSHOT_NAME`] keeps that sequence, once, for every node):
//! turning them on does not send the history.
//!
//! Recipients are the organization's active admin users. The license key
//! is derived again from its `LicenseIssued` event's nonce when the e-mail
//! is written, exists only in the message in memory, and is never logged.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use domain::backoff::Backoff;
use domain::notification::{
    Notice, NotificationEvent, NotificationId, NotificationSent, NotificationSkipped, SkipReason, expiry_reminder,
    usage_levels,
};
use domain::organization::Role;
use domain::subscription::Subscription;
use domain::{Metadata, SubscriptionId, UserId};
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Mailboxes};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use projections::db::DbError;
use projections::models::{licenses, notifications, organizations, subscriptions, usage};
use serde::Deserialize;
use store::{Command, ExpectedRevision, NewEvent, Rejection, Snapshot, StoreError};

use crate::Ledger;
use crate::command::new_event_id;

pub mod mail;

/// Where the sender began (the log's head when notifications were first
/// turned on): one row, written once, the same for every node.
pub const SNAPSHOT_NAME: &str = "notification-outbox-start-v1";
/// The snapshot of the earlier, in-memory outbox, read once to begin where
/// it was.
pub const LEGACY_SNAPSHOT_NAME: &str = "notification-outbox-v1";
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
/// Pending notices read per page…
pub const PENDING_PAGE: usize = 200;
/// …and pages read per round, at most (notices backing off are passed over).
pub const PENDING_PAGES_PER_ROUND_MAX: usize = 5;
/// Subscriptions looked at for expiry reminders per round (one page; the
/// next round goes on from there).
pub const REMINDER_PAGE: usize = 200;
/// Notices whose retries are remembered, at most; beyond it, those due
/// again are forgotten first (they only lose the length of their next wait).
pub const ATTEMPTS_TRACKED_MAX: usize = 1024;
/// The outbox waits at most this long for its read models to include the
/// log's head before a round.
pub const CATCH_UP_WAIT: Duration = Duration::from_millis(500);
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
    /// The customer portal's public URL (`--portal-url`): the onboarding
    /// e-mail of an organization's only admin carries a sign-in link.
    pub portal_url: Option<String>,
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
    portal_url: Option<String>,
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
        Ok(Self { transport, from, server: url, portal_url: settings.portal_url.clone() })
    }

    /// Sends one e-mail to one address now (the portal's sign-in links,
    /// which are not notices of the outbox: they are asked for, and a
    /// lost one is asked for again).
    /// With a `sender_name`, the e-mail comes from that name at the
    /// configured address (a white-labelled organization's invitation).
    pub async fn send_mail(&self, to: &str, mail: mail::Mail, sender_name: Option<String>) -> anyhow::Result<()> {
        let to: Mailbox = to.parse().map_err(|e| anyhow::anyhow!("not an e-mail address: {e}"))?;
        let from = match sender_name {
            Some(name) => Mailbox::new(Some(name), self.from.email.clone()),
            None => self.from.clone(),
        };
        let message = Message::builder()
            .from(from)
            .to(to)
            .subject(mail.subject)
            .header(ContentType::TEXT_PLAIN)
            .body(mail.body)?;
        self.send(message).await?;
        Ok(())
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

/// The in-memory outbox's snapshot ([`LEGACY_SNAPSHOT_NAME`]), read once.
#[derive(Deserialize)]
struct LegacyPending {
    #[allow(dead_code)]
    notice: Notice,
    decided_at: u64,
}

#[derive(Deserialize)]
struct LegacyState {
    sequence: u64,
    pending: BTreeMap<NotificationId, LegacyPending>,
    #[allow(dead_code)]
    done: BTreeSet<NotificationId>,
}

impl LegacyState {
    /// Where the table outbox begins so that it sends what the in-memory
    /// one had pending and nothing it had not decided.
    fn from(&self) -> u64 {
        let first = self.pending.values().map(|p| p.decided_at).min();
        first.map_or(self.sequence, |at| at.saturating_sub(1).min(self.sequence))
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

/// The retries of the notices that failed, bounded by [`ATTEMPTS_TRACKED_MAX`].
#[derive(Debug, Default)]
struct Retries(HashMap<NotificationId, Attempts>);

impl Retries {
    fn ready(&self, id: &NotificationId, now: Instant) -> bool {
        self.0.get(id).and_then(|a| a.next).is_none_or(|next| next <= now)
    }

    fn entry(&mut self, id: NotificationId) -> &mut Attempts {
        if self.0.len() >= ATTEMPTS_TRACKED_MAX && !self.0.contains_key(&id) {
            let now = Instant::now();
            // A delivered message is kept: forgetting it would send it again.
            self.0.retain(|_, a| a.delivered.is_some() || a.next.is_some_and(|next| next > now));
            if self.0.len() >= ATTEMPTS_TRACKED_MAX {
                let soonest = self.0.iter().filter(|(_, a)| a.delivered.is_none()).min_by_key(|(_, a)| a.next);
                if let Some(soonest) = soonest.map(|(id, _)| *id) {
                    self.0.remove(&soonest);
                }
            }
        }
        self.0.entry(id).or_default()
    }

    fn delivered(&self, id: &NotificationId) -> Option<NotificationSent> {
        self.0.get(id).and_then(|a| a.delivered.clone())
    }

    fn done(&mut self, id: &NotificationId) {
        self.0.remove(id);
    }
}

/// The sender: where it began, what it is retrying, and its SMTP client.
pub struct Outbox {
    /// Notices decided at or before this sequence are history: never sent.
    from: u64,
    retries: Retries,
    mailer: Mailer,
    /// The SMTP server failed (unreachable, timed out, "try later"): no
    /// e-mail is attempted before then, so an outage costs one attempt per
    /// backoff, not one per waiting e-mail.
    server_paused_until: Option<Instant>,
    /// Server failures in a row, for that backoff.
    server_retry: Backoff,
    /// When the clock's notices were last looked for, and where the next
    /// page of candidates begins.
    clock_scanned: Option<Instant>,
    reminders_after: Option<SubscriptionId>,
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
    /// Reads where the sender began; on the very first start, begins at the
    /// log's head (or where the in-memory outbox was) and saves that at
    /// once. The server loads it before anything else can append, so a
    /// first start misses nothing after it. A snapshot this version cannot
    /// read stops the start: it is a bug to look at, not a reason to begin
    /// again and e-mail the history.
    pub async fn load(app: &Ledger, mailer: Mailer) -> anyhow::Result<Self> {
        let decode_error = |e| anyhow::anyhow!("the notification outbox's snapshot does not decode: {e}");
        let from = match app.log.load_snapshot(SNAPSHOT_NAME).await? {
            Some(snapshot) => domain::codec::decode::<u64>(&snapshot.state).map_err(decode_error)?,
            None => {
                let (from, sequence, chain) = match app.log.load_snapshot(LEGACY_SNAPSHOT_NAME).await? {
                    Some(legacy) => {
                        let state = domain::codec::decode::<LegacyState>(&legacy.state).map_err(decode_error)?;
                        (state.from(), state.sequence, legacy.chain_hash)
                    }
                    None => {
                        let head = app.log.head().await?;
                        (head.sequence, head.sequence, Some(head.chain_hash))
                    }
                };
                save(app, from, sequence, chain).await?;
                from
            }
        };
        Ok(Self {
            from,
            retries: Retries::default(),
            mailer,
            server_paused_until: None,
            server_retry: RETRY,
            clock_scanned: None,
            reminders_after: None,
        })
    }

    /// Notices decided at or before this sequence are never sent.
    pub fn from(&self) -> u64 {
        self.from
    }

    fn paused(&self) -> bool {
        self.server_paused_until.is_some_and(|until| until > Instant::now())
    }

    /// One round: the clock's notices once a tick, then the pending ones.
    pub async fn round(&mut self, app: &Ledger) -> anyhow::Result<()> {
        // Read models that do not match the log (a rollback) decide nothing.
        if app.models.failed().is_some() {
            return Ok(());
        }
        if self.clock_scanned.is_none_or(|at| at.elapsed() >= TICK) {
            self.send_reminders(app).await?;
            self.clock_scanned = Some(Instant::now());
        }
        self.send_pending(app).await
    }

    /// The expiry reminders due today among one page of candidates.
    async fn send_reminders(&mut self, app: &Ledger) -> anyhow::Result<()> {
        let (due, next) =
            notifications::due_reminders_page(&app.models.db, app.today(), self.reminders_after, REMINDER_PAGE).await?;
        self.reminders_after = next;
        for notice in due {
            if self.paused() {
                break;
            }
            if self.retries.ready(&notice.id(), Instant::now()) {
                self.deliver(app, notice).await?;
            }
        }
        Ok(())
    }

    /// Pending notices in the order decided, passing over those backing off.
    async fn send_pending(&mut self, app: &Ledger) -> anyhow::Result<()> {
        let (mut after, mut sent) = (None, 0);
        for _ in 0..PENDING_PAGES_PER_ROUND_MAX {
            let page = notifications::pending_since(&app.models.db, self.from, after, PENDING_PAGE).await?;
            let full = page.len() == PENDING_PAGE;
            after = page.last().map(|pending| (pending.decided_at, pending.id));
            for pending in page {
                if sent >= SENDS_PER_ROUND_MAX || self.paused() {
                    return Ok(());
                }
                if self.retries.ready(&pending.id, Instant::now()) {
                    sent += 1;
                    self.deliver(app, pending.notice).await?;
                }
            }
            if !full {
                break;
            }
        }
        Ok(())
    }

    async fn deliver(&mut self, app: &Ledger, notice: Notice) -> anyhow::Result<()> {
        let id = notice.id();
        // Recorded by another node, or just now and not yet in the read
        // models: the log is the judge.
        if app.log.stream_revision(&id.stream()).await? > 0 {
            tracing::debug!(notification = %id, kind = notice.kind(), "notification already recorded; not sent again");
            self.retries.done(&id);
            return Ok(());
        }
        let event = match self.retries.delivered(&id) {
            Some(sent) => NotificationEvent::NotificationSent(sent),
            None => match compose(app, &self.mailer, id, &notice).await? {
                Compose::Wait => {
                    self.retries.entry(id).next = Some(Instant::now() + TICK);
                    return Ok(());
                }
                Compose::Skip(reason) => {
                    NotificationEvent::NotificationSkipped(NotificationSkipped { id, notice, reason })
                }
                Compose::Send { message, recipients, message_id } => {
                    // Only the leader sends: checked right before the e-mail.
                    if !crate::leading::leading(app) {
                        return Ok(());
                    }
                    let Some(sent) = self.send(app, id, notice, *message, recipients, message_id).await else {
                        return Ok(());
                    };
                    NotificationEvent::NotificationSent(sent)
                }
            },
        };
        Ok(self.record(app, id, event).await?)
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
        if let Err(error) = self.mailer.send(message).await {
            app.metrics.notification(kind, "failed");
            let attempts = self.retries.entry(id);
            let mut delay = attempts.failed();
            let failures = attempts.retry.failures();
            // A refusal of this message (5xx: a recipient, its size)
            // concerns it alone; anything else is the server's, and holds
            // back every e-mail.
            if !error.is_permanent() {
                delay = self.server_retry.failed();
                self.server_paused_until = Some(Instant::now() + delay);
            }
            tracing::warn!(
                notification = %id, kind, server = %self.mailer.server, failures,
                retry_in_s = delay.as_secs(), %error, "notification not sent; will retry"
            );
            return None;
        }
        self.server_retry.succeeded();
        self.server_paused_until = None;
        let recipients_count = recipients.len();
        let sent = NotificationSent { id, notice, recipients, message_id };
        self.retries.entry(id).delivered = Some(sent.clone());
        tracing::info!(notification = %id, kind, recipients = recipients_count, "notification sent");
        Some(sent)
    }

    /// Records a notice as sent or skipped, expecting its stream not to
    /// exist (another node may have recorded it just before).
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
            // Recorded now, or by another node just before.
            Ok(Ok(_)) | Ok(Err(Rejection::WrongRevision { .. })) => {
                match &event {
                    NotificationEvent::NotificationSkipped(skipped) => {
                        app.metrics.notification(kind, "skipped");
                        tracing::info!(notification = %id, kind, reason = skipped.reason.as_str(), "notification skipped");
                    }
                    NotificationEvent::NotificationSent(_) => app.metrics.notification(kind, "sent"),
                }
                self.retries.done(&id);
                Ok(())
            }
            Ok(Err(rejection)) => {
                tracing::error!(notification = %id, kind, %rejection, "notification not recorded");
                self.retries.entry(id).failed();
                Ok(())
            }
            Err(error) => {
                self.retries.entry(id).failed();
                Err(error)
            }
        }
    }
}

/// Saves where the sender begins (at `sequence` of the log, `chain` its
/// chain hash, so a log rolled back behind it is noticed).
async fn save(app: &Ledger, from: u64, sequence: u64, chain: Option<domain::record::Hash>) -> Result<(), StoreError> {
    let bytes = domain::codec::encode(&from);
    let digest =
        domain::record::Hash(*blake3::Hasher::new_derive_key(DIGEST_CONTEXT).update(&bytes).finalize().as_bytes());
    let snapshot = Snapshot { name: SNAPSHOT_NAME.into(), sequence, chain_hash: chain, digest, state: bytes };
    app.log.save_snapshot(snapshot, app.now()).await
}

/// Builds the e-mail of a due notice from the read models, or says why not.
async fn compose(app: &Ledger, mailer: &Mailer, id: NotificationId, notice: &Notice) -> Result<Compose, DbError> {
    let from = &mailer.from;
    let (db, today) = (&app.models.db, app.today());
    let Some(organization) = organizations::organization(db, notice.organization_id()).await? else {
        return Ok(Compose::Skip(SkipReason::Obsolete));
    };
    let Some(subscription) = subscriptions::subscription(db, notice.subscription_id()).await? else {
        return Ok(Compose::Skip(SkipReason::Obsolete));
    };
    if subscription.status_on(today).is_ended() {
        return Ok(Compose::Skip(SkipReason::Obsolete));
    }
    // A white-labelled organization's e-mails name it by its display name,
    // in the text and as the sender's name.
    let brand = crate::branding::display_name(app, organization.id).await?;
    let name = brand.as_deref().unwrap_or(&organization.created.name);
    let Some(about) = about(name, &subscription, today) else {
        return Ok(Compose::Skip(SkipReason::Obsolete));
    };
    let from = &match brand {
        Some(brand) => Mailbox::new(Some(brand), from.email.clone()),
        None => from.clone(),
    };
    let mail = match notice {
        Notice::Onboarding { license_id, .. } => onboarding(app, &organization, *license_id, &about)
            .await?
            .map(|mail| with_sign_in_link(app, mailer.portal_url.as_deref(), &organization, mail)),
        Notice::ExpiryReminder { .. } => (expiry_reminder(&subscription, today).as_ref() == Some(notice))
            .then(|| mail::expiry_reminder(&about, today)),
        Notice::UsageWarning { .. } => usage_warning(app, &subscription, notice, &about).await?,
        // Each dunning notice only while it is still true: a payment
        // failure paid since, or a suspension lifted since, is not sent.
        Notice::PaymentFailed { .. } => match subscription.dunning {
            Some(dunning) if !dunning.suspended => Some(mail::payment_failed(&about, dunning.suspend_at)),
            _ => None,
        },
        Notice::Suspended { .. } => subscription.dunning.filter(|d| d.suspended).map(|_| mail::suspended(&about)),
        Notice::Restored { .. } => subscription.dunning.is_none().then(|| mail::restored(&about)),
    };
    Ok(match mail {
        Some(mail) => message(from, id, &organization.state, notice, mail),
        None => Compose::Skip(SkipReason::Obsolete),
    })
}

/// The usage warning while the month's values still reach its level.
async fn usage_warning(
    app: &Ledger,
    subscription: &Subscription,
    notice: &Notice,
    about: &mail::About,
) -> Result<Option<mail::Mail>, DbError> {
    let Notice::UsageWarning { metric, level, month, .. } = notice else { return Ok(None) };
    let values = usage::month(&app.models.db, notice.subscription_id(), *month).await?.month(*month).total;
    // The month's latest limits known: an upgrade since may have raised
    // them past the value.
    let limits_on = app.today().min(domain::calendar::last_of_month(*month));
    Ok(subscription.spec_on(&app.catalog, limits_on).and_then(|(spec, extra_gb)| {
        // A correction may have brought the month back under the level.
        let check = usage_levels(&values, spec, extra_gb).into_iter().find(|c| c.metric == *metric);
        check.filter(|check| check.level >= *level).map(|check| mail::usage_warning(about, *month, &check))
    }))
}

/// The onboarding e-mail with its license key, while the key is the one to
/// use (issued, neither superseded nor revoked).
async fn onboarding(
    app: &Ledger,
    organization: &organizations::OrganizationRow,
    license_id: domain::LicenseId,
    about: &mail::About,
) -> Result<Option<mail::Mail>, DbError> {
    let Some(license) = licenses::license(&app.models.db, license_id).await? else { return Ok(None) };
    let (Some(issued), None, None) = (&license.issued, &license.superseded, &license.revoked) else {
        return Ok(None);
    };
    // A key issued after another of the same subscription is an upgrade's.
    let others = licenses::of_organization(&app.models.db, organization.id).await?;
    let upgrade = others.iter().filter(|(other, _)| *other != license_id).any(|(_, other)| {
        other.issued.as_ref().is_some_and(|earlier| {
            earlier.subscription_id == issued.subscription_id && earlier.issued_at <= issued.issued_at
        })
    });
    // A key whose signing key is gone cannot be shown: no e-mail rather
    // than a wrong key.
    let Some(key) = app.keys.issued_license_key(issued) else {
        tracing::error!(license = %issued.license_id.0, "no signing key makes the issued license key");
        return Ok(None);
    };
    Ok(Some(mail::onboarding(about, &key, upgrade)))
}

/// The onboarding e-mail of an organization with one admin (Checkout's)
/// carries that admin's sign-in link, valid three days; with several
/// admins each asks for their own on the sign-in page.
fn with_sign_in_link(
    app: &Ledger,
    portal_url: Option<&str>,
    organization: &organizations::OrganizationRow,
    mut mail: mail::Mail,
) -> mail::Mail {
    let Some(portal_url) = portal_url else { return mail };
    let mut admins = organization.state.users.iter().filter(|(_, u)| u.active && u.role == Some(Role::Admin));
    let (Some((user_id, _)), None) = (admins.next(), admins.next()) else { return mail };
    let lifetime = domain::signin::INVITATION_LINK_MICROS;
    if let Ok(token) = crate::signin::token(app, organization.id, *user_id, lifetime) {
        let url = crate::signin::url(portal_url, &token);
        mail.body =
            format!("Sign in to the customer portal (this link works once, within 3 days):\n{url}\n\n{}", mail.body);
    }
    mail
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

/// Pending notices of one organization read per page when dropping them…
pub const DROP_PAGE: usize = 200;
/// …and pages at most (an organization has a few notices pending; the
/// bound keeps a read model that does not follow from looping for ever).
pub const DROP_PAGES_MAX: usize = 50;

/// Drops the organization's notifications not sent yet (its data was
/// erased, issue 16): each is recorded as `NotificationSkipped`
/// (obsolete), so no node sends it. A notice recorded meanwhile by the
/// sender is left as it is. Returns how many were dropped.
pub async fn drop_unsent(app: &Ledger, organization_id: domain::OrganizationId) -> Result<u64, crate::Error> {
    let metadata = Metadata { actor: Some("privacy".into()), ..Metadata::default() };
    let mut dropped = 0;
    for _ in 0..DROP_PAGES_MAX {
        let page = notifications::pending_of_organization(&app.models.db, organization_id, DROP_PAGE).await?;
        if page.is_empty() {
            break;
        }
        let mut last = 0;
        for pending in page {
            let (id, notice) = (pending.id, pending.notice);
            let event = NotificationEvent::NotificationSkipped(NotificationSkipped {
                id,
                notice,
                reason: SkipReason::Obsolete,
            });
            let command = Command {
                stream_id: id.stream(),
                expected: ExpectedRevision::NoStream,
                idempotency: None,
                events: vec![NewEvent::from_event(&event, new_event_id(), app.now(), &metadata)],
            };
            match app.log.append_one(command).await? {
                Ok(appended) => {
                    dropped += 1;
                    last = appended.last_sequence;
                }
                Err(Rejection::WrongRevision { .. }) => {}
                Err(other) => return Err(crate::Error::Internal(other.to_string())),
            }
        }
        let head = app.log.head().await?.sequence.max(last);
        app.models.wait_for(head, CATCH_UP_WAIT * 10).await.map_err(|_| crate::Error::ProjectionLagging(head))?;
    }
    Ok(dropped)
}

/// Runs a loaded outbox for good, while this node leads (see
/// [`crate::leading`]): a round every [`TICK`] and after appends, once the
/// read models include them.
pub async fn run(app: Ledger, mut outbox: Outbox) {
    tracing::info!(server = %outbox.mailer.server, from_sequence = outbox.from, "notifications on");
    let mut appends = app.log.watch_appends();
    loop {
        crate::leading::wait(&app).await;
        if let Ok(head) = app.log.head().await {
            let _ = app.models.wait_for(head.sequence, CATCH_UP_WAIT).await;
        }
        if let Err(error) = outbox.round(&app).await {
            tracing::warn!(%error, "notification outbox round failed; trying again");
        }
        let _ = tokio::time::timeout(TICK, appends.changed()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::notification::UsageLevel;
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
    fn retries_are_remembered_for_a_bounded_number_of_notices_and_a_delivered_one_is_kept() {
        let mut retries = Retries::default();
        let delivered = NotificationId(Uuid::from_u128(7));
        retries.entry(delivered).next = Some(Instant::now() + RETRY_MAX);
        let sent = NotificationSent {
            id: delivered,
            notice: warning(UsageLevel::Reached, 1),
            recipients: vec![],
            message_id: "m".into(),
        };
        retries.entry(delivered).delivered = Some(sent);
        for n in 0..(ATTEMPTS_TRACKED_MAX as u128 * 2) {
            retries.entry(NotificationId(Uuid::from_u128(1000 + n))).failed();
        }
        assert!(retries.0.len() <= ATTEMPTS_TRACKED_MAX, "{}", retries.0.len());
        assert!(retries.delivered(&delivered).is_some(), "a delivered message is never forgotten");
    }

    #[test]
    fn the_table_outbox_begins_where_the_in_memory_one_had_its_first_pending_notice() {
        let pending = |at: &[u64]| {
            at.iter()
                .map(|at| {
                    let notice = warning(UsageLevel::Approaching, 1 + (*at % 12) as u32);
                    (NotificationId(Uuid::from_u128(u128::from(*at))), LegacyPending { notice, decided_at: *at })
                })
                .collect()
        };
        let legacy = |at: &[u64]| LegacyState { sequence: 12, pending: pending(at), done: BTreeSet::new() };
        assert_eq!(legacy(&[9, 7]).from(), 6, "the notices it had pending are sent");
        assert_eq!(legacy(&[]).from(), 12, "nothing decided before its checkpoint is sent");
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
        let settings = |url: &str, from: &str| Settings { smtp_url: url.into(), from: from.into(), portal_url: None };
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
