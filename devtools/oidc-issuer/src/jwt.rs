//! RS256 keys and JWTs: a key pair generated at start (local use only, never persisted), its JWK,
//! and the [`jsonwebtoken`] crypto provider both devtools use.
//!
//! jsonwebtoken parses and serializes the tokens (header, claims, base64url, the algorithm
//! check); the RSA arithmetic is aws-lc-rs's, through [`install_provider`]: jsonwebtoken's own
//! `aws_lc_rs` feature would enable aws-lc-rs's default features and so rebuild everything above
//! aws-lc-rs in the workspace (rustls, the AWS SDK, jit-shared) a second time. RSA only: API
//! Gateway's JWT authorizers accept RSA-signed tokens only.

use aws_lc_rs::{
    digest,
    encoding::AsDer,
    rand::SystemRandom,
    rsa::{KeySize, PublicKeyComponents},
    signature::{self as sig, KeyPair, RsaKeyPair},
};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use jsonwebtoken::{
    crypto::{CryptoProvider, JwkUtils, JwtSigner, JwtVerifier},
    errors::{Error, ErrorKind},
    jwk::{AlgorithmParameters, CommonParameters, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse, RSAKeyParameters},
    signature, Algorithm, DecodingKey, DecodingKeyKind, EncodingKey, Header,
};
use serde::Serialize;
use std::sync::Once;

/// The RSA algorithms this provider signs and verifies (API Gateway's JWT authorizers take RSA only).
pub const RSA_ALGORITHMS: [Algorithm; 3] = [Algorithm::RS256, Algorithm::RS384, Algorithm::RS512];

fn encoding(alg: Algorithm) -> Option<&'static dyn sig::RsaEncoding> {
    match alg {
        Algorithm::RS256 => Some(&sig::RSA_PKCS1_SHA256),
        Algorithm::RS384 => Some(&sig::RSA_PKCS1_SHA384),
        Algorithm::RS512 => Some(&sig::RSA_PKCS1_SHA512),
        _ => None,
    }
}

fn parameters(alg: Algorithm) -> Option<&'static sig::RsaParameters> {
    match alg {
        Algorithm::RS256 => Some(&sig::RSA_PKCS1_2048_8192_SHA256),
        Algorithm::RS384 => Some(&sig::RSA_PKCS1_2048_8192_SHA384),
        Algorithm::RS512 => Some(&sig::RSA_PKCS1_2048_8192_SHA512),
        _ => None,
    }
}

struct RsaSigner {
    alg: Algorithm,
    encoding: &'static dyn sig::RsaEncoding,
    key: RsaKeyPair,
}

impl signature::Signer<Vec<u8>> for RsaSigner {
    fn try_sign(&self, msg: &[u8]) -> Result<Vec<u8>, signature::Error> {
        let mut out = vec![0; self.key.public_modulus_len()];
        self.key.sign(self.encoding, &SystemRandom::new(), msg, &mut out).map_err(signature::Error::from_source)?;
        Ok(out)
    }
}

impl JwtSigner for RsaSigner {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

struct RsaVerifier {
    alg: Algorithm,
    parameters: &'static sig::RsaParameters,
    n: Vec<u8>,
    e: Vec<u8>,
}

impl signature::Verifier<Vec<u8>> for RsaVerifier {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> Result<(), signature::Error> {
        PublicKeyComponents { n: &self.n, e: &self.e }
            .verify(self.parameters, msg, signature)
            .map_err(signature::Error::from_source)
    }
}

impl JwtVerifier for RsaVerifier {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

fn new_signer(alg: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>, Error> {
    let encoding = encoding(*alg).ok_or_else(|| Error::from(ErrorKind::InvalidAlgorithm))?;
    // PKCS#1 DER, as EncodingKey::from_rsa_der documents.
    let key = RsaKeyPair::from_der(key.inner()).map_err(|e| ErrorKind::InvalidRsaKey(e.to_string()))?;
    Ok(Box::new(RsaSigner { alg: *alg, encoding, key }))
}

fn new_verifier(alg: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>, Error> {
    let parameters = parameters(*alg).ok_or_else(|| Error::from(ErrorKind::InvalidAlgorithm))?;
    match key.kind() {
        DecodingKeyKind::RsaModulusExponent { n, e } => {
            Ok(Box::new(RsaVerifier { alg: *alg, parameters, n: n.clone(), e: e.clone() }))
        }
        DecodingKeyKind::SecretOrDer(_) => Err(ErrorKind::InvalidKeyFormat.into()),
    }
}

static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: new_signer,
    verifier_factory: new_verifier,
    jwk_utils: JwkUtils::new_unimplemented(),
};

/// Makes [`PROVIDER`] jsonwebtoken's process-wide provider (once; later calls do nothing). Called
/// by everything here that signs or verifies; call it before using jsonwebtoken directly.
pub fn install_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if CryptoProvider::install_default(&PROVIDER).is_err() {
            tracing::warn!("another jsonwebtoken crypto provider was installed first; it is used instead");
        }
    });
}

