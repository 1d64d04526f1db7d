//! Optional delivery of progress events to an HTTP endpoint (the operator's): every event is
//! POSTed as the same JSON object as its stdout line. The training thread only puts the line in
//! a bounded queue; a worker thread does the HTTP, retrying with capped exponential backoff, so a
//! slow or dead endpoint costs the run nothing but the reports. The semantics (queue, drops,
//! retries, the shutdown wait) are documented in trainer/README.md, "Progress URL".

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use ureq::http::Uri;

use super::progress::Event;
use crate::error::{Error, Result};

/// The least time between two warnings of the same kind: an unreachable endpoint would
/// otherwise log once per event.
const WARN_EVERY: Duration = Duration::from_secs(30);

/// Where the bearer token comes from.
#[derive(Clone)]
pub enum Token {
    /// A fixed value.
    Value(String),
    /// A file, read again before every request: the kubelet rotates projected service-account
    /// tokens while a long run goes on, and a token read once would expire.
    File(PathBuf),
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Value(_) => f.write_str("Token::Value(<redacted>)"),
            Self::File(p) => f.debug_tuple("Token::File").field(p).finish(),
        }
    }
}

impl Token {
    /// The `Authorization` header value. Errors never contain the token.
    fn bearer(&self) -> Result<String, String> {
        let token = match self {
            Self::Value(t) => t.trim().to_string(),
            Self::File(p) => std::fs::read_to_string(p)
                .map_err(|e| format!("progress token file {}: {e}", p.display()))?
                .trim()
                .to_string(),
        };
        // Bearer tokens (JWTs included) are visible ASCII; anything else would be rejected by
        // the HTTP layer on every request, so it is refused at start.
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(match self {
                Self::Value(_) => "progress token is empty or not printable ASCII".to_string(),
                Self::File(p) => format!(
                    "progress token file {}: empty or not printable ASCII",
                    p.display()
                ),
            });
        }
        Ok(format!("Bearer {token}"))
    }
}

/// How to reach the endpoint and how hard to try.
#[derive(Debug, Clone)]
pub struct ReportConfig {
    url: Uri,
    /// Sent as `Authorization: Bearer <token>` when set.
    pub token: Option<Token>,
    /// Events waiting for the worker at most; past it, the oldest `step` event is dropped.
    pub queue_capacity: usize,
    /// Tries per event, the first included.
    pub max_attempts: u32,
    /// Wait before the first retry; doubled after each, up to `max_backoff`.
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// Bound on one request, connecting included.
    pub request_timeout: Duration,
    /// How long [`Reporter::finish`] waits for the queue to drain.
    pub shutdown_timeout: Duration,
}

impl ReportConfig {
    /// The defaults for `url`, which must be `http://HOST[:PORT][/PATH]`: the operator serves
    /// plain HTTP inside the cluster, and the trainer carries no TLS stack.
    pub fn new(url: &str, token: Option<Token>) -> Result<Self> {
        let bad = |why: &str| Error::Config(format!("progress URL {url:?}: {why}"));
        let uri: Uri = url.parse().map_err(|e| bad(&format!("{e}")))?;
        if uri.scheme_str() != Some("http") || uri.host().is_none_or(str::is_empty) {
            return Err(bad(
                "must be http://HOST[:PORT][/PATH] (https is not supported)",
            ));
        }
        Ok(Self {
            url: uri,
            token,
            queue_capacity: 256,
            max_attempts: 5,
            first_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(5),
        })
    }
}

/// What became of the events handed to a [`Reporter`], as of [`Reporter::finish`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Answered with a 2xx.
    pub delivered: u64,
    /// Dropped unsent because the queue was full.
    pub dropped: u64,
    /// Refused with a 4xx other than 429, or still failing after the last attempt.
    pub failed: u64,
    /// Still queued or in flight when the shutdown wait ran out.
    pub abandoned: u64,
}

/// Which event to sacrifice first when the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Frequent, and each one supersedes the previous.
    Step,
    /// `start`, `eval`, `checkpoint`: rare and not repeated.
    Other,
    /// The outcome of the run: never dropped.
    Done,
}

