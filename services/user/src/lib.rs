//! The user service: accounts, sessions and profiles over gRPC (the gateway is its REST face).
//!
//! - **Register**: email unique case-insensitively (a unique index on the lower-cased email,
//!   so two instances racing on one email cannot both win), password hashed with argon2id at
//!   the configured cost, salt from [`platform::ids`] (seeded in the simulation).
//! - **Login**: a short-lived access JWT (EdDSA, `kid` of the newest key of the shared key
//!   set, see [`keys`]) and an opaque refresh token. Failed attempts are counted per account
//!   and per client address in a window; past the limit, logins are refused with a retry
//!   hint before any password is checked. An unknown email costs the same hashing work as a
//!   wrong password, so timing does not tell which accounts exist.
//! - **Refresh** rotates: the presented token is spent and a new one issued in the same
//!   family; presenting a spent token again revokes the family (a copy was stolen).
//!   **Logout** revokes the family.
//! - **SigningKeys** publishes the public halves for verifiers; the gateway holds nothing
//!   else.

mod api;
pub mod keys;
pub mod password;
pub mod store;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use contracts::user::user_service_server::UserServiceServer;
use platform::{
    inbox::Effect,
    ports::{ConsumedRecord, Store, Tx},
    Infra, Mutants, Shutdown,
};

pub use password::PasswordCost;
pub use store::{User, UserAnswer, UserModel, UserQuery, UserSchema, UserWrite};

/// Login throttling: failures counted per account and per client address in a window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Throttle {
    pub window: Duration,
    /// Failed logins of one account per window before its logins are refused.
    pub account_failures_max: i64,
    /// Failed logins from one address per window before its logins are refused.
    pub address_failures_max: i64,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle {
            window: Duration::from_secs(15 * 60),
            account_failures_max: 5,
            address_failures_max: 50,
        }
    }
}

/// User service settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// gRPC listen address.
    pub listen: SocketAddr,
    /// Cost of new password hashes (`USER_ARGON2_MEMORY_KIB`, `USER_ARGON2_ITERATIONS`).
    pub password_cost: PasswordCost,
    /// Password hashes computed at once; further requests wait (each takes the cost's memory).
    pub hashing_max: usize,
    /// Life of an access token.
    pub access_ttl: Duration,
    /// Life of a refresh token.
    pub refresh_ttl: Duration,
    /// Age after which the signing key set gets a new key.
    pub rotate_after: Duration,
    pub throttle: Throttle,
    /// Deliberate faults for the simulation's checkers; default in production.
    pub mutants: Mutants,
    /// The consumer group of `moderation.results` (normally [`MODERATION_GROUP`]).
    pub moderation_group: String,
    /// Kafka `client.rack` of this instance.
    pub client_rack: Option<String>,
}

impl Config {
    /// Production defaults listening on `listen`.
    pub fn new(listen: SocketAddr) -> Self {
        Config {
            listen,
            password_cost: PasswordCost::PRODUCTION,
            hashing_max: 4,
            access_ttl: Duration::from_secs(15 * 60),
            refresh_ttl: Duration::from_secs(30 * 24 * 3600),
            rotate_after: Duration::from_secs(30 * 24 * 3600),
            throttle: Throttle::default(),
            mutants: Mutants::default(),
            moderation_group: MODERATION_GROUP.into(),
            client_rack: None,
        }
    }
}

/// How often expired refresh tokens and old failure windows are removed.
const PURGE_EVERY: Duration = Duration::from_secs(3600);

/// Wall-clock milliseconds (the simulation's clock under madsim).
pub(crate) fn now_ms() -> i64 {
    i64::try_from(platform::store::now_ms()).unwrap_or(i64::MAX)
}

/// Runs the user service until `shutdown`.
/// The consumer group of `moderation.results`.
pub const MODERATION_GROUP: &str = "user-moderation";

/// A BAN of a user blocks the account (its logins refused, its refresh tokens revoked), in
/// one transaction with the result's inbox mark.
fn moderation_effect(ignore_bans: bool) -> Effect<UserSchema> {
    Arc::new(
        move |record: ConsumedRecord, _store: Arc<dyn Store<UserSchema>>| {
            Box::pin(async move {
                let Some(result) =
                    moderation::ModerationResult::ban_of(&record, "USER", ignore_bans)?
                else {
                    return Ok(None);
                };
                Ok(Some(Tx::new().write(UserWrite::Block {
                    user_id: result.target_id,
                    reason: result.reason.chars().take(200).collect(),
                    at_ms: result.decided_ms,
                })))
            })
        },
    )
}

pub async fn run(
    config: Config,
    infra: Infra<UserSchema>,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let store = infra.store.clone();
    config
        .password_cost
        .validate()
        .map_err(|e| anyhow::anyhow!(e))?;
    anyhow::ensure!(config.hashing_max > 0, "hashing_max must be positive");
    let keys = Arc::new(keys::Keys::default());
    let api = api::UserApi::new(config.clone(), store.clone(), keys.clone())?;
    let loader = {
        let (store, shutdown, rotate) = (store.clone(), shutdown.clone(), config.rotate_after);
        tokio::spawn(async move { keys.keep_loaded(&*store, rotate, shutdown).await })
    };
    let purge = tokio::spawn(purge(store, shutdown.clone()));
    let moderation = infra.spawn_consumer(
        infra.consumer_settings(
            &config.moderation_group,
            config.client_rack.clone(),
            &[platform::topics::MODERATION_RESULTS],
        ),
        moderation_effect(infra.mutants.ban_not_enforced),
        shutdown.clone(),
    );
    tracing::info!(listen = %config.listen, "user service up");
    let tls = infra.tls.clone();
    platform::grpc::serve(
        tonic::transport::Server::builder()
            .layer(platform::grpc::ServerMetricsLayer::new(
                infra.metrics.clone(),
            ))
            .add_service(UserServiceServer::new(api)),
        config.listen,
        tls,
        shutdown.clone(),
    )
    .await?;
    let _ = loader.await;
    let _ = purge.await;
    let _ = moderation.await;
    Ok(())
}

/// Removes refresh tokens a day past their expiry and failure windows older than a day.
async fn purge(store: Arc<dyn Store<UserSchema>>, shutdown: Shutdown) {
    while !shutdown.is_requested() {
        tokio::select! {
            biased;
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep(PURGE_EVERY) => {}
        }
        let before_ms = now_ms() - 24 * 3600 * 1000;
        let tx = platform::ports::Tx::new().write(UserWrite::Purge { before_ms });
        if let Err(e) = store.commit(tx).await {
            tracing::warn!(error = %e, "purge of expired sessions failed; next round retries");
        }
    }
}
