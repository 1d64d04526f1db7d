//! The operator's two HTTP servers: metrics and health probes (`metrics.listen`), and the
//! progress endpoint trainer pods POST their events to (`progress.listen`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;

use crate::context::{Context, GuardedJob};
use crate::progress::{Event, JobKey};

/// Whether this replica leads and its controllers run: `/readyz` answers 200 only then, so the
/// progress Service sends reports to the replica that writes status.
#[derive(Debug, Default)]
pub struct Readiness(AtomicBool);

impl Readiness {
    /// Marks the replica ready or not.
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::SeqCst);
    }

    fn get(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// `/metrics`, `/healthz`, `/readyz`.
pub fn metrics_router(context: Arc<Context>, readiness: Arc<Readiness>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(
                |State((context, _)): State<(Arc<Context>, Arc<Readiness>)>| async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        context.metrics.encode(),
                    )
                },
            ),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(
                |State((_, readiness)): State<(Arc<Context>, Arc<Readiness>)>| async move {
                    if readiness.get() {
                        (StatusCode::OK, "ready")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "not leading")
                    }
                },
            ),
        )
        .with_state((context, readiness))
}

/// The path a job's trainer POSTs to, below `progress.url`.
pub fn progress_path(namespace: &str, name: &str) -> String {
    format!("/v1/namespaces/{namespace}/finetunejobs/{name}/progress")
}

/// `POST /v1/namespaces/{namespace}/finetunejobs/{name}/progress`.
pub fn progress_router(context: Arc<Context>) -> Router {
    Router::new()
        .route(
            "/v1/namespaces/{namespace}/finetunejobs/{name}/progress",
            post(report),
        )
        .with_state(context)
}

/// Accepts one event for the job named in the path, if the bearer token is that job's.
async fn report(
    State(context): State<Arc<Context>>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: String,
) -> impl IntoResponse {
    let refuse = |status: StatusCode, result: &'static str, message: String| {
        context.metrics.progress_report(result);
        tracing::warn!(%namespace, job = %name, result, "progress report refused: {message}");
        (status, message)
    };
    let Some(jobs) = context.watches.get().map(|w| &w.jobs) else {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_leading",
            "this replica does not lead; retry".into(),
        );
    };
    let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "no_token",
            "a bearer token is required".into(),
        );
    };
    let reference = ObjectRef::<GuardedJob>::new(&name).within(&namespace);
    let Some(uid) = jobs.get(&reference).and_then(|job| job.uid()) else {
        return refuse(
            StatusCode::NOT_FOUND,
            "unknown_job",
            format!("no FineTuneJob {namespace}/{name}"),
        );
    };
    if !context.key.verify(&namespace, &name, &uid, token) {
        return refuse(
            StatusCode::FORBIDDEN,
            "wrong_token",
            format!("the token is not the one of FineTuneJob {namespace}/{name}"),
        );
    }
    let event: Event = match serde_json::from_str(&body) {
        Ok(event) => event,
        Err(error) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "bad_event",
                format!("not a progress event: {error}"),
            );
        }
    };
    context.live.apply(
        JobKey {
            namespace,
            name,
            uid,
        },
        &event,
        jiff::Timestamp::now(),
    );
    context.metrics.progress_report("accepted");
    // The controller coalesces wake-ups of one job; a closed channel means shutdown.
    let _ = context.wake.send(reference);
    (StatusCode::NO_CONTENT, String::new())
}

/// Serves `router` on `listener` until `shutdown` resolves.
///
/// # Errors
/// Accepting connections failed.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
