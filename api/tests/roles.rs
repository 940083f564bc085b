//! The authorization matrix of API.md, "Authentication": every route the
//! router serves, asked by every kind of caller, with the exact answer the
//! roles table demands.
//!
//! The expectations come from API.md, not from the server: where the two
//! disagree the matrix fails and names each disagreeing cell.

// Test code: a scenario or fixture reads best in one piece; the 70-line
// limit (clippy.toml) is for production code.
#![allow(clippy::too_many_lines)]

use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

const OPERATOR_TOKEN: &str = "roles-matrix-operator-token-0123456789abcdef";
const AUDITOR_TOKEN: &str = "roles-matrix-auditor-token-0123456789abcdef";
/// A bearer credential the server never issued.
const GARBAGE_TOKEN: &str = "garbage-credential-nobody-ever-issued-0123456789";

/// The kinds of caller, in the column order of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Operator,
    Auditor,
    /// Organization A's admin, analyst and viewer tokens.
    AAdmin,
    AAnalyst,
    AViewer,
    /// The admin of organization B: a member of another organization.
    BAdmin,
    /// No `Authorization` header.
    Anonymous,
    /// A bearer token the server never issued.
    Garbage,
}

const CALLERS: [Who; 8] =
    [Who::Operator, Who::Auditor, Who::AAdmin, Who::AAnalyst, Who::AViewer, Who::BAdmin, Who::Anonymous, Who::Garbage];

/// What a caller must get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Allowed: any 2xx (the request bodies are chosen to succeed).
    Ok,
    /// Refused: this status with a problem+json body carrying this `code`.
    Refused(u16, &'static str),
}

/// Allowed.
const OK: Expect = Expect::Ok;
/// 403 `forbidden`: authenticated, but the role may not do this.
const FB: Expect = Expect::Refused(403, "forbidden");
/// 404 `not_found`: another organization's resource, as if it did not exist.
const NF: Expect = Expect::Refused(404, "not_found");
/// 401 `unauthorized`: no credential, or one the server does not know.
const UA: Expect = Expect::Refused(401, "unauthorized");
/// 503 `stripe_not_configured`: Stripe webhooks without STRIPE_WEBHOOK_SECRET.
const SN: Expect = Expect::Refused(503, "stripe_not_configured");
/// 409 `sync_not_refused`: a Stripe sync retried that Stripe never refused.
const NR: Expect = Expect::Refused(409, "sync_not_refused");
/// A sync target Stripe never refused (its `/` percent-encoded).
const STRIPE_RETRY: &str = "/api/v1/stripe/syncs/stripe-invoice%2F00000000-0000-7000-8000-0000000000a1:2026-01/retry";
/// 503 `unavailable`: checkout without STRIPE_SECRET_KEY.
const SU: Expect = Expect::Refused(503, "unavailable");
/// 503 `mail_not_configured`: allowed, but this in-process router serves
/// no portal, whose e-mail queue a resend goes through.
const MN: Expect = Expect::Refused(503, "mail_not_configured");
/// 400 `validation_failed`: allowed, but the request breaks a rule (a
/// recurring add-on without the price only the operator may give).
const VF: Expect = Expect::Refused(400, "validation_failed");
/// 409 `not_an_upgrade`: allowed, but an earlier row upgraded this caller's
/// fixture already.
const NU: Expect = Expect::Refused(409, "not_an_upgrade");
/// 409 `feature_not_in_tier`: allowed, but A's tier (starter) has no SSO.
const FT: Expect = Expect::Refused(409, "feature_not_in_tier");

impl std::fmt::Display for Expect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expect::Ok => f.write_str("2xx"),
            Expect::Refused(status, code) => write!(f, "{status} {code}"),
        }
    }
}

/// One route of the router, with a request that succeeds when allowed.
/// Placeholders in `path` and `body`: `{A}` `{B}` `{C}` `{D}` organization
/// ids, `{E}` an organization without a subscription, `{userA}` an active
/// user of A, `{spareTokenA}` a token of A that no caller uses, `{licenseA}`
/// A's first license, `{licenseC}` C's license, `{addonA}` an add-on of A,
/// `{n}` a number unique to the request.
struct Row {
    method: Method,
    path: &'static str,
    body: Option<&'static str>,
    /// Columns: operator, auditor, A-admin, A-analyst, A-viewer, B-admin,
    /// no credential, garbage credential.
    expect: [Expect; 8],
}

const fn row(method: Method, path: &'static str, body: Option<&'static str>, expect: [Expect; 8]) -> Row {
    Row { method, path, body, expect }
}

