//! The web portal (SPEC "People's interfaces"), served by the `grant` function with no
//! authorization, since the page must load before anyone signs in:
//! - `GET /`: `portal/index.html`, its asset links versioned;
//! - `GET /assets/{version}/{file}`: `app.js`, `app.css`, `icon.svg`, cached for a year (the
//!   version is a hash of every file, so a new build has new URLs);
//! - `GET /portal/config.json`: the sign-in settings (`OIDC_ISSUER`, `OIDC_CLIENT_ID`) and the
//!   duration bounds, nothing secret.
//!
//! The files are compiled into the binary (`include_str!`): nothing is read at run time and
//! nothing is loaded from anywhere else. Every answer carries a strict Content-Security-Policy: no
//! inline script or style, scripts, styles and images from this origin only, network calls to
//! this origin and the issuer's, no framing, and Trusted Types required (the page builds its DOM
//! with `textContent`, never by parsing HTML).

use super::routing;
use crate::{config::OidcClient, domain::grant::GrantPolicy};
use lambda_http::{
    http::{Method, StatusCode},
    Body, Request, Response,
};
use serde_json::json;

const INDEX: &str = include_str!("../../../portal/index.html");

/// A file under `/assets/{version}/`.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const ASSETS: [Asset; 3] = [
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../../portal/app.js"),
    },
    Asset { name: "app.css", content_type: "text/css; charset=utf-8", body: include_str!("../../../portal/app.css") },
    Asset { name: "icon.svg", content_type: "image/svg+xml", body: include_str!("../../../portal/icon.svg") },
];

/// FNV-1a (64 bits) of the page and every asset, computed by the compiler: a cache key, not a
/// security measure.
const fn fnv1a(hash: u64, bytes: &[u8]) -> u64 {
    let mut hash = hash;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
}

const fn build_hash() -> u64 {
    let mut hash = fnv1a(0xcbf2_9ce4_8422_2325, INDEX.as_bytes());
    let mut i = 0;
    while i < ASSETS.len() {
        hash = fnv1a(hash, ASSETS[i].body.as_bytes());
        i += 1;
    }
    hash
}

const fn hex(value: u64) -> [u8; 16] {
    let digits = b"0123456789abcdef";
    let mut out = [0u8; 16];
    let mut i = 0;
    while i < 16 {
        out[i] = digits[((value >> ((15 - i) * 4)) & 0xf) as usize];
        i += 1;
    }
    out
}

const VERSION_DIGITS: [u8; 16] = hex(build_hash());

/// The assets' version: 16 hex digits, part of their URLs.
pub const VERSION: &str = match std::str::from_utf8(&VERSION_DIGITS) {
    Ok(version) => version,
    Err(_) => panic!("hex digits are ASCII"),
};

/// The placeholder in `index.html` that becomes [`VERSION`].
const VERSION_PLACEHOLDER: &str = "{{version}}";

/// The routes this module answers, for the 405 check.
pub const ROUTES: [&[&str]; 2] = [&["assets", "*", "*"], &["portal", "config.json"]];

/// `GET /`: the path has no segment at all. (The template's HTTP API has the `$default` stage, so
/// no stage prefix is ever in front of it.)
pub fn is_index(request: &Request) -> bool {
    routing::segments(request).is_empty()
}

/// Whether the request is for one of the portal's paths, whatever its method.
pub fn path_known(request: &Request) -> bool {
    is_index(request) || ROUTES.iter().any(|route| routing::path_known(request, route))
}

/// The portal's answer to a `GET` of one of its paths; `None` for any other request.
pub fn respond(request: &Request, oidc: Option<&OidcClient>, policy: &GrantPolicy) -> Option<Response<Body>> {
    if request.method() != Method::GET {
        return None;
    }
    let response = if is_index(request) {
        let page = INDEX.replace(VERSION_PLACEHOLDER, VERSION);
        conditional(request, "text/html; charset=utf-8", page, Cache::Revalidate)
    } else if routing::matches(request, &Method::GET, ROUTES[0]) {
        let segments = routing::segments(request);
        let (version, file) = (&segments[segments.len() - 2], &segments[segments.len() - 1]);
        match ASSETS.iter().find(|a| a.name == file.as_str()).filter(|_| version == VERSION) {
            Some(asset) => conditional(request, asset.content_type, asset.body.to_owned(), Cache::Immutable),
            // Another build's version (a page loaded before a deployment) or no such file.
            None => not_found(request),
        }
    } else if routing::matches(request, &Method::GET, ROUTES[1]) {
        respond_with(StatusCode::OK, "application/json", config_json(oidc, policy), Cache::Never, None)
    } else {
        return None;
    };
    Some(with_security_headers(response, oidc))
}

