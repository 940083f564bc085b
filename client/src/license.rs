//! [`LicenseClient`]: validates online, remembers the signed lease, and
//! judges it offline (see [`crate::offline`] for the threat model).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use domain::Timestamp;
use domain::lease::{LeaseBody, LeaseError, SignedLease};
use ed25519_dalek::{SigningKey, VerifyingKey};

use crate::enforce::{self, Action, Decision, Denial};
use crate::files;
use crate::identity;
use crate::offline::{self, CLOCK_PERSIST_INTERVAL, ClockMarks, HeldLease, Judgement};
use crate::wire::{self, ValidateRequest, ValidateResponse};
use crate::{ClientError, Config, LEASE_KEYS_MAX, LeaseRejection, Status, ValidationCode, parse_public_key};

/// The lease as the server sent it (`{"payload","signature"}`), nothing
/// else, so that every byte of the file is covered by the signature.
pub const LEASE_FILE: &str = "lease.json";
/// The clock high-water marks.
pub const CLOCK_FILE: &str = "clock.json";
/// Bytes of randomness in a nonce (128 bits: never repeats).
const NONCE_BYTES: usize = 16;
/// A 429 without a readable `Retry-After` waits this long.
const RETRY_AFTER_DEFAULT: Duration = Duration::from_secs(60);
/// A `Retry-After` is honoured up to this long, so a wrong header cannot
/// keep the client offline until its lease runs out.
const RETRY_AFTER_MAX: Duration = Duration::from_secs(3600);

/// How long [`LicenseClient::run_heartbeats`] waits when the lease names
/// no heartbeat interval (no lease yet, or the server could not be reached).
pub const HEARTBEAT_RETRY: Duration = Duration::from_secs(60);
/// The shortest heartbeat interval the client honours (the server's own
/// lower bound), so a lease cannot make it spin.
const HEARTBEAT_INTERVAL_MIN_SECONDS: u32 = 60;

/// The license of one deployment. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct LicenseClient {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    http: reqwest::Client,
    validate_url: String,
    challenge_url: String,
    keys_url: String,
    /// The deployment's own key pair (`identity`), and its public key as
    /// the server names it in leases.
    deployment_key: SigningKey,
    deployment_public: String,
    lease_path: PathBuf,
    clock_path: PathBuf,
    state: Mutex<State>,
    /// Serializes writes of the state files. Taken before `state`, never
    /// while holding it.
    writes: Mutex<()>,
}

struct State {
    lease: Option<HeldLease>,
    marks: ClockMarks,
    /// What `clock.json` holds, and when (monotonic) it was last written.
    persisted: ClockMarks,
    persisted_at: Instant,
    learned_keys: Vec<VerifyingKey>,
    /// The server's last word when it said "not valid"; cleared by a valid
    /// answer.
    invalid: Option<ValidationCode>,
    reached_server: bool,
    warnings: Vec<String>,
    retry_not_before: Option<Instant>,
}

