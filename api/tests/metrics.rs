//! `/metrics` of the real `ledger serve`: each figure moves when the thing
//! it measures happens (not merely that it is registered), and no label
//! carries an organization, a key or a path with an id in it.

// Test code: a scenario reads best in one piece.
#![allow(clippy::too_many_lines)]

// Each test binary compiles `common` and uses a part of it.
#[allow(dead_code)]
#[macro_use]
mod common;

use common::{Backend, OPERATOR, Server};
use serde_json::json;

/// The text of `/metrics` (the operator may read it).
async fn scrape(s: &Server) -> String {
    let reply = s.get("/metrics", Some(OPERATOR)).await;
    assert_eq!(reply.status.as_u16(), 200, "{}", reply.text);
    reply.text
}

/// The value of the series `name` whose labels include every one of
/// `labels`, summed over the series that match (`None`: no such series).
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let (series, number) = line.rsplit_once(' ').expect("a value");
        let (series_name, series_labels) = series.split_once('{').unwrap_or((series, ""));
        if series_name != name || !labels.iter().all(|(k, v)| series_labels.contains(&format!("{k}=\"{v}\""))) {
            continue;
        }
        *found.get_or_insert(0.0) += number.parse::<f64>().expect("a number");
    }
    found
}

#[track_caller]
fn at(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    value(text, name, labels).unwrap_or_else(|| panic!("no series {name}{labels:?} in:\n{text}"))
}

/// Every figure that has an event to move it moves when it happens.
async fn each_figure_moves_with_its_event(backend: Backend) {
    let s = backend.start_with(&["--validations-per-address-per-minute", "2"]).await;
    let before = scrape(&s).await;
    assert_eq!(at(&before, "ledger_up", &[]), 1.0);
    assert_eq!(at(&before, "ledger_ready", &[]), 1.0);
    assert_eq!(at(&before, "ledger_writer_queue_depth", &[]), 0.0);
    let appends = at(&before, "ledger_append_duration_seconds_count", &[]);
    let batches = at(&before, "ledger_append_batch_events_count", &[]);

    // A command: the route's template (no id), its class, and an append.
    let org = s.create_org("Acme").await;
    s.create_subscription(&org, "starter", "2026-01-01", true).await;
    s.get(&format!("/api/v1/subscriptions/{org}"), Some(OPERATOR)).await.expect(200);
    s.get("/no/such/route", Some(OPERATOR)).await;
    let text = scrape(&s).await;
    let created = [("method", "POST"), ("route", "/api/v1/organizations"), ("status_class", "2xx")];
    assert_eq!(at(&text, "ledger_http_request_duration_seconds_count", &created), 1.0);
    let read = [("method", "GET"), ("route", "/api/v1/subscriptions/{org_id}"), ("status_class", "2xx")];
    assert_eq!(at(&text, "ledger_http_request_duration_seconds_count", &read), 1.0);
    let unmatched = [("route", "unmatched"), ("status_class", "4xx")];
    assert_eq!(at(&text, "ledger_http_request_duration_seconds_count", &unmatched), 1.0);
    assert!(!text.contains(&org), "no label names an organization");
    assert!(at(&text, "ledger_append_duration_seconds_count", &[]) >= appends + 2.0, "two commands appended");
    assert!(at(&text, "ledger_append_batch_events_count", &[]) > batches);
    assert!(at(&text, "ledger_log_head_sequence", &[]) > 0.0);

    // Validations: counted by code; the third from one address is refused.
    let validate = json!({ "licenseKey": "not-a-key", "deploymentId": "edge-1" });
    for _ in 0..3 {
        s.post("/api/v1/license/validate", None, validate.clone()).await;
    }
    // A usage report, even a malformed one, is processed and timed.
    s.post("/api/v1/usage/report", None, json!({ "licenseKey": "not-a-key" })).await;
    let text = scrape(&s).await;
    assert_eq!(at(&text, "license_validations_total", &[("status", "NOT_FOUND"), ("tier", "none")]), 2.0, "{text}");
    assert_eq!(at(&text, "ledger_rate_limit_refusals_total", &[("limiter", "validations_per_address")]), 1.0);
    assert_eq!(at(&text, "usage_report_processing_seconds_count", &[]), 1.0);
    assert!(value(&text, "usage_report_processing_seconds_bucket", &[("le", "0.001")]).is_some(), "finer buckets");
    assert!(value(&text, "usage_report_processing_seconds_bucket", &[("le", "5.0")]).is_some(), "the plan's buckets");

    // The license issued waits for an admin to be told: the e-mail outbox
    // has one item, as old as the business clock says.
    let text = common::poll("the onboarding notice to be pending", || async {
        let text = scrape(&s).await;
        (value(&text, "ledger_outbox_backlog_items", &[("outbox", "email")]) == Some(1.0)).then_some(text)
    })
    .await;
    let young = at(&text, "ledger_outbox_oldest_age_seconds", &[("outbox", "email")]);
    assert_eq!(at(&text, "ledger_outbox_backlog_items", &[("outbox", "stripe")]), 0.0);
    for projection in ["organizations-v1", "notifications-v1"] {
        assert!(value(&text, "ledger_projection_lag_events", &[("projection", projection)]).is_some(), "{text}");
    }
    s.move_clock("2026-01-01T01:00:00Z").await;
    let text = scrape(&s).await;
    let old = at(&text, "ledger_outbox_oldest_age_seconds", &[("outbox", "email")]);
    assert!(old >= young + 3600.0, "an hour later the notice is an hour older: {young} → {old}");

    // A checkpoint: its age appears, and the records past it count up.
    assert_eq!(value(&text, "ledger_checkpoint_age_seconds", &[]), None, "none kept yet");
    s.post("/api/v1/log/checkpoints", Some(OPERATOR), json!({})).await.expect(200);
    let text = scrape(&s).await;
    assert!(at(&text, "ledger_checkpoint_age_seconds", &[]) < 60.0);
    assert_eq!(at(&text, "ledger_checkpoint_uncovered_records", &[]), 0.0);
    s.create_org("Beta").await;
    s.move_clock("2026-01-01T02:00:00Z").await;
    let text = scrape(&s).await;
    assert!(at(&text, "ledger_checkpoint_uncovered_records", &[]) >= 1.0, "{text}");
    assert!(at(&text, "ledger_checkpoint_age_seconds", &[]) >= 3600.0);

    // A billing run of an ended month is timed; the scheduler (this node
    // leads) has ticked lately.
    s.move_clock("2026-02-01T00:00:00Z").await;
    s.post("/api/v1/billing/runs", Some(OPERATOR), json!({ "period": "2026-01" })).await.expect(200);
    let text = scrape(&s).await;
    assert_eq!(at(&text, "ledger_billing_run_duration_seconds_count", &[]), 1.0);
    assert_eq!(at(&text, "ledger_billing_run_failures_total", &[]), 0.0);
    assert!(at(&text, "ledger_scheduler_lag_seconds", &[]) < 10.0);
    every_dashboard_metric_is_exported(&text);
    s.stop().await;
}

