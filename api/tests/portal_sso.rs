//! Enterprise SSO end to end (issue 14): the real `ledger` binary and a
//! real OpenID Connect issuer (npm's oidc-provider on Node, run by
//! `tests/oidc/issuer.mjs`, started by the shared `tests/oidc/mod.rs`), driven over HTTP by a client that keeps its
//! own cookies and follows no redirect by itself. Without node or
//! oidc-provider in target/peers/oidc it skips with a notice.
#![allow(clippy::too_many_lines)]

#[allow(dead_code, unused_macros)]
#[macro_use]
mod common;
#[allow(dead_code)]
mod oidc;

use std::collections::BTreeMap;
use std::path::Path;

use common::{Backend, OPERATOR, Server, poll};
use oidc::Issuer;
use reqwest::Method;
use serde_json::json;

/// The portal's public URL as the server and the issuer know it; the
/// test's browser reaches it at the server's own address (as a reverse
/// proxy would).
const PORTAL: &str = "http://portal.test";
const SECRET_A: &str = "client-secret-of-acme-0f9e8d7c6b5a";
const SECRET_B: &str = "client-secret-of-globex-1a2b3c4d5e6f";

backends!(
    sso_configured_by_an_admin_signs_users_into_their_organization_only,
    sso_sign_in_keeps_working_through_a_secret_rotation
);

/// A browser's part: cookies (by name; every host here is 127.0.0.1) and
/// redirects followed by hand.
struct Browser {
    http: reqwest::Client,
    jar: BTreeMap<String, String>,
    issuer: String,
}

struct Page {
    status: u16,
    location: String,
    body: String,
}

impl Browser {
    fn new(issuer: &Issuer) -> Self {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Self { http, jar: BTreeMap::new(), issuer: issuer.url.clone() }
    }