/// What a judgement found, borrowed from the state while it is locked.
enum Verdict<'a> {
    Valid(&'a HeldLease),
    Invalid(&'a ValidationCode),
    ClockTampered,
    NoLease,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind (no invariant
    // spans two fields mid-update), so a poisoned lock is still usable.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl LicenseClient {
    /// Opens the state directory (creating it) and loads the stored lease,
    /// verifying it once: a lease file that does not verify, in any byte,
    /// is treated as no lease.
    pub fn new(config: Config) -> Result<Self, ClientError> {
        config.check()?;
        files::create_dir(&config.state_dir)?;
        remove_temporaries(&config.state_dir);
        let deployment_key = identity::load_or_create(&config.state_dir)?;
        let deployment_public = domain::deployment_key::public_key_text(&deployment_key.verifying_key());
        let lease_path = config.state_dir.join(LEASE_FILE);
        let clock_path = config.state_dir.join(CLOCK_FILE);
        let stored_marks: Option<ClockMarks> =
            files::read_optional(&clock_path)?.and_then(|bytes| serde_json::from_slice(&bytes).ok());
        let now = config.time.monotonic();
        let mut marks =
            stored_marks.unwrap_or(ClockMarks { wall_high_water_us: i64::MIN, server_time_high_water_us: i64::MIN });
        let lease = match files::read_optional(&lease_path)? {
            Some(bytes) => load_lease(&config, &deployment_public, &bytes).ok(),
            None => None,
        };
        // An air-gapped deployment's license file, when it is newer.
        let license_file = crate::airgap::stored_license_file(&config, &deployment_public)?;
        let from_file =
            license_file.as_ref().is_some_and(|file| lease.as_ref().is_none_or(|l| file.issued_at > l.issued_at));
        let lease = if from_file { license_file } else { lease };
        let lease = lease.map(|body| {
            let client_time_us = body.client_time.expect("load_lease requires a clientTime").as_micros();
            // Without a marks file the signed times are the floor: the
            // clock cannot be earlier than when we asked.
            marks.wall_high_water_us = marks.wall_high_water_us.max(client_time_us);
            marks.server_time_high_water_us = marks.server_time_high_water_us.max(body.issued_at.as_micros());
            match from_file {
                true => crate::airgap::held_license_file(body, marks.server_time_high_water_us, now),
                false => held_lease(&config, body, marks.server_time_high_water_us, now),
            }
        });
        let http = wire::http_client(config.request_timeout, &config.client_version)?;
        let inner = Inner {
            validate_url: config.url("/api/v1/license/validate"),
            challenge_url: config.url("/api/v1/license/challenge"),
            deployment_key,
            deployment_public,
            keys_url: config.url("/api/v1/keys"),
            http,
            lease_path,
            clock_path,
            state: Mutex::new(State {
                lease,
                marks,
                persisted: stored_marks.unwrap_or(marks),
                persisted_at: now,
                learned_keys: Vec::new(),
                invalid: None,
                reached_server: false,
                warnings: Vec::new(),
                retry_not_before: None,
            }),
            writes: Mutex::new(()),
            config,
        };
        Ok(Self { inner: Arc::new(inner) })
    }

    /// Asks the server, with a fresh nonce and our wall clock, and accepts
    /// its lease only if it verifies with a pinned key, is bound to our
    /// license key and deployment, and echoes this request's nonce and
    /// clientTime; the lease is then stored durably before this returns.
    ///
    /// When the server cannot be reached (network error, 5xx, 408, 429 or
    /// an answer cut off) this falls back to the offline judgement of the
    /// stored lease (`offline: true`). A 429's `Retry-After` is honoured:
    /// calls within it do not contact the server.
    ///
    /// Errors: a 400 or an answer outside the contract
    /// ([`ClientError::Http`], [`ClientError::Protocol`]), a "valid" answer
    /// whose lease cannot be trusted ([`ClientError::LeaseRejected`], the
    /// stored lease is kept), or the state directory failing.
    pub async fn validate(&self) -> Result<Status, ClientError> {
        let inner = &self.inner;
        let config = &inner.config;
        let started = config.time.monotonic();
        let (retry_not_before, last_sync) = {
            let state = lock(&inner.state);
            let last_sync = state.lease.as_ref().map_or(Timestamp::from_micros(0), |lease| lease.body.issued_at);
            (state.retry_not_before, last_sync)
        };
        if let Some(not_before) = retry_not_before.filter(|t| started < *t) {
            let wait = not_before.saturating_duration_since(started).as_secs();
            return Ok(self.offline(format!("rate limited by the server; next attempt in {wait} s")).await);
        }
        let challenge = match self.fetch_challenge(started).await? {
            Ok(challenge) => challenge,
            Err(why) => return Ok(self.offline(why).await),
        };
        let nonce = new_nonce()?;
        let client_time = Timestamp::from_datetime(config.time.wall());
        let signature = self.prove(&challenge, &nonce);
        let request = ValidateRequest {
            license_key: &config.license_key,
            client_info: wire::ClientInfo {
                version: &config.client_version,
                deployment_id: &config.deployment_id,
                last_sync: last_sync.to_rfc3339(),
            },
            nonce: &nonce,
            client_time: client_time.to_rfc3339(),
            floating: config.floating,
            deployment_key: &inner.deployment_public,
            challenge: &challenge,
            signature: &signature,
        };
        let response = match inner.http.post(&inner.validate_url).json(&request).send().await {
            Ok(response) => response,
            Err(e) => {
                let why = format!("the server could not be reached: {}", wire::describe(&e));
                return Ok(self.offline(why).await);
            }
        };
        let http_status = response.status();
        if http_status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            let wait = wire::retry_after(&response).unwrap_or(RETRY_AFTER_DEFAULT).min(RETRY_AFTER_MAX);
            lock(&inner.state).retry_not_before = Some(started + wait);
            return Ok(self.offline(format!("rate limited by the server for {} s", wait.as_secs())).await);
        }
        if http_status.is_server_error() || http_status == reqwest::StatusCode::REQUEST_TIMEOUT {
            return Ok(self.offline(format!("the server answered {http_status}")).await);
        }
        let body = match wire::read_body(response).await {
            Ok(body) => body,
            Err(e) => return Ok(self.offline(format!("the server's answer was cut off: {e}")).await),
        };
        if http_status != reqwest::StatusCode::OK {
            return Err(ClientError::Http { status: http_status.as_u16(), body: wire::truncated(&body) });
        }
        let asked = Asked { nonce: &nonce, client_time, deployment_key: &inner.deployment_public };
        match judge_answer(&body, config, &self.lease_keys(), &asked)? {
            Answer::Refused(code) => self.drop_lease(code).await,
            Answer::Ignored { code, why } => Ok(self.offline(format!("a refusal ({code}) was ignored: {why}")).await),
            Answer::Lease { signed, body, key, warnings } => {
                self.accept(signed, body, warnings).await?;
                if config.learn_lease_keys && config.lease_public_keys.contains(&key) {
                    self.learn_keys(key).await;
                }
                Ok(self.status())
            }
        }
    }

    /// A floating deployment's heartbeat ([`Config::floating`]): a
    /// validation, answered and judged as [`validate`](Self::validate); it
    /// keeps the deployment's place and extends its lease. Counted against
    /// the key's daily cap of validations like any.
    pub async fn heartbeat(&self) -> Result<Status, ClientError> {
        self.validate().await
    }

    /// How often the server asks this floating deployment to send a
    /// heartbeat (signed in its lease); `None` for a fixed deployment or
    /// without a lease.
    pub fn heartbeat_interval(&self) -> Option<Duration> {
        let state = lock(&self.inner.state);
        let seconds = state.lease.as_ref()?.body.heartbeat_interval_seconds?;
        Some(Duration::from_secs(u64::from(seconds.max(HEARTBEAT_INTERVAL_MIN_SECONDS))))
    }

    /// Sends heartbeats until the task is aborted: one now, then one every
    /// [`heartbeat_interval`](Self::heartbeat_interval) (every
    /// [`HEARTBEAT_RETRY`] while there is none: no lease yet, or the server
    /// unreachable). A killed process stops them, and its place frees when
    /// its lease ends.
    pub fn run_heartbeats(&self) -> tokio::task::JoinHandle<()> {
        let client = self.clone();
        tokio::spawn(async move {
            loop {
                let _ = client.heartbeat().await;
                let wait = client.heartbeat_interval().unwrap_or(HEARTBEAT_RETRY);
                tokio::time::sleep(wait).await;
            }
        })
    }
    /// A fresh challenge for the deployment key to sign; `Ok(Err(why))`
    /// when the server could not be reached (or asked us to wait), which
    /// the caller judges offline, like a validation without an answer.
    async fn fetch_challenge(&self, started: Instant) -> Result<Result<String, String>, ClientError> {
        let inner = &self.inner;
        let response = match inner.http.post(&inner.challenge_url).send().await {
            Ok(response) => response,
            Err(e) => return Ok(Err(format!("the server could not be reached: {}", wire::describe(&e)))),
        };
        let http_status = response.status();
        if http_status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            let wait = wire::retry_after(&response).unwrap_or(RETRY_AFTER_DEFAULT).min(RETRY_AFTER_MAX);
            lock(&inner.state).retry_not_before = Some(started + wait);
            return Ok(Err(format!("rate limited by the server for {} s", wait.as_secs())));
        }
        if http_status.is_server_error() || http_status == reqwest::StatusCode::REQUEST_TIMEOUT {
            return Ok(Err(format!("the server answered {http_status}")));
        }
        let body = match wire::read_body(response).await {
            Ok(body) => body,
            Err(e) => return Ok(Err(format!("the server's answer was cut off: {e}"))),
        };
        if http_status != reqwest::StatusCode::OK {
            return Err(ClientError::Http { status: http_status.as_u16(), body: wire::truncated(&body) });
        }
        let answer: wire::ChallengeResponse =
            serde_json::from_slice(&body).map_err(|e| ClientError::Protocol(e.to_string()))?;
        if answer.challenge.len() != domain::deployment_key::CHALLENGE_CHARS {
            return Err(ClientError::Protocol("the challenge is not one the server mints".into()));
        }
        Ok(Ok(answer.challenge))
    }

    /// The deployment key's signature over `challenge`, for this license
    /// key, deployment and request `nonce` (`domain::deployment_key`).
    fn prove(&self, challenge: &str, nonce: &str) -> String {
        let config = &self.inner.config;
        let binding = domain::lease::key_binding(&config.license_key);
        let key = &self.inner.deployment_key;
        domain::deployment_key::sign_proof(key, challenge, &binding, &config.deployment_id, nonce)
    }

    /// The deployment's public key (base64url), as the server binds it.
    pub fn deployment_public_key(&self) -> &str {
        &self.inner.deployment_public
    }

    /// The offline judgement of the stored lease, now. Arithmetic only,
    /// except that at most once per [`CLOCK_PERSIST_INTERVAL`] (and when the
    /// lease is first found expired) it writes the clock marks to disk
    /// (one small fsynced file), so elapsed time survives a restart.
    pub fn status(&self) -> Status {
        self.judge(|verdict, state| match verdict {
            Verdict::Valid(lease) => Status::Valid {
                code: ValidationCode::parse(&lease.body.code),
                tier: lease.body.tier.clone(),
                limits: lease.body.limits.clone(),
                features: lease.body.features.clone(),
                lease_expires_at: Timestamp::from_micros(lease.expires_at_us).to_datetime(),
                offline: !state.reached_server,
                warnings: state.warnings.clone(),
            },
            Verdict::Invalid(code) => Status::Invalid { code: code.clone() },
            Verdict::ClockTampered => Status::ClockTampered,
            Verdict::NoLease => Status::NoLease,
        })
    }

    /// One of the four enforcement checks (BILLING-RULES, "Enforcement"),
    /// from the stored lease. Without a valid lease nothing is allowed.
    pub fn check(&self, action: &Action<'_>) -> Decision {
        self.judge(|verdict, _| match verdict {
            Verdict::Valid(lease) => enforce::decide(&lease.body, action),
            Verdict::Invalid(code) => Decision::Denied(Denial::Invalid(code.clone())),
            Verdict::ClockTampered => Decision::Denied(Denial::ClockTampered),
            Verdict::NoLease => Decision::Denied(Denial::NoLease),
        })
    }

    /// Whether the tier includes `feature` (and the license is usable now).
    pub fn allows_feature(&self, feature: &str) -> bool {
        self.check(&Action::AccessFeature(feature)).is_allowed()
    }

    /// The keys that verify leases: the pinned ones, then any learned.
    pub fn lease_keys(&self) -> Vec<VerifyingKey> {
        let learned = lock(&self.inner.state).learned_keys.clone();
        self.inner.config.lease_public_keys.iter().copied().chain(learned).collect()
    }

    fn judge<R>(&self, decide: impl FnOnce(Verdict<'_>, &State) -> R) -> R {
        let config = &self.inner.config;
        let wall_us = config.time.wall().timestamp_micros();
        let now = config.time.monotonic();
        let tolerance_us = offline::micros(config.clock_tolerance);
        let (result, persist) = {
            let mut guard = lock(&self.inner.state);
            let state = &mut *guard;
            let judgement = match &state.lease {
                _ if state.invalid.is_some() => None,
                Some(lease) => Some(offline::judge(lease, &mut state.marks, wall_us, now, tolerance_us)),
                None => None,
            };
            let persist = state.lease.as_ref().is_some_and(|lease| {
                state.marks != state.persisted
                    && (now.saturating_duration_since(state.persisted_at) >= CLOCK_PERSIST_INTERVAL
                        || (judgement == Some(Judgement::Expired)
                            && state.persisted.server_time_high_water_us < lease.expires_at_us))
            });
            if persist {
                // Whether or not the write below succeeds, the next attempt
                // waits a full interval: a failing disk must not turn every
                // check into I/O.
                state.persisted_at = now;
            }
            let verdict = match (&state.invalid, &state.lease, judgement) {
                (Some(code), _, _) => Verdict::Invalid(code),
                (None, Some(lease), Some(Judgement::Valid)) => Verdict::Valid(lease),
                (None, Some(_), Some(Judgement::ClockTampered)) => Verdict::ClockTampered,
                _ => Verdict::NoLease,
            };
            (decide(verdict, state), persist)
        };
        if persist {
            // A failure is retried after the next interval; the marks stay
            // raised in memory meanwhile.
            let _ = self.inner.persist_marks();
        }
        result
    }

    /// The server could not be reached: judge the stored lease, and write
    /// the marks now, since an outage is when they matter.
    async fn offline(&self, reason: String) -> Status {
        {
            let mut state = lock(&self.inner.state);
            state.reached_server = false;
            state.warnings = vec![reason];
        }
        let status = self.status();
        let inner = Arc::clone(&self.inner);
        // A failure is retried by later checks; the verdict stands.
        let _ = tokio::task::spawn_blocking(move || inner.persist_marks()).await;
        status
    }

    /// Stores a verified fresh lease (marks first, then the lease, so a
    /// crash between leaves the old lease with new marks, never the
    /// reverse) and re-anchors the clock marks to it: the server has just
    /// vouched for the time, which also clears a clock that was once ahead.
    async fn accept(&self, signed: SignedLease, body: LeaseBody, warnings: Vec<String>) -> Result<(), ClientError> {
        let inner = Arc::clone(&self.inner);
        let job = move || {
            let config = &inner.config;
            let received = config.time.monotonic();
            let client_time_us = body.client_time.expect("check_body requires a clientTime").as_micros();
            let marks = ClockMarks {
                wall_high_water_us: config.time.wall().timestamp_micros().max(client_time_us),
                server_time_high_water_us: body.issued_at.as_micros(),
            };
            let lease_bytes = serde_json::to_vec(&signed).expect("a signed lease serializes");
            let held = held_lease(config, body, marks.server_time_high_water_us, received);
            let _writes = lock(&inner.writes);
            files::write_atomic(&inner.clock_path, &serde_json::to_vec(&marks).expect("marks serialize"))?;
            files::write_atomic(&inner.lease_path, &lease_bytes)?;
            let mut state = lock(&inner.state);
            *state = State {
                lease: Some(held),
                marks,
                persisted: marks,
                persisted_at: received,
                learned_keys: std::mem::take(&mut state.learned_keys),
                invalid: None,
                reached_server: true,
                warnings,
                retry_not_before: None,
            };
            Ok(())
        };
        tokio::task::spawn_blocking(job).await.expect("storing the lease does not panic")
    }

    /// The server said "not valid": forget the lease, in memory first (so
    /// nothing is allowed even if the disk fails), then on disk.
    async fn drop_lease(&self, code: ValidationCode) -> Result<Status, ClientError> {
        let inner = Arc::clone(&self.inner);
        let status = Status::Invalid { code: code.clone() };
        let job = move || {
            let _writes = lock(&inner.writes);
            {
                let mut state = lock(&inner.state);
                state.lease = None;
                state.invalid = Some(code);
                state.reached_server = true;
                state.warnings.clear();
                state.retry_not_before = None;
            }
            files::remove_durably(&inner.lease_path)
        };
        tokio::task::spawn_blocking(job).await.expect("dropping the lease does not panic")?;
        Ok(status)
    }

    /// Learns the server's next lease key, but only when the server's key
    /// list names as current the pinned key that just verified a fresh
    /// lease, and that key signed the next one (`leases.nextSignature`): a
    /// list or a next key anyone could have written is ignored.
    async fn learn_keys(&self, verified_with: VerifyingKey) {
        let outcome = self.fetch_lease_keys().await;
        let mut state = lock(&self.inner.state);
        match outcome {
            Ok((current, next)) if current == verified_with => match next {
                Some((next, Some(signature))) if domain::lease::verify_next_key(&current, &next, &signature) => {
                    let known =
                        self.inner.config.lease_public_keys.contains(&next) || state.learned_keys.contains(&next);
                    let room = self.inner.config.lease_public_keys.len() + state.learned_keys.len() < LEASE_KEYS_MAX;
                    if !known && room {
                        state.learned_keys.push(next);
                    }
                }
                Some(_) => {
                    state.warnings.push("the server's next lease key is not signed by its current key; ignored".into())
                }
                None => {}
            },
            Ok(_) => state.warnings.push("the server's key list does not name the key of its lease; ignored".into()),
            Err(e) => state.warnings.push(format!("the server's lease keys could not be read: {e}")),
        }
    }

    /// The server's current lease key, and its next one with the current
    /// key's signature over it (if it sent one).
    async fn fetch_lease_keys(&self) -> Result<(VerifyingKey, Option<NextKey>), String> {
        let response = self.inner.http.get(&self.inner.keys_url).send().await.map_err(|e| wire::describe(&e))?;
        if response.status() != reqwest::StatusCode::OK {
            return Err(format!("the server answered {}", response.status()));
        }
        parse_lease_keys(&wire::read_body(response).await?)
    }
}

/// The server's current lease key, and its next one with the current
/// key's signature over it (if it sent one), from `GET /api/v1/keys`.
pub(crate) fn parse_lease_keys(body: &[u8]) -> Result<(VerifyingKey, Option<NextKey>), String> {
    let keys: wire::KeysResponse = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let current = parse_public_key(&keys.leases.current).map_err(|e| e.to_string())?;
    let next = match keys.leases.next {
        Some(next) => {
            let signature =
                keys.leases.next_signature.and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok());
            Some((parse_public_key(&next).map_err(|e| e.to_string())?, signature))
        }
        None => None,
    };
    Ok((current, next))
}

