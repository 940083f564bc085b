//! The offline judgement: may this deployment keep working on the lease it
//! holds, without asking the server?
//!
//! # Threat model
//!
//! The adversary is the machine's own operator, who would like the software
//! to keep working after the license ended or was revoked. They control the
//! wall clock, the state directory and when the process runs; they do not
//! hold the server's lease signing key. (They could patch this library out
//! of the binary; no client-side scheme stops that. The aim is that no
//! *configuration* change, clock setting or file edit extends a lease.)
//!
//! What each piece of evidence is trusted with:
//!
//! * **The lease** (Ed25519, pinned key, bound to the license key, the
//!   deployment and this request's nonce). Its `issuedAt` is the server's
//!   own time, its `clientTime` our wall clock when we asked, its
//!   `leaseExpiresAt` the end of the grace. Nothing in it can be edited: a
//!   lease file with one byte changed, signed by another key or issued to
//!   another license key or deployment is treated as no lease at all.
//! * **The monotonic clock** measures how long this process has run. It
//!   cannot be set, so while the process runs it bounds elapsed time from
//!   below, whatever the wall clock says.
//! * **The wall clock**, read as a *difference* from the signed
//!   `clientTime`: the client's skew against the server cancels out, so a
//!   machine whose clock is hours off still gets exactly its grace.
//! * **The high-water marks** (`clock.json`): the latest wall time ever seen
//!   and the latest server time ever estimated, raised on every check and
//!   written to disk at least every [`CLOCK_PERSIST_INTERVAL`]. They carry
//!   elapsed time across restarts.
//!
//! The estimate of the server's time now is the **largest** of
//! `issuedAt + monotonic time since receipt` (or since load, continuing
//! from the persisted mark), `issuedAt + (max(wall, wall mark) − clientTime)`,
//! and the server-time mark. Because it is a maximum, setting the clock back
//! can never make time pass slower; setting it forward only ends the lease
//! sooner. A wall clock more than the tolerance (default 5 minutes) earlier
//! than the wall mark or than the signed `clientTime` is reported as
//! [`ClockTampered`](crate::Status::ClockTampered): nothing is allowed until
//! the clock is put right or the server is reached again (a successful
//! validation re-anchors both marks to the fresh lease).
//!
//! What remains possible, and why it is accepted:
//!
//! * Setting the clock back by less than the tolerance at each restart loses
//!   at most that much of the downtime per restart (while running, the
//!   monotonic clock still counts).
//! * Time elapsed after the last persisted mark and before a kill is lost
//!   if the clock is also set back: at most the persist interval.
//! * An operator who deletes `clock.json` *and* sets the clock back to the
//!   lease's `clientTime` before every start gets up to the grace of
//!   uptime per start. The signed `clientTime` bounds how far back the clock
//!   may go, and a running process still expires on its monotonic clock;
//!   anything stronger needs trusted hardware, which on-premises servers do
//!   not reliably have.
//! * A replayed old lease file verifies but is judged against the marks and
//!   its own old `clientTime`, so it is already expired unless the marks
//!   were also deleted (the previous point).
//!
//! This module is pure arithmetic so that the check costs well under a
//! microsecond (see `benches/offline.rs`) and can run on every request.

use std::time::{Duration, Instant};

use domain::lease::LeaseBody;
use serde::{Deserialize, Serialize};

/// How often, at most, a check writes the high-water marks to disk.
pub const CLOCK_PERSIST_INTERVAL: Duration = Duration::from_secs(60);

/// A lease that verified, and what the judgement needs from it.
#[derive(Debug, Clone)]
pub(crate) struct HeldLease {
    pub body: LeaseBody,
    /// The signed `clientTime`, required (see `LicenseClient`).
    pub client_time_us: i64,
    /// `leaseExpiresAt`, capped by the configured offline grace.
    pub expires_at_us: i64,
    /// At `anchor_at` (monotonic), the server's time was at least
    /// `anchor_server_us`: the basis of the monotonic estimate.
    pub anchor_server_us: i64,
    pub anchor_at: Instant,
}

/// The high-water marks, as stored in `clock.json`. Both only ever rise,
/// except when a fresh lease from the server re-anchors them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ClockMarks {
    /// The latest wall time seen, microseconds since the epoch.
    pub wall_high_water_us: i64,
    /// The latest estimate of the server's time, microseconds since the epoch.
    pub server_time_high_water_us: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Judgement {
    Valid,
    Expired,
    ClockTampered,
}

