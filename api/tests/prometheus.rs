//! A real Prometheus (Debian's `prometheus` package) scrapes the real
//! `ledger serve` (its own port and temporary directories), loads the alert
//! rules of deploy/prometheus/, and the ledger's series can be queried over
//! Prometheus' HTTP API; and `promtool test rules` passes over those rules.
//! Without prometheus or promtool these skip with a notice (under CI they
//! fail); `cargo xtask test` installs them (xtask/src/peer_prometheus.rs).

// Each test binary compiles `common` and uses a part of it.
#[allow(dead_code, unused_macros)]
mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::Backend;
use serde_json::Value;
use store::testing::{Peer, skip};

/// The longest a test waits for Prometheus to scrape and answer.
const PROMETHEUS_WAIT: Duration = Duration::from_secs(60);

fn rules_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus")
}

/// Whether `program` runs; says why the test skips when not.
fn available(test: &str, program: &str) -> bool {
    let ran = std::process::Command::new(program).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
    if ran.is_ok_and(|status| status.success()) {
        return true;
    }
    skip(test, Peer::Prometheus, &format!("`{program}` is not installed"));
    false
}

#[test]
fn the_alert_rules_pass_their_promtool_tests() {
    if !available("the_alert_rules_pass_their_promtool_tests", "promtool") {
        return;
    }
    for args in [&["check", "rules", "ledger-alerts.yml"][..], &["test", "rules", "ledger-alerts.test.yml"]] {
        let output = std::process::Command::new("promtool").args(args).current_dir(rules_dir()).output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(output.status.success(), "promtool {args:?} failed:\n{text}");
        assert!(text.contains("SUCCESS"), "promtool {args:?}:\n{text}");
    }
}

/// A free port on the loopback (bound, read and released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// An instant query's result vector.
async fn query(http: &reqwest::Client, prometheus: &str, promql: &str) -> Vec<Value> {
    let encoded: String = promql
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let url = format!("http://{prometheus}/api/v1/query?query={encoded}");
    let Ok(reply) = http.get(url).send().await else { return Vec::new() };
    let body: Value = reply.json().await.unwrap_or_default();
    body["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// The first sample's value of `promql` once Prometheus has one that
/// `accept`s, polling until [`PROMETHEUS_WAIT`].
async fn wait_for(http: &reqwest::Client, prometheus: &str, promql: &str, accept: impl Fn(f64) -> bool) -> f64 {
    let deadline = tokio::time::Instant::now() + PROMETHEUS_WAIT;
    loop {
        let result = query(http, prometheus, promql).await;
        let value = result.first().and_then(|sample| sample["value"][1].as_str()?.parse::<f64>().ok());
        if let Some(value) = value.filter(|v| accept(*v)) {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "Prometheus never answered `{promql}` as expected: {result:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn a_real_prometheus_scrapes_the_server() {
    if !available("a_real_prometheus_scrapes_the_server", "prometheus") {
        return;
    }
    let backend = Backend::sqlite().await;
    let s = backend.start_with(&["--metrics-listen", "127.0.0.1:0"]).await;
    let target = s
        .output()
        .iter()
        .find_map(|l| l.strip_prefix("stdout: ledger metrics on http://")?.split('/').next().map(String::from))
        .unwrap_or_else(|| panic!("the metrics address is printed: {:?}", s.output()));
    let dir = tempfile::tempdir().unwrap();
    let rules = rules_dir().join("ledger-alerts.yml").canonicalize().unwrap();
    let config = format!(
        "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
         rule_files: [{rules:?}]\n\
         scrape_configs:\n  - job_name: ledger\n    static_configs: [{{targets: [{target:?}]}}]\n"
    );
    std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
    let prometheus = format!("127.0.0.1:{}", free_port());
    let mut child = tokio::process::Command::new("prometheus")
        .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
        .arg(format!("--web.listen-address={prometheus}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("prometheus starts");
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();

    assert_eq!(wait_for(&http, &prometheus, r#"up{job="ledger"}"#, |v| v == 1.0).await, 1.0);
    assert_eq!(wait_for(&http, &prometheus, r#"ledger_up{job="ledger"}"#, |v| v == 1.0).await, 1.0);
    s.create_org("Acme").await;
    let created =
        r#"ledger_http_request_duration_seconds_count{route="/api/v1/organizations",method="POST",status_class="2xx"}"#;
    assert_eq!(wait_for(&http, &prometheus, created, |v| v >= 1.0).await, 1.0);
    let head = s.head().await as f64;
    assert_eq!(wait_for(&http, &prometheus, "ledger_log_head_sequence", |v| v == head).await, head);
    // The alert rules loaded, and a healthy server fires none of them.
    let rules: Value =
        http.get(format!("http://{prometheus}/api/v1/rules")).send().await.unwrap().json().await.unwrap();
    let loaded = rules["data"]["groups"][0]["rules"].as_array().map_or(0, Vec::len);
    assert!(loaded >= 10, "the rules are loaded: {rules}");
    assert_eq!(query(&http, &prometheus, r#"ALERTS{alertstate="firing"}"#).await, Vec::<Value>::new());
    child.kill().await.unwrap();
    s.stop().await;
}
