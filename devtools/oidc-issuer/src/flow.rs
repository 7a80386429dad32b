//! The client side of the sign-in, as the portal's browser goes through it: PKCE, the sign-in form,
//! the click on a person, the redirect with the code, the token request. For tests and scripts
//! that need a real ID token from a running issuer (this one).

use anyhow::{bail, Context};
use aws_lc_rs::{digest, rand};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use reqwest::{header, redirect::Policy, StatusCode, Url};
use serde::Deserialize;

/// A PKCE pair: a random verifier (43 characters) and its S256 challenge.
#[derive(Debug, Clone)]
pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

impl Pkce {
    pub fn new() -> Self {
        let mut bytes = [0u8; 32];
        rand::fill(&mut bytes).expect("system randomness");
        Self::from_verifier(URL_SAFE_NO_PAD.encode(bytes))
    }

    pub fn from_verifier(verifier: impl Into<String>) -> Self {
        let verifier = verifier.into();
        let challenge = URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, verifier.as_bytes()));
        Self { verifier, challenge }
    }
}

impl Default for Pkce {
    fn default() -> Self {
        Self::new()
    }
}

/// The token endpoint's answer.
#[derive(Debug, Clone, Deserialize)]
pub struct SignedIn {
    pub id_token: String,
    pub access_token: String,
    pub token_type: String,
    pub expires_in: u64,
}

/// An HTTP client that does not follow redirects (the code arrives in one).
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder().redirect(Policy::none()).build().expect("HTTP client")
}

/// The authorization request's parameters.
pub fn authorize_params<'a>(
    client_id: &'a str,
    redirect_uri: &'a str,
    pkce: &'a Pkce,
    state: &'a str,
    nonce: &'a str,
) -> Vec<(&'static str, &'a str)> {
    vec![
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", redirect_uri),
        ("scope", "openid email profile"),
        ("state", state),
        ("nonce", nonce),
        ("code_challenge", &pkce.challenge),
        ("code_challenge_method", "S256"),
    ]
}

/// The `sub` behind the sign-in form's button labelled `email`.
fn button_for(page: &str, email: &str) -> Option<String> {
    let label = format!("\">{}</button>", crate::pages::escape(email));
    let end = page.find(&label)?;
    let start = page[..end].rfind("value=\"")? + "value=\"".len();
    Some(page[start..end].replace("&amp;", "&").replace("&quot;", "\"").replace("&#39;", "'"))
}

/// Shows the sign-in form, picks `email` and returns the authorization code (the `state` is
/// checked on the way back).
pub async fn authorize(
    http: &reqwest::Client,
    issuer: &str,
    client_id: &str,
    redirect_uri: &str,
    email: &str,
    pkce: &Pkce,
) -> anyhow::Result<String> {
    let (state, nonce) = (Pkce::new().verifier, Pkce::new().verifier);
    let mut params = authorize_params(client_id, redirect_uri, pkce, &state, &nonce);
    let endpoint = format!("{}/authorize", issuer.trim_end_matches('/'));
    let form = http.get(&endpoint).query(&params).send().await?;
    let status = form.status();
    let page = form.text().await?;
    if status != StatusCode::OK {
        bail!("GET /authorize answered {status}: {page}");
    }
    let sub = button_for(&page, email).with_context(|| format!("{email} is not on the sign-in form"))?;
    params.push(("user", &sub));
    let answer = http.post(&endpoint).form(&params).send().await?;
    if answer.status() != StatusCode::SEE_OTHER {
        bail!("POST /authorize answered {}: {}", answer.status(), answer.text().await?);
    }
    let location = answer.headers().get(header::LOCATION).context("no Location")?.to_str()?;
    let back = Url::parse(location)?;
    let get = |name: &str| back.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned());
    if let Some(error) = get("error") {
        bail!("sign-in refused: {error}: {}", get("error_description").unwrap_or_default());
    }
    if get("state").as_deref() != Some(state.as_str()) {
        bail!("the redirect carries another state: {location}");
    }
    get("code").context("no code in the redirect")
}

/// The token request for `code`.
pub async fn redeem(
    http: &reqwest::Client,
    issuer: &str,
    client_id: &str,
    redirect_uri: &str,
    code: &str,
    verifier: &str,
) -> anyhow::Result<reqwest::Response> {
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri),
        ("client_id", client_id),
        ("code_verifier", verifier),
    ];
    Ok(http.post(format!("{}/token", issuer.trim_end_matches('/'))).form(&form).send().await?)
}

/// Signs `email` in at the issuer as the portal would, returning the tokens.
pub async fn sign_in(issuer: &str, client_id: &str, redirect_uri: &str, email: &str) -> anyhow::Result<SignedIn> {
    let http = http_client();
    let pkce = Pkce::new();
    let code = authorize(&http, issuer, client_id, redirect_uri, email, &pkce).await?;
    let answer = redeem(&http, issuer, client_id, redirect_uri, &code, &pkce.verifier).await?;
    if !answer.status().is_success() {
        bail!("POST /token answered {}: {}", answer.status(), answer.text().await?);
    }
    Ok(answer.json().await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_button_of_an_email_names_its_user() {
        let page = "<li><button type=\"submit\" name=\"user\" value=\"u&amp;1\">a@x.io</button></li>\
                    <li><button type=\"submit\" name=\"user\" value=\"u2\">b@x.io</button></li>";
        assert_eq!(button_for(page, "b@x.io").as_deref(), Some("u2"));
        assert_eq!(button_for(page, "a@x.io").as_deref(), Some("u&1"));
        assert_eq!(button_for(page, "c@x.io"), None);
    }
}