    fn cookie_header(&self) -> String {
        self.jar.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    async fn request(&mut self, method: Method, url: &str, form: Option<&[(&str, &str)]>) -> Page {
        let mut request = self.http.request(method, url).header("cookie", self.cookie_header());
        if let Some(form) = form {
            let body: String = form
                .iter()
                // Ids and base64url tokens only: nothing to escape.
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("&");
            request = request.header("content-type", "application/x-www-form-urlencoded").body(body);
        }
        let answer = request.send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
        for value in answer.headers().get_all("set-cookie") {
            let text = value.to_str().unwrap();
            let (pair, attributes) = text.split_once(';').unwrap_or((text, ""));
            let (name, value) = pair.split_once('=').unwrap();
            let gone = attributes.to_ascii_lowercase().contains("max-age=0") || value.is_empty();
            if gone {
                self.jar.remove(name.trim());
            } else {
                self.jar.insert(name.trim().to_owned(), value.trim().to_owned());
            }
        }
        let status = answer.status().as_u16();
        let location = answer.headers().get("location").map(|l| l.to_str().unwrap().to_owned()).unwrap_or_default();
        Page { status, location, body: answer.text().await.unwrap() }
    }

    /// From the SSO form to the issuer and back: the callback's answer.
    /// `stop_at_callback` answers the callback URL instead of opening it.
    async fn sign_in(&mut self, s: &Server, organization: &str, stop_at_callback: bool) -> Page {
        let form = self.request(Method::GET, &s.url("/portal/sso"), None).await;
        assert_eq!(form.status, 200, "{}", form.body);
        let csrf = self.jar["ledger_portal_csrf"].clone();
        let mut page = self
            .request(Method::POST, &s.url("/portal/sso"), Some(&[("organization", organization), ("csrf", &csrf)]))
            .await;
        if page.status == 200 {
            page = self.request(Method::GET, &continue_link(&page.body), None).await;
        }
        for _ in 0..10 {
            if !(300..400).contains(&page.status) {
                return page;
            }
            let next = if let Some(path) = page.location.strip_prefix(PORTAL) {
                s.url(path)
            } else if page.location.starts_with('/') {
                let base = if page.location.starts_with("/portal") { s.base.clone() } else { self.issuer.clone() };
                format!("{base}{}", page.location)
            } else {
                page.location.clone()
            };
            if next.starts_with(&s.url("/portal/sso/callback")) && stop_at_callback {
                return page;
            }
            if next.starts_with(&s.url("/portal/orgs/")) {
                return page;
            }
            page = self.request(Method::GET, &next, None).await;
        }
        panic!("too many redirects");
    }
}

async fn admin_token(s: &Server, org: &str) -> String {
    let body = json!({ "role": "admin" });
    let issued = s.post(&format!("/api/v1/organizations/{org}/tokens"), Some(OPERATOR), body).await.expect(201);
    issued["token"].as_str().unwrap().to_owned()
}

async fn put_sso(s: &Server, org: &str, token: &str, issuer: &str, client: &str, secret: &str) -> common::Reply {
    let body = json!({ "issuerUrl": issuer, "clientId": client, "clientSecret": secret });
    s.send(Method::PUT, &format!("/api/v1/organizations/{org}/sso"), Some(token), common::Body::Json(body), &[]).await
}

async fn add_user(s: &Server, org: &str, email: &str, role: &str) {
    let body = json!({ "email": email, "role": role });
    s.post(&format!("/api/v1/organizations/{org}/users"), Some(OPERATOR), body).await.expect(201);
}

/// The organization's users added so far, from its stream: (e-mail, role).
async fn users_added(backend: &Backend, org: &str) -> Vec<(String, &'static str)> {
    use domain::event::StoredEvent;
    use domain::organization::OrganizationEvent;
    let log = backend.open_log().await;
    let organization = domain::OrganizationId(org.parse().unwrap());
    let records = log.read_stream(&organization.stream(), 1, 10_000).await.unwrap();
    records
        .iter()
        .filter_map(|r| {
            let payload = r.payload.as_deref().unwrap_or_default();
            match OrganizationEvent::decode(&r.header.event_type, r.header.schema_version, payload).unwrap() {
                Some(OrganizationEvent::UserAdded(added)) => Some((added.email, added.role.as_str())),
                _ => None,
            }
        })
        .collect()
}

/// The type of every event in the log, in order.
async fn event_types(backend: &Backend) -> Vec<String> {
    let log = backend.open_log().await;
    log.read_page(1..=u64::MAX, 100_000).await.unwrap().into_iter().map(|r| r.header.event_type).collect()
}

/// Every byte of the server's data directory (the log's SQLite files).
fn data_bytes(dir: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            bytes.extend(std::fs::read(&path).unwrap());
        }
    }
    bytes
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// What the log holds of every record (stream, metadata, payload), and on
/// SQLite every byte of the data directory's files.
async fn stored_bytes(backend: &Backend) -> Vec<u8> {
    let mut bytes = if backend.database_url().is_none() { data_bytes(backend.data_dir()) } else { Vec::new() };
    let log = backend.open_log().await;
    for record in log.read_page(1..=u64::MAX, 100_000).await.unwrap() {
        bytes.extend(record.header.stream_id.as_str().as_bytes());
        bytes.extend(record.metadata.unwrap_or_default());
        bytes.extend(record.payload.unwrap_or_default());
    }
    bytes
}

/// Where the page `POST /portal/sso` answers goes on to: its link's
/// `href` (the same URL as its refresh), unescaped.
fn continue_link(body: &str) -> String {
    let marker = "<a id=\"sso-continue\" href=\"";
    let start = body.find(marker).unwrap_or_else(|| panic!("no link to the issuer: {body}")) + marker.len();
    let href = body[start..].split('"').next().unwrap().replace("&#38;", "&");
    let refresh = format!(
        "<meta http-equiv=\"refresh\" content=\"0;url={}\">",
        &body[start..start + body[start..].find('"').unwrap()]
    );
    assert!(body.contains(&refresh), "the refresh goes where the link does: {body}");
    href
}

/// The value of the first `name="csrf"` field of a page.
fn csrf_field(body: &str) -> String {
    let start = body.find("name=\"csrf\" value=\"").expect("a CSRF field") + "name=\"csrf\" value=\"".len();
    body[start..].split('"').next().unwrap().to_owned()
}