/// An announced next lease key and the current key's signature over it.
pub(crate) type NextKey = (VerifyingKey, Option<Vec<u8>>);

/// What a 200 answer to a validation request says, once checked. Made
/// once per validation and consumed at once: the lease's size is no cost.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Answer {
    /// A lease signed by one of the keys, for this request.
    Lease { signed: SignedLease, body: LeaseBody, key: VerifyingKey, warnings: Vec<String> },
    /// A refusal the server signed for this very request.
    Refused(ValidationCode),
    /// A refusal that cannot be trusted, treated as no answer (a man in
    /// the middle, a proxy's error page), and why.
    Ignored { code: String, why: &'static str },
}

/// What one validation request sent that its answer must echo.
pub(crate) struct Asked<'a> {
    pub nonce: &'a str,
    pub client_time: Timestamp,
    /// The deployment's public key (base64url).
    pub deployment_key: &'a str,
}

/// Reads and checks the body of a 200 answer to the validation request
/// `asked`, against the lease `keys`. Pure (the fuzz target
/// `client_answer` calls it through `crate::fuzzing`).
pub(crate) fn judge_answer(
    body: &[u8],
    config: &Config,
    keys: &[VerifyingKey],
    asked: &Asked<'_>,
) -> Result<Answer, ClientError> {
    let nonce = asked.nonce;
    let answer: ValidateResponse = serde_json::from_slice(body).map_err(|e| ClientError::Protocol(e.to_string()))?;
    if !answer.is_valid {
        // Only a refusal the server signed for this very request switches
        // the deployment off.
        return Ok(match trusted_refusal(&answer, config, keys, nonce) {
            Ok(code) => Answer::Refused(code),
            Err(why) => Answer::Ignored { code: answer.code, why },
        });
    }
    let signed = answer.lease.ok_or(LeaseRejection::Missing)?;
    let (body, key) = verify_with(keys, &signed, &config.license_key).map_err(LeaseRejection::from)?;
    check_body(&body, config, asked.deployment_key, Some(nonce), Some(asked.client_time))?;
    Ok(Answer::Lease { signed, body, key, warnings: answer.warnings })
}

