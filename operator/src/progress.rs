//! The trainer's progress events (trainer/README.md, "Progress format"), as POSTed by trainer
//! pods, folded into the latest known state of each job. The reconciler copies that state into
//! `status`; this module only remembers it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use serde::Deserialize;

/// A job's identity: namespace, name and UID (a recreated job starts afresh).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct JobKey {
    /// Namespace of the FineTuneJob.
    pub namespace: String,
    /// Name of the FineTuneJob.
    pub name: String,
    /// UID of the FineTuneJob.
    pub uid: String,
}

/// Evaluation figures of an `eval` or `done` event.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EvalFigures {
    /// Validation loss.
    pub loss: f64,
    /// Validation accuracy, 0 to 1.
    pub accuracy: f64,
    /// Validation macro-F1, 0 to 1.
    pub macro_f1: f64,
}

/// One event, as the trainer writes it.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(tag = "event", rename_all = "camelCase")]
pub enum Event {
    /// Training begins or resumes.
    #[serde(rename_all = "camelCase")]
    Start {
        /// Steps of the whole run.
        total_steps: u64,
        /// The step it resumes after (0 on a fresh start).
        start_step: u64,
    },
    /// After an optimizer step.
    #[serde(rename_all = "camelCase")]
    Step {
        /// Steps done.
        step: u64,
        /// Steps of the whole run.
        total_steps: u64,
        /// Fractional epoch.
        epoch: f64,
        /// Mean loss of the step.
        loss: f64,
        /// Examples per second.
        samples_per_sec: f64,
        /// Estimated seconds left.
        eta_sec: f64,
    },
    /// After an evaluation.
    #[serde(rename_all = "camelCase")]
    Eval {
        /// Step of the evaluation.
        step: u64,
        /// The figures.
        #[serde(flatten)]
        figures: EvalFigures,
    },
    /// A checkpoint was written.
    #[serde(rename_all = "camelCase")]
    Checkpoint {
        /// Its step.
        step: u64,
    },
    /// Training finished or was preempted.
    #[serde(rename_all = "camelCase")]
    Done {
        /// Last step.
        step: u64,
        /// Whether SIGTERM stopped it.
        preempted: bool,
        /// Final evaluation.
        metrics: Option<EvalFigures>,
    },
}

impl Event {
    /// Whether the event should reach `status` at once rather than at the next throttled write.
    pub fn is_milestone(&self) -> bool {
        !matches!(self, Self::Step { .. })
    }
}

/// What is known of a job's training from its reports.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Live {
    /// Steps done.
    pub step: u64,
    /// Steps of the whole run.
    pub total_steps: u64,
    /// Fractional epoch.
    pub epoch: f64,
    /// Latest step loss.
    pub loss: Option<f64>,
    /// Latest throughput.
    pub samples_per_sec: Option<f64>,
    /// Latest estimate of seconds left.
    pub eta_sec: Option<f64>,
    /// Latest evaluation.
    pub eval: Option<EvalFigures>,
    /// Step and time of the latest checkpoint.
    pub checkpoint: Option<(u64, Timestamp)>,
    /// The trainer said it is done (not preempted).
    pub finished_training: bool,
    /// When the step last advanced (or training started): stall detection measures from here.
    pub advanced_at: Option<Timestamp>,
    /// Whether an event since the last status write must be written at once.
    pub milestone_pending: bool,
}

impl Live {
    /// Folds one event in, received at `now`.
    pub fn apply(&mut self, event: &Event, now: Timestamp) {
        self.milestone_pending |= event.is_milestone();
        match event {
            Event::Start {
                total_steps,
                start_step,
            } => {
                self.total_steps = *total_steps;
                self.step = *start_step;
                self.finished_training = false;
                self.advanced_at = Some(now);
            }
            Event::Step {
                step,
                total_steps,
                epoch,
                loss,
                samples_per_sec,
                eta_sec,
            } => {
                if *step != self.step {
                    self.advanced_at = Some(now);
                }
                self.step = *step;
                self.total_steps = *total_steps;
                self.epoch = *epoch;
                self.loss = Some(*loss);
                self.samples_per_sec = Some(*samples_per_sec);
                self.eta_sec = Some(*eta_sec);
            }
            Event::Eval { figures, .. } => self.eval = Some(figures.clone()),
            Event::Checkpoint { step } => self.checkpoint = Some((*step, now)),
            Event::Done {
                step,
                preempted,
                metrics,
            } => {
                self.step = *step;
                self.finished_training = !preempted;
                if let Some(metrics) = metrics {
                    self.eval = Some(metrics.clone());
                }
            }
        }
    }
}

/// The latest state of every job that reported, shared by the progress server and the
/// reconciler.
#[derive(Clone, Debug, Default)]
pub struct LiveStore(Arc<Mutex<HashMap<JobKey, Live>>>);

impl LiveStore {
    /// Folds an event into the job's state.
    pub fn apply(&self, key: JobKey, event: &Event, now: Timestamp) {
        self.lock().entry(key).or_default().apply(event, now);
    }

    /// The job's state, if it reported.
    pub fn get(&self, key: &JobKey) -> Option<Live> {
        self.lock().get(key).cloned()
    }

    /// Marks the job's pending milestones as written.
    pub fn written(&self, key: &JobKey) {
        if let Some(live) = self.lock().get_mut(key) {
            live.milestone_pending = false;
        }
    }

    /// Forgets a job (finished or deleted).
    pub fn forget(&self, key: &JobKey) {
        self.lock().remove(key);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<JobKey, Live>> {
        // A panic while holding the lock leaves a map that is still consistent.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(json: &str) -> Event {
        serde_json::from_str(json).expect("event")
    }

    #[test]
    fn the_trainer_events_parse_and_fold() {
        let t0 = Timestamp::from_second(100).expect("t");
        let t1 = Timestamp::from_second(110).expect("t");
        let mut live = Live::default();
        live.apply(&event(r#"{"event":"start","totalSteps":10,"startStep":4,"trainSamples":8,"validationSamples":2,"labels":["a","b"],"resumedFrom":null,"modelLoadSec":0.1,"device":"cpu","precision":"fp32"}"#), t0);
        assert_eq!((live.step, live.total_steps), (4, 10));
        assert_eq!(live.advanced_at, Some(t0));
        live.milestone_pending = false;
        live.apply(&event(r#"{"event":"step","step":5,"totalSteps":10,"epoch":0.5,"loss":0.7,"lr":1e-5,"gradNorm":1.0,"samplesPerSec":12.5,"etaSec":40.0}"#), t1);
        assert_eq!(live.step, 5);
        assert_eq!(live.loss, Some(0.7));
        assert_eq!(live.advanced_at, Some(t1));
        assert!(!live.milestone_pending, "a step is no milestone");
        live.apply(&event(r#"{"event":"eval","step":5,"epoch":0.5,"loss":0.6,"accuracy":0.75,"macroF1":0.7,"samples":4}"#), t1);
        assert!(live.milestone_pending);
        assert_eq!(live.eval.as_ref().map(|e| e.accuracy), Some(0.75));
        live.apply(
            &event(r#"{"event":"checkpoint","step":5,"path":"/checkpoints/step-5"}"#),
            t1,
        );
        assert_eq!(live.checkpoint, Some((5, t1)));
        live.apply(&event(r#"{"event":"done","step":10,"preempted":false,"metrics":{"loss":0.5,"accuracy":0.9,"macroF1":0.85,"samples":4},"exportDir":"/output/x/model","model":null}"#), t1);
        assert!(live.finished_training);
        assert_eq!(live.eval.map(|e| e.macro_f1), Some(0.85));
    }
}
