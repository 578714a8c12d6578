//! The gRPC face of the user service.

use std::sync::Arc;

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use contracts::user::{
    user_service_server::UserService, KeySet, LoginRequest, LogoutReply, PublicKey as KeyMsg,
    RefreshRequest, RegisterRequest, Session, SigningKeysRequest, UpdateProfileRequest,
    User as UserMsg, UserRef,
};
use platform::{
    grpc::{require_id, store_status, RETRY_AFTER_METADATA},
    ports::{Store, StoreError, Tx, Versioned},
};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use tonic::{Request, Response, Status};

use crate::{
    keys::Keys,
    now_ms, password,
    store::{
        Failures, RefreshToken, User, UserAnswer, UserQuery, UserSchema, UserWrite,
        DISPLAY_NAME_CHARS, EMAIL_CHARS,
    },
    Config,
};

const SERVICE: &str = "user";
/// Bound on the client address a login names.
const ADDRESS_BYTES_MAX: usize = 64;
/// The answer to every failed login, whichever half of the pair was wrong.
const WRONG_PAIR: &str = "user: wrong email or password";

pub(crate) struct UserApi {
    config: Config,
    store: Arc<dyn Store<UserSchema>>,
    keys: Arc<Keys>,
    hashing: Arc<Semaphore>,
    /// A hash at the configured cost that no password matches: an unknown email is checked
    /// against it, so it costs what a wrong password costs.
    decoy: String,
}

fn to_msg(u: &Versioned<User>) -> UserMsg {
    UserMsg {
        user_id: u.value.user_id.clone(),
        email: u.value.email.clone(),
        display_name: u.value.display_name.clone(),
        version: u.version,
        created_ms: u.value.created_ms,
    }
}

fn invalid(message: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("{SERVICE}: {message}"))
}

/// The email as typed (trimmed) and its uniqueness key, or why it is refused.
pub(crate) fn parse_email(raw: &str, case_sensitive: bool) -> Result<(String, String), Status> {
    let email = raw.trim();
    let n = email.chars().count();
    if !EMAIL_CHARS.contains(&n) {
        return Err(invalid(format!(
            "email must be {}..={} characters",
            EMAIL_CHARS.start(),
            EMAIL_CHARS.end()
        )));
    }
    let well_formed = match email.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        }
        None => false,
    };
    if !well_formed {
        return Err(invalid("email must look like name@domain"));
    }
    // The mutant `email-key-case-sensitive` keeps the case, so `A@x` and `a@x` are two
    // accounts.
    let key = if case_sensitive {
        email.to_owned()
    } else {
        email.to_lowercase()
    };
    Ok((email.to_owned(), key))
}

fn parse_password(p: &str) -> Result<(), Status> {
    if password::PASSWORD_CHARS.contains(&p.chars().count()) {
        Ok(())
    } else {
        Err(invalid(format!(
            "password must be {}..={} characters",
            password::PASSWORD_CHARS.start(),
            password::PASSWORD_CHARS.end()
        )))
    }
}

fn parse_display_name(raw: &str) -> Result<String, Status> {
    let name = raw.trim();
    if !DISPLAY_NAME_CHARS.contains(&name.chars().count()) || name.chars().any(char::is_control) {
        return Err(invalid(format!(
            "display_name must be {}..={} printable characters",
            DISPLAY_NAME_CHARS.start(),
            DISPLAY_NAME_CHARS.end()
        )));
    }
    Ok(name.to_owned())
}

/// The stored form of a refresh token's secret.
fn token_hash(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    for chunk in out.chunks_mut(16) {
        let r = platform::ids::random_u128().to_le_bytes();
        chunk.copy_from_slice(&r[..chunk.len()]);
    }
    out
}

fn store_error(e: StoreError) -> Status {
    store_status(SERVICE, e)
}

fn throttled(retry_after_s: i64) -> Status {
    let mut s = Status::resource_exhausted(format!(
        "{SERVICE}: too many failed logins; retry in {retry_after_s} s"
    ));
    if let Ok(v) = retry_after_s.to_string().parse() {
        s.metadata_mut().insert(RETRY_AFTER_METADATA, v);
    }
    s
}

impl UserApi {
    pub(crate) fn new(
        config: Config,
        store: Arc<dyn Store<UserSchema>>,
        keys: Arc<Keys>,
    ) -> anyhow::Result<Self> {
        let decoy = password::hash(
            &URL_SAFE_NO_PAD.encode(random_bytes::<16>()),
            config.password_cost,
            random_bytes(),
        )
        .map_err(|e| anyhow::anyhow!(e))?;
        Ok(UserApi {
            hashing: Arc::new(Semaphore::new(config.hashing_max)),
            config,
            store,
            keys,
            decoy,
        })
    }

