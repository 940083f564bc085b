//! The vendor's console (issue 15 part 1) end to end: the real `ledger`
//! binary and the real OpenID Connect issuer the portal's SSO test uses
//! (npm's oidc-provider, `tests/oidc/issuer.mjs`) as the vendor's own
//! provider, driven over HTTP by a client that keeps its own cookies and
//! follows redirects by hand; and magic links from `ledger staff
//! login-link`. Each role's pages and refusals; a disabled staff user's
//! session ends; staff actions are the staff user's in the log, and so are
//! refused sign-ins (an unknown or disabled address, a used link, an
//! identity that is no staff user's), never with a token. Without
//! node or oidc-provider in target/peers/oidc it skips with a notice.
#![allow(clippy::too_many_lines)]

#[allow(dead_code, unused_macros)]
#[macro_use]
mod common;
#[allow(dead_code)]
mod oidc;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Backend, OPERATOR, Server};
use domain::event::StoredEvent;
use domain::signin::SignInEvent;
use oidc::Issuer;
use reqwest::Method;
use serde_json::json;

/// The server's public URL as the server and the issuer know it.
const PORTAL: &str = "http://portal.test";

backends!(staff_sign_in_to_the_console_and_each_role_sees_its_pages);

/// A browser's part: cookies by name, redirects followed by hand.
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

    async fn request(&mut self, method: Method, url: &str, form: Option<&[(&str, &str)]>) -> Page {
        let cookies = self.jar.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ");
        let mut request = self.http.request(method, url).header("cookie", cookies);
        if let Some(form) = form {
            // Ids, names, addresses and base64url tokens: nothing to escape.
            let body = form.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
            request = request.header("content-type", "application/x-www-form-urlencoded").body(body);
        }
        let answer = request.send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
        for value in answer.headers().get_all("set-cookie") {
            let text = value.to_str().unwrap();
            let (pair, attributes) = text.split_once(';').unwrap_or((text, ""));
            let (name, value) = pair.split_once('=').unwrap();
            if attributes.to_ascii_lowercase().contains("max-age=0") || value.is_empty() {
                self.jar.remove(name.trim());
            } else {
                self.jar.insert(name.trim().to_owned(), value.trim().to_owned());
            }
        }
        let status = answer.status().as_u16();
        let location = answer.headers().get("location").map(|l| l.to_str().unwrap().to_owned()).unwrap_or_default();
        Page { status, location, body: answer.text().await.unwrap() }
    }

    /// From the console's sign-in page through the issuer and back: the
    /// callback's answer.
    async fn oidc_sign_in(&mut self, s: &Server) -> Page {
        let form = self.request(Method::GET, &s.url("/console/signin"), None).await;
        assert_eq!(form.status, 200, "{}", form.body);
        assert!(form.body.contains("id=\"oidc\""), "the provider's button: {}", form.body);
        let csrf = self.jar["ledger_console_csrf"].clone();
        let mut page = self.request(Method::POST, &s.url("/console/oidc"), Some(&[("csrf", &csrf)])).await;
        for _ in 0..10 {
            if !(300..400).contains(&page.status) || page.location == "/console/" {
                return page;
            }
            let next = if let Some(path) = page.location.strip_prefix(PORTAL) {
                s.url(path)
            } else if page.location.starts_with('/') {
                format!("{}{}", self.issuer, page.location)
            } else {
                page.location.clone()
            };
            page = self.request(Method::GET, &next, None).await;
        }
        panic!("too many redirects");
    }

    /// Signs in with a link from `ledger staff login-link`.
    async fn link_sign_in(&mut self, s: &Server, link: &str) -> Page {
        let page = self.request(Method::GET, &s.url(link.strip_prefix(PORTAL).unwrap()), None).await;
        assert_eq!(page.status, 200, "{}", page.body);
        let token = link.split("token=").nth(1).unwrap().to_owned();
        let csrf = self.jar["ledger_console_csrf"].clone();
        self.request(Method::POST, &s.url("/console/link"), Some(&[("token", &token), ("csrf", &csrf)])).await
    }
}

/// The value of the first `name="csrf"` field of a page.
fn csrf_field(body: &str) -> String {
    let start = body.find("name=\"csrf\" value=\"").expect("a CSRF field") + "name=\"csrf\" value=\"".len();
    body[start..].split('"').next().unwrap().to_owned()
}