/// Every method and path of `ledger_api::app`, in the order the rows run
/// against a fresh fixture per caller (so an allowed command always finds
/// the state it needs: an upgrade before the downgrade, the immediate
/// cancellation and the clock last).
///
/// Organization A has a starter subscription and the member callers; B has
/// one and B-admin; C has one and no caller belongs to it (its license is
/// revoked); D and E have none yet (the operator subscribes them).
///
/// Prices are the operator's (BILLING-RULES, "Who sets prices, and
/// bounds"): every price-like input of every route has its rows. The
/// subscription's contract rate (create: operator only anyway), an add-on's
/// `annualPrice`/`oneTimePrice` (add-ons, and add-ons inside an upgrade),
/// add-ons without a catalog price, and the operator's corrections of an
/// add-on. Checkout takes no price at all (the tier's catalog price; its
/// body refuses unknown fields).
fn matrix() -> Vec<Row> {
    const GET: Method = Method::GET;
    const POST: Method = Method::POST;
    const PUT: Method = Method::PUT;
    const DELETE: Method = Method::DELETE;
    const PATCH: Method = Method::PATCH;
    vec![
        // Columns: [operator, auditor, A-admin, A-analyst, A-viewer, B-admin, no credential, garbage credential]
        // Public: no credential needed, and a bad one is not even looked at.
        row(GET, "/health", None, [OK, OK, OK, OK, OK, OK, OK, OK]),
        row(GET, "/ready", None, [OK, OK, OK, OK, OK, OK, OK, OK]),
        // Metrics: the vendor's (or the metrics token's, tests/edge.rs).
        row(GET, "/metrics", None, [OK, OK, FB, FB, FB, FB, UA, UA]),
        row(GET, "/api/v1/keys", None, [OK, OK, OK, OK, OK, OK, OK, OK]),
        // API.md names no credential for the spec; served like the keys.
        row(GET, "/api/v1/openapi.json", None, [OK, OK, OK, OK, OK, OK, OK, OK]),
        // All organizations, log head, audit of all organizations: operator and auditor.
        row(GET, "/api/v1/organizations", None, [OK, OK, FB, FB, FB, FB, UA, UA]),
        row(GET, "/api/v1/log/head", None, [OK, OK, FB, FB, FB, FB, UA, UA]),
        // Revenue analytics and customers (issue 15): the vendor's staff.
        row(GET, "/api/v1/analytics/revenue", None, [OK, OK, FB, FB, FB, FB, UA, UA]),
        row(GET, "/api/v1/analytics/revenue?format=csv", None, [OK, OK, FB, FB, FB, FB, UA, UA]),
        row(GET, "/api/v1/customers?q=org", None, [OK, OK, FB, FB, FB, FB, UA, UA]),
        row(GET, "/api/v1/customers/{A}/timeline", None, [OK, OK, FB, FB, FB, FB, UA, UA]),
        // Proofs: operator and auditor; an organization's analysts and admins
        // for its own events (sequence 1 is A's creation), others as if absent.
        row(GET, "/api/v1/log/proof/inclusion?sequence=1", None, [OK, OK, OK, OK, FB, NF, UA, UA]),
        row(GET, "/api/v1/log/proof/consistency?from=1", None, [OK, OK, FB, FB, FB, FB, UA, UA]),
        // Keeping a checkpoint in the log now: operator only.
        row(POST, "/api/v1/log/checkpoints", None, [OK, FB, FB, FB, FB, FB, UA, UA]),
        row(GET, "/api/v1/audit", None, [OK, OK, FB, FB, FB, FB, UA, UA]),
        // Own organization, analyst and up: audit.
        row(GET, "/api/v1/audit?organizationId={A}", None, [OK, OK, OK, OK, FB, NF, UA, UA]),
        // Own organization, analyst and up: invoices.
        row(GET, "/api/v1/organizations/{A}/invoices", None, [OK, OK, OK, OK, FB, NF, UA, UA]),
        // Operator only: billing runs (a preview, so every allowed call succeeds).
        row(
            POST,
            "/api/v1/billing/runs",
            Some(r#"{"period":"2026-01","preview":true}"#),
            [OK, FB, FB, FB, FB, FB, UA, UA],
        ),
        // Operator only: billing runs' preview, background runs and their
        // progress (an unknown run: the operator meets not_found).
        row(GET, "/api/v1/billing/runs/preview?period=2026-01", None, [OK, FB, FB, FB, FB, FB, UA, UA]),
        row(POST, "/api/v1/billing/runs/background", Some(r#"{"period":"2025-12"}"#), [OK, FB, FB, FB, FB, FB, UA, UA]),
        row(GET, "/api/v1/billing/runs/background", None, [OK, FB, FB, FB, FB, FB, UA, UA]),
        row(GET, "/api/v1/billing/runs/00000000-0000-7000-8000-0000000000b1", None, [NF, FB, FB, FB, FB, FB, UA, UA]),
        // Operator only (the staff billing role, issue 15): voids and
        // credit notes. The fixture issues no invoice, so the operator
        // meets an unknown one (404); the others are refused first.
        row(
            POST,
            "/api/v1/invoices/00000000-0000-7000-8000-0000000000a1/void",
            Some(r#"{"reason":"roles"}"#),
            [NF, FB, FB, FB, FB, FB, UA, UA],
        ),
        row(
            POST,
            "/api/v1/invoices/00000000-0000-7000-8000-0000000000a1/credit-notes",
            Some(r#"{"reason":"roles","lines":[{"description":"x","amount":"1.00"}]}"#),
            [NF, FB, FB, FB, FB, FB, UA, UA],
        ),
        // Resending a customer's user an e-mail (issue 15): support and up,
        // never the auditor nor an organization's own tokens.
        row(
            POST,
            "/api/v1/organizations/{A}/users/00000000-0000-7000-8000-0000000000a2/resend",
            Some(r#"{"kind":"signin"}"#),
            [MN, FB, FB, FB, FB, FB, UA, UA],
        ),
        // Operator only (the staff billing role): the Stripe sync's refused
        // and stuck syncs, a retry (the fixture's Stripe refused nothing:
        // 409) and the reconciliation (Stripe is not configured: 503).
        row(GET, "/api/v1/stripe/syncs", None, [OK, FB, FB, FB, FB, FB, UA, UA]),
        row(POST, STRIPE_RETRY, Some(r#"{}"#), [NR, FB, FB, FB, FB, FB, UA, UA]),
        row(GET, "/api/v1/stripe/reconciliation?period=2026-01", None, [SN, FB, FB, FB, FB, FB, UA, UA]),
        // Reading an invoice's credit notes: its organization's analysts
        // and up, the operator, the auditor; an unknown invoice is 404.
        row(
            GET,
            "/api/v1/invoices/00000000-0000-7000-8000-0000000000a1/credit-notes",
            None,
            [NF, NF, NF, NF, NF, NF, UA, UA],
        ),
        // Own organization, everyone: subscription, licenses, enforcement check.
        row(GET, "/api/v1/subscriptions/{A}", None, [OK, OK, OK, OK, OK, NF, UA, UA]),
        row(GET, "/api/v1/organizations/{A}/licenses", None, [OK, OK, OK, OK, OK, NF, UA, UA]),
        row(GET, "/api/v1/organizations/{A}/usage?period=2026-01", None, [OK, OK, OK, OK, OK, NF, UA, UA]),
        row(GET, "/api/v1/enforcement/{A}/check?action=ADD_USER", None, [OK, OK, OK, OK, OK, NF, UA, UA]),
        row(
            GET,
            "/api/v1/enforcement/{A}/check?action=ACCESS_FEATURE&feature=basic_analytics",
            None,
            [OK, OK, OK, OK, OK, NF, UA, UA],
        ),
        // Operator only: create organizations.
        row(POST, "/api/v1/organizations", Some(r#"{"name":"Org {n}"}"#), [OK, FB, FB, FB, FB, FB, UA, UA]),
        // Own organization, admin: users, tokens.
        row(
            POST,
            "/api/v1/organizations/{A}/users",
            Some(r#"{"email":"user-{n}@a.example","role":"viewer"}"#),
            [OK, FB, OK, FB, FB, NF, UA, UA],
        ),
        // Own organization, admin: SSO settings. A is on starter, so an
        // allowed PUT is refused for the tier (before the issuer is asked),
        // and an allowed GET or DELETE finds nothing configured (404): the
        // refusals of the others are the matrix's point here.
        row(
            PUT,
            "/api/v1/organizations/{A}/sso",
            Some(r#"{"issuerUrl":"https://issuer.example","clientId":"ledger","clientSecret":"s3cret"}"#),
            [FT, FB, FT, FB, FB, NF, UA, UA],
        ),
        row(GET, "/api/v1/organizations/{A}/sso", None, [NF, FB, NF, FB, FB, NF, UA, UA]),
        row(DELETE, "/api/v1/organizations/{A}/sso", None, [NF, FB, NF, FB, FB, NF, UA, UA]),
        // White-label branding: A's admin (and the operator); starter has
        // no white_labeling, so an allowed caller is refused for the tier,
        // and with nothing set GET and DELETE answer 404.
        row(
            PUT,
            "/api/v1/organizations/{A}/branding",
            Some(r##"{"displayName":"Acme","primaryColor":"#1f6feb"}"##),
            [FT, FB, FT, FB, FB, NF, UA, UA],
        ),
        row(GET, "/api/v1/organizations/{A}/branding", None, [NF, FB, NF, FB, FB, NF, UA, UA]),
        row(DELETE, "/api/v1/organizations/{A}/branding", None, [NF, FB, NF, FB, FB, NF, UA, UA]),
        row(
            POST,
            "/api/v1/organizations/{A}/users/{userA}/role",
            Some(r#"{"role":"analyst"}"#),
            [OK, FB, OK, FB, FB, NF, UA, UA],
        ),
        row(POST, "/api/v1/organizations/{A}/users/{userA}/deactivate", None, [OK, FB, OK, FB, FB, NF, UA, UA]),
        row(POST, "/api/v1/organizations/{A}/tokens", Some(r#"{"role":"viewer"}"#), [OK, FB, OK, FB, FB, NF, UA, UA]),
        row(POST, "/api/v1/organizations/{A}/tokens/{spareTokenA}/revoke", None, [OK, FB, OK, FB, FB, NF, UA, UA]),
        // Operator only: create subscriptions (for D, which nobody here belongs to).
        row(
            POST,
            "/api/v1/subscriptions",
            Some(r#"{"organizationId":"{D}","tier":"starter","startDate":"2026-01-01"}"#),
            [OK, FB, FB, FB, FB, FB, UA, UA],
        ),
        // A contract's overage rate is a price: the operator's.
        row(
            POST,
            "/api/v1/subscriptions",
            Some(
                r#"{"organizationId":"{E}","tier":"enterprise","startDate":"2026-01-01","enterpriseOverageRate":"3500.00"}"#,
            ),
            [OK, FB, FB, FB, FB, FB, UA, UA],
        ),
        // Own organization, admin: add-ons at the catalog price (A is on
        // starter here). A price in the request, or an add-on without a
        // catalog price, is the operator's: 403 for the admin, never ignored.
        row(
            POST,
            "/api/v1/subscriptions/{A}/addons",
            Some(r#"{"kind":"extra_data_tb","quantity":1,"effectiveDate":"2026-01-10"}"#),
            [OK, FB, OK, FB, FB, NF, UA, UA],
        ),
        row(
            POST,
            "/api/v1/subscriptions/{A}/addons",
            Some(r#"{"kind":"extra_data_tb","quantity":1000,"annualPrice":"0.01","effectiveDate":"2026-01-10"}"#),
            [OK, FB, FB, FB, FB, NF, UA, UA],
        ),
        row(
            POST,
            "/api/v1/subscriptions/{A}/addons",
            Some(r#"{"kind":"custom_module","quantity":1,"annualPrice":"12000.00","effectiveDate":"2026-01-10"}"#),
            [OK, FB, FB, FB, FB, NF, UA, UA],
        ),
        row(
            POST,
            "/api/v1/subscriptions/{A}/addons",
            Some(r#"{"kind":"dedicated_support","quantity":1,"annualPrice":"24000.00","effectiveDate":"2026-01-10"}"#),
            [OK, FB, FB, FB, FB, NF, UA, UA],
        ),
        row(
            POST,
            "/api/v1/subscriptions/{A}/addons",
            Some(r#"{"kind":"training_session","quantity":1,"oneTimePrice":"500.00","effectiveDate":"2026-01-10"}"#),
            [OK, FB, FB, FB, FB, NF, UA, UA],
        ),
        row(
            POST,
            "/api/v1/subscriptions/{A}/addons",
            Some(r#"{"kind":"custom_module","quantity":1,"effectiveDate":"2026-01-10"}"#),
            [VF, FB, FB, FB, FB, NF, UA, UA],
        ),
        row(
            POST,
            "/api/v1/subscriptions/{A}/addons",
            Some(r#"{"kind":"training_session","quantity":1,"effectiveDate":"2026-01-10"}"#),
            [VF, FB, FB, FB, FB, NF, UA, UA],
        ),
        // Operator only: correcting an add-on's price, or ending it.
        row(
            POST,
            "/api/v1/subscriptions/{A}/addons/{addonA}/reprice",
            Some(r#"{"annualPrice":"4500.00"}"#),
            [OK, FB, FB, FB, FB, NF, UA, UA],
        ),
        // Operator only: floating deployments.
        row(
            POST,
            "/api/v1/subscriptions/{A}/floating-deployments",
            Some(r#"{"floatingDeployments":1}"#),
            [OK, FB, FB, FB, FB, NF, UA, UA],
        ),
        row(
            POST,
            "/api/v1/subscriptions/{A}/addons/{addonA}/end",
            Some(r#"{"effectiveDate":"2026-01-20"}"#),
            [OK, FB, FB, FB, FB, NF, UA, UA],
        ),
        // Own organization, admin: a change's preview (appends nothing), as
        // its command: upgrade, downgrade, add-ons, cancel at term end.
        row(
            POST,
            "/api/v1/subscriptions/{A}/changes/preview",
            Some(r#"{"change":"upgrade","targetTier":"professional"}"#),
            [OK, FB, OK, FB, FB, NF, UA, UA],
        ),
        row(
            POST,
            "/api/v1/subscriptions/{A}/upgrade",
            Some(r#"{"targetTier":"professional"}"#),
            [OK, FB, OK, FB, FB, NF, UA, UA],
        ),
        // An upgrade's add-ons follow the add-on rows' rules: the operator
        // upgrades to enterprise at a contract price; the admin may not give
        // a price, nor buy an add-on enterprise has no catalog price for
        // (the operator, on enterprise by now, is answered not_an_upgrade).
        row(
            POST,
            "/api/v1/subscriptions/{A}/upgrade",
            Some(
                r#"{"targetTier":"enterprise","addons":[{"kind":"extra_data_tb","quantity":1,"annualPrice":"3000.00"}]}"#,
            ),
            [OK, FB, FB, FB, FB, NF, UA, UA],
        ),
        row(
            POST,
            "/api/v1/subscriptions/{A}/upgrade",
            Some(
                r#"{"targetTier":"enterprise","addons":[{"kind":"training_session","quantity":1,"oneTimePrice":"1"}]}"#,
            ),
            [NU, FB, FB, FB, FB, NF, UA, UA],
        ),
        row(
            POST,
            "/api/v1/subscriptions/{A}/upgrade",
            Some(r#"{"targetTier":"enterprise","addons":[{"kind":"extra_data_tb","quantity":1}]}"#),
            [NU, FB, FB, FB, FB, NF, UA, UA],
        ),
        row(
            POST,
            "/api/v1/subscriptions/{A}/downgrade",
            Some(r#"{"targetTier":"starter"}"#),
            [OK, FB, OK, FB, FB, NF, UA, UA],
        ),
        row(POST, "/api/v1/subscriptions/{A}/cancel", Some(r#"{}"#), [OK, FB, OK, FB, FB, NF, UA, UA]),
        // Stripe: the webhook is authenticated by its Stripe-Signature, not a
        // bearer token, so every caller gets the same answer; checkout is for
        // buyers without an account. Stripe is not configured here: 503.
        row(POST, "/api/v1/webhooks/stripe", Some(r#"{}"#), [SN, SN, SN, SN, SN, SN, SN, SN]),
        row(
            POST,
            "/api/v1/checkout",
            Some(
                r#"{"tier":"starter","organizationName":"Org {n}","adminEmail":"a@org.example","successUrl":"https://x.example/ok","cancelUrl":"https://x.example/no"}"#,
            ),
            [SU, SU, SU, SU, SU, SU, SU, SU],
        ),
        // License validation answers everyone: the credential is the license
        // key, and an API token (or nothing) is simply not a known key.
        row(POST, "/api/v1/license/validate", Some(r#"{"licenseKey":"LK1-nobody"}"#), [OK, OK, OK, OK, OK, OK, OK, OK]),
        row(GET, "/api/v1/license/validate", None, [OK, OK, OK, OK, OK, OK, OK, OK]),
        // A challenge for a deployment key to sign: public, like validation.
        row(POST, "/api/v1/license/challenge", None, [OK, OK, OK, OK, OK, OK, OK, OK]),
        // Usage reports are authenticated by the license key in the body.
        row(
            POST,
            "/api/v1/usage/report",
            Some(
                r#"{"licenseKey":"{keyA}","deploymentId":"edge-a","metrics":{"activeUsers":1,"dataVolumeGB":1,"apiCallsCount":1,"trainingHours":0},"reportingPeriod":"2026-01-10"}"#,
            ),
            [OK, OK, OK, OK, OK, OK, OK, OK],
        ),
        // Own organization, admin: release a deployment of a key.
        row(POST, "/api/v1/licenses/{licenseA}/deployments/edge-a/release", None, [OK, FB, OK, FB, FB, NF, UA, UA]),
        // Own organization, admin: reset a deployment's bound key pair.
        row(POST, "/api/v1/licenses/{licenseA}/deployments/edge-a/reset-key", None, [OK, FB, OK, FB, FB, NF, UA, UA]),
        // Own organization, admin: an air-gapped deployment's activation
        // request of A's key, then its usage export (the fixture signs both).
        row(POST, "/api/v1/licenses/offline-activations", Some("{offlineRequestA}"), [OK, FB, OK, FB, FB, NF, UA, UA]),
        row(POST, "/api/v1/usage/imports", Some("{usageExportA}"), [OK, FB, OK, FB, FB, NF, UA, UA]),
        // Operator only: revoke licenses. C's license belongs to no caller.
        row(
            POST,
            "/api/v1/licenses/{licenseC}/revoke",
            Some(r#"{"reason":"roles matrix"}"#),
            [OK, FB, FB, FB, FB, FB, UA, UA],
        ),
        // Operator only, on A's resources. The immediate cancel's path names
        // the organization: A's members lack the role (403), B's admin asks
        // about another organization's resource (404). Revoking a license
        // is the operator's alone whoever owns it, so every member gets the
        // same 403 for any license id, which tells nothing of its owner.
        row(POST, "/api/v1/subscriptions/{A}/cancel", Some(r#"{"immediate":true}"#), [OK, FB, FB, FB, FB, NF, UA, UA]),
        row(
            POST,
            "/api/v1/licenses/{licenseA}/revoke",
            Some(r#"{"reason":"roles matrix"}"#),
            [OK, FB, FB, FB, FB, FB, UA, UA],
        ),
        // The vendor's staff and service tokens: a staff admin's (the
        // operator's bootstrap token is one; the auditor's is not).
        row(
            POST,
            "/api/v1/staff",
            Some(r#"{"name":"Staff {n}","email":"staff-{n}@vendor.example","role":"support"}"#),
            [OK, FB, FB, FB, FB, FB, UA, UA],
        ),
        row(GET, "/api/v1/staff", None, [OK, FB, FB, FB, FB, FB, UA, UA]),
        row(PATCH, "/api/v1/staff/{staffX}", Some(r#"{"role":"billing"}"#), [OK, FB, FB, FB, FB, FB, UA, UA]),
        row(
            POST,
            "/api/v1/staff/tokens",
            Some(r#"{"name":"token {n}","role":"auditor","expiresInDays":30}"#),
            [OK, FB, FB, FB, FB, FB, UA, UA],
        ),
        row(GET, "/api/v1/staff/tokens", None, [OK, FB, FB, FB, FB, FB, UA, UA]),
        row(DELETE, "/api/v1/staff/tokens/{spareServiceToken}", None, [OK, FB, FB, FB, FB, FB, UA, UA]),
        // Data-subject requests (issue 16): a staff admin's. The subject is
        // unknown, so the permitted meet not_found and nothing is erased.
        row(
            POST,
            "/api/v1/privacy/erasures",
            Some(
                r#"{"subject":{"user":{"organizationId":"00000000-0000-7000-8000-0000000000a3","userId":"00000000-0000-7000-8000-0000000000a4"}},"reason":"request"}"#,
            ),
            [NF, FB, FB, FB, FB, FB, UA, UA],
        ),
        row(GET, "/api/v1/privacy/exports?organization={A}", None, [OK, FB, FB, FB, FB, FB, UA, UA]),
        // Operator only: the test clock (the server runs a manual clock here).
        row(POST, "/api/v1/test-clock", Some(r#"{"now":"2026-01-10T00:01:00Z"}"#), [OK, FB, FB, FB, FB, FB, UA, UA]),
    ]
}

/// An answer, read to the end.
struct Answer {
    status: StatusCode,
    content_type: String,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).chars().take(200).collect()
    }
}

async fn send(app: &Router, method: Method, path: &str, bearer: Option<&str>, body: Option<String>) -> Answer {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(token) = bearer {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let body = match body {
        Some(json) => {
            request = request.header(header::CONTENT_TYPE, "application/json");
            Body::from(json)
        }
        None => Body::empty(),
    };
    // `oneshot` consumes the service: every request gets its own clone.
    let response = app.clone().oneshot(request.body(body).expect("a valid request")).await.expect("infallible");
    let status = response.status();
    let content_type =
        response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let body = response.into_body().collect().await.expect("the body reads").to_bytes().to_vec();
    Answer { status, content_type, body }
}

/// An organization API token.
struct Token {
    id: String,
    secret: String,
}

/// Five organizations (A, B, C with a starter subscription from 2026-01-01,
/// D and E without one), tokens for A's admin, analyst and viewer and B's
/// admin, a spare token, an active user and an extra-data add-on of A.
struct Fixture {
    _dir: tempfile::TempDir,
    app: Router,
    org_a: String,
    org_b: String,
    org_c: String,
    org_d: String,
    org_e: String,
    user_a: String,
    spare_token_a: String,
    license_a: String,
    license_c: String,
    addon_a: String,
    key_a: String,
    /// An activation request of A's key and a usage export under its
    /// license file (`airgap_files`).
    offline_request_a: String,
    usage_export_a: String,
    a_admin: Token,
    a_analyst: Token,
    a_viewer: Token,
    b_admin: Token,
    /// A staff user (support) no caller is, and a service token no caller uses.
    staff_x: String,
    spare_service_token: String,
    /// Service tokens of the staff roles (issue 15), for [`staff_matrix`].
    staff_tokens: Vec<(StaffCaller, Token)>,
    unique: u32,
}

impl Fixture {
    async fn new() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let state = ledger_api::open(&ledger_api::Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.path().to_path_buf(),
            database_url: None,
            clock: "manual:2026-01-10T00:00:00Z".into(),
            operator_token: Some(OPERATOR_TOKEN.into()),
            auditor_token: Some(AUDITOR_TOKEN.into()),
            policy: Default::default(),
            validations_per_address_per_minute: 0,
            notifications: None,
            usage: Default::default(),
        })
        .await
        .expect("the server state opens");
        let app = ledger_api::app(state.clone());
        let op = |method: Method, path: String, body: Value| {
            let app = app.clone();
            async move {
                let answer = send(&app, method.clone(), &path, Some(OPERATOR_TOKEN), Some(body.to_string())).await;
                assert!(answer.status.is_success(), "fixture: {method} {path}: {} {}", answer.status, answer.text());
                answer.json()
            }
        };
        let org = |name: &'static str| op(Method::POST, "/api/v1/organizations".into(), json!({ "name": name }));
        let id = |v: Value, field: &str| v[field].as_str().unwrap_or_else(|| panic!("no {field} in {v}")).to_owned();
        let org_a = id(org("Org A").await, "id");
        let org_b = id(org("Org B").await, "id");
        let org_c = id(org("Org C").await, "id");
        let org_d = id(org("Org D").await, "id");
        let org_e = id(org("Org E").await, "id");
        let mut keys = Vec::new();
        for org in [&org_a, &org_b, &org_c] {
            let body = json!({ "organizationId": org, "tier": "starter", "startDate": "2026-01-01" });
            keys.push(id(op(Method::POST, "/api/v1/subscriptions".into(), body).await, "licenseKey"));
        }
        // A's key is active on deployment `edge-a`, for the release row, and
        // edge-a bound a key pair, for the reset-key row.
        let challenge = send(&app, Method::POST, "/api/v1/license/challenge", None, None).await;
        let challenge = id(challenge.json(), "challenge");
        let pair = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
        let binding = domain::lease::key_binding(&keys[0]);
        let signature = domain::deployment_key::sign_proof(&pair, &challenge, &binding, "edge-a", "n-1");
        let validation = json!({ "licenseKey": keys[0], "clientInfo": { "deployment_id": "edge-a" }, "nonce": "n-1",
            "deploymentKey": domain::deployment_key::public_key_text(&pair.verifying_key()),
            "challenge": challenge, "signature": signature });
        let answer = send(&app, Method::POST, "/api/v1/license/validate", None, Some(validation.to_string())).await;
        assert_eq!(answer.json()["code"], "VALID", "fixture: validating A's key: {}", answer.text());
        let token = |org: &String, role: &'static str| {
            let path = format!("/api/v1/organizations/{org}/tokens");
            let op = &op;
            async move {
                let answer = op(Method::POST, path, json!({ "role": role })).await;
                Token { id: id(answer.clone(), "tokenId"), secret: id(answer, "token") }
            }
        };
        let a_admin = token(&org_a, "admin").await;
        let a_analyst = token(&org_a, "analyst").await;
        let a_viewer = token(&org_a, "viewer").await;
        let spare_token_a = token(&org_a, "viewer").await.id;
        let b_admin = token(&org_b, "admin").await;
        let user = json!({ "email": "victim@a.example", "role": "viewer" });
        let user_a = id(op(Method::POST, format!("/api/v1/organizations/{org_a}/users"), user).await, "id");
        let license = |org: &String| {
            let path = format!("/api/v1/organizations/{org}/licenses");
            let app = app.clone();
            async move {
                let answer = send(&app, Method::GET, &path, Some(OPERATOR_TOKEN), None).await;
                assert_eq!(answer.status, StatusCode::OK, "fixture: GET {path}: {}", answer.text());
                id(answer.json()[0].clone(), "id")
            }
        };
        let license_a = license(&org_a).await;
        let license_c = license(&org_c).await;
        let extra = json!({ "kind": "extra_data_tb", "quantity": 1, "effectiveDate": "2026-01-10" });
        let addon_a = id(op(Method::POST, format!("/api/v1/subscriptions/{org_a}/addons"), extra).await, "addonId");
        let staff = json!({ "name": "Staff X", "email": "x@vendor.example", "role": "support" });
        let staff_x = id(op(Method::POST, "/api/v1/staff".into(), staff).await, "id");
        let service = |role: &'static str| {
            let op = &op;
            async move {
                let body = json!({ "name": format!("{role} automation"), "role": role, "expiresInDays": 30 });
                let answer = op(Method::POST, "/api/v1/staff/tokens".into(), body).await;
                Token { id: id(answer.clone(), "tokenId"), secret: id(answer, "token") }
            }
        };
        let spare_service_token = service("billing").await.id;
        let mut staff_tokens = Vec::new();
        for who in STAFF_CALLERS {
            staff_tokens.push((who, service(who.role()).await));
        }
        Fixture {
            _dir: dir,
            app,
            org_a,
            org_b,
            org_c,
            org_d,
            org_e,
            user_a,
            spare_token_a,
            license_a,
            license_c,
            addon_a,
            offline_request_a: airgap_files(&keys[0]).0,
            usage_export_a: airgap_files(&keys[0]).1,
            key_a: keys[0].clone(),
            a_admin,
            a_analyst,
            a_viewer,
            b_admin,
            staff_x,
            spare_service_token,
            staff_tokens,
            unique: 0,
        }
    }

    fn bearer(&self, who: Who) -> Option<&str> {
        match who {
            Who::Operator => Some(OPERATOR_TOKEN),
            Who::Auditor => Some(AUDITOR_TOKEN),
            Who::AAdmin => Some(&self.a_admin.secret),
            Who::AAnalyst => Some(&self.a_analyst.secret),
            Who::AViewer => Some(&self.a_viewer.secret),
            Who::BAdmin => Some(&self.b_admin.secret),
            Who::Anonymous => None,
            Who::Garbage => Some(GARBAGE_TOKEN),
        }
    }

    fn fill(&mut self, template: &str) -> String {
        self.unique += 1;
        template
            .replace("{A}", &self.org_a)
            .replace("{B}", &self.org_b)
            .replace("{C}", &self.org_c)
            .replace("{D}", &self.org_d)
            .replace("{E}", &self.org_e)
            .replace("{userA}", &self.user_a)
            .replace("{spareTokenA}", &self.spare_token_a)
            .replace("{licenseA}", &self.license_a)
            .replace("{licenseC}", &self.license_c)
            .replace("{addonA}", &self.addon_a)
            .replace("{keyA}", &self.key_a)
            .replace("{offlineRequestA}", &self.offline_request_a)
            .replace("{usageExportA}", &self.usage_export_a)
            .replace("{staffX}", &self.staff_x)
            .replace("{spareServiceToken}", &self.spare_service_token)
            .replace("{n}", &self.unique.to_string())
    }

    async fn call(&self, method: Method, path: &str, who: Who, body: Option<Value>) -> Answer {
        send(&self.app, method, path, self.bearer(who), body.map(|b| b.to_string())).await
    }
}

/// A's deployment `edge-a` (its key pair, the place it holds) turned
/// air-gapped: its activation request and a usage export of one day under
/// the license file that answers it.
fn airgap_files(key: &str) -> (String, String) {
    use domain::airgap::{ActivationRequest, ExportedDay, UsageExport};
    let pair = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
    let public = domain::deployment_key::public_key_text(&pair.verifying_key());
    let license_id = domain::keys::license_id_unverified(key).expect("a license key");
    let at = domain::Timestamp::parse_rfc3339("2026-01-10T00:00:00Z").unwrap();
    let request = ActivationRequest {
        version: 1,
        license_id,
        key_binding: domain::lease::key_binding(key),
        deployment_id: "edge-a".into(),
        deployment_key: public.clone(),
        nonce: "n-roles".into(),
        client_time: at,
    };
    let day = ExportedDay {
        day: "2026-01-10".parse().unwrap(),
        active_users: "1".into(),
        data_volume_gb: "1".into(),
        api_calls_count: "1".into(),
        training_hours: "0".into(),
    };
    let export = UsageExport {
        version: 1,
        license_id,
        key_binding: domain::lease::key_binding(key),
        deployment_id: "edge-a".into(),
        deployment_key: public,
        license_nonce: "n-roles".into(),
        export_id: "e-roles".into(),
        created_at: at,
        days: vec![day],
    };
    let text = |file: domain::airgap::SignedFile| serde_json::to_string(&file).unwrap();
    (text(request.sign(&pair)), text(export.sign(&pair)))
}

/// Why an answer does not meet its expectation, if it does not.
fn disagreement(expect: Expect, answer: &Answer) -> Option<String> {
    let got = || {
        let code = answer.json().get("code").and_then(Value::as_str).map(str::to_owned);
        match code {
            Some(code) => format!("{} {code}", answer.status.as_u16()),
            None => format!("{} {}", answer.status.as_u16(), answer.text()),
        }
    };
    match expect {
        Expect::Ok if answer.status.is_success() => None,
        Expect::Ok => Some(format!("expected 2xx, got {}", got())),
        Expect::Refused(status, code) => {
            if answer.status.as_u16() != status {
                return Some(format!("expected {expect}, got {}", got()));
            }
            let body = answer.json();
            let mut wrong = Vec::new();
            if !answer.content_type.starts_with("application/problem+json") {
                wrong.push(format!("content-type {:?}, not application/problem+json", answer.content_type));
            }
            if body.get("code").and_then(Value::as_str) != Some(code) {
                wrong.push(format!("code {}, not {code:?}", body.get("code").unwrap_or(&Value::Null)));
            }
            if body.get("status").and_then(Value::as_u64) != Some(u64::from(status)) {
                wrong.push(format!("status member {}, not {status}", body.get("status").unwrap_or(&Value::Null)));
            }
            (!wrong.is_empty()).then(|| format!("expected {expect}: {}", wrong.join("; ")))
        }
    }
}

/// Every route times every caller. Each caller runs the rows in order on a
/// fresh fixture, so what an allowed caller changes never decides another
/// caller's answer. All disagreements are listed before the test fails.
#[tokio::test]
async fn every_route_answers_every_caller_as_api_md_says() {
    let started = Instant::now();
    let rows = matrix();
    let mut mismatches = Vec::new();
    let mut cells = 0;
    for (column, who) in CALLERS.into_iter().enumerate() {
        let mut fixture = Fixture::new().await;
        for row in &rows {
            let path = fixture.fill(row.path);
            let body = row.body.map(|b| fixture.fill(b));
            let answer = send(&fixture.app, row.method.clone(), &path, fixture.bearer(who), body).await;
            cells += 1;
            if let Some(why) = disagreement(row.expect[column], &answer) {
                mismatches.push(format!("{} {} as {who:?}: {why}", row.method, row.path));
            }
        }
    }
    println!(
        "roles matrix: {} routes x {} callers = {cells} cells in {:?}",
        rows.len(),
        CALLERS.len(),
        started.elapsed()
    );
    for mismatch in &mismatches {
        println!("MISMATCH {mismatch}");
    }
    assert!(
        mismatches.is_empty(),
        "{} of {cells} cells disagree with API.md:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

/// A revoked token stops working at once, for queries and commands alike;
/// the other tokens of the organization keep working.
#[tokio::test]
async fn a_revoked_token_is_unauthorized() {
    let fixture = Fixture::new().await;
    let subscription = format!("/api/v1/subscriptions/{}", fixture.org_a);
    let answer = fixture.call(Method::GET, &subscription, Who::AViewer, None).await;
    assert_eq!(answer.status, StatusCode::OK, "before revocation: {}", answer.text());

    let revoke = format!("/api/v1/organizations/{}/tokens/{}/revoke", fixture.org_a, fixture.a_viewer.id);
    let answer = fixture.call(Method::POST, &revoke, Who::AAdmin, None).await;
    assert!(answer.status.is_success(), "A's admin revokes A's viewer token: {} {}", answer.status, answer.text());

    let licenses = format!("/api/v1/organizations/{}/licenses", fixture.org_a);
    for path in [&subscription, &licenses] {
        let answer = fixture.call(Method::GET, path, Who::AViewer, None).await;
        assert_eq!(disagreement(UA, &answer), None, "GET {path} with the revoked token");
    }
    // A command with the revoked token: still 401, not 403.
    let tokens = format!("/api/v1/organizations/{}/tokens", fixture.org_a);
    let answer = fixture.call(Method::POST, &tokens, Who::AViewer, Some(json!({ "role": "admin" }))).await;
    assert_eq!(disagreement(UA, &answer), None, "POST {tokens} with the revoked token");

    let answer = fixture.call(Method::GET, &subscription, Who::AAnalyst, None).await;
    assert_eq!(answer.status, StatusCode::OK, "A's analyst token still works: {}", answer.text());
}

/// Another organization's admin can neither revoke nor mint A's tokens (404,
/// as if A did not exist), not even through its own organization's path;
/// nothing is appended, and A's tokens keep their roles.
#[tokio::test]
async fn another_organization_cannot_touch_a_token() {
    let fixture = Fixture::new().await;
    let head = |fixture: &Fixture| {
        let app = fixture.app.clone();
        async move {
            let answer = send(&app, Method::GET, "/api/v1/log/head", Some(OPERATOR_TOKEN), None).await;
            assert_eq!(answer.status, StatusCode::OK, "log head: {}", answer.text());
            answer.json()["sequence"].clone()
        }
    };
    let before = head(&fixture).await;
    let (a, b) = (&fixture.org_a, &fixture.org_b);
    let attempts = [
        // B's admin revokes A's viewer token, through A's path and through B's.
        (Who::BAdmin, format!("/api/v1/organizations/{a}/tokens/{}/revoke", fixture.a_viewer.id), None),
        (Who::BAdmin, format!("/api/v1/organizations/{b}/tokens/{}/revoke", fixture.a_viewer.id), None),
        (Who::BAdmin, format!("/api/v1/organizations/{a}/tokens/{}/revoke", fixture.a_admin.id), None),
        // B's admin mints an admin token for A.
        (Who::BAdmin, format!("/api/v1/organizations/{a}/tokens"), Some(json!({ "role": "admin" }))),
        // And the other way round: A's admin revokes B's admin token.
        (Who::AAdmin, format!("/api/v1/organizations/{b}/tokens/{}/revoke", fixture.b_admin.id), None),
        (Who::AAdmin, format!("/api/v1/organizations/{a}/tokens/{}/revoke", fixture.b_admin.id), None),
    ];
    let mut mismatches = Vec::new();
    for (who, path, body) in attempts {
        let answer = fixture.call(Method::POST, &path, who, body).await;
        if let Some(why) = disagreement(NF, &answer) {
            mismatches.push(format!("POST {path} as {who:?}: {why}"));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    assert_eq!(head(&fixture).await, before, "a refused command appends nothing");

    // A's tokens work as before, with the roles they were issued with.
    let subscription = format!("/api/v1/subscriptions/{a}");
    for who in [Who::AViewer, Who::AAdmin, Who::BAdmin] {
        let path = if who == Who::BAdmin { format!("/api/v1/subscriptions/{b}") } else { subscription.clone() };
        let answer = fixture.call(Method::GET, &path, who, None).await;
        assert_eq!(answer.status, StatusCode::OK, "GET {path} as {who:?}: {}", answer.text());
    }
    let users = format!("/api/v1/organizations/{a}/users");
    let answer = fixture
        .call(Method::POST, &users, Who::AViewer, Some(json!({ "email": "x@a.example", "role": "admin" })))
        .await;
    assert_eq!(disagreement(FB, &answer), None, "A's viewer is still a viewer");
}

/// The matrix names every method and path the router serves: each
/// `.route("PATH", get(..).post(..))` of `ledger_api::app` (read from its
/// source, nested under `/api/v1` or not) must match some row, a `{param}`
/// segment matching any one segment. A new route fails here until it has
/// its row.
#[test]
fn the_matrix_covers_every_route_of_the_router() {
    let source = include_str!("../src/lib.rs");
    let body = &source[source.find("pub fn app(").expect("lib.rs has `app`")..];
    let body = &body[..body.find("\n}\n").expect("`app` ends")];
    let rows = matrix();
    let mut routes = 0;
    let mut missing = Vec::new();
    for line in body.lines() {
        let Some(at) = line.find(".route(\"") else { continue };
        let rest = &line[at + ".route(\"".len()..];
        let (path, handlers) = rest.split_once('"').expect("a route path is a string literal");
        let methods: Vec<Method> = [("get(", Method::GET), ("post(", Method::POST), ("put(", Method::PUT)]
            .into_iter()
            .chain([("patch(", Method::PATCH), ("delete(", Method::DELETE)])
            .filter(|(call, _)| handlers.contains(call))
            .map(|(_, method)| method)
            .collect();
        assert!(!methods.is_empty(), "no method found for {path} in {line:?}");
        for method in methods {
            routes += 1;
            let covered = rows.iter().any(|row| {
                let served = row.path.split('?').next().unwrap_or_default();
                row.method == method && (same_route(served, path) || same_route(served, &format!("/api/v1{path}")))
            });
            if !covered {
                missing.push(format!("{method} {path}"));
            }
        }
    }
    assert!(routes >= 20, "found only {routes} routes in lib.rs: has `app` changed shape?");
    assert!(missing.is_empty(), "routes of the router without a row in the roles matrix: {missing:?}");
}

/// Whether a concrete path template of the matrix is an instance of a
/// router path (`{param}` segments match any one segment).
fn same_route(concrete: &str, route: &str) -> bool {
    let (a, b): (Vec<&str>, Vec<&str>) = (concrete.split('/').collect(), route.split('/').collect());
    a.len() == b.len() && a.iter().zip(&b).all(|(x, y)| x == y || y.starts_with('{'))
}

/// The vendor's staff roles (issue 15), each as a service token the
/// operator issued: the matrix's further columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StaffCaller {
    StaffAdmin,
    Billing,
    Support,
    /// An auditor service token (the bootstrap auditor is `Who::Auditor`).
    Auditor,
}

const STAFF_CALLERS: [StaffCaller; 4] =
    [StaffCaller::StaffAdmin, StaffCaller::Billing, StaffCaller::Support, StaffCaller::Auditor];

impl StaffCaller {
    fn role(self) -> &'static str {
        match self {
            StaffCaller::StaffAdmin => "staff_admin",
            StaffCaller::Billing => "billing",
            StaffCaller::Support => "support",
            StaffCaller::Auditor => "auditor",
        }
    }
}

/// Representative routes, asked by each staff role's service token
/// (README, "Staff and service tokens"). Columns: staff admin, billing,
/// support, auditor.
fn staff_matrix() -> Vec<(Method, &'static str, Option<&'static str>, [Expect; 4])> {
    let (get, post) = (Method::GET, Method::POST);
    vec![
        // Reading every organization, the log, audit, figures: every role.
        (get.clone(), "/api/v1/organizations", None, [OK, OK, OK, OK]),
        (get.clone(), "/api/v1/log/head", None, [OK, OK, OK, OK]),
        (get.clone(), "/api/v1/log/proof/consistency?from=1", None, [OK, OK, OK, OK]),
        (get.clone(), "/api/v1/audit", None, [OK, OK, OK, OK]),
        (get.clone(), "/metrics", None, [OK, OK, OK, OK]),
        (get.clone(), "/api/v1/subscriptions/{A}", None, [OK, OK, OK, OK]),
        (get.clone(), "/api/v1/organizations/{A}/invoices", None, [OK, OK, OK, OK]),
        (get.clone(), "/api/v1/audit?organizationId={A}", None, [OK, OK, OK, OK]),
        // What API.md calls the operator's: staff admin and billing.
        (post.clone(), "/api/v1/organizations", Some(r#"{"name":"Org {n}"}"#), [OK, OK, FB, FB]),
        (
            post.clone(),
            "/api/v1/subscriptions",
            Some(r#"{"organizationId":"{D}","tier":"starter","startDate":"2026-01-01"}"#),
            [OK, OK, FB, FB],
        ),
        (post.clone(), "/api/v1/organizations/{A}/tokens", Some(r#"{"role":"viewer"}"#), [OK, OK, FB, FB]),
        (
            post.clone(),
            "/api/v1/subscriptions/{A}/addons",
            Some(r#"{"kind":"custom_module","quantity":1,"annualPrice":"12000.00","effectiveDate":"2026-01-10"}"#),
            [OK, OK, FB, FB],
        ),
        (post.clone(), "/api/v1/licenses/{licenseC}/revoke", Some(r#"{"reason":"roles matrix"}"#), [OK, OK, FB, FB]),
        (post.clone(), "/api/v1/log/checkpoints", None, [OK, OK, FB, FB]),
        // Revenue figures: every role; the customer search and timeline:
        // every role (the auditor reads).
        (get.clone(), "/api/v1/analytics/revenue", None, [OK, OK, OK, OK]),
        (get.clone(), "/api/v1/customers?q=org", None, [OK, OK, OK, OK]),
        (get.clone(), "/api/v1/customers/{A}/timeline", None, [OK, OK, OK, OK]),
        // Billing runs, voids and credit notes: staff admin and billing (the
        // fixture issues no invoice: the permitted meet an unknown one).
        (post.clone(), "/api/v1/billing/runs", Some(r#"{"period":"2026-01","preview":true}"#), [OK, OK, FB, FB]),
        (get.clone(), "/api/v1/billing/runs/preview?period=2026-01", None, [OK, OK, FB, FB]),
        (post.clone(), "/api/v1/billing/runs/background", Some(r#"{"period":"2025-12"}"#), [OK, OK, FB, FB]),
        (get.clone(), "/api/v1/billing/runs/background", None, [OK, OK, FB, FB]),
        (get.clone(), "/api/v1/billing/runs/00000000-0000-7000-8000-0000000000b1", None, [NF, NF, FB, FB]),
        (
            post.clone(),
            "/api/v1/invoices/00000000-0000-7000-8000-0000000000a1/void",
            Some(r#"{"reason":"roles"}"#),
            [NF, NF, FB, FB],
        ),
        (
            post.clone(),
            "/api/v1/invoices/00000000-0000-7000-8000-0000000000a1/credit-notes",
            Some(r#"{"reason":"roles","lines":[{"description":"x","amount":"1.00"}]}"#),
            [NF, NF, FB, FB],
        ),
        // Resending a customer's user an e-mail: support and up, not the auditor.
        (
            post.clone(),
            "/api/v1/organizations/{A}/users/00000000-0000-7000-8000-0000000000a2/resend",
            Some(r#"{"kind":"signin"}"#),
            [MN, MN, MN, FB],
        ),
        // The Stripe sync's operations: staff admin and billing.
        (get.clone(), "/api/v1/stripe/syncs", None, [OK, OK, FB, FB]),
        (post.clone(), STRIPE_RETRY, Some(r#"{}"#), [NR, NR, FB, FB]),
        (get.clone(), "/api/v1/stripe/reconciliation?period=2026-01", None, [SN, SN, FB, FB]),
        // Data-subject requests: the staff admin only.
        (
            post.clone(),
            "/api/v1/privacy/erasures",
            Some(
                r#"{"subject":{"user":{"organizationId":"00000000-0000-7000-8000-0000000000a3","userId":"00000000-0000-7000-8000-0000000000a4"}},"reason":"request"}"#,
            ),
            [NF, FB, FB, FB],
        ),
        (get.clone(), "/api/v1/privacy/exports?organization={A}", None, [OK, FB, FB, FB]),
        // Staff and service tokens: the staff admin only.
        (
            post.clone(),
            "/api/v1/staff",
            Some(r#"{"name":"Staff {n}","email":"staff-{n}@vendor.example","role":"support"}"#),
            [OK, FB, FB, FB],
        ),
        (get.clone(), "/api/v1/staff", None, [OK, FB, FB, FB]),
        (get, "/api/v1/staff/tokens", None, [OK, FB, FB, FB]),
        (
            post.clone(),
            "/api/v1/staff/tokens",
            Some(r#"{"name":"t {n}","role":"staff_admin","expiresInDays":1}"#),
            [OK, FB, FB, FB],
        ),
        (post, "/api/v1/test-clock", Some(r#"{"now":"2026-01-10T00:01:00Z"}"#), [OK, OK, FB, FB]),
    ]
}

/// Every row of [`staff_matrix`] asked by each staff role's service token,
/// on a fresh fixture per role.
#[tokio::test]
async fn every_staff_role_answers_as_the_issue_says() {
    let rows = staff_matrix();
    let mut mismatches = Vec::new();
    for (column, who) in STAFF_CALLERS.into_iter().enumerate() {
        let mut fixture = Fixture::new().await;
        let bearer = fixture.staff_tokens[column].1.secret.clone();
        assert_eq!(fixture.staff_tokens[column].0, who);
        for (method, path, body, expect) in &rows {
            let path = fixture.fill(path);
            let body = body.map(|b| fixture.fill(b));
            let answer = send(&fixture.app, method.clone(), &path, Some(&bearer), body).await;
            if let Some(why) = disagreement(expect[column], &answer) {
                mismatches.push(format!("{method} {path} as {who:?}: {why}"));
            }
        }
    }
    assert!(mismatches.is_empty(), "{} cells disagree:\n{}", mismatches.len(), mismatches.join("\n"));
}

/// What a named service token does is its own in the log and in the audit
/// view: `service:{id}:{role}`, not "operator". A revoked one is refused at
/// once, and so is a staff admin token's attempt after its revocation.
#[tokio::test]
async fn a_service_tokens_action_is_attributed_to_it_and_revocation_ends_it() {
    let fixture = Fixture::new().await;
    let (_, billing) = &fixture.staff_tokens[1];
    let created = send(
        &fixture.app,
        Method::POST,
        "/api/v1/organizations",
        Some(&billing.secret),
        Some(json!({ "name": "Attributed" }).to_string()),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
    let org = created.json()["id"].as_str().expect("an id").to_owned();
    let audit = format!("/api/v1/audit?organizationId={org}");
    let answer = send(&fixture.app, Method::GET, &audit, Some(AUDITOR_TOKEN), None).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let items = answer.json()["items"].clone();
    let actors: Vec<&str> = items.as_array().expect("items").iter().filter_map(|i| i["actor"].as_str()).collect();
    assert_eq!(actors, [format!("service:{}:billing", billing.id)], "audit of {org}: {items}");

    // The operator's bootstrap token stays "operator".
    let answer = fixture.call(Method::GET, "/api/v1/audit", Who::Auditor, None).await;
    let all = answer.json()["items"].clone();
    assert!(all.as_array().expect("items").iter().any(|i| i["actor"] == "operator"), "{all}");

    let revoke = format!("/api/v1/staff/tokens/{}", billing.id);
    let answer = fixture.call(Method::DELETE, &revoke, Who::Operator, None).await;
    assert_eq!(answer.status, StatusCode::OK, "revoking: {}", answer.text());
    let answer = send(&fixture.app, Method::GET, "/api/v1/organizations", Some(&billing.secret), None).await;
    assert_eq!(disagreement(UA, &answer), None, "the revoked service token");
    let answer = fixture.call(Method::DELETE, &revoke, Who::Operator, None).await;
    assert_eq!(disagreement(Expect::Refused(409, "already_revoked"), &answer), None, "revoked twice");
    let (_, support) = &fixture.staff_tokens[2];
    let answer = send(&fixture.app, Method::GET, "/api/v1/organizations", Some(&support.secret), None).await;
    assert_eq!(answer.status, StatusCode::OK, "another service token still works: {}", answer.text());
}

/// Bad staff inputs are refused with a problem and change nothing.
#[tokio::test]
async fn bad_staff_inputs_are_refused() {
    let fixture = Fixture::new().await;
    let cases = [
        (
            Method::POST,
            "/api/v1/staff".to_owned(),
            json!({ "name": "", "email": "a@v.example", "role": "billing" }),
            400,
        ),
        (Method::POST, "/api/v1/staff".to_owned(), json!({ "name": "A", "email": "nope", "role": "billing" }), 400),
        (Method::POST, "/api/v1/staff".to_owned(), json!({ "name": "A", "email": "a@v.example", "role": "root" }), 400),
        (
            Method::POST,
            "/api/v1/staff".to_owned(),
            json!({ "name": "X", "email": "X@vendor.example", "role": "billing" }),
            409,
        ),
        (
            Method::POST,
            "/api/v1/staff/tokens".to_owned(),
            json!({ "name": "t", "role": "billing", "expiresInDays": 367 }),
            400,
        ),
        (
            Method::POST,
            "/api/v1/staff/tokens".to_owned(),
            json!({ "name": "t", "role": "billing", "expiresInDays": 0 }),
            400,
        ),
        (Method::PATCH, format!("/api/v1/staff/{}", fixture.staff_x), json!({ "role": "support" }), 409),
        (Method::PATCH, format!("/api/v1/staff/{}", fixture.staff_x), json!({}), 400),
        (Method::PATCH, format!("/api/v1/staff/{}", uuid::Uuid::nil()), json!({ "disabled": true }), 404),
    ];
    let head = || async {
        let answer = fixture.call(Method::GET, "/api/v1/log/head", Who::Operator, None).await;
        answer.json()["sequence"].clone()
    };
    let before = head().await;
    for (method, path, body, status) in cases {
        let answer = fixture.call(method.clone(), &path, Who::Operator, Some(body.clone())).await;
        assert_eq!(answer.status.as_u16(), status, "{method} {path} {body}: {}", answer.text());
        assert!(answer.content_type.starts_with("application/problem+json"), "{method} {path}");
    }
    assert_eq!(head().await, before, "a refused command appends nothing");
}

/// A scripted staff admin cannot grow the staff directory without bound
/// (issue 15): a staff user's role changes at most
/// `STAFF_ROLE_CHANGES_PER_DAY_MAX` times a UTC day (then 429), and at
/// most `SERVICE_TOKENS_ALIVE_MAX` service tokens are alive at once (then
/// 409); a refusal appends nothing.
#[tokio::test]
async fn staff_role_changes_and_live_service_tokens_are_capped() {
    use domain::staff::{SERVICE_TOKENS_ALIVE_MAX, STAFF_ROLE_CHANGES_PER_DAY_MAX};
    let fixture = Fixture::new().await;
    let head = || async {
        let answer = fixture.call(Method::GET, "/api/v1/log/head", Who::Operator, None).await;
        answer.json()["sequence"].clone()
    };
    // The fixture's spare staff user is support: billing, support, … .
    let path = format!("/api/v1/staff/{}", fixture.staff_x);
    let role = |n: u32| json!({ "role": if n.is_multiple_of(2) { "billing" } else { "support" } });
    for n in 0..STAFF_ROLE_CHANGES_PER_DAY_MAX {
        let answer = fixture.call(Method::PATCH, &path, Who::Operator, Some(role(n))).await;
        assert_eq!(answer.status, StatusCode::OK, "change {n}: {}", answer.text());
    }
    let before = head().await;
    let answer = fixture.call(Method::PATCH, &path, Who::Operator, Some(role(STAFF_ROLE_CHANGES_PER_DAY_MAX))).await;
    assert_eq!(disagreement(Expect::Refused(429, "rate_limited"), &answer), None, "one change too many");
    assert_eq!(answer.json()["limit"], "staff_role_changes_per_day", "{}", answer.text());
    assert_eq!(head().await, before, "a refused change appends nothing");

    let listed = fixture.call(Method::GET, "/api/v1/staff/tokens", Who::Operator, None).await;
    let alive = listed.json()["items"].as_array().expect("items").iter().filter(|t| t["revoked"] == false).count();
    let body = || json!({ "name": "loop", "role": "auditor", "expiresInDays": 1 });
    for n in alive..SERVICE_TOKENS_ALIVE_MAX {
        let answer = fixture.call(Method::POST, "/api/v1/staff/tokens", Who::Operator, Some(body())).await;
        assert_eq!(answer.status, StatusCode::CREATED, "token {n}: {}", answer.text());
    }
    let before = head().await;
    let answer = fixture.call(Method::POST, "/api/v1/staff/tokens", Who::Operator, Some(body())).await;
    assert_eq!(disagreement(Expect::Refused(409, "limit_reached"), &answer), None, "one token too many");
    assert_eq!(head().await, before, "a refused issue appends nothing");
}
