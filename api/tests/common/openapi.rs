//! Every answer a black-box test gets is checked against the server's own
//! OpenAPI document (`GET /api/v1/openapi.json`), so the document cannot
//! drift from what the server sends.
//!
//! For each reply the operation is found by method and path template (the
//! query string ignored, `{name}` matching one segment, the template with
//! the most literal segments winning); its status must be documented (or
//! fall under `NXX` or `default`), the reply's content type must be one the
//! document gives for that status (no content documented: no body), and a
//! JSON body (`application/json`, `application/problem+json`) must validate
//! against that content's schema, as JSON Schema 2020-12 (OpenAPI 3.1).
//! Other bodies (the metrics text) are checked for status and content type
//! only.
//!
//! The schemas are checked strictly: every object schema gets
//! `unevaluatedProperties: false`, so a field the server sends and the
//! document does not name fails too (a client generated from the document
//! would never see it). Object schemas that are parts of an `allOf` are left
//! open, since their siblings name the rest.
//!
//! A request no documented path matches, or a method a documented path does
//! not have, is answered by the router's fallback (404) or axum's 405, both
//! turned into problem+json by the server; the document declares those two
//! refusals once, as the components `responses` [`UNROUTED`] and
//! [`METHOD_NOT_ALLOWED`], and such a reply is checked against them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use reqwest::Method;
use serde_json::{Value, json};

use super::Reply;

/// The components response a request to a path the API does not serve gets.
pub const UNROUTED: &str = "Unrouted";
/// The components response a method a documented path does not take gets.
pub const METHOD_NOT_ALLOWED: &str = "MethodNotAllowed";
/// The document's address on a server.
pub const DOCUMENT_PATH: &str = "/api/v1/openapi.json";
/// A JSON Schema for a JSON content type: `application/json` or `…+json`.
const JSON_SUFFIX: &str = "+json";
/// The most validation errors one failure lists.
const ERRORS_SHOWN_MAX: usize = 10;
/// The longest body a failure shows.
const BODY_SHOWN_CHARS_MAX: usize = 2000;

/// The document, fetched once per test process (every server of a process
/// is the same binary, so serves the same document), and the validators
/// built from it, one per (operation, status, content type).
pub struct Document {
    document: Value,
    /// The document's `components` with every object schema closed (see the
    /// module doc), embedded in each validator's root so that
    /// `#/components/schemas/…` resolves.
    components: Value,
    validators: Mutex<HashMap<String, Arc<jsonschema::Validator>>>,
}

static DOCUMENT: OnceLock<Document> = OnceLock::new();
/// Replies checked in this process, and of those, JSON bodies validated.
static CHECKED: AtomicUsize = AtomicUsize::new(0);
static VALIDATED: AtomicUsize = AtomicUsize::new(0);
/// `METHOD template status` of every reply checked in this process.
static SEEN: Mutex<BTreeMap<String, usize>> = Mutex::new(BTreeMap::new());

/// The document of the server at `base`, fetched on the first call. A
/// server that refuses everything (a log that no longer verifies answers
/// 503 to every path) cannot serve it: then the same document is built
/// here from the server's library, as the binary builds it.
pub async fn document(http: &reqwest::Client, base: &str) -> &'static Document {
    if let Some(document) = DOCUMENT.get() {
        return document;
    }
    let served = match http.get(format!("{base}{DOCUMENT_PATH}")).send().await {
        Ok(response) if response.status().is_success() => {
            Some(response.json::<Value>().await.expect("the OpenAPI document is JSON"))
        }
        _ => None,
    };
    let document = served.unwrap_or_else(|| {
        serde_json::to_value(<ledger_api::openapi::ApiDoc as utoipa::OpenApi>::openapi()).expect("the document")
    });
    // Another test of this process may have fetched it meanwhile: the same.
    DOCUMENT.get_or_init(|| Document::new(document))
}

/// What [`Document::check`] found a reply to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// `METHOD /template` of the operation (or of the unrouted refusal).
    pub operation: String,
    /// Whether a JSON body was validated against a schema.
    pub validated: bool,
}

impl Document {
    pub fn new(document: Value) -> Self {
        let mut components = document.get("components").cloned().unwrap_or_else(|| json!({}));
        let open = allof_parts(&components);
        if let Some(schemas) = components.get_mut("schemas").and_then(Value::as_object_mut) {
            for (name, schema) in schemas.iter_mut() {
                close_objects(schema, open.contains(name));
            }
        }
        Self { document, components, validators: Mutex::default() }
    }

    /// The whole document, as served.
    pub fn json(&self) -> &Value {
        &self.document
    }