/// Globex's admin, signed in to the portal with a `ledger users
/// login-link` link, sets its SSO on the SSO settings page (a form with
/// the session's CSRF token): the page shows the issuer, never the secret.
async fn set_sso_on_the_portal_page(backend: &Backend, s: &Server, org: &str, issuer: &Issuer, client: &str) {
    add_user(s, org, "admin@globex.test", "admin").await;
    let args = ["users", "login-link", "--email", "admin@globex.test", "--organization", org, "--portal-url", PORTAL];
    let output = backend.cli(&args).await;
    assert!(output.status.success(), "login-link: {}", String::from_utf8_lossy(&output.stderr));
    let link = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    let mut admin = Browser::new(issuer);
    let page = admin.request(Method::GET, &s.url(link.strip_prefix(PORTAL).unwrap()), None).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let token = link.split("token=").nth(1).unwrap().to_owned();
    let csrf = admin.jar["ledger_portal_csrf"].clone();
    let signed = admin.request(Method::POST, &s.url("/portal/link"), Some(&[("token", &token), ("csrf", &csrf)])).await;
    assert_eq!(signed.status, 303, "{}", signed.body);
    let settings = s.url(&format!("/portal/orgs/{org}/sso"));
    let page = admin.request(Method::GET, &settings, None).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("No identity provider is set."), "{}", page.body);
    let csrf = csrf_field(&page.body);
    let form = [
        ("csrf", csrf.as_str()),
        ("issuer_url", issuer.url.as_str()),
        ("client_id", client),
        ("client_secret", SECRET_B),
    ];
    let without = admin.request(Method::POST, &settings, Some(&form[1..])).await;
    assert_eq!(without.status, 403, "a form without its CSRF token");
    let saved = admin.request(Method::POST, &settings, Some(&form)).await;
    assert_eq!(saved.status, 200, "{}", saved.body);
    assert!(saved.body.contains(&format!("SSO through {} is set.", issuer.url)), "{}", saved.body);
    assert!(saved.body.contains(client) && !saved.body.contains(SECRET_B), "{}", saved.body);
}

