//! HTTP request -> API Gateway HTTP API payload 2.0 event, and the function's answer -> HTTP
//! response, as API Gateway does them (developer guide, "Create AWS Lambda proxy integrations for
//! HTTP APIs": payload format 2.0 and its response format).

use crate::routes::{decode, Matched};
use axum::{
    body::Body,
    http::{header, HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode},
};
use base64::{engine::general_purpose::STANDARD, Engine};
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};
use std::{collections::BTreeMap, net::SocketAddr};

/// What the event needs besides the request: who the API is and what the authorizer found.
pub struct Context<'a> {
    pub api_id: &'a str,
    pub account_id: &'a str,
    pub request_id: &'a str,
    pub source: SocketAddr,
    pub now: DateTime<Utc>,
    /// The JWT's claims, on routes with the JWT authorizer.
    pub claims: Option<&'a BTreeMap<String, String>>,
}

/// Request bodies API Gateway passes as text; any other body arrives base64-encoded with
/// `isBase64Encoded` (a form post, for one: Slack's interactions).
fn is_text(content_type: Option<&str>) -> bool {
    let Some(content_type) = content_type else { return false };
    let media = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    media.starts_with("text/")
        || ["application/json", "application/xml", "application/javascript", "application/graphql"]
            .contains(&media.as_str())
        || media.ends_with("+json")
        || media.ends_with("+xml")
}

/// Duplicate names joined with commas (format 2.0 has no multi-value fields), names lowercased;
/// `cookie` goes to `cookies` instead.
fn headers_of(headers: &HeaderMap) -> (Map<String, Value>, Vec<String>) {
    let mut joined: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut cookies = Vec::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        if name == header::COOKIE {
            cookies.extend(value.split(';').map(str::trim).filter(|c| !c.is_empty()).map(str::to_owned));
        } else {
            joined.entry(name.as_str().to_owned()).or_default().push(value);
        }
    }
    (joined.into_iter().map(|(k, v)| (k, Value::String(v.join(",")))).collect(), cookies)
}

fn query_parameters(raw_query: &str) -> Map<String, Value> {
    let mut joined: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for pair in raw_query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let plus = |s: &str| decode(&s.replace('+', " "));
        joined.entry(plus(k)).or_default().push(plus(v));
    }
    joined.into_iter().map(|(k, v)| (k, Value::String(v.join(",")))).collect()
}