/// The series names a scrape exports, from its `# TYPE` lines (a counter's
/// series end in `_total`, a histogram's in `_bucket`, `_count`, `_sum`).
fn exported(text: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else { continue };
        let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
        match kind {
            "counter" => names.insert(format!("{name}_total")),
            "histogram" => {
                names.extend(["_bucket", "_count", "_sum"].map(|suffix| format!("{name}{suffix}")));
                true
            }
            _ => names.insert(name.to_owned()),
        };
    }
    names
}

/// The metric names a PromQL expression reads: its identifiers, leaving out
/// strings, label matchers, ranges, grouping clauses, functions (a name
/// followed by `(`), keywords and numbers.
fn metric_names(expr: &str) -> Vec<String> {
    // Keywords, and aggregations (which may be followed by `by (…)`, not `(`).
    const KEYWORDS: [&str; 23] = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "and",
        "or",
        "unless",
        "offset",
        "bool",
        "sum",
        "min",
        "max",
        "avg",
        "count",
        "stddev",
        "stdvar",
        "topk",
        "bottomk",
        "quantile",
        "count_values",
        "group",
    ];
    // Drop what is inside {…}, […] and "…", and the clause after by/without.
    let mut plain = String::new();
    let (mut depth, mut quoted) = (0, false);
    for c in expr.chars() {
        match c {
            '"' => quoted = !quoted,
            '{' | '[' if !quoted => depth += 1,
            '}' | ']' if !quoted => depth -= 1,
            _ if quoted || depth > 0 => {}
            _ => plain.push(c),
        }
    }
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut names = Vec::new();
    let mut rest = plain.as_str();
    let mut skip_clause = false;
    while let Some(start) = rest.find(|c: char| is_ident(c) || c == '(') {
        rest = &rest[start..];
        if rest.starts_with('(') {
            // A grouping clause's labels are not metrics.
            let end = rest.find(')').unwrap_or(rest.len() - 1);
            if skip_clause {
                rest = &rest[end + 1..];
                skip_clause = false;
            } else {
                rest = &rest[1..];
            }
            continue;
        }
        let end = rest.find(|c: char| !is_ident(c)).unwrap_or(rest.len());
        let word = &rest[..end];
        rest = &rest[end..];
        let is_call = rest.trim_start().starts_with('(');
        if ["by", "without", "on", "ignoring", "group_left", "group_right"].contains(&word) {
            skip_clause = true;
        } else if !is_call && !KEYWORDS.contains(&word) && !word.starts_with(|c: char| c.is_ascii_digit()) {
            names.push(word.to_owned());
        }
    }
    names
}

