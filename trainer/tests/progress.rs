//! The progress URL client against a tiny HTTP server on 127.0.0.1: events arrive in order as
//! the stdout lines with the bearer token, 503 is retried, 401 is not, a hung endpoint blocks
//! neither `emit` nor (beyond its bound) `finish`, and the binary reports a whole run.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use attune_trainer::Error;
use attune_trainer::train::report::Summary;
use attune_trainer::train::{EvalMetrics, Event, Progress, ReportConfig, Reporter, Token};

use crate::common::workspace;

/// One request as the server read it.
#[derive(Debug, Clone)]
struct Received {
    request_line: String,
    /// Names lower-cased.
    headers: Vec<(String, String)>,
    body: String,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one request: headers up to the blank line, then a Content-Length body.
fn read_request(stream: &TcpStream) -> Option<Received> {
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).ok()?;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let len: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map_or(Some(0), |(_, v)| v.parse().ok())?;
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some(Received {
        request_line: request_line.trim_end().to_string(),
        headers,
        body: String::from_utf8(body).ok()?,
    })
}

/// An HTTP server on 127.0.0.1:0, one connection at a time, that answers request `n` with the
/// status `respond(n)` returns (which may block) and closes the connection.
struct Server {
    url: String,
    requests: Arc<Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start(path: &str, mut respond: impl FnMut(usize) -> u16 + Send + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}{path}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let requests = Arc::clone(&requests);
            let stop = Arc::clone(&stop);
            move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(mut stream) = stream else { continue };
                    stream
                        .set_read_timeout(Some(Duration::from_secs(10)))
                        .unwrap();
                    let Some(req) = read_request(&stream) else {
                        continue;
                    };
                    let n = {
                        let mut r = requests.lock().unwrap();
                        r.push(req);
                        r.len() - 1
                    };
                    let status = respond(n);
                    let _ = write!(
                        stream,
                        "HTTP/1.1 {status} Test\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                }
            }
        });
        Self {
            url,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    fn requests(&self) -> Vec<Received> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept.
        let _ = TcpStream::connect(
            self.url
                .trim_start_matches("http://")
                .split('/')
                .next()
                .unwrap(),
        );
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A writer the test can read back: the stdout lines.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Lines {
    fn get(&self) -> Vec<String> {
        String::from_utf8(self.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(String::from)
            .collect()
    }
}

/// Fast retries so the tests take well under a second each.
fn config(url: &str, token: Option<Token>) -> ReportConfig {
    let mut c = ReportConfig::new(url, token).unwrap();
    c.first_backoff = Duration::from_millis(20);
    c.max_backoff = Duration::from_millis(50);
    c
}

fn step(step: u64) -> Event {
    Event::Step {
        step,
        total_steps: 1000,
        epoch: step as f64 / 100.0,
        loss: 0.5,
        lr: 1e-4,
        grad_norm: 1.0,
        samples_per_sec: 100.0,
        eta_sec: 3.0,
    }
}

fn done(step: u64) -> Event {
    Event::Done {
        step,
        preempted: false,
        metrics: None,
        export_dir: Some("/output/model".into()),
        model: None,
    }
}

#[test]
fn events_arrive_in_order_as_the_stdout_lines_with_the_bearer_token() {
    let server = Server::start("/progress/ns/job", |_| 200);
    let lines = Lines::default();
    let reporter =
        Reporter::start(config(&server.url, Some(Token::Value("s3cret".into())))).unwrap();
    let mut progress = Progress::to_writer(Box::new(lines.clone())).with_reporter(reporter);
    let metrics = EvalMetrics {
        loss: 0.25,
        accuracy: 0.9,
        macro_f1: 0.875,
        samples: 24,
    };
    let events = [
        Event::Start {
            total_steps: 2,
            start_step: 0,
            train_samples: 16,
            validation_samples: 24,
            labels: vec!["neg".into(), "pos".into()],
            resumed_from: None,
            model_load_sec: 0.25,
            device: "cpu".into(),
            precision: attune_trainer::train::Precision::Fp32,
        },
        step(1),
        step(2),
        Event::Eval {
            step: 2,
            epoch: 1.0,
            metrics,
        },
        Event::Checkpoint {
            step: 2,
            path: "/output/checkpoints/step-000000002".into(),
        },
        Event::Done {
            step: 2,
            preempted: false,
            metrics: Some(metrics),
            export_dir: Some("/output/model".into()),
            model: None,
        },
    ];
    for e in &events {
        progress.emit(e);
    }
    let summary = progress.finish().unwrap();
    assert_eq!(
        summary,
        Summary {
            delivered: 6,
            ..Summary::default()
        }
    );
    let received = server.requests();
    let bodies: Vec<String> = received.iter().map(|r| r.body.clone()).collect();
    assert_eq!(bodies, lines.get());
    for r in &received {
        assert_eq!(r.request_line, "POST /progress/ns/job HTTP/1.1");
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.header("authorization"), Some("Bearer s3cret"));
    }
    // Finishing again is a no-op.
    assert_eq!(progress.finish(), None);
}

#[test]
fn server_errors_are_retried_with_the_token_file_reread() {
    let server = Server::start("/p", |n| if n < 2 { 503 } else { 200 });
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "from-file\n").unwrap();
    let reporter = Reporter::start(config(&server.url, Some(Token::File(token)))).unwrap();
    let mut progress = Progress::sink().with_reporter(reporter);
    progress.emit(&done(7));
    let summary = progress.finish().unwrap();
    assert_eq!(summary.delivered, 1, "{summary:?}");
    let received = server.requests();
    assert_eq!(received.len(), 3);
    let expected = serde_json::to_string(&done(7)).unwrap();
    for r in &received {
        assert_eq!(r.body, expected);
        assert_eq!(r.header("authorization"), Some("Bearer from-file"));
    }
}