    /// Checks one reply to `method path`; the error says what does not
    /// conform, with the body.
    pub fn check(&self, method: &Method, path: &str, reply: &Reply) -> Result<Checked, String> {
        let path = path.split(['?', '#']).next().unwrap_or_default();
        let status = reply.status.as_u16();
        let (operation, responses) = self.responses_for(method, path)?;
        let fail = |what: String| {
            let body: String = reply.text.chars().take(BODY_SHOWN_CHARS_MAX).collect();
            Err(format!(
                "{method} {path} ({operation}) answered {status} {}, which the OpenAPI document does not describe: {what}\nbody: {body}",
                reply.content_type.as_deref().unwrap_or("(no content type)"),
            ))
        };
        let Some(response) = response_for(&responses, status) else {
            let documented: Vec<&String> = responses.as_object().map(|r| r.keys().collect()).unwrap_or_default();
            return fail(format!("status {status} is not documented (documented: {documented:?})"));
        };
        let response = self.resolve(response);
        let content = response.get("content").and_then(Value::as_object);
        let Some(content_type) = reply.content_type.as_deref() else {
            if reply.text.is_empty() {
                return Ok(self.count(&operation, status, false));
            }
            return fail("a body without a content type".to_owned());
        };
        let Some(media) = content.and_then(|content| content.get(content_type)) else {
            let documented: Vec<&String> = content.map(|c| c.keys().collect()).unwrap_or_default();
            return fail(format!("content type {content_type} is not documented (documented: {documented:?})"));
        };
        let json_body = content_type == "application/json" || content_type.ends_with(JSON_SUFFIX);
        let Some(schema) = media.get("schema").filter(|_| json_body) else {
            return Ok(self.count(&operation, status, false));
        };
        let Ok(body) = serde_json::from_str::<Value>(&reply.text) else {
            return fail("the body is not JSON".to_owned());
        };
        let key = format!("{operation} {status} {content_type}");
        let errors = self.validate(&key, schema, &body);
        if errors.is_empty() {
            Ok(self.count(&operation, status, true))
        } else {
            fail(format!("the body does not validate against its schema:\n  {}", errors.join("\n  ")))
        }
    }

    /// The operation's name and its `responses`, or for a path or method the
    /// document does not have, the refusal the document declares for it.
    fn responses_for(&self, method: &Method, path: &str) -> Result<(String, Value), String> {
        let method_name = method.as_str().to_ascii_lowercase();
        let Some((template, item)) = self.path_item(path) else {
            return Ok((format!("{method} (unrouted)"), self.refusal(UNROUTED, 404)?));
        };
        match item.get(&method_name).and_then(|operation| operation.get("responses")) {
            Some(responses) => Ok((format!("{method} {template}"), responses.clone())),
            None => Ok((format!("{method} {template} (no such method)"), self.refusal(METHOD_NOT_ALLOWED, 405)?)),
        }
    }

    /// `{ "<status>": <the components response> }` for a declared refusal.
    fn refusal(&self, name: &str, status: u16) -> Result<Value, String> {
        let response = self.document["components"]["responses"]
            .get(name)
            .ok_or_else(|| format!("the OpenAPI document declares no components response {name:?}"))?;
        Ok(json!({ status.to_string(): response }))
    }

    /// The documented path template matching `path`, with its path item.
    fn path_item(&self, path: &str) -> Option<(&String, &Value)> {
        let paths = self.document.get("paths")?.as_object()?;
        let segments: Vec<&str> = path.split('/').collect();
        paths
            .iter()
            .filter_map(|(template, item)| literal_segments(template, &segments).map(|score| (score, template, item)))
            .max_by_key(|(score, ..)| *score)
            .map(|(_, template, item)| (template, item))
    }

    /// A `$ref` to `#/components/responses/…` resolved.
    fn resolve<'a>(&'a self, response: &'a Value) -> &'a Value {
        match response.get("$ref").and_then(Value::as_str) {
            Some(target) => target
                .strip_prefix('#')
                .and_then(|pointer| self.document.pointer(pointer))
                .unwrap_or_else(|| panic!("the OpenAPI document refers to {target}, which it does not hold")),
            None => response,
        }
    }

    /// `body`'s validation errors against `schema` (none: it conforms).
    pub fn validate(&self, key: &str, schema: &Value, body: &Value) -> Vec<String> {
        let validator = self.validator(key, schema);
        validator
            .iter_errors(body)
            .take(ERRORS_SHOWN_MAX)
            .map(|error| format!("at {:?}: {error}", error.instance_path().as_str()))
            .collect()
    }