    /// Runs `f` (password hashing: CPU and memory bound) off the async workers, at most
    /// `hashing_max` at once.
    async fn hashing<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, Status> {
        let _permit = self
            .hashing
            .acquire()
            .await
            .map_err(|_| Status::unavailable(format!("{SERVICE}: shutting down")))?;
        // The one CPU-bound step of the service. In the simulation madsim runs the closure
        // as an ordinary task, and the sim's hashing cost is minimal.
        #[allow(clippy::disallowed_methods, deprecated)]
        let handle = tokio::task::spawn_blocking(f);
        handle
            .await
            .map_err(|_| Status::internal(format!("{SERVICE}: hashing failed")))
    }

    async fn user(&self, query: UserQuery) -> Result<Option<Versioned<User>>, Status> {
        match self.store.query(query).await.map_err(store_error)? {
            UserAnswer::User(u) => Ok(u),
            other => Err(store_error(StoreError::Fatal(format!(
                "user query answered {other:?}"
            )))),
        }
    }

    /// PERMISSION_DENIED when moderation blocked `user_id`.
    async fn refuse_blocked(&self, user_id: &str) -> Result<(), Status> {
        let answer = self
            .store
            .query(UserQuery::Blocked {
                user_id: user_id.to_owned(),
            })
            .await
            .map_err(store_error)?;
        match answer {
            UserAnswer::Blocked(None) => Ok(()),
            UserAnswer::Blocked(Some(b)) => Err(Status::permission_denied(format!(
                "user: the account is blocked by moderation ({})",
                b.reason
            ))),
            other => Err(store_error(StoreError::Fatal(format!(
                "blocked query answered {other:?}"
            )))),
        }
    }

    /// A new session for `user_id`: an access token and a refresh token of `family_id`,
    /// whose row is written with `extra` in one transaction.
    async fn session(
        &self,
        user_id: &str,
        family_id: String,
        extra: Vec<UserWrite>,
    ) -> Result<Session, Status> {
        let key = self.keys.current().ok_or_else(|| {
            Status::unavailable(format!("{SERVICE}: the signing keys are not loaded yet"))
        })?;
        let now = now_ms();
        let now_s = u64::try_from(now / 1000).unwrap_or(0);
        let ttl_s = self.config.access_ttl.as_secs();
        let claims =
            auth::Claims::new(user_id, now_s, ttl_s, &platform::ids::uuid_v4().to_string());
        let access = key
            .sign(&claims)
            .map_err(|e| Status::internal(format!("{SERVICE}: signing failed: {e}")))?;
        let secret = URL_SAFE_NO_PAD.encode(random_bytes::<32>());
        let refresh_ms = i64::try_from(self.config.refresh_ttl.as_millis()).unwrap_or(i64::MAX);
        let mut tx = Tx::new();
        for w in extra {
            tx = tx.write(w);
        }
        let tx = tx.write(UserWrite::IssueRefresh(RefreshToken {
            token_hash: token_hash(&secret),
            user_id: user_id.to_owned(),
            family_id,
            expires_ms: now.saturating_add(refresh_ms),
            state: "ACTIVE".into(),
        }));
        self.store.commit(tx).await.map_err(|e| match e {
            // A concurrent refresh spent the token first.
            StoreError::Conflict { .. } => {
                Status::unauthenticated(format!("{SERVICE}: the refresh token was already used"))
            }
            e => store_error(e),
        })?;
        Ok(Session {
            access_token: access,
            expires_in_s: u32::try_from(ttl_s).unwrap_or(u32::MAX),
            refresh_token: secret,
            user_id: user_id.to_owned(),
        })
    }

    async fn refresh_row(&self, secret: &str) -> Result<Option<Versioned<RefreshToken>>, Status> {
        if secret.is_empty() || secret.len() > 128 {
            return Err(invalid("refresh_token must be 1..=128 bytes"));
        }
        let q = UserQuery::Refresh {
            token_hash: token_hash(secret),
        };
        match self.store.query(q).await.map_err(store_error)? {
            UserAnswer::Refresh(t) => Ok(t),
            other => Err(store_error(StoreError::Fatal(format!(
                "refresh query answered {other:?}"
            )))),
        }
    }

    async fn revoke(&self, family_id: &str) -> Result<(), Status> {
        let tx = Tx::new().write(UserWrite::RevokeFamily {
            family_id: family_id.to_owned(),
        });
        self.store.commit(tx).await.map_err(store_error)
    }
}

