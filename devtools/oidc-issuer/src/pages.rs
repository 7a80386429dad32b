//! The issuer's two HTML pages: the sign-in form (one button per user) and an error page. Plain
//! HTML, no script; keyboard- and screen-reader-usable (landmarks, labels, one button per person).

use crate::{server::Checked, users::SignInUser};
use axum::{
    http::{header, StatusCode},
    response::{IntoResponse, Response},
};

/// No script, styles only from this page, never framed.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; frame-ancestors 'none'";

const STYLE: &str =
    "body{font-family:system-ui,sans-serif;max-width:42rem;margin:2rem auto;padding:0 1rem;line-height:1.5}\
.note{background:#fff4d6;border-left:4px solid #b7791f;padding:.5rem 1rem}\
ul{list-style:none;padding:0}li{margin:.25rem 0}\
button{font:inherit;padding:.3rem .8rem;cursor:pointer}\
li button{min-width:20rem;text-align:left}\
:focus-visible{outline:3px solid #1a56db;outline-offset:2px}";

pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn html(status: StatusCode, title: &str, body: &str) -> Response {
    let page = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>{STYLE}</style></head>\n<body><main>\n{body}\n</main></body></html>\n",
        title = escape(title),
    );
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_FRAME_OPTIONS, "DENY"),
        ],
        page,
    )
        .into_response()
}

pub fn error(status: StatusCode, message: &str) -> Response {
    tracing::info!(status = status.as_u16(), message, "authorization request refused");
    html(status, "Sign-in error", &format!("<h1>Sign-in error</h1>\n<p role=\"alert\">{}</p>", escape(message)))
}

/// The authorization request, carried through the forms as hidden fields.
fn hidden_fields(c: &Checked) -> String {
    let mut fields = vec![
        ("response_type", "code"),
        ("client_id", c.client_id.as_str()),
        ("redirect_uri", c.redirect_uri.as_str()),
        ("scope", c.scope.as_str()),
        ("code_challenge", c.code_challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    if let Some(state) = &c.state {
        fields.push(("state", state));
    }
    if let Some(nonce) = &c.nonce {
        fields.push(("nonce", nonce));
    }
    fields
        .iter()
        .map(|(name, value)| format!("<input type=\"hidden\" name=\"{name}\" value=\"{}\">", escape(value)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// One button per user who may sign in (those matching `filter`, in any case, by email or name).
pub fn sign_in(c: &Checked, users: &[SignInUser], filter: &str) -> Response {
    let needle = filter.trim().to_lowercase();
    let shown: Vec<&SignInUser> = users
        .iter()
        .filter(|u| {
            needle.is_empty()
                || u.email.to_lowercase().contains(&needle)
                || u.name.as_deref().is_some_and(|n| n.to_lowercase().contains(&needle))
        })
        .collect();
    let hidden = hidden_fields(c);
    let items: String = shown
        .iter()
        .map(|u| {
            let name = u.name.as_deref().map(|n| format!(" <span>({})</span>", escape(n))).unwrap_or_default();
            format!(
                "<li><button type=\"submit\" name=\"user\" value=\"{}\">{}</button>{name}</li>\n",
                escape(&u.sub),
                escape(&u.email)
            )
        })
        .collect();
    let count = if needle.is_empty() {
        format!("{} people may sign in.", shown.len())
    } else {
        format!("{} of {} people match \u{201c}{}\u{201d}.", shown.len(), users.len(), escape(filter.trim()))
    };
    let body = format!(
        "<h1>Sign in to {client}</h1>\n\
         <p class=\"note\">Local OIDC issuer for development and tests: no password, anyone listed may be chosen. \
         Never use it in production.</p>\n\
         <form method=\"get\" action=\"/authorize\" role=\"search\">\n{hidden}\n\
         <label for=\"q\">Filter people by email or name</label>\n\
         <input id=\"q\" name=\"q\" type=\"search\" value=\"{q}\" autocomplete=\"off\">\n\
         <button type=\"submit\">Filter</button>\n</form>\n\
         <form method=\"post\" action=\"/authorize\">\n{hidden}\n\
         <h2 id=\"people\">Choose who to sign in as</h2>\n<p role=\"status\">{count}</p>\n\
         <ul aria-labelledby=\"people\">\n{items}</ul>\n\
         <p><button type=\"submit\" name=\"cancel\" value=\"1\">Cancel sign-in</button></p>\n</form>",
        client = escape(&c.client_id),
        q = escape(filter),
    );
    html(StatusCode::OK, &format!("Sign in to {}", c.client_id), &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(escape(r#"<a href="x">'&'</a>"#), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
    }
}
