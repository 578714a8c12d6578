//! `marketplace serve <gateway|order|payment|delivery|psp|courier|analytics|all>` — wiring only:
//! settings, telemetry, adapters, then each service's entry point.

use platform::Shutdown;

const USAGE: &str =
    "usage: marketplace serve <gateway|order|payment|delivery|psp|courier|analytics|all> [more services]";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let services = match args.split_first() {
        Some((cmd, names)) if cmd == "serve" && !names.is_empty() => {
            if names.iter().any(|n| n == "all") {
                marketplace::Service::ALL.to_vec()
            } else {
                names
                    .iter()
                    .map(|n| n.parse())
                    .collect::<anyhow::Result<Vec<_>>>()?
            }
        }
        _ => anyhow::bail!(USAGE),
    };
    let settings = marketplace::Settings::from_env()?;
    let (trigger, shutdown) = Shutdown::new();
    let tasks = marketplace::start(&services, &settings, shutdown).await?;
    tracing::info!(gateway = %format!("http://{}", settings.gateway_listen), "marketplace running; Ctrl-C stops it");
    tokio::signal::ctrl_c().await?;
    tracing::info!("shutting down");
    trigger.trigger();
    for t in tasks {
        if let Ok(Err(e)) = t.await {
            tracing::error!(error = format!("{e:#}"), "service ended with an error");
        }
    }
    Ok(())
}
