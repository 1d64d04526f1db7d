//! `attune-trainer`: the command line. Exit codes are documented in trainer/README.md and
//! mapped in [`exit_code`]; every command ends by writing its termination message
//! ([`attune_trainer::termination`]) when `ATTUNE_TERMINATION_LOG` is set.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::Context;
use attune_trainer::config::{JobConfig, ModelSource, TrainConfig};
use attune_trainer::data::DataConfig;
use attune_trainer::device::select_device;
use attune_trainer::hub;
use attune_trainer::predict::Predictor;
use attune_trainer::termination::{self, TerminationLog};
use attune_trainer::train::{
    Outcome, Precision, Progress, ReportConfig, Reporter, RunOptions, Token, run,
};
use clap::{Args, Parser, Subcommand};

// glibc returns large freed buffers to the OS after every op (page faults were ~15 % of CPU
// time in the prototype); mimalloc, tuned by `alloc::tune`, keeps them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code: training stopped by SIGTERM after writing a checkpoint; rerun to resume.
const EXIT_PREEMPTED: u8 = 75;

#[derive(Parser, Debug)]
#[command(
    name = "attune-trainer",
    version,
    about = "Fine-tune BERT-family text classifiers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Download a model revision into the HuggingFace cache (needs network unless --offline).
    Fetch(FetchArgs),
    /// Fine-tune a classifier; resumes from the newest valid checkpoint.
    Train(Box<TrainArgs>),
    /// Export a checkpoint as a transformers-loadable folder.
    Export(ExportArgs),
    /// Classify texts (one per line) with an exported model.
    Predict(PredictArgs),
    /// Remove a model revision from the HuggingFace cache, and the blobs no other revision
    /// links to.
    Evict(EvictArgs),
}

