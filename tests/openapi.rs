//! The API description (`openapi.json`) against the router: every route in
//! `flashsale::http::ROUTES` is documented and every documented operation
//! exists, every error code is in the document, and the server serves the
//! file as it is in the repository.

#![allow(unreachable_pub)]
// a test binary exports nothing
// The shared helpers are written for the api binary; this one uses a part.
#![allow(dead_code)]

#[path = "api/helpers.rs"]
mod helpers;
#[path = "api/support/mod.rs"]
mod support;

use std::collections::BTreeSet;

use serde_json::Value;

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn document_text() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

fn document() -> Value {
    serde_json::from_str(&document_text()).expect("openapi.json is valid JSON")
}

/// `METHOD /template` for every operation of the document.
fn documented(doc: &Value) -> BTreeSet<String> {
    let paths = doc["paths"].as_object().expect("openapi.json has paths");
    let mut ops = BTreeSet::new();
    for (path, item) in paths {
        let item = item.as_object().expect("a path item is an object");
        for m in METHODS {
            if item.contains_key(m) {
                ops.insert(format!("{} {path}", m.to_uppercase()));
            }
        }
    }
    ops
}

/// `METHOD /template` for every route the router serves.
fn routed() -> BTreeSet<String> {
    flashsale::http::ROUTES
        .iter()
        .flat_map(|r| r.methods.iter().map(move |m| format!("{m} {}", r.template)))
        .collect()
}

#[test]
fn every_route_is_documented_and_every_documented_operation_exists() {
    let doc = document();
    let documented = documented(&doc);
    let routed = routed();
    let missing: Vec<&String> = routed.difference(&documented).collect();
    let extra: Vec<&String> = documented.difference(&routed).collect();
    let mut problems = String::new();
    if !missing.is_empty() {
        problems.push_str("routes in flashsale::http::ROUTES missing from openapi.json:\n");
        for r in &missing {
            problems.push_str(&format!("  {r}\n"));
        }
    }
    if !extra.is_empty() {
        problems.push_str("operations in openapi.json that no route serves:\n");
        for r in &extra {
            problems.push_str(&format!("  {r}\n"));
        }
    }
    assert!(
        problems.is_empty(),
        "openapi.json and src/http/router.rs disagree.\n{problems}"
    );
}

#[test]
fn every_operation_names_its_role_and_answers() {
    let doc = document();
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1.")),
        "openapi.json must be OpenAPI 3.1"
    );
    let mut ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for m in METHODS {
            let Some(op) = item.get(m) else { continue };
            let name = format!("{} {path}", m.to_uppercase());
            let id = op["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{name}: no operationId"));
            assert!(
                ids.insert(id.to_owned()),
                "{name}: duplicate operationId {id}"
            );
            let description = op["description"].as_str().unwrap_or("");
            assert!(
                description.contains("**Who:**"),
                "{name}: the description must say which role is needed (**Who:** ...)"
            );
            assert!(
                op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{name}: no responses"
            );
        }
    }
}

/// The IP rules (403 `BLOCKED`) and admission control (503) act on every
/// route but the probes and /metrics, so every other operation lists both.
#[test]
fn every_operation_but_the_probes_documents_blocked_and_unavailable() {
    let doc = document();
    let resolve = |r: &Value| -> Value {
        match r["$ref"].as_str() {
            Some(p) => {
                let name = p.rsplit('/').next().unwrap();
                doc["components"]["responses"][name].clone()
            }
            None => r.clone(),
        }
    };
    let mut problems = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        if matches!(path.as_str(), "/healthz" | "/readyz" | "/metrics") {
            continue;
        }
        for m in METHODS {
            let Some(op) = item.get(m) else { continue };
            let name = format!("{} {path}", m.to_uppercase());
            let r403 = resolve(&op["responses"]["403"]);
            if !r403.to_string().contains("\"BLOCKED\"") {
                problems.push(format!("{name}: no 403 BLOCKED"));
            }
            if resolve(&op["responses"]["503"]).is_null() {
                problems.push(format!("{name}: no 503"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_error_code_enum_is_every_code() {
    let doc = document();
    let listed: BTreeSet<&str> = doc["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .expect("components.schemas.ErrorCode.enum")
        .iter()
        .map(|v| v.as_str().expect("codes are strings"))
        .collect();
    let codes: BTreeSet<&str> = flashsale::error::ErrorCode::ALL
        .iter()
        .filter(|c| !c.is_websocket_only())
        .map(|c| c.as_str())
        .collect();
    assert_eq!(
        listed, codes,
        "components.schemas.ErrorCode.enum must list exactly the HTTP codes of ErrorCode::ALL"
    );
}

#[tokio::test]
async fn the_server_serves_the_document_as_it_is_in_the_repository() {
    let app = helpers::spawn_app().await;
    let r = app.get("/openapi.json", None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let body = r.text().await.unwrap();
    assert!(
        body == document_text(),
        "GET /openapi.json differs from openapi.json (rebuild after editing it)"
    );
    assert_eq!(
        flashsale::http::handlers::openapi::DOCUMENT,
        document_text()
    );
}
