//! Access tokens: short-lived JWTs signed with Ed25519 (`alg` EdDSA) by the user service and
//! verified by every edge (the gateway; later the live-notification handshake) with the
//! public halves of the user service's key set only.
//!
//! What verification pins, whatever the token says about itself:
//! - the algorithm is EdDSA (a token naming `none`, an HMAC or an RSA algorithm is refused
//!   before any key is touched, so no algorithm confusion is possible);
//! - the header names a key id (`kid`) of the current key set;
//! - `iss` is [`ISSUER`], `aud` is [`AUDIENCE`], `exp`, `nbf` and `sub` are present, and the
//!   token is inside its validity window (with [`LEEWAY_S`] for clock skew).
//!
//! Keys rotate: the user service signs with its newest key and publishes every key still
//! valid for verification, so a token signed just before a rotation verifies until it
//! expires.

pub mod cache;

use std::collections::BTreeMap;

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// `iss` of every access token.
pub const ISSUER: &str = "marketplace-user";
/// `aud` of every access token.
pub const AUDIENCE: &str = "marketplace-api";
/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub const LEEWAY_S: u64 = 30;
/// Bound on a token's length: a longer `Authorization` header is refused unread.
pub const TOKEN_BYTES_MAX: usize = 4096;

/// The claims of an access token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    /// The user's id.
    pub sub: String,
    /// Issued at, Unix seconds.
    pub iat: u64,
    /// Not before, Unix seconds.
    pub nbf: u64,
    /// Expires at, Unix seconds.
    pub exp: u64,
    /// The token's own id.
    pub jti: String,
}

impl Claims {
    /// An access token for `sub`, issued at `now_s`, valid for `ttl_s`.
    pub fn new(sub: &str, now_s: u64, ttl_s: u64, jti: &str) -> Self {
        Claims {
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            sub: sub.into(),
            iat: now_s,
            nbf: now_s,
            exp: now_s + ttl_s,
            jti: jti.into(),
        }
    }
}

/// Why a token was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no access token")]
    Missing,
    #[error("the token is malformed")]
    Malformed,
    #[error("the token's signing key {0:?} is unknown")]
    UnknownKey(String),
    #[error("the token has expired")]
    Expired,
    #[error("the token is invalid: {0}")]
    Invalid(String),
    #[error("bad key: {0}")]
    BadKey(String),
}

/// The DER prefix of a PKCS#8 v1 Ed25519 private key (RFC 8410): the 32-byte seed follows.
const PKCS8_ED25519_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// A key of the user service's key set: its id and its Ed25519 seed (private).
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey {
    pub kid: String,
    seed: [u8; 32],
    pub created_ms: i64,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("created_ms", &self.created_ms)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// The key with id `kid` and private seed `seed`.
    pub fn from_seed(kid: &str, seed: [u8; 32], created_ms: i64) -> Self {
        SigningKey {
            kid: kid.into(),
            seed,
            created_ms,
        }
    }

    /// The key from its stored form ([`SigningKey::seed_b64`]).
    pub fn from_stored(kid: &str, seed_b64: &str, created_ms: i64) -> Result<Self, AuthError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(seed_b64)
            .map_err(|e| AuthError::BadKey(e.to_string()))?;
        let seed: [u8; 32] = bytes
            .try_into()
            .map_err(|_| AuthError::BadKey("a seed is 32 bytes".into()))?;
        Ok(SigningKey::from_seed(kid, seed, created_ms))
    }

    /// The seed, base64url: how the key is stored.
    pub fn seed_b64(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.seed)
    }

    /// The public half, as published.
    pub fn public(&self) -> PublicKey {
        let verifying = ed25519_dalek::SigningKey::from_bytes(&self.seed).verifying_key();
        PublicKey {
            kid: self.kid.clone(),
            x: URL_SAFE_NO_PAD.encode(verifying.to_bytes()),
            created_ms: self.created_ms,
        }
    }

    /// `claims` signed with this key (header `alg` EdDSA, `typ` JWT, `kid`).
    pub fn sign(&self, claims: &Claims) -> Result<String, AuthError> {
        let mut der = PKCS8_ED25519_PREFIX.to_vec();
        der.extend_from_slice(&self.seed);
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_ed_der(&der))
            .map_err(|e| AuthError::BadKey(e.to_string()))
    }
}

