//! The OpenAPI description, checked for what client generators and fuzzers rely on, without
//! their tools (`scripts/check-openapi.sh` runs those): every reference resolves, every
//! response is described, every status the layers of the server can answer is documented,
//! and the schemas carry the limits the server enforces.

use reqwest::StatusCode;
use serde_json::Value;
use sqlx::PgPool;

use crate::helpers::{TestApp, expect_status};

async fn description(db: PgPool) -> Value {
    let app = TestApp::spawn(db).await;
    expect_status(app.get("/openapi.json", None).await, StatusCode::OK).await
}

/// What a local reference (`#/components/…`) points at.
fn resolve<'a>(spec: &'a Value, reference: &str) -> Option<&'a Value> {
    spec.pointer(reference.strip_prefix('#')?)
}

/// The object itself, or the one its `$ref` points at.
fn follow<'a>(spec: &'a Value, value: &'a Value) -> &'a Value {
    match value["$ref"].as_str() {
        Some(reference) => resolve(spec, reference).unwrap_or(&Value::Null),
        None => value,
    }
}

/// Every `$ref` under `value`, with the JSON pointer of the object holding it.
fn references(value: &Value, at: &str) -> Vec<(String, String)> {
    match value {
        Value::Object(map) => map
            .iter()
            .flat_map(|(key, child)| match (key.as_str(), child) {
                ("$ref", Value::String(reference)) => vec![(at.to_owned(), reference.clone())],
                _ => references(child, &format!("{at}/{}", key.replace('/', "~1"))),
            })
            .collect(),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .flat_map(|(index, child)| references(child, &format!("{at}/{index}")))
            .collect(),
        _ => Vec::new(),
    }
}

/// Every operation as (method, path, operation).
fn operations(spec: &Value) -> Vec<(&str, &str, &Value)> {
    const METHODS: [&str; 8] = [
        "get", "put", "post", "delete", "patch", "head", "options", "trace",
    ];
    spec["paths"]
        .as_object()
        .expect("the description has paths")
        .iter()
        .flat_map(|(path, item)| {
            METHODS.iter().filter_map(move |method| {
                item.get(*method)
                    .map(|operation| (*method, path.as_str(), operation))
            })
        })
        .collect()
}

