//! The API's contract (`api/openapi.yaml`) as a test oracle: [`check`] takes one request and the
//! answer a handler gave, and says how they disagree with the document: an operation it does not
//! list, a status the operation does not declare, a content type or body its schema does not
//! allow. The handler tests run every answer through it, so a handler and the document cannot
//! drift apart silently.
//!
//! The schemas are read by a small validator of the JSON Schema keywords the document uses
//! (`type`, `enum`, `required`, `properties`, `additionalProperties`, `items`, `oneOf`, `$ref`,
//! `minimum`, `maximum`, `minLength`, `maxLength`, `format: date-time`); any other keyword is
//! an error of its own, so the document cannot lean on a rule nobody checks.

use crate::handlers::openapi::document;
use serde_json::Value;

/// Keywords that describe and do not constrain.
const ANNOTATIONS: &[&str] = &["description", "default", "example", "title", "pattern", "bearerFormat"];
const CHECKED: &[&str] = &[
    "type",
    "enum",
    "required",
    "properties",
    "additionalProperties",
    "items",
    "oneOf",
    "$ref",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "format",
];

/// The document's operation for `method` and a concrete `path` (`/grants/abc` matches
/// `/grants/{id}`), with its path template.
pub fn operation(method: &str, path: &str) -> Option<(String, &'static Value)> {
    let paths = document()["paths"].as_object()?;
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    paths.iter().find_map(|(template, item)| {
        let parts: Vec<&str> = template.trim_end_matches('/').split('/').collect();
        let matches = parts.len() == segments.len()
            && parts.iter().zip(&segments).all(|(p, s)| (p.starts_with('{') && !s.is_empty()) || p == s);
        let op = item.get(method.to_ascii_lowercase())?;
        matches.then(|| (template.clone(), op))
    })
}

/// Whether the document lists `path` under any method.
pub fn path_listed(path: &str) -> bool {
    ["get", "post", "put", "patch", "delete"].iter().any(|m| operation(m, path).is_some())
}

/// Checks a handler's answer to `method path` against the document: `Err` lists every
/// disagreement. A path the document does not list must answer a 404 problem; a listed path with
/// a method it does not list, a 405 problem.
pub fn check(method: &str, path: &str, status: u16, content_type: Option<&str>, body: &Value) -> Result<(), String> {
    let mut errors = Vec::new();
    let Some((template, op)) = operation(method, path) else {
        let expected = if path_listed(path) { 405 } else { 404 };
        if status != expected {
            errors.push(format!("{method} {path} is not in the document, and answered {status} (not {expected})"));
        }
        check_problem(status, content_type, body, &mut errors);
        return joined(errors);
    };
    let what = format!("{method} {template} -> {status}");
    let Some(response) = op["responses"].get(status.to_string()) else {
        let declared: Vec<&String> = op["responses"].as_object().map(|r| r.keys().collect()).unwrap_or_default();
        return Err(format!("{what}: the document declares only {declared:?}"));
    };
    let response = resolve(response);
    let content = response.get("content").and_then(Value::as_object);
    let mime = content_type.map(|c| c.split(';').next().unwrap_or(c).trim().to_ascii_lowercase());
    match (content, mime.as_deref()) {
        (None, _) => {}
        (Some(content), Some(mime)) => match content.get(mime) {
            None => errors.push(format!(
                "{what}: content type {mime}, the document allows {:?}",
                content.keys().collect::<Vec<_>>()
            )),
            Some(media) if mime.ends_with("json") => {
                validate(&media["schema"], body, "body", &mut errors);
            }
            Some(_) => {}
        },
        (Some(_), None) => errors.push(format!("{what}: no content type")),
    }
    if status >= 400 {
        check_problem(status, content_type, body, &mut errors);
    }
    joined(errors).map_err(|e| format!("{what}: {e}"))
}

/// Every 4xx and 5xx is `application/problem+json` with its own status.
fn check_problem(status: u16, content_type: Option<&str>, body: &Value, errors: &mut Vec<String>) {
    if !content_type.is_some_and(|c| c.starts_with("application/problem+json")) {
        errors.push(format!("a {status} must be application/problem+json, not {content_type:?}"));
    }
    if body["status"].as_u64() != Some(u64::from(status)) {
        errors.push(format!("the problem's status {} is not the answer's {status}", body["status"]));
    }
    let schema = serde_json::json!({"$ref": "#/components/schemas/Problem"});
    validate(&schema, body, "problem", errors);
}

fn joined(errors: Vec<String>) -> Result<(), String> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

/// Follows `$ref`s (`#/components/...`) to what they name.
fn resolve(mut value: &Value) -> &Value {
    let root = document();
    while let Some(reference) = value.get("$ref").and_then(Value::as_str) {
        let pointer = reference.strip_prefix('#').expect("only local references");
        value = root.pointer(pointer).unwrap_or_else(|| panic!("the document has no {reference}"));
    }
    value
}

