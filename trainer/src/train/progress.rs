//! Progress reporting: one JSON object per line on stdout (the format is documented in
//! trainer/README.md), plus an indicatif bar when stdout is a terminal, and optionally the same
//! objects POSTed to a progress URL ([`Reporter`]).

use std::io::{IsTerminal, Write};

use serde::Serialize;

use super::metrics::EvalMetrics;
use super::precision::Precision;
use super::report::{Reporter, Summary};
use crate::export::ExportedModel;

/// One progress event. Serialised with `"event"` as the tag and camelCase fields.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "camelCase")]
pub enum Event {
    /// Training begins (or resumes).
    #[serde(rename_all = "camelCase")]
    Start {
        total_steps: u64,
        start_step: u64,
        train_samples: usize,
        validation_samples: usize,
        labels: Vec<String>,
        resumed_from: Option<String>,
        /// Seconds spent resolving and loading the base model (weights onto the device).
        model_load_sec: f64,
        /// `cpu` or `cuda:N`.
        device: String,
        /// `fp32`, `bf16` or `f16`.
        precision: Precision,
    },
    /// After an optimizer step (every `logEvery` steps).
    #[serde(rename_all = "camelCase")]
    Step {
        step: u64,
        total_steps: u64,
        epoch: f64,
        loss: f64,
        lr: f64,
        grad_norm: f64,
        samples_per_sec: f64,
        eta_sec: f64,
    },
    /// After an evaluation pass.
    #[serde(rename_all = "camelCase")]
    Eval {
        step: u64,
        epoch: f64,
        #[serde(flatten)]
        metrics: EvalMetrics,
    },
    /// A checkpoint was written.
    #[serde(rename_all = "camelCase")]
    Checkpoint { step: u64, path: String },
    /// Training finished or was preempted. Also the termination message of `train`.
    #[serde(rename_all = "camelCase")]
    Done {
        step: u64,
        preempted: bool,
        metrics: Option<EvalMetrics>,
        export_dir: Option<String>,
        /// The export's files and provenance; None when nothing was exported (preempted).
        model: Option<ExportedModel>,
    },
}

/// Where progress goes.
pub struct Progress {
    out: Box<dyn Write + Send>,
    bar: Option<indicatif::ProgressBar>,
    reporter: Option<Reporter>,
    /// The `done` event once emitted: `main` writes it as the termination message.
    done: Option<Event>,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress")
            .field("bar", &self.bar.is_some())
            .field("reporter", &self.reporter)
            .finish()
    }
}

impl Progress {
    /// JSON lines to stdout; a bar too when stdout is a terminal.
    pub fn stdout() -> Self {
        let tty = std::io::stdout().is_terminal();
        Self {
            out: Box::new(std::io::stdout()),
            bar: tty.then(indicatif::ProgressBar::hidden),
            reporter: None,
            done: None,
        }
    }

    /// JSON lines to any writer (tests), no bar.
    pub fn to_writer(out: Box<dyn Write + Send>) -> Self {
        Self {
            out,
            bar: None,
            reporter: None,
            done: None,
        }
    }

    /// Discards everything.
    pub fn sink() -> Self {
        Self::to_writer(Box::new(std::io::sink()))
    }

    /// Also POSTs every event through `reporter`.
    pub fn with_reporter(mut self, reporter: Reporter) -> Self {
        self.reporter = Some(reporter);
        self
    }

    /// Emits one event.
    pub fn emit(&mut self, event: &Event) {
        let line = match serde_json::to_string(event) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot serialise progress event");
                return;
            }
        };
        if let Some(bar) = self.bar.clone() {
            match event {
                Event::Start {
                    total_steps,
                    start_step,
                    ..
                } => {
                    bar.set_length(*total_steps);
                    bar.set_position(*start_step);
                    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                    if let Ok(style) = indicatif::ProgressStyle::with_template(
                        "{bar:40} {pos}/{len} steps {msg} [{elapsed}<{eta}]",
                    ) {
                        bar.set_style(style);
                    }
                }
                Event::Step { step, loss, .. } => {
                    bar.set_position(*step);
                    bar.set_message(format!("loss {loss:.4}"));
                }
                Event::Done { .. } => bar.finish(),
                _ => {}
            }
            bar.suspend(|| self.write_line(&line));
        } else {
            self.write_line(&line);
        }
        if let Some(reporter) = &mut self.reporter {
            reporter.send(event, line);
        }
        if let Event::Done { .. } = event {
            self.done = Some(event.clone());
        }
    }

    /// The `done` event, once emitted.
    pub fn done(&self) -> Option<&Event> {
        self.done.as_ref()
    }

    /// Ends the run's reporting: waits a bounded time for queued events to reach the progress
    /// URL (see [`Reporter::finish`]). Dropping `Progress` does the same; this also says what
    /// was delivered. `None` without a reporter.
    pub fn finish(&mut self) -> Option<Summary> {
        self.reporter.take().map(Reporter::finish)
    }

    fn write_line(&mut self, line: &str) {
        // Progress must never stop training: a closed stdout only loses the report.
        let _ = writeln!(self.out, "{line}");
        let _ = self.out.flush();
    }
}