/// The payload 2.0 event of a request to `matched`.
pub fn request_event(
    ctx: &Context<'_>,
    matched: &Matched<'_>,
    method: &Method,
    raw_path: &str,
    raw_query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Value {
    let (mut header_map, cookies) = headers_of(headers);
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost").to_owned();
    let user_agent = headers.get(header::USER_AGENT).and_then(|h| h.to_str().ok()).unwrap_or_default().to_owned();
    header_map.insert("x-forwarded-for".into(), ctx.source.ip().to_string().into());
    header_map.insert("x-forwarded-proto".into(), "http".into());
    header_map.entry("x-forwarded-port").or_insert_with(|| host.rsplit_once(':').map_or("80", |(_, p)| p).into());
    let route_key = matched.route.key.clone();

    let mut event = json!({
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": raw_path,
        "rawQueryString": raw_query,
        "headers": header_map,
        "requestContext": {
            "accountId": ctx.account_id,
            "apiId": ctx.api_id,
            "domainName": host,
            "domainPrefix": host.split(['.', ':']).next().unwrap_or_default(),
            "http": {
                "method": method.as_str(),
                "path": raw_path,
                "protocol": "HTTP/1.1",
                "sourceIp": ctx.source.ip().to_string(),
                "userAgent": user_agent,
            },
            "requestId": ctx.request_id,
            "routeKey": route_key,
            "stage": "$default",
            "time": ctx.now.format("%d/%b/%Y:%H:%M:%S %z").to_string(),
            "timeEpoch": ctx.now.timestamp_millis(),
        },
        "isBase64Encoded": false,
    });
    if !cookies.is_empty() {
        event["cookies"] = json!(cookies);
    }
    let query = query_parameters(raw_query);
    if !query.is_empty() {
        event["queryStringParameters"] = Value::Object(query);
    }
    if !matched.path_parameters.is_empty() {
        event["pathParameters"] = json!(matched.path_parameters);
    }
    if let Some(claims) = ctx.claims {
        event["requestContext"]["authorizer"] = json!({ "jwt": { "claims": claims, "scopes": null } });
    }
    if !body.is_empty() {
        let content_type = headers.get(header::CONTENT_TYPE).and_then(|h| h.to_str().ok());
        match std::str::from_utf8(body) {
            Ok(text) if is_text(content_type) => event["body"] = text.into(),
            _ => {
                event["body"] = STANDARD.encode(body).into();
                event["isBase64Encoded"] = true.into();
            }
        }
    }
    event
}

/// API Gateway's own answers (`{"message": ...}`), with its request id.
pub fn gateway_error(status: StatusCode, message: &str, request_id: &str) -> Response<Body> {
    let mut response = Response::new(Body::from(json!({ "message": message }).to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Ok(id) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert("apigw-requestid", id);
    }
    response
}

/// The function's answer as API Gateway turns it into a response: `statusCode`, `headers`,
/// `cookies` (each a `set-cookie`), `body` (base64-decoded with `isBase64Encoded`); an answer
/// without `statusCode` is a `200` JSON body of the whole answer. `None`: not a valid answer (502).
pub fn http_response(answer: &Value, request_id: &str) -> Option<Response<Body>> {
    let mut response = Response::new(Body::empty());
    let headers = response.headers_mut();
    if let Ok(id) = HeaderValue::from_str(request_id) {
        headers.insert("apigw-requestid", id);
    }
    let Some(status) = answer.get("statusCode") else {
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        *response.body_mut() = Body::from(answer.to_string());
        return Some(response);
    };
    *response.status_mut() = StatusCode::from_u16(u16::try_from(status.as_u64()?).ok()?).ok()?;
    for (name, value) in answer.get("headers").and_then(Value::as_object).into_iter().flatten() {
        let name = HeaderName::from_bytes(name.as_bytes()).ok()?;
        if matches!(name, header::CONTENT_LENGTH | header::TRANSFER_ENCODING | header::CONNECTION) {
            continue;
        }
        let value = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        response.headers_mut().append(name, HeaderValue::from_str(&value).ok()?);
    }
    for cookie in answer.get("cookies").and_then(Value::as_array).into_iter().flatten() {
        response.headers_mut().append(header::SET_COOKIE, HeaderValue::from_str(cookie.as_str()?).ok()?);
    }
    let body = answer.get("body").and_then(Value::as_str).unwrap_or_default();
    let bytes = if answer.get("isBase64Encoded").and_then(Value::as_bool).unwrap_or(false) {
        STANDARD.decode(body).ok()?
    } else {
        body.as_bytes().to_vec()
    };
    *response.body_mut() = Body::from(bytes);
    Some(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_bodies_are_json_xml_javascript_and_text() {
        for text in ["application/json", "application/json; charset=utf-8", "text/plain", "application/problem+json"] {
            assert!(is_text(Some(text)), "{text}");
        }
        for binary in ["application/x-www-form-urlencoded", "application/octet-stream", "image/png"] {
            assert!(!is_text(Some(binary)), "{binary}");
        }
        assert!(!is_text(None));
    }

    #[test]
    fn duplicate_query_parameters_are_joined_with_commas_and_decoded() {
        let q = query_parameters("status=active&user=a%40example.com&tag=x&tag=y+z");
        assert_eq!(Value::Object(q), json!({"status": "active", "user": "a@example.com", "tag": "x,y z"}));
    }

    #[test]
    fn an_answer_without_status_code_is_a_200_json_body() {
        let response = http_response(&json!({"hello": "world"}), "r-1").unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    }

    #[test]
    fn cookies_become_set_cookie_headers_and_base64_bodies_are_decoded() {
        let answer = json!({
            "statusCode": 201,
            "headers": {"content-type": "image/png", "x-one": "1"},
            "cookies": ["a=1; Secure", "b=2"],
            "body": STANDARD.encode([0u8, 159, 146, 150]),
            "isBase64Encoded": true,
        });
        let response = http_response(&answer, "r-1").unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let cookies: Vec<_> = response.headers().get_all(header::SET_COOKIE).iter().collect();
        assert_eq!(cookies, ["a=1; Secure", "b=2"]);
        assert_eq!(response.headers()["x-one"], "1");
        assert!(http_response(&json!({"statusCode": "teapot"}), "r").is_none());
    }
}
