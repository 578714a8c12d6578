//! The object store conformance suite (`conformance::objects`) against the real S3-compatible
//! server of `ci/infra` (s3s-fs at `S3_ENDPOINT`, which checks signatures) and against the
//! simulation's model (`fakes::s3`, served here on real sockets).

use media::ObjectStoreConfig;

/// The settings of `ci/infra/s3.sh`'s server.
fn real() -> ObjectStoreConfig {
    let fake = fakes::s3::S3Config::default();
    let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    ObjectStoreConfig {
        endpoint: std::env::var("S3_ENDPOINT")
            .expect("S3_ENDPOINT (run `eval \"$(ci/infra/up.sh)\"`)"),
        bucket: var("S3_BUCKET", &fake.buckets[0]),
        region: var("S3_REGION", &fake.region),
        access_key: var("S3_ACCESS_KEY_ID", &fake.access_key),
        secret_key: var("S3_SECRET_ACCESS_KEY", &fake.secret_key),
    }
}

/// A prefix no other run uses.
fn prefix(name: &str) -> String {
    #[allow(clippy::disallowed_methods)]
    let run = uuid::Uuid::new_v4().simple().to_string();
    format!("conformance/{name}-{}", &run[..12])
}

#[tokio::test]
async fn a_real_s3_server_conforms() {
    conformance::objects::all(&real(), &prefix("real")).await;
}

#[tokio::test]
async fn the_simulations_model_conforms() {
    let fake = fakes::s3::S3Config::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (_trigger, shutdown) = platform::Shutdown::new();
    tokio::spawn(fakes::s3::run(
        listener,
        fake.clone(),
        Default::default(),
        shutdown,
    ));
    let config = ObjectStoreConfig {
        endpoint: format!("http://{addr}"),
        bucket: fake.buckets[0].clone(),
        region: fake.region.clone(),
        access_key: fake.access_key.clone(),
        secret_key: fake.secret_key.clone(),
    };
    conformance::objects::all(&config, &prefix("model")).await;
}