async fn sso_configured_by_an_admin_signs_users_into_their_organization_only(backend: Backend) {
    if !oidc::peers_available(module_path!()) {
        return;
    }
    let s =
        backend.start_with(&["--portal-insecure-cookies", "--sso-allow-loopback-issuer", "--portal-url", PORTAL]).await;
    let acme = s.create_org("Acme GmbH").await;
    let globex = s.create_org("Globex").await;
    let starter = s.create_org("Small Co").await;
    s.create_subscription(&acme, "enterprise", "2026-01-01", true).await;
    s.create_subscription(&globex, "enterprise", "2026-01-01", true).await;
    s.create_subscription(&starter, "starter", "2026-01-01", true).await;
    let (acme_admin, globex_admin, starter_admin) =
        (admin_token(&s, &acme).await, admin_token(&s, &globex).await, admin_token(&s, &starter).await);
    add_user(&s, &acme, "ann@acme.test", "analyst").await;
    let callback = format!("{PORTAL}/portal/sso/callback");
    let issuer_a = Issuer::start_for("ledger-acme", SECRET_A, &callback).await;
    let issuer_b = Issuer::start_for("ledger-globex", SECRET_B, &callback).await;

    // Configuration: the admin's, enterprise only, never answering the secret.
    let refused = put_sso(&s, &starter, &starter_admin, &issuer_a.url, "ledger-acme", SECRET_A).await;
    refused.problem(409, "feature_not_in_tier");
    let viewer = {
        let body = json!({ "role": "viewer" });
        let issued = s.post(&format!("/api/v1/organizations/{acme}/tokens"), Some(OPERATOR), body).await.expect(201);
        issued["token"].as_str().unwrap().to_owned()
    };
    put_sso(&s, &acme, &viewer, &issuer_a.url, "ledger-acme", SECRET_A).await.problem(403, "forbidden");
    put_sso(&s, &acme, &globex_admin, &issuer_a.url, "ledger-acme", SECRET_A).await.problem(404, "not_found");
    let set = put_sso(&s, &acme, &acme_admin, &issuer_a.url, "ledger-acme", SECRET_A).await.expect(200);
    assert_eq!(set["issuerUrl"], issuer_a.url.as_str());
    assert!(!set.to_string().contains(SECRET_A), "{set}");
    set_sso_on_the_portal_page(&backend, &s, &globex, &issuer_b, "ledger-globex").await;
    let got = s.get(&format!("/api/v1/organizations/{globex}/sso"), Some(&globex_admin)).await.expect(200);
    assert_eq!(
        (got["issuerUrl"].as_str(), got["clientId"].as_str()),
        (Some(issuer_b.url.as_str()), Some("ledger-globex"))
    );
    let got = s.get(&format!("/api/v1/organizations/{acme}/sso"), Some(&acme_admin)).await;
    assert!(!got.text.contains(SECRET_A), "{}", got.text);
    let got = got.expect(200);
    assert_eq!((got["clientId"].as_str(), got["clientSecretSet"].as_bool()), (Some("ledger-acme"), Some(true)));

    // First sign-in without a verified address: refused, nobody created.
    issuer_a.account("sub-ann", "ann@acme.test", false).await;
    let page = Browser::new(&issuer_a).sign_in(&s, &acme, false).await;
    assert_eq!(page.status, 403, "{}", page.body);
    assert!(page.body.contains("did not confirm your e-mail address"), "{}", page.body);

    // Verified: matched to the existing analyst by e-mail, signed in.
    issuer_a.account("sub-ann", "ann@acme.test", true).await;
    let mut ann = Browser::new(&issuer_a);
    let page = ann.sign_in(&s, &acme, false).await;
    assert_eq!((page.status, page.location.as_str()), (303, format!("/portal/orgs/{acme}").as_str()), "{}", page.body);
    assert!(!ann.jar.contains_key("ledger_portal_sso"), "the pending sign-in's cookie is removed");
    let overview = ann.request(Method::GET, &s.url(&format!("/portal/orgs/{acme}")), None).await;
    assert_eq!(overview.status, 200, "{}", overview.body);
    // Signed in to Acme, never to Globex.
    let other = ann.request(Method::GET, &s.url(&format!("/portal/orgs/{globex}")), None).await;
    assert_eq!(other.status, 404);

    // A new address: created as a viewer.
    issuer_a.account("sub-vic", "vic@acme.test", true).await;
    let mut vic = Browser::new(&issuer_a);
    assert_eq!(vic.sign_in(&s, &acme, false).await.status, 303);
    let added = users_added(&backend, &acme).await;
    assert_eq!(added.len(), 2, "{added:?}");
    assert_eq!(added[1], ("vic@acme.test".to_owned(), "viewer"));

    // Later sign-ins go by (issuer, subject), whatever the e-mail says now.
    issuer_a.account("sub-vic", "victor@elsewhere.test", true).await;
    let mut again = Browser::new(&issuer_a);
    assert_eq!(again.sign_in(&s, &acme, false).await.status, 303);
    assert_eq!(users_added(&backend, &acme).await.len(), 2, "no new user");
    let types = event_types(&backend).await;
    let count = |name: &str| types.iter().filter(|t| *t == name).count();
    assert_eq!((count("SsoLinked"), count("SsoSignedIn")), (2, 3), "two links, three sign-ins in the log");

    // The issuer's signing key changes: an ID token with an unknown key id
    // makes the portal fetch the keys again, and it signs in.
    let issuer_a = issuer_a.restart_with_a_new_key().await;
    issuer_a.account("sub-ann", "ann@acme.test", true).await;
    let page = Browser::new(&issuer_a).sign_in(&s, &acme, false).await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(event_types(&backend).await.iter().filter(|t| *t == "SsoSignedIn").count(), 4);

    // Acme's issuer cannot sign anyone into Globex: Acme's code with
    // Globex's pending sign-in is refused, and so is a mixed-up state.
    issuer_a.account("sub-ann", "ann@acme.test", true).await;
    let mut mallory = Browser::new(&issuer_a);
    let at_callback = mallory.sign_in(&s, &acme, true).await;
    let acme_callback = at_callback.location.clone();
    assert!(acme_callback.contains("code="), "{acme_callback}");
    let acme_query = acme_callback.split_once('?').unwrap().1.to_owned();
    let param = |query: &str, name: &str| {
        query.split('&').find_map(|p| p.strip_prefix(&format!("{name}="))).unwrap_or_default().to_owned()
    };
    let mut globex_browser = Browser::new(&issuer_b);
    let form = globex_browser.request(Method::GET, &s.url("/portal/sso"), None).await;
    assert_eq!(form.status, 200);
    let csrf = globex_browser.jar["ledger_portal_csrf"].clone();
    let to_b = globex_browser
        .request(Method::POST, &s.url("/portal/sso"), Some(&[("organization", &globex), ("csrf", &csrf)]))
        .await;
    assert_eq!(to_b.status, 200, "{}", to_b.body);
    let to_b = continue_link(&to_b.body);
    assert!(to_b.starts_with(&format!("{}/auth?", issuer_b.url)), "{to_b}");
    let globex_state = param(to_b.split_once('?').unwrap().1, "state");
    let with_acme_state = globex_browser.request(Method::GET, &acme_callback_url(&s, &acme_query), None).await;
    assert_eq!(with_acme_state.status, 403, "Acme's state with Globex's pending sign-in");
    let mixed = format!("/portal/sso/callback?code={}&state={globex_state}", param(&acme_query, "code"));
    let with_acme_code = globex_browser.request(Method::GET, &s.url(&mixed), None).await;
    assert_eq!(with_acme_code.status, 403, "Acme's code exchanged at Globex's issuer");
    let globex_users = users_added(&backend, &globex).await;
    assert_eq!(globex_users, [("admin@globex.test".to_owned(), "admin")], "nobody created in Globex");

    // Even with the test setting, only loopback may be plain or private.
    for issuer in ["http://93.184.216.34", "https://10.0.0.1", "https://169.254.169.254", "https://[fd00::1]"] {
        put_sso(&s, &acme, &acme_admin, issuer, "x", "y").await.problem(400, "validation_failed");
    }
    // Without it (the default), the loopback issuer itself is refused too.
    let strict_backend = Backend::sqlite().await;
    let strict = strict_backend.start().await;
    let org = strict.create_org("Strict").await;
    strict.create_subscription(&org, "enterprise", "2026-01-01", true).await;
    let admin = admin_token(&strict, &org).await;
    for issuer in [issuer_a.url.as_str(), "https://127.0.0.1:8443", "https://10.0.0.1", "https://[::1]:8443"] {
        let problem = put_sso(&strict, &org, &admin, issuer, "x", "y").await.problem(400, "validation_failed");
        assert!(problem.to_string().contains("issuerUrl"), "{issuer}: {problem}");
    }
    strict.stop().await;

    // Enterprise seats are unlimited; after a downgrade to starter takes
    // effect (5 seats), new SSO users are refused at the limit.
    s.post(&format!("/api/v1/subscriptions/{acme}/downgrade"), Some(&acme_admin), json!({ "targetTier": "starter" }))
        .await
        .expect(200);
    s.move_clock("2027-01-02T00:00:00Z").await;
    poll("Acme's renewal as starter", || async {
        (s.subscription(&acme, OPERATOR).await["tier"] == "starter").then_some(())
    })
    .await;
    add_user(&s, &acme, "u3@acme.test", "viewer").await;
    add_user(&s, &acme, "u4@acme.test", "viewer").await;
    issuer_a.account("sub-fifth", "fifth@acme.test", true).await;
    assert_eq!(Browser::new(&issuer_a).sign_in(&s, &acme, false).await.status, 303, "the fifth seat");
    issuer_a.account("sub-sixth", "sixth@acme.test", true).await;
    let over = Browser::new(&issuer_a).sign_in(&s, &acme, false).await;
    assert_eq!(over.status, 403, "{}", over.body);
    assert!(over.body.contains("no free seat"), "{}", over.body);
    let added = users_added(&backend, &acme).await;
    assert_eq!(added.len(), 5, "nothing created over the limit: {added:?}");

    // The secret is nowhere in the log's bytes or the server's output.
    let events = s.audit(&acme).await;
    assert!(events.iter().any(|e| e["eventType"] == "UserAdded"), "audit reads");
    let bytes = stored_bytes(&backend).await;
    assert!(contains(&bytes, "ledger-acme"), "the client id is in the log (the check reads the right files)");
    assert!(!contains(&bytes, SECRET_A) && !contains(&bytes, SECRET_B), "a client secret in the log's bytes");
    assert!(!s.output().iter().any(|l| l.contains(SECRET_A) || l.contains(SECRET_B)), "a client secret in the output");
    s.stop().await;
}