/// The code of a refusal the server signed for this request: with one of
/// `keys`, for our license key, deployment and nonce, and not a valid
/// code. Why not, otherwise.
fn trusted_refusal(
    answer: &ValidateResponse,
    config: &Config,
    keys: &[VerifyingKey],
    nonce: &str,
) -> Result<ValidationCode, &'static str> {
    let signed = answer.refusal.as_ref().ok_or("it is not signed")?;
    let body = keys
        .iter()
        .find_map(|key| signed.verify(key, &config.license_key).ok())
        .ok_or("it is not signed by a pinned lease key for this license key")?;
    if body.version != 1 {
        return Err("its format version is not supported");
    }
    if body.nonce != nonce {
        return Err("it answers another request (its nonce is not this one's)");
    }
    if body.deployment_id != config.deployment_id {
        return Err("it is for another deployment");
    }
    let code = ValidationCode::parse(&body.code);
    if code.is_valid() {
        return Err("it carries a valid code");
    }
    Ok(code)
}

impl LicenseClient {
    /// Air-gapped activation, step 1 (`crate::airgap`): writes a new
    /// activation request to `out` for an admin to upload, and keeps it
    /// in the state directory until its license file is loaded. No network.
    pub fn write_activation_request(&self, out: &std::path::Path) -> Result<(), ClientError> {
        let inner = &self.inner;
        let file = crate::airgap::activation_request(&inner.config, &inner.deployment_key, &inner.deployment_public)?;
        let _writes = lock(&inner.writes);
        crate::airgap::write_file(&inner.config.state_dir.join(crate::airgap::PENDING_REQUEST_FILE), &file)?;
        crate::airgap::write_file(out, &file)
    }

