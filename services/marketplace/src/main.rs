//! `marketplace serve <service…|all>` (the services of `wiring::SERVICES`) — wiring only:
//! settings, telemetry, adapters, then each service's entry point. `marketplace manifests
//! [--image IMAGE]` prints the Kubernetes manifests of every service (`deploy.rs`).

use futures::{stream::FuturesUnordered, StreamExt};
use platform::Shutdown;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("manifests") {
        let image = match args.get(1..) {
            Some([flag, image]) if flag == "--image" => image.clone(),
            Some([]) | None => marketplace::deploy::default_image(),
            _ => anyhow::bail!("usage: marketplace manifests [--image IMAGE]"),
        };
        print!("{}", marketplace::deploy::manifests(&image));
        return Ok(());
    }
    let services = match args.split_first() {
        Some((cmd, names)) if cmd == "serve" && !names.is_empty() => {
            if names.iter().any(|n| n == "all") {
                marketplace::Service::all()
            } else {
                names
                    .iter()
                    .map(|n| n.parse())
                    .collect::<anyhow::Result<Vec<_>>>()?
            }
        }
        _ => anyhow::bail!(
            "usage: marketplace serve <{}|all> [more services] | marketplace manifests [--image IMAGE]",
            wiring::names().join("|")
        ),
    };
    let settings = marketplace::Settings::from_env()?;
    let (trigger, shutdown) = Shutdown::new();
    if let Some(exporter) = settings.traces.clone() {
        let name = settings.trace_service_name.clone().unwrap_or_else(|| {
            let names: Vec<&str> = services.iter().map(|s| s.0.name).collect();
            names.join("+")
        });
        platform::trace::export::install(exporter, &name, shutdown.clone());
    }
    // The admin listener answers from the start: "not ready" while the services start.
    let readiness = std::sync::Arc::new(marketplace::admin::Readiness::new(&services, &settings)?);
    let metrics = marketplace::admin::Metrics::new();
    if let Some(addr) = settings.admin_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("ADMIN_LISTEN {addr}: {e}"))?;
        tokio::spawn(platform::http::serve(
            listener,
            marketplace::admin::router(readiness.clone(), metrics.clone()),
            shutdown.clone(),
        ));
    }
    let tasks = marketplace::start(&services, &settings, shutdown, &metrics).await?;
    readiness.started();
    let gateway = settings.listen("gateway").map(|a| format!("http://{a}"));
    tracing::info!(
        gateway = gateway.unwrap_or_default(),
        "marketplace running; Ctrl-C or SIGTERM stops it"
    );
    let mut running: FuturesUnordered<_> = tasks
        .into_iter()
        .map(|(service, task)| async move { (service, task.await) })
        .collect();
    // The process lives as long as every service it runs: a service that ends on its own
    // (an error, a panic) ends the process with a failure, so a supervisor restarts it.
    let ended_alone = tokio::select! {
        biased;
        _ = stop_signal() => {
            tracing::info!("shutting down");
            None
        }
        Some((service, result)) = running.next() => Some((service, result)),
    };
    trigger.trigger();
    let mut failed = false;
    if let Some((service, result)) = ended_alone {
        log_end(service, result);
        failed = true;
    }
    while let Some((service, result)) = running.next().await {
        if let Ok(Err(_)) | Err(_) = &result {
            failed = true;
        }
        log_end(service, result);
    }
    if failed {
        anyhow::bail!("a service ended with an error");
    }
    Ok(())
}

/// Ctrl-C or (on Unix) SIGTERM, as an orchestrator sends before killing.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    biased;
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn log_end(
    service: marketplace::Service,
    result: Result<anyhow::Result<()>, tokio::task::JoinError>,
) {
    match result {
        Ok(Ok(())) => tracing::info!(service = service.0.name, "service stopped"),
        Ok(Err(e)) => tracing::error!(
            ?service,
            error = format!("{e:#}"),
            "service ended with an error"
        ),
        Err(e) => tracing::error!(service = service.0.name, error = %e, "service task failed"),
    }
}