#[test]
fn metric_names_are_read_from_promql() {
    let expr = r#"histogram_quantile(0.99, sum by (route, le) (rate(ledger_x_bucket{status_class="5xx"}[5m]))) / on(instance) max(ledger_y) > 0.5"#;
    assert_eq!(metric_names(expr), ["ledger_x_bucket", "ledger_y"]);
}

/// Every expression of the Grafana dashboard names only series the server
/// exports (compared with a real scrape).
fn every_dashboard_metric_is_exported(scrape: &str) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/grafana/ledger.json");
    let dashboard: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let exported = exported(scrape);
    let mut checked = 0;
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("an expr");
            let names = metric_names(expr);
            assert!(!names.is_empty(), "{expr} names no metric");
            for name in names {
                assert!(
                    exported.contains(&name),
                    "the dashboard's `{expr}` reads {name}, which /metrics lacks: {exported:?}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 20, "only {checked} names checked");
}

backends!(each_figure_moves_with_its_event, append_errors_count_the_appends_the_database_refused);

/// The organizations the append-error test tries to create while the
/// database refuses every new record.
const REFUSED_COMMANDS: usize = 3;

/// A trigger planted beside the running server (as a second process
/// would) that refuses every insert into the log, on either backend.
enum Refusal {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

/// SQLite's: a trigger that aborts the insert.
const SQLITE_REFUSE: &str =
    "CREATE TRIGGER refuse_appends BEFORE INSERT ON events BEGIN SELECT RAISE(ABORT, 'refused by the test'); END";
/// PostgreSQL's: a row trigger whose function raises (created in the
/// test's own schema, the first of the URL's search path).
const POSTGRES_REFUSE: [&str; 2] = [
    "CREATE FUNCTION refuse_appends() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$",
    "CREATE TRIGGER refuse_appends BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION refuse_appends()",
];
const POSTGRES_ALLOW: [&str; 2] = ["DROP TRIGGER refuse_appends ON events", "DROP FUNCTION refuse_appends()"];

impl Refusal {
    async fn plant(backend: &Backend) -> Self {
        use sqlx::Connection;
        match backend.database_url() {
            None => {
                let path = backend.data_dir().join("ledger.sqlite");
                let options = sqlx::sqlite::SqliteConnectOptions::new().filename(path);
                let mut db = sqlx::SqliteConnection::connect_with(&options).await.expect("the log opens");
                sqlx::query(SQLITE_REFUSE).execute(&mut db).await.expect("the trigger is planted");
                Self::Sqlite(db)
            }
            Some(url) => {
                let options: sqlx::postgres::PgConnectOptions = url.parse().expect("a PostgreSQL URL");
                let mut db = sqlx::PgConnection::connect_with(&options).await.expect("the database answers");
                for sql in POSTGRES_REFUSE {
                    sqlx::query(sql).execute(&mut db).await.expect("the trigger is planted");
                }
                Self::Postgres(db)
            }
        }
    }

    async fn lift(self) {
        match self {
            Self::Sqlite(mut db) => {
                sqlx::query("DROP TRIGGER refuse_appends").execute(&mut db).await.expect("the trigger is dropped");
            }
            Self::Postgres(mut db) => {
                for sql in POSTGRES_ALLOW {
                    sqlx::query(sql).execute(&mut db).await.expect("the trigger is dropped");
                }
            }
        }
    }
}

/// `ledger_append_errors_total` counts appends the database failed, by
/// making it fail: a trigger (planted beside the running server, as a
/// second process would) refuses every insert into the log. Each refused
/// command is one failed append (a database error is not retried), answered
/// 5xx, and nothing is appended; once the trigger is gone commands succeed
/// and the counter stays.
async fn append_errors_count_the_appends_the_database_refused(backend: Backend) {
    let s = backend.start().await;
    s.create_org("Before").await;
    let before = at(&scrape(&s).await, "ledger_append_errors_total", &[]);
    let head = s.head().await;

    let refusal = Refusal::plant(&backend).await;
    for n in 0..REFUSED_COMMANDS {
        let reply = s.post("/api/v1/organizations", Some(OPERATOR), json!({ "name": format!("Refused {n}") })).await;
        assert!(reply.status.is_server_error(), "a refused append answers 5xx: {} {}", reply.status, reply.text);
    }
    let after = at(&scrape(&s).await, "ledger_append_errors_total", &[]);
    assert_eq!(after - before, REFUSED_COMMANDS as f64, "one append error per refused command");
    assert_eq!(s.head().await, head, "nothing was appended");

    refusal.lift().await;
    s.create_org("After").await;
    assert_eq!(at(&scrape(&s).await, "ledger_append_errors_total", &[]), after, "a successful append is no error");
    s.stop().await;
}
