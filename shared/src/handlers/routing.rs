//! Route matching that tolerates a stage prefix (`/prod/grants/123`) and a trailing slash.

use lambda_http::{http::Method, Request};

/// The path's segments, without empty ones.
pub fn segments(request: &Request) -> Vec<String> {
    request.uri().path().split('/').filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

/// Whether the path ends with `route` (segments, `*` matches one segment).
pub fn matches(request: &Request, method: &Method, route: &[&str]) -> bool {
    let segs = segments(request);
    request.method() == method
        && segs.len() >= route.len()
        && segs[segs.len() - route.len()..].iter().zip(route).all(|(s, r)| *r == "*" || s == r)
}

/// Whether any route with this path exists, regardless of method (to answer 405 rather than 404).
pub fn path_known(request: &Request, route: &[&str]) -> bool {
    let segs = segments(request);
    segs.len() >= route.len() && segs[segs.len() - route.len()..].iter().zip(route).all(|(s, r)| *r == "*" || s == r)
}