    /// Air-gapped activation, step 2: loads the license file the server
    /// answered the pending request with. It must verify with a pinned
    /// lease key and be bound to this license key, deployment, key pair
    /// and the request's nonce and clock; it is then stored and judged
    /// offline until its own end (at most 90 days), the clock set back
    /// detected as for a lease. No network.
    pub fn load_license_file(&self, path: &std::path::Path) -> Result<Status, ClientError> {
        let inner = &self.inner;
        let config = &inner.config;
        let bytes = files::read_optional(path)?.ok_or(ClientError::LeaseRejected(LeaseRejection::Missing))?;
        let request = crate::airgap::pending_request(config)?;
        let body = crate::airgap::open_license_file(config, &inner.deployment_public, &bytes, Some(&request))?;
        let now = config.time.monotonic();
        {
            let _writes = lock(&inner.writes);
            let mut marks = lock(&inner.state).marks;
            let client_time_us = request.client_time.as_micros();
            marks.wall_high_water_us =
                marks.wall_high_water_us.max(client_time_us).max(config.time.wall().timestamp_micros());
            marks.server_time_high_water_us = marks.server_time_high_water_us.max(body.issued_at.as_micros());
            files::write_atomic(&inner.clock_path, &serde_json::to_vec(&marks).expect("marks serialize"))?;
            files::write_atomic(&config.state_dir.join(crate::airgap::LICENSE_FILE), &bytes)?;
            files::remove_durably(&config.state_dir.join(crate::airgap::PENDING_REQUEST_FILE))?;
            let held = crate::airgap::held_license_file(body, marks.server_time_high_water_us, now);
            let mut state = lock(&inner.state);
            state.lease = Some(held);
            state.marks = marks;
            state.persisted = marks;
            state.persisted_at = now;
            state.invalid = None;
            state.warnings.clear();
        }
        Ok(self.status())
    }