    /// The validator for `schema`, built once per `key`.
    fn validator(&self, key: &str, schema: &Value) -> Arc<jsonschema::Validator> {
        let mut validators = self.validators.lock().unwrap();
        if let Some(validator) = validators.get(key) {
            return validator.clone();
        }
        let mut root = schema.clone();
        close_objects(&mut root, false);
        let root = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "allOf": [root],
            "components": self.components,
        });
        let validator = jsonschema::draft202012::options()
            .should_validate_formats(true)
            .build(&root)
            .unwrap_or_else(|error| panic!("{key}: the OpenAPI document's schema does not compile: {error}"));
        let validator = Arc::new(validator);
        validators.insert(key.to_owned(), validator.clone());
        validator
    }

    /// Counts a checked reply (for [`report`]) and says what was checked.
    fn count(&self, operation: &str, status: u16, validated: bool) -> Checked {
        CHECKED.fetch_add(1, Ordering::Relaxed);
        if validated {
            VALIDATED.fetch_add(1, Ordering::Relaxed);
        }
        *SEEN.lock().unwrap().entry(format!("{operation} {status}")).or_default() += 1;
        Checked { operation: operation.to_owned(), validated }
    }
}

/// How many literal segments of `template` match `path`'s segments, or
/// `None` when it does not match (`{name}` matches one non-empty segment).
fn literal_segments(template: &str, path: &[&str]) -> Option<usize> {
    let template: Vec<&str> = template.split('/').collect();
    if template.len() != path.len() {
        return None;
    }
    let mut literal = 0;
    for (expected, actual) in template.iter().zip(path) {
        if expected.starts_with('{') && expected.ends_with('}') {
            if actual.is_empty() {
                return None;
            }
        } else if expected == actual {
            literal += 1;
        } else {
            return None;
        }
    }
    Some(literal)
}

/// The response documented for `status`: exactly, by its class (`4XX`), or
/// `default`.
fn response_for(responses: &Value, status: u16) -> Option<&Value> {
    let class = format!("{}XX", status / 100);
    [status.to_string(), class, "default".to_owned()].iter().find_map(|key| responses.get(key))
}

/// Names of component schemas referred to directly as a part of an `allOf`:
/// those stay open (their siblings name the other properties).
fn allof_parts(components: &Value) -> HashSet<String> {
    let mut parts = HashSet::new();
    collect_allof_parts(components, &mut parts);
    parts
}

fn collect_allof_parts(value: &Value, parts: &mut HashSet<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::Array(items)) = map.get("allOf") {
                for item in items {
                    if let Some(name) =
                        item.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix("#/components/schemas/"))
                    {
                        parts.insert(name.to_owned());
                    }
                }
            }
            map.values().for_each(|v| collect_allof_parts(v, parts));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_allof_parts(v, parts)),
        _ => {}
    }
}

/// Adds `unevaluatedProperties: false` to every object schema in `schema`
/// (one with `properties`) that says nothing of other properties, except
/// the parts of an `allOf` (`open`: this schema is one).
fn close_objects(schema: &mut Value, open: bool) {
    let Value::Object(map) = schema else { return };
    let closes = !open
        && map.contains_key("properties")
        && !map.contains_key("additionalProperties")
        && !map.contains_key("unevaluatedProperties");
    if closes {
        map.insert("unevaluatedProperties".to_owned(), Value::Bool(false));
    }
    for (keyword, value) in map.iter_mut() {
        match (keyword.as_str(), value) {
            ("allOf", Value::Array(items)) => items.iter_mut().for_each(|item| close_objects(item, true)),
            ("oneOf" | "anyOf", Value::Array(items)) => items.iter_mut().for_each(|item| close_objects(item, false)),
            ("properties", Value::Object(properties)) => properties.values_mut().for_each(|p| close_objects(p, false)),
            ("items" | "additionalProperties" | "not", item) => close_objects(item, false),
            _ => {}
        }
    }
}

/// How many replies this process checked so far.
pub fn checked() -> usize {
    CHECKED.load(Ordering::Relaxed)
}

/// The document `server` serves (fetched once per process).
pub async fn document_of(server: &super::Server) -> &'static Document {
    document(&server.http, &server.base).await
}

/// What this process checked so far: a line of totals, then one line per
/// `METHOD template status` with its count.
pub fn report() -> String {
    let seen = SEEN.lock().unwrap();
    let mut lines = vec![format!(
        "openapi: {} replies checked, {} JSON bodies validated, {} (operation, status) pairs",
        CHECKED.load(Ordering::Relaxed),
        VALIDATED.load(Ordering::Relaxed),
        seen.len()
    )];
    lines.extend(seen.iter().map(|(pair, count)| format!("{count:6} {pair}")));
    lines.join("\n")
}

/// Writes [`report`] to `target/tmp/openapi-checked/<test binary>.txt`, so
/// a run leaves what it checked behind (libtest swallows a passing test's
/// output).
pub fn write_report() {
    let binary = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.file_stem().map(|stem| stem.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "unknown".to_owned());
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("openapi-checked");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join(format!("{binary}.txt")), report() + "\n");
}