#[test]
fn client_errors_other_than_429_are_not_retried() {
    let server = Server::start("/p", |_| 401);
    let mut progress = Progress::sink().with_reporter(
        Reporter::start(config(&server.url, Some(Token::Value("expired".into())))).unwrap(),
    );
    progress.emit(&step(1));
    let summary = progress.finish().unwrap();
    assert_eq!(
        summary,
        Summary {
            failed: 1,
            ..Summary::default()
        }
    );
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn a_hung_endpoint_blocks_neither_emit_nor_finish() {
    let (received_tx, received_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let (answered_tx, answered_rx) = mpsc::channel();
    let release_rx = Mutex::new(release_rx);
    let server = Server::start("/p", move |_| {
        received_tx.send(()).unwrap();
        // Blocks until the test lets go (or drops the sender).
        let _ = release_rx.lock().unwrap().recv();
        let _ = answered_tx.send(());
        200
    });
    let mut c = config(&server.url, None);
    c.request_timeout = Duration::from_secs(60);
    c.shutdown_timeout = Duration::from_millis(300);
    let mut progress = Progress::sink().with_reporter(Reporter::start(c).unwrap());

    progress.emit(&step(0));
    received_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the first event reaches the server");
    // The worker now waits for an answer that does not come; emitting goes on regardless.
    for s in 1..999 {
        progress.emit(&step(s));
    }
    progress.emit(&done(999));
    assert!(
        answered_rx.try_recv().is_err(),
        "all events were emitted while the server still held the first request"
    );

    let start = Instant::now();
    let summary = progress.finish().unwrap();
    let waited = start.elapsed();
    assert!(
        waited < Duration::from_secs(5),
        "finish waited {waited:?} for a 300 ms bound"
    );
    assert!(
        answered_rx.try_recv().is_err(),
        "the server is still blocked"
    );
    assert_eq!(summary.delivered, 0, "{summary:?}");
    // The queue (256) kept the newest steps and done; the one in flight is abandoned too.
    assert_eq!(summary.dropped, 1000 - 256 - 1, "{summary:?}");
    assert_eq!(summary.abandoned, 256 + 1, "{summary:?}");
    assert_eq!(
        summary.delivered + summary.dropped + summary.failed + summary.abandoned,
        1000
    );
    drop(release_tx);
}

#[test]
fn bad_urls_and_tokens_are_configuration_errors() {
    for url in [
        "https://op:8443/p",
        "ftp://op/p",
        "op:8080/p",
        "/p",
        "http://",
    ] {
        assert!(
            matches!(ReportConfig::new(url, None), Err(Error::Config(_))),
            "{url}"
        );
    }
    let missing = Token::File("/nonexistent/token".into());
    let err =
        Reporter::start(ReportConfig::new("http://op/p", Some(missing)).unwrap()).unwrap_err();
    assert!(
        matches!(&err, Error::Config(m) if m.contains("/nonexistent/token")),
        "{err}"
    );
    let err = Reporter::start(
        ReportConfig::new("http://op/p", Some(Token::Value("two words".into()))).unwrap(),
    )
    .unwrap_err();
    assert!(!err.to_string().contains("two words"), "{err}");
}

#[test]
fn the_binary_posts_a_whole_run_and_rejects_a_bad_url() {
    let server = Server::start("/v1/progress", |_| 200);
    let ws = workspace("bert", 16);
    let train = |extra: &[&str], out: &str| {
        Command::new(env!("CARGO_BIN_EXE_attune-trainer"))
            .args(["train", "--model"])
            .arg(&ws.model)
            .arg("--train-file")
            .arg(&ws.train)
            .arg("--validation-file")
            .arg(&ws.validation)
            .arg("--output-dir")
            .arg(ws.tmp.path().join(out))
            .args(["--epochs", "1", "--batch-size", "8", "--max-length", "16"])
            .args(extra)
            .env_remove("ATTUNE_PROGRESS_URL")
            .env_remove("ATTUNE_PROGRESS_TOKEN_FILE")
            .env("ATTUNE_PROGRESS_TOKEN", "cli-token")
            .output()
            .unwrap()
    };

    let o = train(&["--progress-url", &server.url], "out");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("cli-token"), "{stderr}");
    let stdout: Vec<String> = String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let received = server.requests();
    let bodies: Vec<String> = received.iter().map(|r| r.body.clone()).collect();
    assert_eq!(bodies, stdout);
    assert!(bodies[0].starts_with(r#"{"event":"start""#), "{bodies:?}");
    assert!(
        bodies.last().unwrap().starts_with(r#"{"event":"done""#),
        "{bodies:?}"
    );
    assert!(
        received
            .iter()
            .all(|r| r.header("authorization") == Some("Bearer cli-token"))
    );

    let o = train(&["--progress-url", "https://op/p"], "out2");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("--progress-url"), "{stderr}");
}
