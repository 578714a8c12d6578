//! The user service's tables (`user::store`).

use async_trait::async_trait;
use platform::ports::{StoreError, Versioned};
use sqlx::{migrate::Migrator, postgres::PgRow, PgConnection, Row};
use user::{
    store::{Failures, KeyRow, RefreshToken},
    User, UserAnswer, UserQuery, UserSchema, UserWrite,
};

use super::one_row;
use crate::postgres::{store_error, PgSchema};

static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/user");

fn user(row: &PgRow) -> Result<Versioned<User>, sqlx::Error> {
    Ok(Versioned {
        version: row.try_get("version")?,
        value: User {
            user_id: row.try_get("user_id")?,
            email: row.try_get("email")?,
            email_key: row.try_get("email_key")?,
            display_name: row.try_get("display_name")?,
            password_hash: row.try_get("password_hash")?,
            created_ms: row.try_get("created_ms")?,
        },
    })
}

fn refresh(row: &PgRow) -> Result<Versioned<RefreshToken>, sqlx::Error> {
    Ok(Versioned {
        version: row.try_get("version")?,
        value: RefreshToken {
            token_hash: row.try_get("token_hash")?,
            user_id: row.try_get("user_id")?,
            family_id: row.try_get("family_id")?,
            expires_ms: row.try_get("expires_ms")?,
            state: row.try_get("state")?,
        },
    })
}

const USER_COLUMNS: &str =
    "user_id, email, email_key, display_name, password_hash, created_ms, version";