/// What the page needs before sign-in: where to sign in, and the grants' duration bounds (for
/// groups whose rule does not bound them, as an admin sees them).
fn config_json(oidc: Option<&OidcClient>, policy: &GrantPolicy) -> String {
    json!({
        "issuer": oidc.map(|o| &o.issuer),
        "client_id": oidc.map(|o| &o.client_id),
        "scopes": "openid email profile",
        "min_duration": policy.min_duration.to_string(),
        "max_duration": policy.max_duration.to_string(),
        "version": VERSION,
    })
    .to_string()
}

#[derive(Clone, Copy)]
enum Cache {
    /// The page: always asked again, answered 304 while unchanged.
    Revalidate,
    /// Versioned assets: a year, never asked again.
    Immutable,
    /// The configuration follows the deployment.
    Never,
}

impl Cache {
    fn header(self) -> &'static str {
        match self {
            Cache::Revalidate => "no-cache",
            Cache::Immutable => "public, max-age=31536000, immutable",
            Cache::Never => "no-store",
        }
    }
}

/// 200 with the body and its `ETag` (the build's version), or 304 when the browser holds it.
fn conditional(request: &Request, content_type: &str, body: String, cache: Cache) -> Response<Body> {
    let etag = format!("\"{VERSION}\"");
    let held = request
        .headers()
        .get_all("if-none-match")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').map(str::trim).any(|tag| tag == "*" || tag.trim_start_matches("W/") == etag));
    if held {
        return respond_with(StatusCode::NOT_MODIFIED, content_type, String::new(), cache, Some(&etag));
    }
    respond_with(StatusCode::OK, content_type, body, cache, Some(&etag))
}

fn respond_with(
    status: StatusCode,
    content_type: &str,
    body: String,
    cache: Cache,
    etag: Option<&str>,
) -> Response<Body> {
    let mut builder =
        Response::builder().status(status).header("content-type", content_type).header("cache-control", cache.header());
    if let Some(etag) = etag {
        builder = builder.header("etag", etag);
    }
    let body = if status == StatusCode::NOT_MODIFIED { Body::Empty } else { Body::Text(body) };
    builder.body(body).expect("valid response")
}

fn not_found(request: &Request) -> Response<Body> {
    crate::http::problem(StatusCode::NOT_FOUND, format!("no portal file {}", request.uri().path()))
}

/// The policy every portal answer carries. `connect-src` and `form-action` add the issuer's
/// origin: the page fetches its discovery document and exchanges the code at its token endpoint.
pub fn content_security_policy(oidc: Option<&OidcClient>) -> String {
    let issuer = oidc.map(|o| format!(" {}", o.issuer_origin)).unwrap_or_default();
    let form_action = oidc.map_or_else(|| "'none'".to_owned(), |o| o.issuer_origin.clone());
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'{issuer}; \
         form-action {form_action}; frame-ancestors 'none'; base-uri 'none'; \
         require-trusted-types-for 'script'; trusted-types 'none'"
    )
}

fn with_security_headers(mut response: Response<Body>, oidc: Option<&OidcClient>) -> Response<Body> {
    let headers = response.headers_mut();
    let csp = content_security_policy(oidc);
    for (name, value) in [
        ("content-security-policy", csp.as_str()),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("x-frame-options", "DENY"),
        ("cross-origin-opener-policy", "same-origin"),
        ("cross-origin-resource-policy", "same-origin"),
        ("strict-transport-security", "max-age=31536000"),
    ] {
        headers.insert(name, value.parse().expect("valid header value"));
    }
    response
}