async fn login_link(backend: &Backend, email: &str) -> std::process::Output {
    backend.cli(&["staff", "login-link", "--email", email, "--portal-url", PORTAL]).await
}

/// The actor of each record of a type, in log order.
async fn actors_of(backend: &Backend, event_type: &str) -> Vec<String> {
    let log = backend.open_log().await;
    let records = log.read_page(1..=u64::MAX, 100_000).await.unwrap();
    records
        .into_iter()
        .filter(|r| r.header.event_type == event_type)
        .map(|r| {
            let metadata = domain::Metadata::decode(r.metadata.as_deref().unwrap_or_default()).unwrap_or_default();
            metadata.actor.unwrap_or_default()
        })
        .collect()
}

/// The refused sign-ins in the log (the portal's and the console's), in
/// log order; waits (bounded) until there are `count`, as a link asked for
/// an unknown address is recorded off the request's path.
async fn refusals(backend: &Backend, count: usize) -> Vec<SignInEvent> {
    let mut found = Vec::new();
    for _ in 0..100 {
        let log = backend.open_log().await;
        let records = log.read_page(1..=u64::MAX, 100_000).await.unwrap();
        found = records
            .into_iter()
            .filter(|r| r.header.stream_id.category() == "portal-refusals")
            .map(|r| {
                let payload = r.payload.as_deref().unwrap_or_default();
                SignInEvent::decode(&r.header.event_type, r.header.schema_version, payload).unwrap().unwrap()
            })
            .collect();
        if found.len() >= count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(found.len(), count, "{found:#?}");
    found
}

/// Asks for a console sign-in link on the sign-in page.
async fn ask_for_link(s: &Server, issuer: &Issuer, email: &str) {
    let mut browser = Browser::new(issuer);
    let form = browser.request(Method::GET, &s.url("/console/signin"), None).await;
    assert_eq!(form.status, 200, "{}", form.body);
    let csrf = browser.jar["ledger_console_csrf"].clone();
    let sent =
        browser.request(Method::POST, &s.url("/console/signin"), Some(&[("email", email), ("csrf", &csrf)])).await;
    assert_eq!(sent.status, 200, "the same answer for every address: {}", sent.body);
}

/// A staff user's refused link: the portal's event, naming the vendor.
fn staff_refusal(event: &SignInEvent) -> (String, String) {
    let SignInEvent::SignInRefused(e) = event else { panic!("a staff user's refusal: {event:?}") };
    assert_eq!(e.organization_id, domain::signin::VENDOR, "{e:?}");
    (e.user_id.0.to_string(), e.reason.clone())
}

/// A refusal that names no staff user: method, reason, address, subject.
fn unknown_refusal(event: &SignInEvent) -> (String, String, Option<String>, Option<String>) {
    let SignInEvent::ConsoleSignInRefused(e) = event else { panic!("a console refusal: {event:?}") };
    (e.method.clone(), e.reason.clone(), e.email.clone(), e.subject.clone())
}

async fn staff_sign_in_to_the_console_and_each_role_sees_its_pages(backend: Backend) {
    if !oidc::peers_available(module_path!()) {
        return;
    }
    let issuer = Issuer::start(PORTAL).await;
    let env = issuer.env();
    let flags = ["--portal-insecure-cookies", "--sso-allow-loopback-issuer", "--portal-url", PORTAL];
    let s = backend.start_with_env(&flags, &env).await;
    let acme = s.create_org("Acme GmbH").await;

    // The first staff admin, from the command line (the bootstrap token's
    // act); a support and a billing user through the API.
    let added =
        backend.cli(&["staff", "add", "--email", "Ada@Vendor.test", "--name", "Ada", "--role", "staff_admin"]).await;
    assert!(added.status.success(), "staff add: {}", String::from_utf8_lossy(&added.stderr));
    let ada: serde_json::Value = serde_json::from_slice(&added.stdout).unwrap();
    let ada = ada["id"].as_str().unwrap().to_owned();
    let body = json!({ "name": "Sam", "email": "sam@vendor.test", "role": "support" });
    let sam = s.post("/api/v1/staff", Some(OPERATOR), body).await.expect(201)["id"].as_str().unwrap().to_owned();
    let body = json!({ "name": "Bob", "email": "bob@vendor.test", "role": "billing" });
    s.post("/api/v1/staff", Some(OPERATOR), body).await.expect(201);

    // Not signed in: to the sign-in page.
    let mut nobody = Browser::new(&issuer);
    let page = nobody.request(Method::GET, &s.url("/console/"), None).await;
    assert_eq!((page.status, page.location.as_str()), (303, "/console/signin"), "{}", page.body);

    // The provider vouches for an address that is no staff user's, or
    // one it did not verify: refused, no session.
    for (email, verified) in [("mallory@vendor.test", true), ("ada@vendor.test", false)] {
        issuer.account("sub-x", email, verified).await;
        let mut browser = Browser::new(&issuer);
        let page = browser.oidc_sign_in(&s).await;
        assert_eq!(page.status, 403, "{email} (verified {verified}): {}", page.body);
        assert!(!browser.jar.contains_key("ledger_console_session"));
    }
    // Both refusals are in the log, with the provider's subject.
    let refused = refusals(&backend, 2).await;
    let oidc = |reason: &str, email: &str| {
        ("oidc".to_owned(), reason.to_owned(), Some(email.to_owned()), Some("sub-x".to_owned()))
    };
    assert_eq!(unknown_refusal(&refused[0]), oidc("unknown_email", "mallory@vendor.test"));
    assert_eq!(unknown_refusal(&refused[1]), oidc("unverified_email", "ada@vendor.test"));
    // A link asked for an address that is no staff user's: the same page,
    // and the refusal recorded.
    ask_for_link(&s, &issuer, "Mallory@Vendor.test").await;
    let refused = refusals(&backend, 3).await;
    assert_eq!(
        unknown_refusal(&refused[2]),
        ("link".to_owned(), "unknown_email".to_owned(), Some("mallory@vendor.test".to_owned()), None)
    );

    // Ada (staff admin) through the provider: the organizations and the
    // staff page, where she adds a staff user with the session's CSRF token.
    issuer.account("sub-ada", "ada@vendor.test", true).await;
    let mut ada_browser = Browser::new(&issuer);
    let page = ada_browser.oidc_sign_in(&s).await;
    assert_eq!((page.status, page.location.as_str()), (303, "/console/"), "{}", page.body);
    assert!(!ada_browser.jar.contains_key("ledger_console_oidc"), "the pending sign-in's cookie is removed");
    let home = ada_browser.request(Method::GET, &s.url("/console/"), None).await;
    assert_eq!(home.status, 200, "{}", home.body);
    assert!(home.body.contains("Acme GmbH") && home.body.contains(&acme), "{}", home.body);
    assert!(home.body.contains("Ada (staff_admin)"), "{}", home.body);
    let staff = ada_browser.request(Method::GET, &s.url("/console/staff"), None).await;
    assert_eq!(staff.status, 200, "{}", staff.body);
    assert!(staff.body.contains("sam@vendor.test") && staff.body.contains("bob@vendor.test"), "{}", staff.body);
    let csrf = csrf_field(&staff.body);
    let form = [("name", "Eve"), ("email", "eve@vendor.test"), ("role", "auditor")];
    let without = ada_browser.request(Method::POST, &s.url("/console/staff"), Some(&form)).await;
    assert_eq!(without.status, 403, "a form without its CSRF token");
    let with: Vec<(&str, &str)> = form.iter().copied().chain([("csrf", csrf.as_str())]).collect();
    let done = ada_browser.request(Method::POST, &s.url("/console/staff"), Some(&with)).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(done.body.contains("eve@vendor.test"), "{}", done.body);
    assert_eq!(
        actors_of(&backend, "StaffUserAdded").await,
        ["operator".to_owned(), "operator".to_owned(), "operator".to_owned(), format!("staff:{ada}:staff_admin"),]
    );

    // Sam (support) by a magic link: the organizations, not the staff page.
    let link = login_link(&backend, "sam@vendor.test").await;
    assert!(link.status.success(), "login-link: {}", String::from_utf8_lossy(&link.stderr));
    let link = String::from_utf8(link.stdout).unwrap().trim().to_owned();
    let mut sam_browser = Browser::new(&issuer);
    let page = sam_browser.link_sign_in(&s, &link).await;
    assert_eq!((page.status, page.location.as_str()), (303, "/console/"), "{}", page.body);
    let home = sam_browser.request(Method::GET, &s.url("/console/"), None).await;
    assert_eq!(home.status, 200, "{}", home.body);
    assert!(home.body.contains("Acme GmbH") && !home.body.contains("href=\"/console/staff\""), "{}", home.body);
    let staff = sam_browser.request(Method::GET, &s.url("/console/staff"), None).await;
    assert_eq!(staff.status, 403, "support may not manage staff");
    let forged =
        [("name", "X"), ("email", "x@vendor.test"), ("role", "staff_admin"), ("csrf", csrf_field(&home.body).as_str())]
            .map(|(k, v)| (k, v.to_owned()));
    let forged: Vec<(&str, &str)> = forged.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let refused = sam_browser.request(Method::POST, &s.url("/console/staff"), Some(&forged)).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    // The link works once; a portal-style token is no console link.
    let mut again = Browser::new(&issuer);
    let used = again.link_sign_in(&s, &link).await;
    assert_eq!(used.status, 403, "{}", used.body);
    assert!(used.body.contains("used already"), "{}", used.body);
    assert!(!login_link(&backend, "nobody@vendor.test").await.status.success());
    // The used link's refusal is Sam's; an invalid link is nobody's.
    let mut forger = Browser::new(&issuer);
    let at = link.find("token=").unwrap() + "token=".len() + 5;
    let other = if &link[at..=at] == "A" { "B" } else { "A" };
    let forged_link = format!("{}{other}{}", &link[..at], &link[at + 1..]);
    assert_eq!(forger.link_sign_in(&s, &forged_link).await.status, 403);
    let refused = refusals(&backend, 4).await;
    assert_eq!(staff_refusal(&refused[3]), (sam.clone(), "used".to_owned()));

    // Ada disables Sam on the staff page: Sam's session ends at once.
    let staff = ada_browser.request(Method::GET, &s.url("/console/staff"), None).await;
    let csrf = csrf_field(&staff.body);
    let disable = s.url(&format!("/console/staff/{sam}/disable"));
    let done = ada_browser.request(Method::POST, &disable, Some(&[("csrf", &csrf)])).await;
    assert_eq!(done.status, 200, "{}", done.body);
    let page = sam_browser.request(Method::GET, &s.url("/console/"), None).await;
    assert_eq!((page.status, page.location.as_str()), (303, "/console/signin"), "a disabled user's session ends");
    let listed = s.get("/api/v1/staff", Some(OPERATOR)).await.expect(200);
    let sam_row = listed["items"].as_array().unwrap().iter().find(|i| i["id"] == sam.as_str()).unwrap().clone();
    assert_eq!(sam_row["active"], false, "{sam_row}");
    assert_eq!(actors_of(&backend, "StaffUserDisabled").await, [format!("staff:{ada}:staff_admin")]);
    // A disabled staff user's address asking for a link: refused, and
    // recorded as Sam's.
    ask_for_link(&s, &issuer, "sam@vendor.test").await;
    let refused = refusals(&backend, 5).await;
    assert_eq!(staff_refusal(&refused[4]), (sam.clone(), "inactive".to_owned()));
    // No link token is in the log, in any record.
    let token = link.split("token=").nth(1).unwrap();
    let log = backend.open_log().await;
    for record in log.read_page(1..=u64::MAX, 100_000).await.unwrap() {
        let payload = record.payload.as_deref().unwrap_or_default();
        assert!(!payload.windows(token.len()).any(|w| w == token.as_bytes()), "a token in {:?}", record.header);
    }

    // Sign-ins are in the log, each the staff user's.
    let sign_ins = actors_of(&backend, "PortalSignedIn").await;
    assert_eq!(sign_ins, [format!("staff:{ada}:staff_admin"), format!("staff:{sam}:support")]);

    // Sign-out ends Ada's session.
    let home = ada_browser.request(Method::GET, &s.url("/console/"), None).await;
    let csrf = csrf_field(&home.body);
    let out = ada_browser.request(Method::POST, &s.url("/console/signout"), Some(&[("csrf", &csrf)])).await;
    assert_eq!((out.status, out.location.as_str()), (303, "/console/signin"));
    let page = ada_browser.request(Method::GET, &s.url("/console/"), None).await;
    assert_eq!(page.status, 303);
}