#[async_trait]
impl PgSchema for UserSchema {
    fn migrator() -> &'static Migrator {
        &MIGRATOR
    }

    async fn write(db: &mut PgConnection, write: &UserWrite) -> Result<(), StoreError> {
        let fail = |what: &'static str| move |e| store_error(what, e);
        match write {
            UserWrite::InsertUser(u) => {
                let rows = sqlx::query(
                    "INSERT INTO users (user_id, email, email_key, display_name, password_hash, \
                     created_ms, version) VALUES ($1, $2, $3, $4, $5, $6, 1) ON CONFLICT DO NOTHING",
                )
                .bind(&u.user_id)
                .bind(&u.email)
                .bind(&u.email_key)
                .bind(&u.display_name)
                .bind(&u.password_hash)
                .bind(u.created_ms)
                .execute(&mut *db)
                .await
                .map_err(fail("insert user"))?;
                one_row(rows.rows_affected(), "users", &u.email_key)
            }
            UserWrite::UpdateUser { user: u, version } => {
                let rows = sqlx::query(
                    "UPDATE users SET display_name = $2, password_hash = $3, version = version + 1 \
                     WHERE user_id = $1 AND version = $4",
                )
                .bind(&u.user_id)
                .bind(&u.display_name)
                .bind(&u.password_hash)
                .bind(version)
                .execute(&mut *db)
                .await
                .map_err(fail("update user"))?;
                one_row(rows.rows_affected(), "users", &u.user_id)
            }
            UserWrite::InsertKey(k) => {
                let rows = sqlx::query(
                    "INSERT INTO signing_keys (kid, seed, created_ms) VALUES ($1, $2, $3) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(&k.kid)
                .bind(&k.seed)
                .bind(k.created_ms)
                .execute(&mut *db)
                .await
                .map_err(fail("insert signing key"))?;
                one_row(rows.rows_affected(), "signing_keys", &k.kid)
            }
            UserWrite::IssueRefresh(t) => {
                let rows = sqlx::query(
                    "INSERT INTO refresh_tokens (token_hash, user_id, family_id, expires_ms, state, \
                     version) VALUES ($1, $2, $3, $4, $5, 1) ON CONFLICT DO NOTHING",
                )
                .bind(&t.token_hash)
                .bind(&t.user_id)
                .bind(&t.family_id)
                .bind(t.expires_ms)
                .bind(&t.state)
                .execute(&mut *db)
                .await
                .map_err(fail("issue refresh token"))?;
                one_row(rows.rows_affected(), "refresh_tokens", &t.token_hash)
            }
            UserWrite::SpendRefresh {
                token_hash,
                version,
            } => {
                let rows = sqlx::query(
                    "UPDATE refresh_tokens SET state = 'USED', version = version + 1 \
                     WHERE token_hash = $1 AND version = $2 AND state = 'ACTIVE'",
                )
                .bind(token_hash)
                .bind(version)
                .execute(&mut *db)
                .await
                .map_err(fail("spend refresh token"))?;
                one_row(rows.rows_affected(), "refresh_tokens", token_hash)
            }
            UserWrite::Block {
                user_id,
                reason,
                at_ms,
            } => {
                sqlx::query(
                    "INSERT INTO blocked_users (user_id, reason, blocked_ms) VALUES ($1, $2, $3) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(user_id)
                .bind(reason)
                .bind(at_ms)
                .execute(&mut *db)
                .await
                .map_err(fail("block account"))?;
                sqlx::query(
                    "UPDATE refresh_tokens SET state = 'REVOKED', version = version + 1 \
                     WHERE user_id = $1 AND state = 'ACTIVE'",
                )
                .bind(user_id)
                .execute(&mut *db)
                .await
                .map_err(fail("revoke refresh tokens"))?;
                Ok(())
            }
            UserWrite::RevokeFamily { family_id } => {
                sqlx::query(
                    "UPDATE refresh_tokens SET state = 'REVOKED', version = version + 1 \
                     WHERE family_id = $1 AND state = 'ACTIVE'",
                )
                .bind(family_id)
                .execute(&mut *db)
                .await
                .map_err(fail("revoke refresh tokens"))?;
                Ok(())
            }
            UserWrite::CountFailure {
                scope,
                key,
                now_ms,
                window_ms,
            } => {
                // SET sees the old row, so both CASEs test the same window.
                sqlx::query(
                    "INSERT INTO login_failures (scope, key, window_start_ms, failures) \
                     VALUES ($1, $2, $3, 1) ON CONFLICT (scope, key) DO UPDATE SET \
                     failures = CASE WHEN login_failures.window_start_ms + $4 <= $3 THEN 1 \
                                     ELSE login_failures.failures + 1 END, \
                     window_start_ms = CASE WHEN login_failures.window_start_ms + $4 <= $3 THEN $3 \
                                     ELSE login_failures.window_start_ms END",
                )
                .bind(scope)
                .bind(key)
                .bind(now_ms)
                .bind(window_ms)
                .execute(&mut *db)
                .await
                .map_err(fail("count login failure"))?;
                Ok(())
            }
            UserWrite::ClearFailures { scope, key } => {
                sqlx::query("DELETE FROM login_failures WHERE scope = $1 AND key = $2")
                    .bind(scope)
                    .bind(key)
                    .execute(&mut *db)
                    .await
                    .map_err(fail("clear login failures"))?;
                Ok(())
            }
            UserWrite::Purge { before_ms } => {
                sqlx::query("DELETE FROM refresh_tokens WHERE expires_ms < $1")
                    .bind(before_ms)
                    .execute(&mut *db)
                    .await
                    .map_err(fail("purge refresh tokens"))?;
                sqlx::query("DELETE FROM login_failures WHERE window_start_ms < $1")
                    .bind(before_ms)
                    .execute(&mut *db)
                    .await
                    .map_err(fail("purge login failures"))?;
                Ok(())
            }
        }
    }

    async fn query(db: &mut PgConnection, query: &UserQuery) -> Result<UserAnswer, StoreError> {
        let decode = |what| move |e| store_error(what, e);
        match query {
            UserQuery::UserById { user_id } => {
                let row = sqlx::query(&format!(
                    "SELECT {USER_COLUMNS} FROM users WHERE user_id = $1"
                ))
                .bind(user_id)
                .fetch_optional(&mut *db)
                .await
                .map_err(decode("read user"))?;
                Ok(UserAnswer::User(
                    row.as_ref()
                        .map(user)
                        .transpose()
                        .map_err(decode("decode user"))?,
                ))
            }
            UserQuery::UserByEmail { email_key } => {
                let row = sqlx::query(&format!(
                    "SELECT {USER_COLUMNS} FROM users WHERE email_key = $1"
                ))
                .bind(email_key)
                .fetch_optional(&mut *db)
                .await
                .map_err(decode("read user by email"))?;
                Ok(UserAnswer::User(
                    row.as_ref()
                        .map(user)
                        .transpose()
                        .map_err(decode("decode user"))?,
                ))
            }
            UserQuery::Keys => {
                let rows: Vec<(String, String, i64)> = sqlx::query_as(
                    "SELECT kid, seed, created_ms FROM signing_keys ORDER BY created_ms DESC, kid DESC",
                )
                .fetch_all(&mut *db)
                .await
                .map_err(decode("read signing keys"))?;
                Ok(UserAnswer::Keys(
                    rows.into_iter()
                        .map(|(kid, seed, created_ms)| KeyRow {
                            kid,
                            seed,
                            created_ms,
                        })
                        .collect(),
                ))
            }
            UserQuery::Refresh { token_hash } => {
                let row = sqlx::query(
                    "SELECT token_hash, user_id, family_id, expires_ms, state, version \
                     FROM refresh_tokens WHERE token_hash = $1",
                )
                .bind(token_hash)
                .fetch_optional(&mut *db)
                .await
                .map_err(decode("read refresh token"))?;
                Ok(UserAnswer::Refresh(
                    row.as_ref()
                        .map(refresh)
                        .transpose()
                        .map_err(decode("decode refresh token"))?,
                ))
            }
            UserQuery::Failures { keys } => {
                // One lookup per pair, so the answer keeps the request's order.
                let mut out = Vec::new();
                for (scope, key) in keys {
                    let row: Option<(i64, i64)> = sqlx::query_as(
                        "SELECT window_start_ms, failures FROM login_failures \
                         WHERE scope = $1 AND key = $2",
                    )
                    .bind(scope)
                    .bind(key)
                    .fetch_optional(&mut *db)
                    .await
                    .map_err(decode("read login failures"))?;
                    if let Some((window_start_ms, failures)) = row {
                        out.push(Failures {
                            scope: scope.clone(),
                            key: key.clone(),
                            window_start_ms,
                            failures,
                        });
                    }
                }
                Ok(UserAnswer::Failures(out))
            }
            UserQuery::Blocked { user_id } => {
                let row: Option<(String, i64)> = sqlx::query_as(
                    "SELECT reason, blocked_ms FROM blocked_users WHERE user_id = $1",
                )
                .bind(user_id)
                .fetch_optional(&mut *db)
                .await
                .map_err(decode("read blocked account"))?;
                Ok(UserAnswer::Blocked(row.map(|(reason, blocked_ms)| {
                    user::store::Blocked {
                        user_id: user_id.clone(),
                        reason,
                        blocked_ms,
                    }
                })))
            }
        }
    }
}
