//! The user service's typed store: accounts, the JWT signing key set, refresh tokens and
//! login-failure counters. SQL: `migrations/user/`; Postgres twin:
//! `adapters::postgres::schemas::user`.

use std::collections::BTreeMap;

use platform::ports::{Schema, StoreError, Versioned};
use serde::{Deserialize, Serialize};

/// Bounds the SQL table declares.
pub const EMAIL_CHARS: std::ops::RangeInclusive<usize> = 3..=254;
pub const DISPLAY_NAME_CHARS: std::ops::RangeInclusive<usize> = 1..=100;

/// An account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub user_id: String,
    /// The email as the user typed it (trimmed).
    pub email: String,
    /// The email compared for uniqueness: trimmed and lower-cased.
    pub email_key: String,
    pub display_name: String,
    /// The argon2id hash in PHC format (it names its own parameters and salt).
    pub password_hash: String,
    pub created_ms: i64,
}

/// A key of the signing key set: its id, its private seed (base64url) and when it was made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRow {
    pub kid: String,
    pub seed: String,
    pub created_ms: i64,
}

/// States of a refresh token.
pub const REFRESH_STATES: [&str; 3] = ["ACTIVE", "USED", "REVOKED"];

/// A refresh token, stored by the SHA-256 of its secret (the secret itself is never stored).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshToken {
    pub token_hash: String,
    pub user_id: String,
    /// The session the token belongs to: every token a refresh chain produced shares it.
    pub family_id: String,
    pub expires_ms: i64,
    /// ACTIVE (may be spent), USED (spent once), REVOKED (logged out or stolen).
    pub state: String,
}

/// Failed logins of one account or one client address in the current window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failures {
    /// `account` or `address`.
    pub scope: String,
    pub key: String,
    pub window_start_ms: i64,
    pub failures: i64,
}

/// A write of the user store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum UserWrite {
    /// A new account; conflicts (on `users/<email_key>`) when the id or the email key is taken.
    InsertUser(User),
    /// The account at `version` with `user`'s display name and password hash (the rest
    /// stays).
    UpdateUser { user: User, version: i64 },
    /// A new signing key; conflicts when the id is taken.
    InsertKey(KeyRow),
    /// A new ACTIVE refresh token; conflicts when its hash is taken.
    IssueRefresh(RefreshToken),
    /// The ACTIVE token at `version` becomes USED; conflicts otherwise (spent or revoked
    /// meanwhile).
    SpendRefresh { token_hash: String, version: i64 },
    /// Every ACTIVE token of the family becomes REVOKED.
    RevokeFamily { family_id: String },
    /// One more failure for `scope/key`; the count restarts when the window (`window_ms`
    /// from its start) has passed at `now_ms`.
    CountFailure {
        scope: String,
        key: String,
        now_ms: i64,
        window_ms: i64,
    },
    /// Forgets the failures of `scope/key`.
    ClearFailures { scope: String, key: String },
    /// Removes refresh tokens expired before `before_ms` and failure windows started before
    /// it.
    Purge { before_ms: i64 },
    /// The account is blocked by moderation (a second block keeps the first) and every
    /// ACTIVE refresh token of it becomes REVOKED.
    Block {
        user_id: String,
        reason: String,
        at_ms: i64,
    },
}

/// A read of the user store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum UserQuery {
    UserById {
        user_id: String,
    },
    UserByEmail {
        email_key: String,
    },
    /// Every signing key, newest first.
    Keys,
    Refresh {
        token_hash: String,
    },
    /// The failure rows of these `(scope, key)` pairs (missing ones are absent).
    Failures {
        keys: Vec<(String, String)>,
    },
    /// Whether moderation blocked `user_id`.
    Blocked {
        user_id: String,
    },
}

/// An account moderation blocked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blocked {
    pub user_id: String,
    pub reason: String,
    pub blocked_ms: i64,
}

/// An answer of the user store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum UserAnswer {
    User(Option<Versioned<User>>),
    Keys(Vec<KeyRow>),
    Refresh(Option<Versioned<RefreshToken>>),
    Failures(Vec<Failures>),
    Blocked(Option<Blocked>),
}

/// The user store's tables in memory.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserModel {
    pub users: BTreeMap<String, Versioned<User>>,
    /// The unique index on `email_key`.
    pub emails: BTreeMap<String, String>,
    pub keys: BTreeMap<String, KeyRow>,
    pub refresh: BTreeMap<String, Versioned<RefreshToken>>,
    pub failures: BTreeMap<(String, String), Failures>,
    /// Accounts moderation blocked.
    pub blocked: BTreeMap<String, Blocked>,
}

/// The user store's schema.
#[derive(Clone, Copy, Debug, Default)]
pub struct UserSchema;

fn fatal(what: &str) -> StoreError {
    StoreError::Fatal(format!("{what} breaks the user tables' constraints"))
}

fn check_user(u: &User) -> Result<(), StoreError> {
    let ok = (1..=64).contains(&u.user_id.chars().count())
        && EMAIL_CHARS.contains(&u.email.chars().count())
        && EMAIL_CHARS.contains(&u.email_key.chars().count())
        && DISPLAY_NAME_CHARS.contains(&u.display_name.chars().count())
        && !u.password_hash.is_empty();
    if ok {
        Ok(())
    } else {
        Err(fatal("an account"))
    }
}

