//! `attune-operator`: the operator's process. Serves metrics, health and progress on every
//! replica; reconciles only while it holds the leader Lease.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use attune_operator::config::OperatorConfig;
use attune_operator::context::Context;
use attune_operator::http::{self, Readiness};
use attune_operator::leader::Election;
use attune_operator::telemetry::{self, LogFormat};
use attune_operator::token::TokenKey;
use attune_operator::{cache, finetunejob};
use clap::Parser;
use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use tokio::sync::watch;

/// The Attune operator.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The configuration file (YAML; see operator/README.md). Without it every default holds.
    #[arg(long, env = "ATTUNE_OPERATOR_CONFIG")]
    config: Option<PathBuf>,
    /// Log format: `json` in the cluster, `text` in a terminal.
    #[arg(long, env = "ATTUNE_LOG_FORMAT", value_enum, default_value = "json")]
    log_format: LogFormat,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    telemetry::init(args.log_format).context("installing the log subscriber")?;
    // Fails only when a provider is installed already, which is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = match &args.config {
        Some(path) => OperatorConfig::from_file(path)?,
        None => OperatorConfig::default(),
    };
    // In a pod: the ServiceAccount; elsewhere: KUBECONFIG or ~/.kube/config.
    let client = Client::try_default()
        .await
        .context("connecting to the Kubernetes API")?;
    let identity = std::env::var("POD_NAME")
        .ok()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| format!("attune-operator-{}", std::process::id()));
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        %identity,
        namespace = %config.namespace,
        "attune-operator starting"
    );

    let key = TokenKey::load_or_create(
        client.clone(),
        &config.namespace,
        &format!("{}-progress-key", config.instance),
    )
    .await
    .context("loading the progress-token key")?;
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "attune-operator".into(),
            instance: Some(identity.clone()),
        },
    );
    let (context, woken) = Context::new(client.clone(), config.clone(), recorder, key);
    let readiness = Arc::new(Readiness::default());

    let (stop, stopped) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        let _ = stop.send(true);
    });
    let until_stopped = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        }
    };

    // Bound before anything else runs, so a taken port fails the start, not a later request.
    let bind = |address| async move {
        tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("listening on {address}"))
    };
    let metrics_listener = bind(config.metrics.listen).await?;
    let progress_listener = bind(config.progress.listen).await?;
    tracing::info!(metrics = %config.metrics.listen, progress = %config.progress.listen, "listening");
    let metrics = tokio::spawn(http::serve(
        metrics_listener,
        http::metrics_router(Arc::clone(&context), Arc::clone(&readiness)),
        until_stopped(),
    ));
    let progress = tokio::spawn(http::serve(
        progress_listener,
        http::progress_router(Arc::clone(&context)),
        until_stopped(),
    ));

    let election = if config.leader_election.enabled {
        let mut election = Election::join(client, &config, &identity).await?;
        tracing::info!(lease = %config.leader_election.lease_name, "waiting to lead");
        tokio::select! {
            acquired = election.acquired() => acquired?,
            () = until_stopped() => {
                election.resign().await;
                return Ok(());
            }
        }
        tracing::info!("leading");
        Some(election)
    } else {
        None
    };

    readiness.set(true);
    let controllers = async {
        tokio::join!(
            finetunejob::run(Arc::clone(&context), woken, until_stopped()),
            cache::run(Arc::clone(&context), until_stopped()),
        );
    };
    let result = match election {
        Some(mut election) => {
            let outcome = tokio::select! {
                () = controllers => Ok(()),
                lost = election.lost() => Err(lost),
            };
            readiness.set(false);
            if outcome.is_ok() {
                election.resign().await;
            }
            outcome.map_err(anyhow::Error::from)
        }
        None => {
            controllers.await;
            Ok(())
        }
    };
    for server in [metrics, progress] {
        if let Ok(Err(error)) = server.await {
            tracing::error!(%error, "a server failed");
        }
    }
    result
}

/// SIGTERM (the kubelet) or Ctrl-C.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}