    /// Air-gapped usage: writes `reports` (each day at most once, at most
    /// `domain::airgap::EXPORT_DAYS_MAX`) to `out` as a usage export signed
    /// with the deployment's key, under the license file loaded. No network.
    pub fn export_usage(&self, reports: &[crate::UsageReport], out: &std::path::Path) -> Result<(), ClientError> {
        let inner = &self.inner;
        let config = &inner.config;
        let bytes = files::read_optional(&config.state_dir.join(crate::airgap::LICENSE_FILE))?
            .ok_or(ClientError::LeaseRejected(LeaseRejection::Missing))?;
        let license = crate::airgap::open_license_file(config, &inner.deployment_public, &bytes, None)?;
        let file =
            crate::airgap::usage_export(config, &inner.deployment_key, &inner.deployment_public, &license, reports)?;
        crate::airgap::write_file(out, &file)
    }
}

impl Inner {
    fn persist_marks(&self) -> Result<(), ClientError> {
        let _writes = lock(&self.writes);
        let marks = lock(&self.state).marks;
        files::write_atomic(&self.clock_path, &serde_json::to_vec(&marks).expect("marks serialize"))?;
        lock(&self.state).persisted = marks;
        Ok(())
    }
}

impl std::fmt::Debug for LicenseClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LicenseClient").field("config", &self.inner.config).finish_non_exhaustive()
    }
}