impl Schema for UserSchema {
    type Write = UserWrite;
    type Query = UserQuery;
    type Answer = UserAnswer;
    type Model = UserModel;

    fn apply(m: &mut UserModel, write: UserWrite) -> Result<(), StoreError> {
        // In the order PostgreSQL checks: a row's CHECK constraints before its keys.
        match write {
            UserWrite::InsertUser(u) => {
                check_user(&u)?;
                if m.users.contains_key(&u.user_id) || m.emails.contains_key(&u.email_key) {
                    return Err(StoreError::conflict("users", &u.email_key));
                }
                m.emails.insert(u.email_key.clone(), u.user_id.clone());
                m.users.insert(
                    u.user_id.clone(),
                    Versioned {
                        version: 1,
                        value: u,
                    },
                );
            }
            UserWrite::UpdateUser { user, version } => {
                let current = m.users.get(&user.user_id);
                let Some(current) = current.filter(|c| c.version == version) else {
                    return Err(StoreError::conflict("users", &user.user_id));
                };
                // Only the display name and the password hash change.
                let value = User {
                    display_name: user.display_name,
                    password_hash: user.password_hash,
                    ..current.value.clone()
                };
                check_user(&value)?;
                m.users.insert(
                    value.user_id.clone(),
                    Versioned {
                        version: version + 1,
                        value,
                    },
                );
            }
            UserWrite::InsertKey(k) => {
                if !(1..=64).contains(&k.kid.chars().count()) || k.seed.is_empty() {
                    return Err(fatal("a signing key"));
                }
                if m.keys.contains_key(&k.kid) {
                    return Err(StoreError::conflict("signing_keys", &k.kid));
                }
                m.keys.insert(k.kid.clone(), k);
            }
            UserWrite::IssueRefresh(t) => {
                if !REFRESH_STATES.contains(&t.state.as_str()) || t.token_hash.is_empty() {
                    return Err(fatal("a refresh token"));
                }
                if m.refresh.contains_key(&t.token_hash) {
                    return Err(StoreError::conflict("refresh_tokens", &t.token_hash));
                }
                m.refresh.insert(
                    t.token_hash.clone(),
                    Versioned {
                        version: 1,
                        value: t,
                    },
                );
            }
            UserWrite::SpendRefresh {
                token_hash,
                version,
            } => match m.refresh.get_mut(&token_hash) {
                Some(t) if t.version == version && t.value.state == "ACTIVE" => {
                    t.value.state = "USED".into();
                    t.version += 1;
                }
                _ => return Err(StoreError::conflict("refresh_tokens", &token_hash)),
            },
            UserWrite::RevokeFamily { family_id } => {
                for t in m.refresh.values_mut() {
                    if t.value.family_id == family_id && t.value.state == "ACTIVE" {
                        t.value.state = "REVOKED".into();
                        t.version += 1;
                    }
                }
            }
            UserWrite::CountFailure {
                scope,
                key,
                now_ms,
                window_ms,
            } => {
                let row = m
                    .failures
                    .entry((scope.clone(), key.clone()))
                    .or_insert(Failures {
                        scope,
                        key,
                        window_start_ms: now_ms,
                        failures: 0,
                    });
                if row.failures > 0 && row.window_start_ms + window_ms <= now_ms {
                    row.window_start_ms = now_ms;
                    row.failures = 1;
                } else {
                    row.failures += 1;
                }
            }
            UserWrite::ClearFailures { scope, key } => {
                m.failures.remove(&(scope, key));
            }
            UserWrite::Purge { before_ms } => {
                m.refresh.retain(|_, t| t.value.expires_ms >= before_ms);
                m.failures.retain(|_, f| f.window_start_ms >= before_ms);
            }
            UserWrite::Block {
                user_id,
                reason,
                at_ms,
            } => {
                if !(1..=64).contains(&user_id.chars().count()) || reason.chars().count() > 200 {
                    return Err(fatal("a block"));
                }
                m.blocked.entry(user_id.clone()).or_insert(Blocked {
                    user_id: user_id.clone(),
                    reason,
                    blocked_ms: at_ms,
                });
                for t in m.refresh.values_mut() {
                    if t.value.user_id == user_id && t.value.state == "ACTIVE" {
                        t.value.state = "REVOKED".into();
                        t.version += 1;
                    }
                }
            }
        }
        Ok(())
    }

    fn query(m: &UserModel, query: &UserQuery) -> UserAnswer {
        match query {
            UserQuery::UserById { user_id } => UserAnswer::User(m.users.get(user_id).cloned()),
            UserQuery::UserByEmail { email_key } => UserAnswer::User(
                m.emails
                    .get(email_key)
                    .and_then(|id| m.users.get(id))
                    .cloned(),
            ),
            UserQuery::Keys => {
                let mut keys: Vec<KeyRow> = m.keys.values().cloned().collect();
                keys.sort_by(|a, b| (b.created_ms, &b.kid).cmp(&(a.created_ms, &a.kid)));
                UserAnswer::Keys(keys)
            }
            UserQuery::Refresh { token_hash } => {
                UserAnswer::Refresh(m.refresh.get(token_hash).cloned())
            }
            UserQuery::Failures { keys } => UserAnswer::Failures(
                keys.iter()
                    .filter_map(|k| m.failures.get(k).cloned())
                    .collect(),
            ),
            UserQuery::Blocked { user_id } => UserAnswer::Blocked(m.blocked.get(user_id).cloned()),
        }
    }
}