/// Judges `lease` at wall time `wall_us` and monotonic time `now`, raising
/// `marks` with what it saw.
pub(crate) fn judge(
    lease: &HeldLease,
    marks: &mut ClockMarks,
    wall_us: i64,
    now: Instant,
    tolerance_us: i64,
) -> Judgement {
    if wall_us.saturating_add(tolerance_us) < marks.wall_high_water_us
        || wall_us.saturating_add(tolerance_us) < lease.client_time_us
    {
        return Judgement::ClockTampered;
    }
    marks.wall_high_water_us = marks.wall_high_water_us.max(wall_us);
    let by_monotonic = lease.anchor_server_us.saturating_add(micros(now.saturating_duration_since(lease.anchor_at)));
    let by_wall =
        lease.body.issued_at.as_micros().saturating_add(marks.wall_high_water_us.saturating_sub(lease.client_time_us));
    let estimate = by_monotonic.max(by_wall).max(marks.server_time_high_water_us);
    marks.server_time_high_water_us = estimate;
    if estimate < lease.expires_at_us { Judgement::Valid } else { Judgement::Expired }
}

pub(crate) fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::lease::{LeaseLimits, key_binding};
    use domain::{LicenseId, OrganizationId, Timestamp};

    const DAY_US: i64 = 24 * 3600 * 1_000_000;
    const MINUTE_US: i64 = 60 * 1_000_000;

    /// A lease issued at server time 1000 days, asked at client wall time
    /// 10 days (the client's clock is far off: only differences count).
    fn lease(at: Instant) -> HeldLease {
        let issued = 1000 * DAY_US;
        let body = LeaseBody {
            version: 1,
            license_id: LicenseId(Default::default()),
            organization_id: OrganizationId(Default::default()),
            key_binding: key_binding("k"),
            deployment_id: "default".into(),
            nonce: "n".into(),
            client_time: Some(Timestamp::from_micros(10 * DAY_US)),
            issued_at: Timestamp::from_micros(issued),
            lease_expires_at: Timestamp::from_micros(issued + 7 * DAY_US),
            code: "VALID".into(),
            tier: "starter".into(),
            limits: LeaseLimits {
                max_users: 5,
                max_data_volume_gb: 1000,
                max_api_calls: 10_000,
                model_size: "small".into(),
            },
            features: vec![],
            heartbeat_interval_seconds: None,
            deployment_key: None,
        };
        HeldLease {
            client_time_us: 10 * DAY_US,
            expires_at_us: issued + 7 * DAY_US,
            anchor_server_us: issued,
            anchor_at: at,
            body,
        }
    }

    fn marks() -> ClockMarks {
        ClockMarks { wall_high_water_us: 10 * DAY_US, server_time_high_water_us: 1000 * DAY_US }
    }

    #[test]
    fn skew_cancels_and_the_grace_is_measured_by_elapsed_time() {
        let t0 = Instant::now();
        let lease = lease(t0);
        let mut m = marks();
        assert_eq!(judge(&lease, &mut m, 10 * DAY_US + 7 * DAY_US - 1, t0, 5 * MINUTE_US), Judgement::Valid);
        assert_eq!(judge(&lease, &mut m, 10 * DAY_US + 7 * DAY_US, t0, 5 * MINUTE_US), Judgement::Expired);
    }

    #[test]
    fn the_largest_estimate_wins_so_a_frozen_wall_clock_does_not_stop_time() {
        let t0 = Instant::now();
        let lease = lease(t0);
        let mut m = marks();
        let later = t0 + Duration::from_secs(7 * 24 * 3600);
        assert_eq!(judge(&lease, &mut m, 10 * DAY_US, later, 5 * MINUTE_US), Judgement::Expired);
    }

    #[test]
    fn a_wall_clock_before_the_mark_or_the_signed_client_time_is_tampering() {
        let t0 = Instant::now();
        let lease = lease(t0);
        let mut m = marks();
        assert_eq!(judge(&lease, &mut m, 12 * DAY_US, t0, 5 * MINUTE_US), Judgement::Valid);
        assert_eq!(judge(&lease, &mut m, 12 * DAY_US - 5 * MINUTE_US - 1, t0, 5 * MINUTE_US), Judgement::ClockTampered);
        // Within the tolerance: allowed, and the estimate does not go back.
        let before = m.server_time_high_water_us;
        assert_eq!(judge(&lease, &mut m, 12 * DAY_US - 5 * MINUTE_US, t0, 5 * MINUTE_US), Judgement::Valid);
        assert_eq!(m.server_time_high_water_us, before);
        let mut fresh = marks();
        assert_eq!(judge(&lease, &mut fresh, 10 * DAY_US - 6 * MINUTE_US, t0, 5 * MINUTE_US), Judgement::ClockTampered);
    }
}