#[tonic::async_trait]
impl UserService for UserApi {
    async fn register(
        &self,
        request: Request<RegisterRequest>,
    ) -> Result<Response<UserMsg>, Status> {
        let req = request.into_inner();
        let (email, email_key) =
            parse_email(&req.email, self.config.mutants.email_key_case_sensitive)?;
        parse_password(&req.password)?;
        let display_name = parse_display_name(&req.display_name)?;
        let (cost, salt) = (self.config.password_cost, random_bytes::<16>());
        let password = req.password;
        let password_hash = self
            .hashing(move || password::hash(&password, cost, salt))
            .await?
            .map_err(|e| Status::internal(format!("{SERVICE}: hashing failed: {e}")))?;
        let user = User {
            user_id: platform::ids::uuid_v4().to_string(),
            email,
            email_key,
            display_name,
            password_hash,
            created_ms: now_ms(),
        };
        let tx = Tx::new().write(UserWrite::InsertUser(user.clone()));
        match self.store.commit(tx).await {
            Ok(()) => Ok(Response::new(to_msg(&Versioned {
                version: 1,
                value: user,
            }))),
            Err(StoreError::Conflict { .. }) => Err(Status::already_exists(format!(
                "{SERVICE}: an account with this email exists"
            ))),
            Err(e) => Err(store_error(e)),
        }
    }

    async fn login(&self, request: Request<LoginRequest>) -> Result<Response<Session>, Status> {
        let req = request.into_inner();
        let (_, email_key) = parse_email(&req.email, self.config.mutants.email_key_case_sensitive)?;
        parse_password(&req.password)?;
        if req.client_address.len() > ADDRESS_BYTES_MAX {
            return Err(invalid(format!(
                "client_address must be at most {ADDRESS_BYTES_MAX} bytes"
            )));
        }
        let address = if req.client_address.is_empty() {
            "unknown".to_owned()
        } else {
            req.client_address
        };
        let scopes = [
            (
                "account",
                email_key.clone(),
                self.config.throttle.account_failures_max,
            ),
            (
                "address",
                address,
                self.config.throttle.address_failures_max,
            ),
        ];
        let keys = scopes
            .iter()
            .map(|(s, k, _)| ((*s).to_owned(), k.clone()))
            .collect();
        let rows = match self
            .store
            .query(UserQuery::Failures { keys })
            .await
            .map_err(store_error)?
        {
            UserAnswer::Failures(rows) => rows,
            other => {
                return Err(store_error(StoreError::Fatal(format!(
                    "failures query answered {other:?}"
                ))))
            }
        };
        let now = now_ms();
        let window_ms = i64::try_from(self.config.throttle.window.as_millis()).unwrap_or(i64::MAX);
        let current = |r: &Failures| r.window_start_ms + window_ms > now;
        for (scope, key, max) in &scopes {
            if let Some(r) = rows
                .iter()
                .find(|r| r.scope == *scope && r.key == *key && current(r) && r.failures >= *max)
            {
                let retry_after_s = ((r.window_start_ms + window_ms - now) / 1000).max(1);
                return Err(throttled(retry_after_s));
            }
        }
        let user = self
            .user(UserQuery::UserByEmail {
                email_key: email_key.clone(),
            })
            .await?;
        let phc = user
            .as_ref()
            .map_or_else(|| self.decoy.clone(), |u| u.value.password_hash.clone());
        let password = req.password;
        let matches = self
            .hashing(move || password::verify(&password, &phc))
            .await?;
        let Some(user) = user.filter(|_| matches) else {
            let mut tx = Tx::new();
            for (scope, key, _) in &scopes {
                tx = tx.write(UserWrite::CountFailure {
                    scope: (*scope).to_owned(),
                    key: key.clone(),
                    now_ms: now,
                    window_ms,
                });
            }
            if let Err(e) = self.store.commit(tx).await {
                tracing::warn!(error = %e, "a failed login was not counted");
            }
            return Err(Status::unauthenticated(WRONG_PAIR));
        };
        self.refuse_blocked(&user.value.user_id).await?;
        let clear = rows
            .iter()
            .any(|r| r.scope == "account" && r.key == email_key)
            .then(|| UserWrite::ClearFailures {
                scope: "account".into(),
                key: email_key,
            });
        let session = self
            .session(
                &user.value.user_id,
                platform::ids::uuid_v4().to_string(),
                clear.into_iter().collect(),
            )
            .await?;
        Ok(Response::new(session))
    }