#[derive(Args, Debug)]
struct EvictArgs {
    /// Model id, org/name.
    model: String,
    /// A commit, or a branch or tag of the cache's refs.
    #[arg(long, default_value = "main")]
    revision: String,
    /// Cache folder (default: HF_HUB_CACHE, HF_HOME/hub, ~/.cache/huggingface/hub).
    #[arg(long)]
    cache: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct FetchArgs {
    /// Model id, org/name.
    model: String,
    #[arg(long, default_value = "main")]
    revision: String,
    /// Cache folder (default: HF_HUB_CACHE, HF_HOME/hub, ~/.cache/huggingface/hub).
    #[arg(long)]
    cache: Option<PathBuf>,
    /// Never use the network: only verify the cached snapshot.
    #[arg(long, env = "HF_HUB_OFFLINE", value_parser = clap::builder::FalseyValueParser::new())]
    offline: bool,
}

#[derive(Args, Debug)]
struct TrainArgs {
    /// Job configuration file (JSON or YAML); flags override its values.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Base model: HF id (resolved in the cache) or a local folder.
    #[arg(long)]
    model: Option<String>,
    #[arg(long)]
    revision: Option<String>,
    #[arg(long)]
    train_file: Option<PathBuf>,
    #[arg(long)]
    validation_file: Option<PathBuf>,
    #[arg(long)]
    text_field: Option<String>,
    #[arg(long)]
    text_pair_field: Option<String>,
    #[arg(long)]
    label_field: Option<String>,
    /// Fixed label list, comma-separated (default: discovered, sorted).
    #[arg(long, value_delimiter = ',')]
    labels: Option<Vec<String>>,
    #[arg(long)]
    max_length: Option<usize>,
    /// Export goes to <output-dir>/model, checkpoints to <output-dir>/checkpoints.
    #[arg(long)]
    output_dir: Option<PathBuf>,
    #[arg(long)]
    checkpoint_dir: Option<PathBuf>,
    #[arg(long)]
    epochs: Option<u64>,
    #[arg(long)]
    max_steps: Option<u64>,
    #[arg(long)]
    batch_size: Option<usize>,
    #[arg(long)]
    gradient_accumulation: Option<usize>,
    #[arg(long)]
    learning_rate: Option<f64>,
    #[arg(long)]
    weight_decay: Option<f64>,
    #[arg(long)]
    warmup_steps: Option<u64>,
    #[arg(long)]
    max_grad_norm: Option<f64>,
    #[arg(long)]
    seed: Option<u64>,
    #[arg(long)]
    eval_every: Option<u64>,
    #[arg(long)]
    checkpoint_every: Option<u64>,
    /// Turn dropout off (deterministic comparison with PyTorch in eval mode).
    #[arg(long)]
    no_dropout: bool,
    /// Compute precision (bf16/f16: mixed precision with f32 master weights, for GPUs).
    #[arg(long, value_enum)]
    precision: Option<Precision>,
    /// auto (a GPU if this binary has cuda and one is usable, else the CPU), cpu, cuda or cuda:N.
    #[arg(long, env = "ATTUNE_DEVICE", default_value = "auto")]
    device: String,
    /// HF cache folder to resolve the model in (read only).
    #[arg(long)]
    cache: Option<PathBuf>,
    /// Write each training batch as a JSON line (input_ids, token_type_ids, attention_mask, labels).
    #[arg(long)]
    dump_batches: Option<PathBuf>,
    /// Export the initialised model (step 0, with head) to this folder before training.
    #[arg(long)]
    export_init: Option<PathBuf>,
    /// Act as if SIGTERM arrived after this step (drills and tests).
    #[arg(long, hide = true)]
    stop_after_step: Option<u64>,
    /// Also POST every progress event (the stdout JSON object) to this http:// URL.
    #[arg(long, env = "ATTUNE_PROGRESS_URL")]
    progress_url: Option<String>,
    /// Bearer token for --progress-url, re-read before each request (rotated projected
    /// tokens). Or set ATTUNE_PROGRESS_TOKEN (no flag: a token on the command line shows in ps).
    #[arg(long, env = "ATTUNE_PROGRESS_TOKEN_FILE")]
    progress_token_file: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct ExportArgs {
    /// A checkpoint folder (step-*) or a checkpoint root (newest valid is used).
    #[arg(long)]
    checkpoint: PathBuf,
    #[arg(long)]
    output: PathBuf,
}

#[derive(Args, Debug)]
struct PredictArgs {
    /// Export folder.
    #[arg(long)]
    model: PathBuf,
    /// Input file, one text per line (default: stdin).
    #[arg(long)]
    input: Option<PathBuf>,
    /// Also write {"logits": [[...], ...]} in input order to this file.
    #[arg(long)]
    logits_json: Option<PathBuf>,
    #[arg(long, default_value_t = 512)]
    max_length: usize,
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// auto, cpu, cuda or cuda:N (see train --device).
    #[arg(long, env = "ATTUNE_DEVICE", default_value = "auto")]
    device: String,
}

fn job_from_args(a: &TrainArgs) -> anyhow::Result<JobConfig> {
    let mut job = match &a.config {
        Some(p) => JobConfig::from_file(p)?,
        None => JobConfig {
            model: ModelSource {
                id: a
                    .model
                    .clone()
                    .context("--model (or --config) is required")?,
                revision: "main".into(),
            },
            data: DataConfig::new(
                a.train_file
                    .clone()
                    .context("--train-file (or --config) is required")?,
            ),
            training: TrainConfig::default(),
            output_dir: a
                .output_dir
                .clone()
                .context("--output-dir (or --config) is required")?,
            checkpoint_dir: None,
        },
    };
    // Overrides a job-file value with a flag that was given (`into` also fills Option fields).
    macro_rules! set {
        ($src:expr, $dst:expr) => {
            if let Some(v) = $src.clone() {
                $dst = v.into();
            }
        };
    }
    set!(a.model, job.model.id);
    set!(a.revision, job.model.revision);
    set!(a.train_file, job.data.train_file);
    set!(a.validation_file, job.data.validation_file);
    set!(a.text_field, job.data.text_field);
    set!(a.text_pair_field, job.data.text_pair_field);
    set!(a.label_field, job.data.label_field);
    set!(a.labels, job.data.labels);
    set!(a.max_length, job.data.max_length);
    set!(a.output_dir, job.output_dir);
    set!(a.checkpoint_dir, job.checkpoint_dir);
    let t = &mut job.training;
    set!(a.epochs, t.epochs);
    set!(a.max_steps, t.max_steps);
    set!(a.batch_size, t.batch_size);
    set!(a.gradient_accumulation, t.gradient_accumulation);
    set!(a.learning_rate, t.learning_rate);
    set!(a.weight_decay, t.weight_decay);
    set!(a.warmup_steps, t.warmup_steps);
    set!(a.max_grad_norm, t.max_grad_norm);
    set!(a.seed, t.seed);
    set!(a.eval_every, t.eval_every);
    set!(a.checkpoint_every, t.checkpoint_every);
    if a.no_dropout {
        t.dropout = false;
    }
    set!(a.precision, t.precision);
    Ok(job)
}

/// How a command ended: the exit code, and the termination message (None: nothing to report).
struct Ending {
    code: ExitCode,
    message: Option<String>,
}

impl Ending {
    fn success(message: String) -> Self {
        Self {
            code: ExitCode::SUCCESS,
            message: Some(message),
        }
    }
}

/// Prints the snapshot folder, then the `fetched` JSON, which is also the termination message.
fn fetch(a: &FetchArgs) -> anyhow::Result<Ending> {
    let fetched = hub::fetch(&hub::FetchOptions {
        id: a.model.clone(),
        revision: a.revision.clone(),
        cache: a.cache.clone().unwrap_or_else(hub::cache_dir),
        offline: a.offline,
    })?;
    println!("{}", fetched.dir.display());
    println!("{}", serde_json::to_string(&fetched)?);
    Ok(Ending::success(termination::fetched_message(&fetched)?))
}

/// Prints the `evicted` JSON, which is also the termination message.
fn evict(a: &EvictArgs) -> anyhow::Result<Ending> {
    let evicted = hub::evict(&hub::EvictOptions {
        id: a.model.clone(),
        revision: a.revision.clone(),
        cache: a.cache.clone().unwrap_or_else(hub::cache_dir),
    })?;
    let line = serde_json::to_string(&evicted)?;
    println!("{line}");
    Ok(Ending::success(line))
}

fn export(a: &ExportArgs) -> anyhow::Result<Ending> {
    let exported = attune_trainer::export::export_checkpoint(&a.checkpoint, &a.output)?;
    let dir = exported.dir.display().to_string();
    println!("{dir}");
    Ok(Ending::success(dir))
}

fn train(a: &TrainArgs) -> anyhow::Result<Ending> {
    let job = job_from_args(a)?;
    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGTERM, Arc::clone(&stop))
        .context("installing the SIGTERM handler")?;
    let mut opts = RunOptions::new(job);
    opts.device = select_device(&a.device)?;
    if let Some(c) = &a.cache {
        opts.cache = c.clone();
    }
    opts.stop = stop;
    opts.stop_after_step = a.stop_after_step;
    opts.dump_batches = a.dump_batches.clone();
    opts.export_init = a.export_init.clone();
    let mut progress = Progress::stdout();
    if let Some(url) = &a.progress_url {
        let config = ReportConfig::new(url, progress_token(a)?).context("--progress-url")?;
        progress = progress.with_reporter(Reporter::start(config)?);
    }
    let outcome = run(&opts, &mut progress)?;
    progress.finish();
    let code = match outcome {
        Outcome::Finished { .. } => ExitCode::SUCCESS,
        Outcome::Preempted { checkpoint, .. } => {
            tracing::warn!(checkpoint = %checkpoint.display(), "preempted; checkpoint saved");
            ExitCode::from(EXIT_PREEMPTED)
        }
    };
    // The done event, finished or preempted.
    let message = progress.done().map(termination::done_message).transpose()?;
    Ok(Ending { code, message })
}

/// The bearer token for --progress-url: from --progress-token-file or ATTUNE_PROGRESS_TOKEN,
/// never both (which one would win is not obvious to whoever set them).
fn progress_token(a: &TrainArgs) -> anyhow::Result<Option<Token>> {
    let value = std::env::var("ATTUNE_PROGRESS_TOKEN")
        .ok()
        .filter(|t| !t.is_empty());
    Ok(match (&a.progress_token_file, value) {
        (Some(_), Some(_)) => {
            return Err(attune_trainer::Error::Config(
                "set --progress-token-file (ATTUNE_PROGRESS_TOKEN_FILE) or ATTUNE_PROGRESS_TOKEN, \
                 not both"
                    .into(),
            )
            .into());
        }
        (Some(file), None) => Some(Token::File(file.clone())),
        (None, Some(value)) => Some(Token::Value(value)),
        (None, None) => None,
    })
}

fn predict(a: &PredictArgs) -> anyhow::Result<Ending> {
    let started = Instant::now();
    let predictor = Predictor::load(&a.model, a.max_length, &select_device(&a.device)?)?;
    let load_sec = started.elapsed().as_secs_f64();
    let texts: Vec<String> = match &a.input {
        Some(p) => std::fs::read_to_string(p)
            .with_context(|| format!("reading {}", p.display()))?
            .lines()
            .map(String::from)
            .collect(),
        None => std::io::stdin().lock().lines().collect::<Result<_, _>>()?,
    };
    let texts: Vec<String> = texts.into_iter().filter(|t| !t.trim().is_empty()).collect();
    let started = Instant::now();
    let logits = predictor.logits(&texts, a.batch_size)?;
    let inference_sec = started.elapsed().as_secs_f64();
    // The benchmarks read samples_per_sec: inference alone (tokenization included), without
    // process start, model load and, on a GPU, CUDA's initialisation.
    tracing::info!(
        texts = texts.len(),
        load_sec,
        inference_sec,
        samples_per_sec = texts.len() as f64 / inference_sec.max(1e-9),
        "predicted"
    );
    if let Some(p) = &a.logits_json {
        let json = serde_json::json!({ "logits": logits });
        std::fs::write(p, serde_json::to_vec(&json)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    let mut out = std::io::stdout().lock();
    for pred in predictor.top(&logits)? {
        writeln!(out, "{}\t{:.6}", pred.label, pred.score)?;
    }
    Ok(Ending::success(format!("predicted {} texts", texts.len())))
}

/// Maps an error to the documented exit code.
fn exit_code(e: &anyhow::Error) -> u8 {
    use attune_trainer::Error as E;
    match e.downcast_ref::<E>() {
        Some(E::Config(_)) => 3,
        Some(E::Data(_)) => 4,
        Some(E::Model(_) | E::Hub(_) | E::Tokenizer(_)) => 5,
        Some(E::Diverged(_)) => 6,
        _ => 1,
    }
}

/// Writes the termination message if a log is set; a failure to write is only logged, so the
/// exit code stays the command's own.
fn record(log: Option<&TerminationLog>, message: &str) {
    let Some(log) = log else { return };
    if let Err(e) = log.write(message) {
        let path = log.path().display();
        tracing::warn!(%path, error = %e, "cannot write the termination message");
    }
}

/// After the default report on stderr, writes a panic as the termination message: exit code
/// 101 is no documented code, and the pod status should still say what happened.
fn record_panics(log: TerminationLog) {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        let at = info
            .location()
            .map(|l| format!(" at {l}"))
            .unwrap_or_default();
        // What `panic!` carries: a &str or a formatted String.
        let payload = info.payload();
        let what = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(no message)");
        record(Some(&log), &format!("error: panicked{at}: {what}"));
    }));
}

fn main() -> ExitCode {
    attune_trainer::alloc::tune();
    attune_trainer::threads::tune_candle();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let log = TerminationLog::from_env();
    if let Some(log) = &log {
        record_panics(log.clone());
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // A bad command line (exit 2) is reported too; --help and --version are not.
            if e.use_stderr() {
                record(log.as_ref(), e.to_string().trim_end());
            }
            e.exit()
        }
    };
    let result = match &cli.command {
        Command::Fetch(a) => fetch(a),
        Command::Train(a) => train(a),
        Command::Export(a) => export(a),
        Command::Predict(a) => predict(a),
        Command::Evict(a) => evict(a),
    };
    let (code, message) = match result {
        Ok(Ending { code, message }) => (code, message),
        Err(e) => {
            let line = format!("error: {e:#}");
            eprintln!("{line}");
            (ExitCode::from(exit_code(&e)), Some(line))
        }
    };
    if let Some(message) = message {
        record(log.as_ref(), &message);
    }
    code
}