/// An RSA key pair for signing tokens, generated in memory at start: local use only.
pub struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    jwk: Jwk,
}

impl SigningKey {
    /// A fresh 2048-bit RSA key (a few tens of milliseconds) with a `kid` that is its RFC 7638
    /// thumbprint.
    pub fn generate() -> anyhow::Result<Self> {
        install_provider();
        let pair = RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| anyhow::anyhow!("RSA key generation failed"))?;
        let pkcs8 = pair.as_der().map_err(|_| anyhow::anyhow!("RSA key encoding failed"))?;
        let pkcs1 = pkcs1_from_pkcs8(pkcs8.as_ref()).ok_or_else(|| anyhow::anyhow!("unexpected PKCS#8 layout"))?;
        let (n, e) = rsa_public_components(pair.public_key().as_ref())
            .ok_or_else(|| anyhow::anyhow!("unexpected RSAPublicKey layout"))?;
        let (n, e) = (URL_SAFE_NO_PAD.encode(n), URL_SAFE_NO_PAD.encode(e));
        let kid = thumbprint(&n, &e);
        let jwk = Jwk {
            common: CommonParameters {
                public_key_use: Some(PublicKeyUse::Signature),
                key_algorithm: Some(KeyAlgorithm::RS256),
                key_id: Some(kid.clone()),
                ..CommonParameters::default()
            },
            algorithm: AlgorithmParameters::RSA(RSAKeyParameters { key_type: Default::default(), n, e }),
        };
        Ok(Self { kid, encoding: EncodingKey::from_rsa_der(&pkcs1), jwk })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWK (`kty` RSA, `use` sig, `alg` RS256, `kid`, `n`, `e`).
    pub fn jwk(&self) -> &Jwk {
        &self.jwk
    }

    pub fn jwks(&self) -> JwkSet {
        JwkSet { keys: vec![self.jwk.clone()] }
    }

    /// `claims` as an RS256 JWT whose header names this key.
    pub fn sign(&self, claims: &impl Serialize) -> anyhow::Result<String> {
        let header = Header { kid: Some(self.kid.clone()), ..Header::new(Algorithm::RS256) };
        Ok(jsonwebtoken::encode(&header, claims, &self.encoding)?)
    }
}

/// RFC 7638: SHA-256 of the required members in lexicographic order, base64url.
fn thumbprint(n: &str, e: &str) -> String {
    let canonical = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, canonical.as_bytes()))
}