    async fn refresh(&self, request: Request<RefreshRequest>) -> Result<Response<Session>, Status> {
        let secret = request.into_inner().refresh_token;
        let Some(row) = self.refresh_row(&secret).await? else {
            return Err(Status::unauthenticated(format!(
                "{SERVICE}: unknown refresh token"
            )));
        };
        let t = &row.value;
        match t.state.as_str() {
            "ACTIVE" if t.expires_ms > now_ms() => {}
            "USED" => {
                // A spent token presented again: one of its two holders stole it.
                self.revoke(&t.family_id).await?;
                tracing::warn!(user_id = %t.user_id, "refresh token reused; session family revoked");
                return Err(Status::unauthenticated(format!(
                    "{SERVICE}: the refresh token was already used; the session is revoked"
                )));
            }
            _ => {
                return Err(Status::unauthenticated(format!(
                    "{SERVICE}: the refresh token has expired or was revoked"
                )))
            }
        }
        self.refuse_blocked(&t.user_id).await?;
        let spend = UserWrite::SpendRefresh {
            token_hash: t.token_hash.clone(),
            version: row.version,
        };
        let session = self
            .session(&t.user_id, t.family_id.clone(), vec![spend])
            .await?;
        Ok(Response::new(session))
    }

    async fn logout(
        &self,
        request: Request<RefreshRequest>,
    ) -> Result<Response<LogoutReply>, Status> {
        let secret = request.into_inner().refresh_token;
        if let Some(row) = self.refresh_row(&secret).await? {
            self.revoke(&row.value.family_id).await?;
        }
        Ok(Response::new(LogoutReply {}))
    }

    async fn get_profile(&self, request: Request<UserRef>) -> Result<Response<UserMsg>, Status> {
        let user_id = request.into_inner().user_id;
        require_id(SERVICE, "user_id", &user_id)?;
        let user = self
            .user(UserQuery::UserById {
                user_id: user_id.clone(),
            })
            .await?
            .ok_or_else(|| Status::not_found(format!("{SERVICE}: no user {user_id}")))?;
        Ok(Response::new(to_msg(&user)))
    }

    async fn update_profile(
        &self,
        request: Request<UpdateProfileRequest>,
    ) -> Result<Response<UserMsg>, Status> {
        let req = request.into_inner();
        require_id(SERVICE, "user_id", &req.user_id)?;
        let display_name = parse_display_name(&req.display_name)?;
        let stale = |at: i64| {
            Status::failed_precondition(format!(
                "{SERVICE}: the profile is at version {at}, not {}",
                req.expected_version
            ))
        };
        // Without an expected version, a concurrent edit is retried on the new version.
        for _ in 0..5 {
            let current = self
                .user(UserQuery::UserById {
                    user_id: req.user_id.clone(),
                })
                .await?
                .ok_or_else(|| Status::not_found(format!("{SERVICE}: no user {}", req.user_id)))?;
            if req.expected_version != 0 && current.version != req.expected_version {
                return Err(stale(current.version));
            }
            let user = User {
                display_name: display_name.clone(),
                ..current.value.clone()
            };
            let tx = Tx::new().write(UserWrite::UpdateUser {
                user: user.clone(),
                version: current.version,
            });
            match self.store.commit(tx).await {
                Ok(()) => {
                    let updated = Versioned {
                        version: current.version + 1,
                        value: user,
                    };
                    return Ok(Response::new(to_msg(&updated)));
                }
                Err(StoreError::Conflict { .. }) if req.expected_version == 0 => continue,
                Err(StoreError::Conflict { .. }) => return Err(stale(current.version + 1)),
                Err(e) => return Err(store_error(e)),
            }
        }
        Err(Status::aborted(format!(
            "{SERVICE}: concurrent profile updates; retry"
        )))
    }

    async fn signing_keys(
        &self,
        _request: Request<SigningKeysRequest>,
    ) -> Result<Response<KeySet>, Status> {
        let keys = self.keys.published();
        if keys.is_empty() {
            return Err(Status::unavailable(format!(
                "{SERVICE}: the signing keys are not loaded yet"
            )));
        }
        Ok(Response::new(KeySet {
            keys: keys
                .into_iter()
                .map(|k| KeyMsg {
                    kid: k.kid,
                    x: k.x,
                    created_ms: k.created_ms,
                })
                .collect(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_and_keyed_lower_case() {
        let (email, key) = parse_email("  Ann@Example.COM ", false).expect("ok");
        assert_eq!(
            (email.as_str(), key.as_str()),
            ("Ann@Example.COM", "ann@example.com")
        );
        for bad in ["", "a", "no-at-sign", "@x.org", "a@", "a b@x.org", "a@b@c"] {
            assert!(parse_email(bad, false).is_err(), "{bad:?}");
        }
        assert!(parse_email(&format!("{}@x.org", "a".repeat(260)), false).is_err());
    }

    #[test]
    fn refresh_secrets_are_stored_hashed() {
        let h = token_hash("secret");
        assert_eq!(h.len(), 64);
        assert_ne!(h, token_hash("secreT"));
    }
}
