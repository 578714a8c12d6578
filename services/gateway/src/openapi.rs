//! The gateway's OpenAPI 3.1 document, generated from the handlers' annotations and the
//! bodies' types, served at `/openapi.json` and committed as `openapi.json` at the
//! repository root (a test fails when the two differ: `UPDATE_OPENAPI=1 cargo test -p
//! gateway openapi` rewrites the file). schemathesis runs against it in `ci/test`.

use serde::{Deserialize, Serialize};
use utoipa::{
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    Modify, OpenApi, ToSchema,
};

/// An RFC 9457 problem document (`application/problem+json`), the body of every error.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ProblemDetails {
    /// Always `about:blank`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
}

/// A JSON Web Key Set of Ed25519 public keys.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct JwksDoc {
    pub keys: Vec<JwkDoc>,
}

/// An Ed25519 public key (RFC 8037).
#[derive(Serialize, Deserialize, ToSchema)]
pub struct JwkDoc {
    /// `OKP`.
    pub kty: String,
    /// `Ed25519`.
    pub crv: String,
    /// The public key, base64url.
    pub x: String,
    pub kid: String,
    /// `EdDSA`.
    pub alg: String,
    /// `sig`.
    #[serde(rename = "use")]
    pub usage: String,
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Marketplace API",
        description = "Accounts and sessions, ads, search and orders. Errors are application/problem+json (RFC 9457).",
        version = "1"
    ),
    paths(
        crate::users::register,
        crate::users::login,
        crate::users::refresh,
        crate::users::logout,
        crate::users::me,
        crate::users::update_me,
        crate::users::jwks,
        crate::ads::create,
        crate::ads::get,
        crate::ads::put,
        crate::ads::patch,
        crate::ads::delete,
        crate::photos::create_upload,
        crate::photos::complete,
        crate::photos::get,
        crate::reports::create,
        crate::reports::get,
        crate::search::search,
        crate::orders::create,
        crate::orders::get,
        crate::health,
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "users", description = "Accounts and sessions"),
        (name = "ads", description = "Classified ads"),
        (name = "search", description = "Full-text search over ACTIVE ads"),
        (name = "reports", description = "Reports of ads and users, decided by moderation"),
        (name = "orders", description = "Orders: buy an ad; order → payment → delivery"),
    )
)]
pub struct ApiDoc;

/// The document as served and committed (pretty JSON, one trailing newline).
pub fn document() -> String {
    let mut text = ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_openapi_document_is_the_generated_one() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../openapi.json");
        let generated = document();
        if std::env::var_os("UPDATE_OPENAPI").is_some() {
            std::fs::write(path, &generated).expect("write openapi.json");
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == generated,
            "openapi.json is not what the code generates; run `UPDATE_OPENAPI=1 cargo test -p gateway openapi` and commit it"
        );
    }

    #[test]
    fn every_route_is_documented_with_its_errors() {
        let doc: serde_json::Value = serde_json::from_str(&document()).expect("json");
        assert!(doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")));
        let paths = doc["paths"].as_object().expect("paths");
        for p in [
            "/v1/users",
            "/v1/sessions",
            "/v1/ads/{id}",
            "/v1/search",
            "/v1/orders/{id}",
        ] {
            assert!(paths.contains_key(p), "{p} undocumented");
        }
        for (path, ops) in paths {
            for (method, op) in ops.as_object().into_iter().flatten() {
                let responses = op["responses"].as_object().expect("responses");
                if path != "/healthz" && path != "/.well-known/jwks.json" {
                    assert!(
                        responses.keys().any(|s| s.starts_with('4')),
                        "{method} {path} documents no client error"
                    );
                }
            }
        }
    }
}