/// The statuses an operation documents.
fn statuses(operation: &Value) -> Vec<&str> {
    operation["responses"]
        .as_object()
        .map(|responses| responses.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

/// A body read as raw bytes (documented as a string): Stripe's webhook.
fn has_raw_body(spec: &Value, operation: &Value) -> bool {
    let body = follow(spec, &operation["requestBody"]);
    body["content"]
        .as_object()
        .is_some_and(|content| content.values().all(|c| c["schema"]["type"] == "string"))
}

fn fail_with(problems: Vec<String>) {
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn every_reference_resolves_and_every_response_is_described(db: PgPool) {
    let spec = description(db).await;
    let mut problems = Vec::new();
    for (at, reference) in references(&spec, "#") {
        if !reference.starts_with("#/components/") || resolve(&spec, &reference).is_none() {
            problems.push(format!("{at}: $ref {reference} resolves to no component"));
        }
    }
    let mut operation_ids = std::collections::HashSet::new();
    for (method, path, operation) in operations(&spec) {
        // Client generators name a function after each operation id: two alike break them.
        let id = operation["operationId"].as_str().unwrap_or_default();
        if !operation_ids.insert(id) {
            problems.push(format!(
                "{method} {path}: operation id {id:?} is not unique"
            ));
        }
        for (status, response) in operation["responses"].as_object().unwrap() {
            let response = follow(&spec, response);
            if !response["description"].is_string() {
                problems.push(format!("{method} {path} {status}: no description"));
            }
            let problem_status = status.starts_with('4') || status.starts_with('5');
            let problem_body = &response["content"]["application/problem+json"]["schema"];
            // /readyz answers its 503 with its own report, a reminder's link page its own
            // refusals for people; every other error is a problem.
            if problem_status
                && response["content"]["application/json"].is_null()
                && response["content"]["text/html"].is_null()
                && problem_body["$ref"] != "#/components/schemas/Problem"
            {
                problems.push(format!(
                    "{method} {path} {status}: not application/problem+json with Problem"
                ));
            }
            if ["429", "503"].contains(&status.as_str())
                && problem_body.is_object()
                && response["headers"]["Retry-After"].is_null()
            {
                problems.push(format!("{method} {path} {status}: no Retry-After header"));
            }
        }
    }
    fail_with(problems);
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn every_operation_documents_what_its_layers_can_answer(db: PgPool) {
    let spec = description(db).await;
    let mut problems = Vec::new();
    for (method, path, operation) in operations(&spec) {
        let mut expect = |status: &str, why: &str| {
            if !statuses(operation).contains(&status) {
                problems.push(format!("{method} {path}: no {status} ({why})"));
            }
        };
        for status in ["500", "503"] {
            expect(status, "every operation");
        }
        if path.starts_with("/v1/") && path != "/v1/webhooks/stripe" {
            expect("429", "rate limited");
        }
        if operation["requestBody"].is_object() {
            expect("400", "a body");
            expect("413", "a body");
            if !has_raw_body(&spec, operation) {
                expect("415", "a JSON body");
                expect("422", "a JSON body");
            }
        }
        let parameters = operation["parameters"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let parameters: Vec<&Value> = parameters.iter().map(|p| follow(&spec, p)).collect();
        if parameters.iter().any(|p| p["in"] == "path") {
            expect("400", "a path parameter");
        }
        if operation["security"]
            .as_array()
            .is_some_and(|s| !s.is_empty())
        {
            expect("401", "security");
        }
        // A reminder's link works once by itself (it is signed for one version).
        let idempotent = ["post", "patch"].contains(&method)
            && (path.starts_with("/v1/spots")
                || path.starts_with("/v1/reservations")
                || path == "/v1/quotes")
            && !path.ends_with("/extend");
        if idempotent {
            for status in ["400", "409", "422"] {
                expect(status, "Idempotency-Key");
            }
            if !parameters.iter().any(|p| p["name"] == "Idempotency-Key") {
                problems.push(format!("{method} {path}: no Idempotency-Key parameter"));
            }
        }
    }
    fail_with(problems);
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn the_schemas_carry_the_limits_the_server_enforces(db: PgPool) {
    let spec = description(db).await;
    for path in ["/v1/spots", "/v1/reservations"] {
        let limit = spec["paths"][path]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "limit")
            .unwrap_or_else(|| panic!("GET {path} has no limit"));
        let schema = &limit["schema"];
        assert_eq!(
            (&schema["minimum"], &schema["maximum"], &schema["default"]),
            (&Value::from(1), &Value::from(200), &Value::from(50)),
            "GET {path} limit: {schema}"
        );
    }
    let schemas = &spec["components"]["schemas"];
    for (body, field) in [
        ("SignUpRequest", "password"),
        ("SignInRequest", "password"),
        ("ChangePasswordRequest", "new_password"),
    ] {
        let password = &schemas[body]["properties"][field];
        assert_eq!(
            (&password["minLength"], &password["maxLength"]),
            (&Value::from(8), &Value::from(128)),
            "{body}.{field}: {password}"
        );
    }
    // Bodies refuse unknown fields (`deny_unknown_fields`): a fuzzer must not expect
    // success from adding some.
    for (method, path, operation) in operations(&spec) {
        let schema = &operation["requestBody"]["content"]["application/json"]["schema"];
        if let Some(reference) = schema["$ref"].as_str() {
            let body = resolve(&spec, reference).unwrap();
            assert_eq!(
                body["additionalProperties"],
                Value::Bool(false),
                "{method} {path}: {reference} allows unknown fields"
            );
        }
    }
}

#[test]
fn references_are_found_with_where_they_are() {
    let value = serde_json::json!({
        "paths": {"/a/{id}": {"get": {"schema": {"$ref": "#/components/schemas/A"}}}},
        "list": [{"$ref": "#/components/responses/B"}],
    });
    let mut found = references(&value, "#");
    found.sort();
    assert_eq!(
        found,
        [
            ("#/list/0".to_owned(), "#/components/responses/B".to_owned()),
            (
                "#/paths/~1a~1{id}/get/schema".to_owned(),
                "#/components/schemas/A".to_owned()
            ),
        ]
    );
}

#[test]
fn references_resolve_as_json_pointers() {
    let spec = serde_json::json!({"components": {"schemas": {"A": {"type": "string"}}}});
    assert_eq!(
        resolve(&spec, "#/components/schemas/A"),
        Some(&serde_json::json!({"type": "string"}))
    );
    assert_eq!(resolve(&spec, "#/components/schemas/B"), None);
    assert_eq!(resolve(&spec, "components/schemas/A"), None);
    let reference = serde_json::json!({"$ref": "#/components/schemas/A"});
    assert_eq!(follow(&spec, &reference)["type"], "string");
}