/// Validates `value` at `at` against `schema`, pushing what does not hold.
pub fn validate(schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
    let schema = resolve(schema);
    let Some(keywords) = schema.as_object() else {
        errors.push(format!("{at}: the schema is not an object"));
        return;
    };
    for key in keywords.keys() {
        if !CHECKED.contains(&key.as_str()) && !ANNOTATIONS.contains(&key.as_str()) {
            errors.push(format!("{at}: the document uses `{key}`, which this check does not read"));
        }
    }
    if let Some(types) = keywords.get("type") {
        let allowed: Vec<&str> = match types {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        if !allowed.iter().any(|t| is_type(value, t)) {
            errors.push(format!("{at}: {} is not of type {allowed:?}", short(value)));
            return;
        }
    }
    if let Some(options) = keywords.get("enum").and_then(Value::as_array) {
        if !options.contains(value) {
            errors.push(format!("{at}: {} is not one of {options:?}", short(value)));
        }
    }
    if let Some(options) = keywords.get("oneOf").and_then(Value::as_array) {
        let passing = options
            .iter()
            .filter(|option| {
                let mut mine = Vec::new();
                validate(option, value, at, &mut mine);
                mine.is_empty()
            })
            .count();
        if passing != 1 {
            errors.push(format!("{at}: {} matches {passing} of oneOf's schemas, not 1", short(value)));
        }
    }
    if let Value::Object(fields) = value {
        for name in keywords.get("required").and_then(Value::as_array).into_iter().flatten() {
            let name = name.as_str().unwrap_or_default();
            if !fields.contains_key(name) {
                errors.push(format!("{at}: no `{name}`"));
            }
        }
        let properties = keywords.get("properties").and_then(Value::as_object);
        for (name, field) in fields {
            match properties.and_then(|p| p.get(name)) {
                Some(property) => validate(property, field, &format!("{at}.{name}"), errors),
                None if keywords.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    errors.push(format!("{at}: `{name}` is not allowed"));
                }
                None => {}
            }
        }
    }
    if let (Value::Array(items), Some(item)) = (value, keywords.get("items")) {
        for (i, element) in items.iter().enumerate() {
            validate(item, element, &format!("{at}[{i}]"), errors);
        }
    }
    if let Value::String(text) = value {
        let chars = text.chars().count() as u64;
        if keywords.get("minLength").and_then(Value::as_u64).is_some_and(|min| chars < min) {
            errors.push(format!("{at}: shorter than minLength"));
        }
        if keywords.get("maxLength").and_then(Value::as_u64).is_some_and(|max| chars > max) {
            errors.push(format!("{at}: longer than maxLength"));
        }
        if keywords.get("format").and_then(Value::as_str) == Some("date-time")
            && chrono::DateTime::parse_from_rfc3339(text).is_err()
        {
            errors.push(format!("{at}: {text:?} is not an RFC 3339 time"));
        }
    }
    if let Some(number) = value.as_f64() {
        if keywords.get("minimum").and_then(Value::as_f64).is_some_and(|min| number < min) {
            errors.push(format!("{at}: {number} is below the minimum"));
        }
        if keywords.get("maximum").and_then(Value::as_f64).is_some_and(|max| number > max) {
            errors.push(format!("{at}: {number} is above the maximum"));
        }
    }
}

fn is_type(value: &Value, name: &str) -> bool {
    match name {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        _ => false,
    }
}

fn short(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 80 {
        format!("{}…", text.chars().take(80).collect::<String>())
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_document_parses_and_every_reference_resolves() {
        let doc = document();
        assert_eq!(doc["openapi"], "3.1.0");
        let text = doc.to_string();
        for reference in text.split("\"$ref\":\"").skip(1).map(|r| r.split('"').next().unwrap()) {
            assert!(doc.pointer(reference.trim_start_matches('#')).is_some(), "{reference} resolves");
        }
    }

    #[test]
    fn every_schema_uses_only_the_keywords_the_check_reads() {
        let schemas = document()["components"]["schemas"].as_object().unwrap();
        let mut errors = Vec::new();
        fn walk(schema: &Value, at: &str, errors: &mut Vec<String>) {
            let Some(keywords) = schema.as_object() else { return };
            for (key, inner) in keywords {
                if !CHECKED.contains(&key.as_str()) && !ANNOTATIONS.contains(&key.as_str()) {
                    errors.push(format!("{at}: `{key}`"));
                }
                match key.as_str() {
                    "properties" => {
                        for (name, property) in inner.as_object().into_iter().flatten() {
                            walk(property, &format!("{at}.{name}"), errors);
                        }
                    }
                    "items" | "additionalProperties" => walk(inner, at, errors),
                    "oneOf" => inner.as_array().into_iter().flatten().for_each(|s| walk(s, at, errors)),
                    _ => {}
                }
            }
        }
        for (name, schema) in schemas {
            walk(schema, name, &mut errors);
        }
        assert!(errors.is_empty(), "keywords the check does not read: {errors:?}");
    }

    #[test]
    fn the_check_finds_each_kind_of_disagreement() {
        let problem = |status: u16| json!({"type": "about:blank", "title": "x", "status": status, "detail": "d"});
        let pj = Some("application/problem+json");
        assert_eq!(check("GET", "/grants/abc", 404, pj, &problem(404)), Ok(()));
        // A status the operation does not declare.
        assert!(check("GET", "/me", 409, pj, &problem(409)).unwrap_err().contains("declares only"));
        // A grant without a required field, and one with a wrong type.
        let err = check("GET", "/grants/abc", 200, Some("application/json"), &json!({"id": 1})).unwrap_err();
        assert!(err.contains("body.id: 1 is not of type") && err.contains("no `status`"), "{err}");
        // An error that is not problem+json, or whose status differs.
        assert!(check("GET", "/me", 403, Some("application/json"), &problem(403)).is_err());
        assert!(check("GET", "/me", 403, pj, &problem(400)).is_err());
        // Unlisted: a path answers 404, a listed path's other method 405.
        assert_eq!(check("GET", "/nope", 404, pj, &problem(404)), Ok(()));
        assert_eq!(check("PUT", "/grants", 405, pj, &problem(405)), Ok(()));
        assert!(check("PUT", "/grants", 404, pj, &problem(404)).is_err());
        // A request body field the schema does not allow is caught by additionalProperties.
        let mut errors = Vec::new();
        validate(
            &json!({"$ref": "#/components/schemas/Extend"}),
            &json!({"duration": "1h", "reason": "r", "x": 1}),
            "b",
            &mut errors,
        );
        assert_eq!(errors, ["b: `x` is not allowed"]);
    }
}