/// One DER element at the start of `input`: (tag, contents, rest).
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let count = (first & 0x7f) as usize;
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        (rest[..count].iter().fold(0usize, |acc, b| (acc << 8) | *b as usize), &rest[count..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// `n` and `e` of an RSAPublicKey (PKCS#1): `SEQUENCE { INTEGER n, INTEGER e }`, without the
/// leading zero that keeps a DER integer positive (a JWK's are unsigned).
fn rsa_public_components(der: &[u8]) -> Option<(&[u8], &[u8])> {
    const SEQUENCE: u8 = 0x30;
    const INTEGER: u8 = 0x02;
    let (SEQUENCE, key, _) = der_element(der)? else { return None };
    let (INTEGER, n, rest) = der_element(key)? else { return None };
    let (INTEGER, e, _) = der_element(rest)? else { return None };
    Some((n.strip_prefix(&[0]).unwrap_or(n), e.strip_prefix(&[0]).unwrap_or(e)))
}

/// The RSAPrivateKey (PKCS#1) inside a PrivateKeyInfo (PKCS#8): `SEQUENCE { INTEGER version,
/// SEQUENCE algorithm, OCTET STRING privateKey }`.
fn pkcs1_from_pkcs8(pkcs8: &[u8]) -> Option<Vec<u8>> {
    const SEQUENCE: u8 = 0x30;
    const INTEGER: u8 = 0x02;
    const OCTET_STRING: u8 = 0x04;
    let (SEQUENCE, info, _) = der_element(pkcs8)? else { return None };
    let (INTEGER, _, rest) = der_element(info)? else { return None };
    let (SEQUENCE, _, rest) = der_element(rest)? else { return None };
    let (OCTET_STRING, key, _) = der_element(rest)? else { return None };
    Some(key.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{decode, Validation};
    use serde_json::{json, Value};

    fn validation() -> Validation {
        let mut v = Validation::new(Algorithm::RS256);
        v.validate_exp = false;
        v.required_spec_claims.clear();
        v.validate_aud = false;
        v
    }

    #[test]
    fn a_signed_token_verifies_with_its_jwk_and_no_other() {
        let key = SigningKey::generate().unwrap();
        let token = key.sign(&json!({"sub": "u1"})).unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!((header.alg, header.kid.as_deref()), (Algorithm::RS256, Some(key.kid())));
        let decoding = DecodingKey::from_jwk(key.jwk()).unwrap();
        let claims = decode::<Value>(&token, &decoding, &validation()).unwrap().claims;
        assert_eq!(claims["sub"], "u1");

        let other = SigningKey::generate().unwrap();
        assert_ne!(other.kid(), key.kid());
        let err = decode::<Value>(&token, &DecodingKey::from_jwk(other.jwk()).unwrap(), &validation()).unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::InvalidSignature);
    }

    #[test]
    fn a_changed_payload_fails_the_signature() {
        let key = SigningKey::generate().unwrap();
        let token = key.sign(&json!({"sub": "u1", "email": "a@example.com"})).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(json!({"sub": "u1", "email": "admin@example.com"}).to_string());
        let tampered = format!("{}.{}.{}", parts[0], forged, parts[2]);
        let err = decode::<Value>(&tampered, &DecodingKey::from_jwk(key.jwk()).unwrap(), &validation()).unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::InvalidSignature);
    }

    #[test]
    fn the_jwk_is_rs256_for_signatures_and_the_kid_is_its_thumbprint() {
        let key = SigningKey::generate().unwrap();
        let jwk = serde_json::to_value(key.jwk()).unwrap();
        assert_eq!(
            (jwk["kty"].as_str(), jwk["use"].as_str(), jwk["alg"].as_str()),
            (Some("RSA"), Some("sig"), Some("RS256"))
        );
        assert_eq!(jwk["e"], "AQAB");
        // 2048-bit modulus: 256 bytes, 342 base64url characters.
        assert_eq!(jwk["n"].as_str().unwrap().len(), 342);
        assert_eq!(jwk["kid"].as_str(), Some(thumbprint(jwk["n"].as_str().unwrap(), "AQAB").as_str()));
    }

    #[test]
    fn only_rsa_algorithms_are_provided() {
        install_provider();
        let key = EncodingKey::from_secret(b"shared secret");
        let err = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &json!({}), &key).unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::InvalidAlgorithm);
    }

    #[test]
    fn malformed_pkcs8_is_refused() {
        assert_eq!(pkcs1_from_pkcs8(&[]), None);
        assert_eq!(pkcs1_from_pkcs8(&[0x30, 0x05, 0x02, 0x01]), None);
        assert_eq!(pkcs1_from_pkcs8(&[0x30, 0x03, 0x04, 0x01, 0x00]), None);
    }
}