fn acme_callback_url(s: &Server, query: &str) -> String {
    s.url(&format!("/portal/sso/callback?{query}"))
}

/// `ledger keys …` on the stopped server's store: its JSON answer.
async fn keys_cli(backend: &Backend, command: &str) -> serde_json::Value {
    let output = backend.cli(&["keys", command]).await;
    assert!(output.status.success(), "keys {command}: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("JSON on stdout")
}

/// Issue 18: the server secret rotates while SSO is configured. The
/// client secret (sealed under the server secret) and the identity link
/// (its stream named under it) are sealed and recorded again at
/// `retire-secret`, so a linked user signs in at every step and after,
/// found by the link (their e-mail at the issuer changed: no new user).
async fn sso_sign_in_keeps_working_through_a_secret_rotation(backend: Backend) {
    if !oidc::peers_available(module_path!()) {
        return;
    }
    let flags = ["--portal-insecure-cookies", "--sso-allow-loopback-issuer", "--portal-url", PORTAL];
    let s = backend.start_with(&flags).await;
    let acme = s.create_org("Acme GmbH").await;
    s.create_subscription(&acme, "enterprise", "2026-01-01", true).await;
    let admin = admin_token(&s, &acme).await;
    let issuer = Issuer::start_for("ledger-acme", SECRET_A, &format!("{PORTAL}/portal/sso/callback")).await;
    put_sso(&s, &acme, &admin, &issuer.url, "ledger-acme", SECRET_A).await.expect(200);
    issuer.account("sub-vic", "vic@acme.test", true).await;
    assert_eq!(Browser::new(&issuer).sign_in(&s, &acme, false).await.status, 303, "the first sign-in links Vic");
    issuer.account("sub-vic", "victor@elsewhere.test", true).await;
    s.stop().await;

    let signs_in = |s: Server| {
        let (issuer, acme) = (&issuer, acme.clone());
        async move {
            let page = Browser::new(issuer).sign_in(&s, &acme, false).await;
            assert_eq!((page.status, page.location.as_str()), (303, format!("/portal/orgs/{acme}").as_str()));
            s
        }
    };
    keys_cli(&backend, "prepare-secret").await;
    signs_in(backend.start_with(&flags).await).await.stop().await;
    keys_cli(&backend, "rotate-secret").await;
    let s = signs_in(backend.start_with(&flags).await).await;
    // Retired while the server runs (it holds both secrets).
    let retired = keys_cli(&backend, "retire-secret").await;
    assert_eq!((retired["ssoConfigsResealed"].as_u64(), retired["ssoLinksRehashed"].as_u64()), (Some(1), Some(1)));
    signs_in(s).await.stop().await;
    // On the new secret alone: the settings open, the link is found.
    signs_in(backend.start_with(&flags).await).await.stop().await;
    assert_eq!(users_added(&backend, &acme).await, [("vic@acme.test".to_owned(), "viewer")], "no new user");
    let types = event_types(&backend).await;
    let count = |name: &str| types.iter().filter(|t| *t == name).count();
    assert_eq!((count("SsoSecretResealed"), count("SsoLinkRehashed"), count("SsoLinked")), (1, 1, 1));
}
