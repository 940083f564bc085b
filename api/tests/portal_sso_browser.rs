//! The portal's Enterprise SSO (issue 14) in a real browser: chromium over
//! WebDriver (the shared harness, `tests/browser/mod.rs`), axe-core on the
//! SSO pages, the real `ledger` binary behind a public URL the issuer
//! knows (`browser::Front`) and the real OpenID Connect issuer
//! (`tests/oidc/`). A user opens the SSO form, enters the organization,
//! signs in at the organization's issuer and lands signed in on the
//! organization's overview. The form page's CSP keeps `form-action 'self'`
//! (the issuer depends on the organization typed, so the page cannot list
//! it), and a browser holds a form's redirect to `form-action`: the form's
//! answer is a page that goes on to the issuer by a top-level navigation.

#[allow(dead_code, unused_macros)]
#[macro_use]
mod common;
#[allow(dead_code)]
mod browser;
#[allow(dead_code)]
mod oidc;

use std::time::{Duration, Instant};

use browser::{Browser, Front, http};
use common::{Backend, OPERATOR, Server};
use reqwest::Method;
use serde_json::json;

const CLIENT_ID: &str = "ledger-acme";
const SECRET: &str = "client-secret-of-acme-7e6d5c4b3a29";
/// How long the browser may take from the form to the overview.
const SIGN_IN_TIMEOUT: Duration = Duration::from_secs(15);

backends!(a_user_signs_in_with_the_organizations_sso_in_a_browser);

/// Acme, on enterprise, with its SSO set to `issuer` over the API and Ann
/// (analyst) among its users; its id.
async fn acme_with_sso(s: &Server, issuer: &oidc::Issuer) -> String {
    let acme = s.create_org("Acme GmbH").await;
    s.create_subscription(&acme, "enterprise", "2026-01-01", true).await;
    let tokens = format!("/api/v1/organizations/{acme}/tokens");
    let issued = s.post(&tokens, Some(OPERATOR), json!({ "role": "admin" })).await.expect(201);
    let admin = issued["token"].as_str().unwrap();
    let body = json!({ "issuerUrl": issuer.url, "clientId": CLIENT_ID, "clientSecret": SECRET });
    let path = format!("/api/v1/organizations/{acme}/sso");
    s.send(Method::PUT, &path, Some(admin), common::Body::Json(body), &[]).await.expect(200);
    let user = json!({ "email": "ann@acme.test", "role": "analyst" });
    s.post(&format!("/api/v1/organizations/{acme}/users"), Some(OPERATOR), user).await.expect(201);
    acme
}

/// Waits until the browser's page is at `url` (the issuer's redirects
/// may still be under way); a failure names where it stayed.
async fn wait_for_url(b: &Browser, url: &str) {
    let deadline = Instant::now() + SIGN_IN_TIMEOUT;
    loop {
        let at = b.client.current_url().await.unwrap();
        if at.as_str() == url {
            return;
        }
        if Instant::now() >= deadline {
            let source = b.client.source().await.unwrap();
            panic!("the browser stayed at {at}, not {url}:\n{source}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The form's answer over plain HTTP: (status, CSP, body).
async fn started_over_http(front: &str, acme: &str) -> (u16, String, String) {
    let form = http().get(format!("{front}/portal/sso")).send().await.unwrap();
    let cookie = form.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let csrf = cookie.split_once('=').unwrap().1.to_owned();
    let answer = http()
        .post(format!("{front}/portal/sso"))
        .header("cookie", cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("organization={acme}&csrf={csrf}"))
        .send()
        .await
        .unwrap();
    let status = answer.status().as_u16();
    let csp = answer.headers()["content-security-policy"].to_str().unwrap().to_owned();
    (status, csp, answer.text().await.unwrap())
}

async fn a_user_signs_in_with_the_organizations_sso_in_a_browser(backend: Backend) {
    if !browser::peers_available(module_path!()) || !oidc::peers_available(module_path!()) {
        return;
    }
    let started = Instant::now();
    let (listener, public) = Front::bind();
    let issuer = oidc::Issuer::start_for(CLIENT_ID, SECRET, &format!("{public}/portal/sso/callback")).await;
    let flags = ["--portal-insecure-cookies", "--sso-allow-loopback-issuer", "--portal-url", &public];
    let s = backend.start_with(&flags).await;
    let front = Front::forward(listener, public, &s);
    let acme = acme_with_sso(&s, &issuer).await;
    issuer.account("sub-ann", "ann@acme.test", true).await;

    // The form, the issuer (its interaction signs Ann in), the callback,
    // the organization's overview: all in chromium.
    let b = Browser::start(&front.url, &backend).await;
    b.go("/portal/sso").await;
    b.find("#organization").await;
    b.accessible("SSO sign-in form").await;
    b.fill("#organization", &acme).await;
    b.click("#sso-start").await;
    wait_for_url(&b, &format!("{}/portal/orgs/{acme}", front.url)).await;
    assert_eq!(b.text("form.signout span").await, "ann@acme.test (analyst)");
    assert_eq!(b.text("#tier").await, "enterprise");
    b.accessible("overview after SSO").await;
    assert!(b.client.get_named_cookie("ledger_portal_sso").await.is_err(), "the pending sign-in's cookie is gone");

    // The page between the form and the issuer: the portal's usual CSP
    // (no issuer in form-action), the issuer's authorization URL in its
    // refresh and its link. axe on it, without its refresh (which would
    // leave at once).
    let (status, csp, body) = started_over_http(&front.url, &acme).await;
    assert_eq!(status, 200, "{body}");
    assert!(csp.contains("form-action 'self';") && !csp.contains(&issuer.url), "{csp}");
    let authorize = format!("{}/auth?", issuer.url);
    assert!(body.contains(&format!("<meta http-equiv=\"refresh\" content=\"0;url={authorize}")), "{body}");
    assert!(body.contains(&format!("<a id=\"sso-continue\" href=\"{authorize}")), "{body}");
    assert!(body.contains(&format!("sign-in at {}</a>", issuer.url)), "{body}");
    let still = body.lines().filter(|l| !l.contains("http-equiv=\"refresh\"")).collect::<Vec<_>>().join("\n");
    b.go("/portal/sso").await;
    b.client
        .execute("document.open(); document.write(arguments[0]); document.close();", vec![json!(still)])
        .await
        .unwrap();
    assert!(b.text("#sso-continue").await.starts_with("Continue to your organization's sign-in"));
    b.accessible("SSO continue page").await;

    // An organization without SSO: the form again, with the reason.
    b.go("/portal/sso").await;
    b.fill("#organization", &uuid::Uuid::new_v4().to_string()).await;
    b.click("#sso-start").await;
    assert!(b.text("#refused").await.contains("does not sign in with SSO here"));
    b.accessible("SSO refused").await;

    drop(front);
    s.stop().await;
    let on = if backend.database_url().is_some() { "postgres" } else { "sqlite" };
    eprintln!("portal_sso_browser ({on}): {:.1} s", started.elapsed().as_secs_f64());
}