fn held_lease(config: &Config, body: LeaseBody, anchor_server_us: i64, at: Instant) -> HeldLease {
    let issued_us = body.issued_at.as_micros();
    let expires_at_us =
        body.lease_expires_at.as_micros().min(issued_us.saturating_add(offline::micros(config.offline_grace)));
    let client_time_us = body.client_time.expect("leases are checked to carry a clientTime").as_micros();
    HeldLease { body, client_time_us, expires_at_us, anchor_server_us, anchor_at: at }
}

/// A lease read back from disk: every check of a fresh one except the
/// nonce (which only the request that fetched it knew).
pub(crate) fn load_lease(config: &Config, deployment_key: &str, bytes: &[u8]) -> Result<LeaseBody, LeaseRejection> {
    let signed: SignedLease = serde_json::from_slice(bytes).map_err(|_| LeaseError::Malformed)?;
    let (body, _) = verify_with(&config.lease_public_keys, &signed, &config.license_key)?;
    check_body(&body, config, deployment_key, None, None)?;
    Ok(body)
}

/// Verifies with each key in turn; returns the body and the key that
/// verified it. A lease that is malformed, or correctly signed but for
/// another license key, is refused at once: no other key changes that.
fn verify_with(
    keys: &[VerifyingKey],
    signed: &SignedLease,
    license_key: &str,
) -> Result<(LeaseBody, VerifyingKey), LeaseError> {
    for key in keys {
        match signed.verify(key, license_key) {
            Ok(body) => return Ok((body, *key)),
            Err(LeaseError::BadSignature) => continue,
            Err(other) => return Err(other),
        }
    }
    Err(LeaseError::BadSignature)
}

