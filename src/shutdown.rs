//! Graceful shutdown: the server stops accepting connections on SIGINT or SIGTERM and
//! lets requests in flight finish (each is bounded by the request timeout); the job workers
//! stop taking jobs and let running ones finish.

use tokio_util::sync::CancellationToken;

/// A token cancelled on the first SIGINT or SIGTERM, shared by the HTTP server and the
/// job workers so both stop together.
pub fn on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        signal().await;
        cancel.cancel();
    });
    token
}

/// Resolves on the first SIGINT (Ctrl-C) or SIGTERM (`docker stop`).
pub async fn signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received; finishing requests in flight");
}