/// The public half of a signing key: `x` is the Ed25519 public key, base64url.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKey {
    pub kid: String,
    pub x: String,
    pub created_ms: i64,
}

/// A JSON Web Key (RFC 8037 OKP), as served at `/.well-known/jwks.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    pub kty: String,
    pub crv: String,
    pub x: String,
    pub kid: String,
    pub alg: String,
    #[serde(rename = "use")]
    pub usage: String,
}

/// A JSON Web Key Set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

impl From<&PublicKey> for Jwk {
    fn from(k: &PublicKey) -> Self {
        Jwk {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            x: k.x.clone(),
            kid: k.kid.clone(),
            alg: "EdDSA".into(),
            usage: "sig".into(),
        }
    }
}

/// The keys a verifier accepts, by id.
#[derive(Clone, Default)]
pub struct KeySet {
    keys: BTreeMap<String, DecodingKey>,
    published: Vec<PublicKey>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.keys.keys()).finish()
    }
}

impl KeySet {
    /// The set of `keys`; a key that is not a valid Ed25519 public key is refused.
    pub fn new(keys: &[PublicKey]) -> Result<Self, AuthError> {
        let mut set = KeySet::default();
        for k in keys {
            let raw = URL_SAFE_NO_PAD
                .decode(&k.x)
                .map_err(|e| AuthError::BadKey(format!("{}: {e}", k.kid)))?;
            let bytes: [u8; 32] = raw
                .try_into()
                .map_err(|_| AuthError::BadKey(format!("{}: not 32 bytes", k.kid)))?;
            ed25519_dalek::VerifyingKey::from_bytes(&bytes)
                .map_err(|e| AuthError::BadKey(format!("{}: {e}", k.kid)))?;
            set.keys.insert(
                k.kid.clone(),
                DecodingKey::from_ed_components(&k.x)
                    .map_err(|e| AuthError::BadKey(e.to_string()))?,
            );
            set.published.push(k.clone());
        }
        Ok(set)
    }

    /// Whether the set holds no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether the set holds key `kid`.
    pub fn has(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }

    /// The set as a JWKS document.
    pub fn jwks(&self) -> Jwks {
        Jwks {
            keys: self.published.iter().map(Jwk::from).collect(),
        }
    }

    /// The key id a token's header names, without verifying anything.
    pub fn kid_of(token: &str) -> Result<String, AuthError> {
        if token.len() > TOKEN_BYTES_MAX {
            return Err(AuthError::Malformed);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Malformed)?;
        if header.alg != Algorithm::EdDSA {
            return Err(AuthError::Invalid("the algorithm must be EdDSA".into()));
        }
        header
            .kid
            .ok_or_else(|| AuthError::Invalid("the token names no key".into()))
    }