pub(crate) fn check_body(
    body: &LeaseBody,
    config: &Config,
    deployment_key: &str,
    nonce: Option<&str>,
    client_time: Option<Timestamp>,
) -> Result<(), LeaseRejection> {
    if body.version != 1 {
        return Err(LeaseRejection::UnsupportedVersion(body.version));
    }
    if body.deployment_id != config.deployment_id {
        return Err(LeaseRejection::OtherDeployment(body.deployment_id.clone()));
    }
    // Bound to this deployment's own key pair: a lease copied from another
    // machine (or issued before it proved its key) is of no use here.
    if body.deployment_key.as_deref() != Some(deployment_key) {
        return Err(LeaseRejection::OtherDeploymentKey);
    }
    if nonce.is_some_and(|nonce| nonce != body.nonce) {
        return Err(LeaseRejection::StaleNonce);
    }
    // The signed clientTime is what offline time is measured from, so a
    // lease without it (or with another) is of no use to this client.
    match (body.client_time, client_time) {
        (None, _) => return Err(LeaseRejection::ClientTimeMismatch),
        (Some(signed), Some(sent)) if signed != sent => return Err(LeaseRejection::ClientTimeMismatch),
        _ => {}
    }
    if !ValidationCode::parse(&body.code).is_valid() {
        return Err(LeaseRejection::NotAValidCode(body.code.clone()));
    }
    Ok(())
}

fn new_nonce() -> Result<String, ClientError> {
    let mut bytes = [0u8; NONCE_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| ClientError::Random(e.to_string()))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// Leftovers of a write interrupted by a crash; never the file of record.
fn remove_temporaries(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        if entry.file_name().to_str().is_some_and(files::is_temporary) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}
