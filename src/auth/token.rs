//! Access tokens (HS256 JWTs) and opaque refresh tokens.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{Duration, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore as _;
use secrecy::ExposeSecret as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

use crate::config::Config;

/// How long an access token is valid. Short, because it is a bearer credential; revocation
/// is immediate anyway through the session check.
pub const ACCESS_TOKEN_TTL: Duration = Duration::minutes(15);
/// How long a refresh token may wait to be used.
pub const REFRESH_TOKEN_TTL: Duration = Duration::days(30);
const AUDIENCE: &str = "curbside-api";

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    /// The user id.
    pub sub: Uuid,
    /// The session id, checked against the `sessions` table on every request.
    pub sid: Uuid,
    pub iat: i64,
    pub exp: i64,
}

/// Signs and checks access tokens. The algorithm is pinned to HS256: a token that names
/// any other algorithm (including `none`) is refused before its signature is looked at.
#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
}

impl JwtKeys {
    pub fn new(config: &Config) -> Self {
        let secret = config.jwt_secret.expose_secret().as_bytes();
        let issuer = config.public_base_url.clone();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[&issuer]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 5;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            issuer,
        }
    }

    pub fn issue(&self, user_id: Uuid, session_id: Uuid) -> anyhow::Result<String> {
        let now = Utc::now();
        let claims = Claims {
            iss: self.issuer.clone(),
            aud: AUDIENCE.to_owned(),
            sub: user_id,
            sid: session_id,
            iat: now.timestamp(),
            exp: (now + ACCESS_TOKEN_TTL).timestamp(),
        };
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.encoding,
        )?)
    }

    /// The claims of a valid, unexpired token signed with our key; `None` otherwise.
    pub fn verify(&self, token: &str) -> Option<Claims> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .ok()
            .map(|data| data.claims)
    }
}

/// 256 random bits, URL-safe: every opaque token of the API (refresh tokens, guest tokens).
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A new refresh token. Only its hash is stored.
pub fn new_refresh_token() -> String {
    random_token()
}

/// Guest tokens carry this prefix, which tells them from access tokens (JWTs) at a glance.
pub const GUEST_TOKEN_PREFIX: &str = "cg_";

/// A new guest token (256 random bits) and the hash that is stored. The token opens one
/// reservation and is shown once.
pub fn new_guest_token() -> (String, Vec<u8>) {
    let token = format!("{GUEST_TOKEN_PREFIX}{}", random_token());
    let hash = hash_guest_token(&token);
    (token, hash)
}

/// A single-use code that lets a guest take a new guest token, and its stored SHA-256.
pub fn new_access_code() -> (String, Vec<u8>) {
    let code = random_token();
    let hash = Sha256::digest(code.as_bytes()).to_vec();
    (code, hash)
}

pub fn hash_access_code(code: &str) -> Vec<u8> {
    Sha256::digest(code.as_bytes()).to_vec()
}

pub fn hash_guest_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// The stored form of a refresh token. A plain SHA-256 suffices: the token is random and
/// long, so there is nothing to brute-force.
pub fn hash_refresh_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    #[test]
    fn guest_tokens_are_random_prefixed_and_hashed() {
        let (a, hash_a) = super::new_guest_token();
        let (b, _) = super::new_guest_token();
        assert_ne!(a, b);
        assert!(a.starts_with("cg_") && a.len() == 46);
        assert_eq!(super::hash_guest_token(&a), hash_a);
    }

    use super::*;

    fn keys() -> JwtKeys {
        JwtKeys::new(&Config::from_lookup(|_| None).unwrap())
    }

    #[test]
    fn issued_tokens_verify() {
        let keys = keys();
        let (user, session) = (Uuid::new_v4(), Uuid::new_v4());
        let claims = keys.verify(&keys.issue(user, session).unwrap()).unwrap();
        assert_eq!((claims.sub, claims.sid), (user, session));
        assert_eq!(claims.exp - claims.iat, 15 * 60);
    }

    #[test]
    fn tampered_tokens_do_not_verify() {
        let keys = keys();
        let token = keys.issue(Uuid::new_v4(), Uuid::new_v4()).unwrap();
        let mut tampered = token.clone();
        tampered.pop();
        tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
        assert!(keys.verify(&tampered).is_none());
    }

    #[test]
    fn refresh_tokens_are_random_and_hash_stably() {
        let (a, b) = (new_refresh_token(), new_refresh_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(hash_refresh_token(&a), hash_refresh_token(&a));
        assert_ne!(hash_refresh_token(&a), hash_refresh_token(&b));
    }
}