    /// The claims of `token` if it is valid now (see the module doc for every check).
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let kid = Self::kid_of(token)?;
        let key = self.keys.get(&kid).ok_or(AuthError::UnknownKey(kid))?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.algorithms = vec![Algorithm::EdDSA];
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_S;
        let data = jsonwebtoken::decode::<Claims>(token, key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::InvalidToken
                | ErrorKind::Base64(_)
                | ErrorKind::Json(_)
                | ErrorKind::Utf8(_) => AuthError::Malformed,
                other => AuthError::Invalid(format!("{other:?}")),
            }
        })?;
        if data.claims.sub.is_empty() {
            return Err(AuthError::Invalid("empty subject".into()));
        }
        Ok(data.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now_s() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }

    fn key(kid: &str, byte: u8) -> SigningKey {
        SigningKey::from_seed(kid, [byte; 32], 0)
    }

    fn b64(v: &serde_json::Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap_or_default())
    }

    #[test]
    fn a_signed_token_verifies_with_the_public_half_only() {
        let k = key("k1", 7);
        let set = KeySet::new(&[k.public()]).expect("set");
        let claims = Claims::new("user-1", now_s(), 900, "j1");
        let token = k.sign(&claims).expect("sign");
        assert_eq!(set.verify(&token), Ok(claims));
    }

    #[test]
    fn a_token_of_another_key_or_an_unknown_kid_is_refused() {
        let (k1, k2) = (key("k1", 1), key("k2", 2));
        let set = KeySet::new(&[k1.public()]).expect("set");
        let claims = Claims::new("u", now_s(), 900, "j");
        assert!(
            matches!(set.verify(&k2.sign(&claims).expect("sign")), Err(AuthError::UnknownKey(k)) if k == "k2")
        );
        // k2's signature under k1's id.
        let forged = SigningKey::from_seed("k1", [2; 32], 0)
            .sign(&claims)
            .expect("sign");
        assert!(
            matches!(set.verify(&forged), Err(AuthError::Invalid(_))),
            "{:?}",
            set.verify(&forged)
        );
    }

    #[test]
    fn expired_future_and_foreign_tokens_are_refused() {
        let k = key("k1", 3);
        let set = KeySet::new(&[k.public()]).expect("set");
        let now = now_s();
        let expired = Claims::new("u", now - 2000, 900, "j");
        assert_eq!(
            set.verify(&k.sign(&expired).expect("sign")),
            Err(AuthError::Expired)
        );
        let mut future = Claims::new("u", now, 900, "j");
        future.nbf = now + 600;
        assert!(matches!(
            set.verify(&k.sign(&future).expect("sign")),
            Err(AuthError::Invalid(_))
        ));
        let mut foreign = Claims::new("u", now, 900, "j");
        foreign.iss = "someone-else".into();
        assert!(matches!(
            set.verify(&k.sign(&foreign).expect("sign")),
            Err(AuthError::Invalid(_))
        ));
        let mut other_audience = Claims::new("u", now, 900, "j");
        other_audience.aud = "another-api".into();
        assert!(matches!(
            set.verify(&k.sign(&other_audience).expect("sign")),
            Err(AuthError::Invalid(_))
        ));
    }

    #[test]
    fn alg_none_and_hmac_tokens_are_refused_before_any_key_is_used() {
        let k = key("k1", 4);
        let set = KeySet::new(&[k.public()]).expect("set");
        let claims = serde_json::to_value(Claims::new("u", now_s(), 900, "j")).expect("json");
        let none = format!(
            "{}.{}.",
            b64(&serde_json::json!({"alg": "none", "kid": "k1"})),
            b64(&claims)
        );
        assert!(set.verify(&none).is_err());
        // HS256 "signed" with the public key's bytes: the classic confusion attack.
        let hs = jsonwebtoken::encode(
            &Header {
                kid: Some("k1".into()),
                ..Header::new(Algorithm::HS256)
            },
            &claims,
            &EncodingKey::from_secret(k.public().x.as_bytes()).expect("hmac key"),
        )
        .expect("hs256");
        assert!(matches!(set.verify(&hs), Err(AuthError::Invalid(_))));
        assert_eq!(set.verify("not.a.token"), Err(AuthError::Malformed));
        assert_eq!(
            set.verify(&"a".repeat(TOKEN_BYTES_MAX + 1)),
            Err(AuthError::Malformed)
        );
    }

    #[test]
    fn a_key_round_trips_through_its_stored_form_and_bad_keys_are_refused() {
        let k = key("k9", 9);
        let back = SigningKey::from_stored("k9", &k.seed_b64(), 0).expect("stored");
        assert_eq!(back.public(), k.public());
        assert!(SigningKey::from_stored("k", "short", 0).is_err());
        let bad = PublicKey {
            kid: "b".into(),
            x: "AAAA".into(),
            created_ms: 0,
        };
        assert!(KeySet::new(&[bad]).is_err());
        let set = KeySet::new(&[k.public()]).expect("set");
        assert_eq!(set.jwks().keys[0].kty, "OKP");
        assert!(set.has("k9") && !set.is_empty());
    }
}