impl Kind {
    fn of(event: &Event) -> Self {
        match event {
            Event::Step { .. } => Self::Step,
            Event::Done { .. } => Self::Done,
            _ => Self::Other,
        }
    }
}

#[derive(Debug)]
struct Queued {
    kind: Kind,
    body: String,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Queued>,
    /// The worker is sending an event it has taken off the queue.
    in_flight: bool,
    /// Set by `finish`: when the worker must stop, delivered or not.
    deadline: Option<Instant>,
    summary: Summary,
}

impl State {
    fn past_deadline(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    /// The state, even after a panic elsewhere: it holds plain counters and strings that are
    /// never left half-updated.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Rate-limits a repeated warning.
#[derive(Debug, Default)]
struct Throttle {
    last: Option<Instant>,
}

impl Throttle {
    fn ready(&mut self) -> bool {
        let now = Instant::now();
        if self.last.is_some_and(|t| now - t < WARN_EVERY) {
            return false;
        }
        self.last = Some(now);
        true
    }
}

/// POSTs progress events from a background thread; see the module doc.
#[derive(Debug)]
pub struct Reporter {
    shared: Arc<Shared>,
    capacity: usize,
    shutdown_timeout: Duration,
    /// Disconnected when the worker returns (it holds the only sender), so `finish` can wait
    /// for it with a bound, which `JoinHandle::join` cannot. `None` once finished.
    worker_gone: Option<mpsc::Receiver<()>>,
    drop_warning: Throttle,
}

impl Reporter {
    /// Checks the token (a token file must be readable now) and starts the worker thread.
    pub fn start(config: ReportConfig) -> Result<Self> {
        if let Some(token) = &config.token {
            token.bearer().map_err(Error::Config)?;
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            // Statuses are classified by `Worker::deliver`, not turned into errors.
            .http_status_as_error(false)
            // The endpoint is the operator's own; a redirect would be a misconfiguration.
            .max_redirects(0)
            .timeout_global(Some(config.request_timeout))
            .user_agent(concat!("attune-trainer/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let shared = Arc::new(Shared::default());
        let (gone_tx, gone_rx) = mpsc::channel();
        let worker = Worker {
            shared: Arc::clone(&shared),
            agent,
            failure_warning: Throttle::default(),
            config: config.clone(),
        };
        std::thread::spawn(move || {
            let _gone = gone_tx;
            worker.run();
        });
        Ok(Self {
            shared,
            capacity: config.queue_capacity.max(1),
            shutdown_timeout: config.shutdown_timeout,
            worker_gone: Some(gone_rx),
            drop_warning: Throttle::default(),
        })
    }

    /// Queues `line` (the serialised `event`) for delivery; never waits for the network.
    pub(crate) fn send(&mut self, event: &Event, line: String) {
        let kind = Kind::of(event);
        let dropped = {
            let mut st = self.shared.lock();
            if st.queue.len() < self.capacity {
                st.queue.push_back(Queued { kind, body: line });
                None
            } else {
                let victim = st
                    .queue
                    .iter()
                    .position(|q| q.kind == Kind::Step)
                    .or_else(|| {
                        (kind != Kind::Step)
                            .then(|| st.queue.iter().position(|q| q.kind != Kind::Done))
                            .flatten()
                    });
                let dropped_one = match victim {
                    Some(i) => {
                        st.queue.remove(i);
                        st.queue.push_back(Queued { kind, body: line });
                        true
                    }
                    // Only `done` may exceed the capacity, by the one event it is.
                    None if kind == Kind::Done => {
                        st.queue.push_back(Queued { kind, body: line });
                        false
                    }
                    // Nothing queued is worth less than the incoming event: drop that.
                    None => true,
                };
                dropped_one.then(|| {
                    st.summary.dropped += 1;
                    st.summary.dropped
                })
            }
        };
        self.shared.wake.notify_one();
        if let Some(total) = dropped
            && self.drop_warning.ready()
        {
            tracing::warn!(
                dropped = total,
                "progress endpoint is behind; dropping queued progress events"
            );
        }
    }

    /// Waits up to the shutdown timeout for the queued events, `done` last among them, to be
    /// delivered in order, then gives up on the rest: a dead endpoint delays the end of the run
    /// by that bound at most.
    pub fn finish(mut self) -> Summary {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Summary {
        let Some(gone) = self.worker_gone.take() else {
            return self.shared.lock().summary;
        };
        self.shared.lock().deadline = Some(Instant::now() + self.shutdown_timeout);
        self.shared.wake.notify_one();
        // Err(Disconnected): the worker returned; Err(Timeout): it is still busy and is left
        // behind, to stop at its deadline or with the process.
        let _ = gone.recv_timeout(self.shutdown_timeout);
        let summary = {
            let mut st = self.shared.lock();
            st.summary.abandoned += st.queue.len() as u64 + u64::from(st.in_flight);
            st.queue.clear();
            st.in_flight = false;
            st.summary
        };
        if summary.dropped + summary.failed + summary.abandoned > 0 {
            tracing::warn!(
                delivered = summary.delivered,
                dropped = summary.dropped,
                failed = summary.failed,
                abandoned = summary.abandoned,
                "some progress events did not reach the progress URL"
            );
        } else {
            tracing::debug!(
                delivered = summary.delivered,
                "all progress events delivered"
            );
        }
        summary
    }
}

impl Drop for Reporter {
    /// A run that ends by an error still gets its queued events a bounded chance.
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// What became of one event.
enum Outcome {
    Delivered,
    Failed,
    Abandoned,
}

/// The background thread's side.
struct Worker {
    shared: Arc<Shared>,
    agent: ureq::Agent,
    config: ReportConfig,
    failure_warning: Throttle,
}

impl Worker {
    fn run(mut self) {
        loop {
            let body = {
                let mut st = self.shared.lock();
                loop {
                    if st.past_deadline() {
                        return;
                    }
                    if let Some(q) = st.queue.pop_front() {
                        st.in_flight = true;
                        break q.body;
                    }
                    if st.deadline.is_some() {
                        return;
                    }
                    st = self
                        .shared
                        .wake
                        .wait(st)
                        .unwrap_or_else(PoisonError::into_inner);
                }
            };
            let outcome = self.deliver(&body);
            let mut st = self.shared.lock();
            st.in_flight = false;
            match outcome {
                Outcome::Delivered => st.summary.delivered += 1,
                Outcome::Failed => st.summary.failed += 1,
                Outcome::Abandoned => st.summary.abandoned += 1,
            }
        }
    }

    /// POSTs `body`, retrying connection errors, timeouts, 429 and 5xx with capped exponential
    /// backoff; other statuses are final.
    fn deliver(&mut self, body: &str) -> Outcome {
        let mut backoff = self.config.first_backoff;
        for attempt in 1..=self.config.max_attempts {
            let error = match self.post(body) {
                Ok(resp) if resp.status().is_success() => return Outcome::Delivered,
                Ok(resp) if resp.status().as_u16() == 429 || resp.status().is_server_error() => {
                    format!("HTTP {}", resp.status())
                }
                Ok(mut resp) => {
                    let reply = resp
                        .body_mut()
                        .with_config()
                        .limit(512)
                        .read_to_string()
                        .unwrap_or_default();
                    if self.failure_warning.ready() {
                        tracing::warn!(
                            status = %resp.status(),
                            reply = reply.trim(),
                            "progress endpoint refused an event; not retrying"
                        );
                    }
                    return Outcome::Failed;
                }
                Err(e) => e,
            };
            if attempt == self.config.max_attempts {
                if self.failure_warning.ready() {
                    tracing::warn!(
                        error,
                        attempts = attempt,
                        "cannot deliver a progress event; giving up on it"
                    );
                }
                return Outcome::Failed;
            }
            let deadline = self.shared.lock().deadline;
            if deadline.is_some_and(|d| Instant::now() + backoff >= d) {
                return Outcome::Abandoned;
            }
            tracing::debug!(error, attempt, "progress POST failed; retrying");
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(self.config.max_backoff);
        }
        Outcome::Failed
    }

    fn post(&self, body: &str) -> Result<ureq::http::Response<ureq::Body>, String> {
        let mut req = self
            .agent
            .post(self.config.url.clone())
            .header("Content-Type", "application/json");
        if let Some(token) = &self.config.token {
            req = req.header("Authorization", token.bearer()?);
        }
        req.send(body).map_err(|e| e.to_string())
    }
}
