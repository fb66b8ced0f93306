//! The one owner of the engine's background work, after meilisearch's index-scheduler: training
//! (the cadence, retrains the privacy layer forces, jobs queued by `POST /v1/models/train`),
//! trainer election and publishing on a shared store, cluster sync, the decision-log flush, the
//! retention sweep and the purge check. The binary starts a [`Scheduler`]; the HTTP routes only
//! queue training jobs ([`Scheduler::queue_training`]) and read them ([`Scheduler::job`]).
//!
//! Every job runs on a thread of its own (they block on storage), and only the model thread
//! trains, so one training runs at a time and a queued job never waits behind a sweep. Periods
//! are wall-clock ([`std::time::Instant`]); the training cadence reads the engine's [`Clock`]
//! (the time of the models in use), so a test moves it with a `ManualClock`.
//!
//! A failed training leaves the previous snapshot in use (the engine swaps only what finished);
//! its job reports the error.
//!
//! [`Clock`]: crate::Clock

use std::{
    collections::VecDeque,
    sync::Arc,
    thread::JoinHandle,
    time::{Duration, Instant},
};

use attune_store::TrainingLock;
use parking_lot::{Condvar, Mutex};

use crate::{Engine, Result};

/// How often the retention sweep runs (also once right at start, for what expired while the
/// server was down).
pub const RETENTION_SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// How often a due purge is looked for (one read of a marker; see [`crate::privacy`]: bytes
/// deleted by an erasure leave the store's files by `ERASURE_PURGE_DEADLINE_MS` plus this, by
/// forgetting, consent withdrawal or retention by `PURGE_DEADLINE_MS` plus this).
pub const PURGE_CHECK_EVERY: Duration = Duration::from_secs(10);

/// How often logged decisions are persisted.
pub const DECISION_FLUSH_EVERY: Duration = Duration::from_secs(1);

/// How often `attune serve` brings running experiments' results up to date (first at start), so
/// that `GET /v1/experiments/{id}/results` reads only what arrived since.
pub const RESULTS_REFRESH_EVERY: Duration = Duration::from_secs(10);

/// How often the model thread looks at the cadence, the forced-retrain marker, the training lock
/// and the published models (a queued job wakes it at once).
pub const MODEL_POLL_EVERY: Duration = Duration::from_secs(5);

/// How long a server that does not train waits for the trainer's models before its job fails.
pub const TRAINED_ELSEWHERE_WITHIN: Duration = Duration::from_secs(15 * 60);

/// Training jobs kept for [`Scheduler::job`] (the most recent).
const JOBS_KEPT: usize = 100;

/// What the scheduler runs. [`SchedulerConfig::serving`] is `attune serve`;
/// [`SchedulerConfig::on_demand`] runs queued training jobs only.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Train this long after the models in use were trained (and at start when there are none);
    /// `None`: only on request and when the privacy layer forces it.
    pub train_every: Option<Duration>,
    /// Compete for the store's training lock ([`attune_store::Store::try_training_lock`]):
    /// hold it to train and publish, else load what the holder publishes. Without it the engine's
    /// [`Engine::is_trainer`] decides.
    pub elect_trainer: bool,
    /// Sync with the other servers on a shared store this often ([`Engine::sync_from_store`];
    /// only when the engine runs with [`crate::EngineConfig::cluster`]).
    pub sync_every: Option<Duration>,
    /// Persist logged decisions this often ([`Engine::flush_decisions`]).
    pub flush_every: Option<Duration>,
    /// Refresh running experiments' results this often, and at start
    /// ([`Engine::refresh_experiment_results`]).
    pub results_every: Option<Duration>,
    /// Sweep retention this often, and at start ([`Engine::sweep_retention`]).
    pub retention_every: Option<Duration>,
    /// Look for a due purge this often ([`Engine::purge_if_due`]).
    pub purge_every: Option<Duration>,
    /// How often the model thread polls ([`MODEL_POLL_EVERY`]).
    pub model_poll: Duration,
    /// Called on the model thread after every training attempt, once the training's working
    /// memory is dropped: `attune serve` asks its allocator to return that memory to the
    /// operating system here (the engine knows no allocator).
    pub after_training: Option<fn()>,
}

impl SchedulerConfig {
    /// Everything `attune serve` runs: training every `train_every`, the election, sync every
    /// `sync_every` (on a shared store), the flush, the sweep and the purge check.
    pub fn serving(train_every: Duration, sync_every: Duration) -> SchedulerConfig {
        SchedulerConfig {
            train_every: Some(train_every),
            elect_trainer: true,
            sync_every: Some(sync_every),
            flush_every: Some(DECISION_FLUSH_EVERY),
            results_every: Some(RESULTS_REFRESH_EVERY),
            retention_every: Some(RETENTION_SWEEP_EVERY),
            purge_every: Some(PURGE_CHECK_EVERY),
            model_poll: MODEL_POLL_EVERY.min(train_every),
            after_training: None,
        }
    }

    /// Queued training jobs only (and forced retrains once a job started the model thread):
    /// nothing runs until a job is queued. What a server built in a test gets.
    pub fn on_demand() -> SchedulerConfig {
        SchedulerConfig {
            train_every: None,
            elect_trainer: false,
            sync_every: None,
            flush_every: None,
            results_every: None,
            retention_every: None,
            purge_every: None,
            model_poll: MODEL_POLL_EVERY,
            after_training: None,
        }
    }
}

/// Where a training job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    /// Queued or training (or, on a server that does not train, waiting for the trainer's models).
    Running,
    /// New models are in use.
    Succeeded,
    /// Training failed; the previous models stay in use.
    Failed,
}

impl JobStatus {
    /// `running`, `succeeded`, `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
        }
    }
}

/// A training job queued with [`Scheduler::queue_training`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// `job-…`.
    pub id: String,
    /// Where it is.
    pub status: JobStatus,
    /// The model version it produced (once succeeded).
    pub version: Option<u64>,
    /// Why it failed.
    pub error: Option<String>,
}

/// The owner of every background job. Dropping the last handle stops its threads (each finishes
/// what it is doing); [`Scheduler::shutdown`] also waits for them and flushes the decision log.
pub struct Scheduler {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Whether the model thread runs (on demand it starts with the first job).
    model_thread: Mutex<bool>,
}

struct Shared {
    engine: Arc<Engine>,
    config: SchedulerConfig,
    state: Mutex<State>,
    /// Signalled on stop, on a queued job and when a job finishes.
    changed: Condvar,
}

#[derive(Default)]
struct State {
    stopped: bool,
    /// Jobs not yet picked up by the model thread.
    queued: Vec<String>,
    /// Every recent job, oldest first.
    jobs: VecDeque<Job>,
}

impl Scheduler {
    /// Starts the threads `config` asks for over `engine`.
    pub fn start(engine: Arc<Engine>, config: SchedulerConfig) -> Scheduler {
        let cluster = engine.config().cluster;
        let scheduler = Scheduler {
            shared: Arc::new(Shared { engine, config, state: Mutex::new(State::default()), changed: Condvar::new() }),
            threads: Mutex::new(Vec::new()),
            model_thread: Mutex::new(false),
        };
        let config = &scheduler.shared.config;
        if config.train_every.is_some() || config.elect_trainer {
            scheduler.ensure_model_thread();
        }
        if let Some(every) = config.sync_every.filter(|_| cluster) {
            scheduler.periodic("attune-sync", every, true, |engine| match engine.sync_from_store() {
                Ok(report) if report.events_folded > 0 || !report.changed.is_empty() || report.erased > 0 => {
                    tracing::debug!(?report, "synced with the store");
                }
                Ok(_) => {}
                Err(err) => tracing::warn!(error = %err, "syncing with the store failed; retrying"),
            });
        }
        if let Some(every) = config.flush_every {
            scheduler.periodic("attune-flush", every, false, |engine| {
                if let Err(err) = engine.flush_decisions() {
                    tracing::warn!(error = %err, "persisting the decision log failed; retrying");
                }
            });
        }
        if let Some(every) = config.results_every {
            scheduler.periodic("attune-results", every, true, |engine| {
                if let Err(err) = engine.refresh_experiment_results() {
                    tracing::warn!(error = %err, "refreshing experiment results failed; retrying next period");
                }
            });
        }
        if let Some(every) = config.retention_every {
            scheduler.periodic("attune-retention", every, true, |engine| {
                match engine.sweep_retention(engine.now_ms()) {
                    Ok(report) => tracing::info!(?report, "retention sweep"),
                    Err(err) => tracing::error!(error = %err, "retention sweep failed; retrying next period"),
                }
            });
        }
        if let Some(every) = config.purge_every {
            scheduler.periodic("attune-purge", every, true, |engine| match engine.purge_if_due(engine.now_ms()) {
                Ok(true) => tracing::info!("purged deleted bytes from the store"),
                Ok(false) => {}
                Err(err) => tracing::error!(error = %err, "purging failed; retrying next period"),
            });
        }
        scheduler
    }

    /// The engine it schedules for.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.shared.engine
    }

    /// Queues a training (audited as `models.train` by `key_id`) and returns the job, `running`.
    /// The model thread trains at once (on a shared store whose training lock another server
    /// holds: asks that server and waits for the models it publishes). An audit failure fails
    /// the call, and nothing is queued.
    pub fn queue_training(&self, key_id: &str) -> Result<Job> {
        let mut job = Job {
            id: format!("job-{}", ulid::Ulid::generate()),
            status: JobStatus::Running,
            version: None,
            error: None,
        };
        self.shared.engine.audit(key_id, "models.train", &job.id)?;
        let stopped = {
            let mut state = self.shared.state.lock();
            if state.stopped {
                // The server is stopping: nothing trains any more.
                job.status = JobStatus::Failed;
                job.error = Some("the server is stopping".into());
            } else {
                state.queued.push(job.id.clone());
            }
            state.jobs.push_back(job.clone());
            while state.jobs.len() > JOBS_KEPT {
                state.jobs.pop_front();
            }
            state.stopped
        };
        if !stopped {
            self.ensure_model_thread();
        }
        self.shared.changed.notify_all();
        Ok(job)
    }

    /// A recent job by id.
    pub fn job(&self, id: &str) -> Option<Job> {
        self.shared.state.lock().jobs.iter().find(|job| job.id == id).cloned()
    }

    /// Blocks until the job is no longer running, or the scheduler stops, or `timeout` passes;
    /// returns the job as it then is (`None`: not a recent job).
    pub fn wait_for(&self, id: &str, timeout: Duration) -> Option<Job> {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.state.lock();
        loop {
            let job = state.jobs.iter().find(|job| job.id == id).cloned()?;
            if job.status != JobStatus::Running || state.stopped || Instant::now() >= deadline {
                return Some(job);
            }
            self.shared.changed.wait_until(&mut state, deadline);
        }
    }

    /// Stops every thread, waits for them (a training in progress finishes first), then persists
    /// the decision log once more.
    pub fn shutdown(&self) {
        self.shared.stop();
        let threads = std::mem::take(&mut *self.threads.lock());
        for thread in threads {
            if thread.join().is_err() {
                tracing::error!("a scheduler thread panicked");
            }
        }
        if let Err(err) = self.shared.engine.flush_decisions() {
            tracing::warn!(error = %err, "persisting the decision log at shutdown failed");
        }
    }

    fn ensure_model_thread(&self) {
        let mut started = self.model_thread.lock();
        if *started {
            return;
        }
        *started = true;
        let shared = Arc::clone(&self.shared);
        self.spawn("attune-models", move || ModelThread::new(&shared).run(&shared));
    }

    /// Runs `job` every `every` (first at once when `at_start`), until stopped.
    fn periodic(&self, name: &'static str, every: Duration, at_start: bool, job: impl Fn(&Engine) + Send + 'static) {
        let shared = Arc::clone(&self.shared);
        self.spawn(name, move || {
            if !at_start && !shared.sleep(every) {
                return;
            }
            loop {
                job(&shared.engine);
                if !shared.sleep(every) {
                    return;
                }
            }
        });
    }

    fn spawn(&self, name: &'static str, run: impl FnOnce() + Send + 'static) {
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(run)
            .expect("the operating system refused a scheduler thread");
        self.threads.lock().push(thread);
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.shared.stop();
    }
}

impl Shared {
    fn stop(&self) {
        self.state.lock().stopped = true;
        self.changed.notify_all();
    }

    /// Sleeps `period` unless stopped first; returns whether to go on.
    fn sleep(&self, period: Duration) -> bool {
        let deadline = Instant::now() + period;
        let mut state = self.state.lock();
        while !state.stopped && Instant::now() < deadline {
            self.changed.wait_until(&mut state, deadline);
        }
        !state.stopped
    }

    /// Sleeps `period`, waking early for a queued job; returns whether to go on.
    fn sleep_unless_queued(&self, period: Duration) -> bool {
        let deadline = Instant::now() + period;
        let mut state = self.state.lock();
        while !state.stopped && state.queued.is_empty() && Instant::now() < deadline {
            self.changed.wait_until(&mut state, deadline);
        }
        !state.stopped
    }

    fn take_queued(&self) -> Vec<String> {
        std::mem::take(&mut self.state.lock().queued)
    }

    fn finish(&self, ids: &[String], status: JobStatus, version: Option<u64>, error: Option<&str>) {
        if ids.is_empty() {
            return;
        }
        let mut state = self.state.lock();
        for job in state.jobs.iter_mut().filter(|job| ids.contains(&job.id)) {
            job.status = status;
            job.version = version;
            job.error = error.map(str::to_owned);
        }
        drop(state);
        self.changed.notify_all();
    }
}

/// A job waiting for models another server trains.
struct Waiting {
    job: String,
    /// The version in use when it was queued.
    before: u64,
    since: Instant,
}

/// The model thread's state between polls.
struct ModelThread {
    /// The store's training lock, while held (with [`SchedulerConfig::elect_trainer`]).
    lock: Option<Box<dyn TrainingLock>>,
    /// When the last training started, by the engine's clock (a failed one waits for the next
    /// period too).
    attempted_ms: i64,
    /// The lock was just acquired: load what was published, then train at once.
    became_trainer: bool,
    waiting: Vec<Waiting>,
}

impl ModelThread {
    fn new(_shared: &Shared) -> ModelThread {
        ModelThread { lock: None, attempted_ms: 0, became_trainer: false, waiting: Vec::new() }
    }

    fn run(mut self, shared: &Shared) {
        loop {
            if shared.state.lock().stopped {
                // Jobs still waiting are answered, so that no caller waits for ever.
                let queued = shared.take_queued();
                let waiting: Vec<String> = self.waiting.drain(..).map(|w| w.job).collect();
                let stopped = Some("the server stopped before the training finished");
                shared.finish(&queued, JobStatus::Failed, None, stopped);
                shared.finish(&waiting, JobStatus::Failed, None, stopped);
                return;
            }
            self.poll(shared);
            shared.sleep_unless_queued(shared.config.model_poll);
        }
    }

    fn poll(&mut self, shared: &Shared) {
        let engine = &shared.engine;
        if shared.config.elect_trainer {
            self.elect(engine);
        }
        let jobs = shared.take_queued();
        if engine.is_trainer() {
            self.train_if_due(shared, jobs);
        } else {
            self.follow(shared, jobs);
        }
    }

    /// Keeps or tries to take the store's training lock.
    fn elect(&mut self, engine: &Engine) {
        if self.lock.as_mut().is_some_and(|lock| !lock.is_held()) {
            tracing::warn!("lost the training lock (its connection died)");
            self.lock = None;
            engine.set_trainer(false);
        }
        if self.lock.is_some() {
            return;
        }
        match engine.store().try_training_lock() {
            Ok(Some(lock)) => {
                if engine.config().cluster {
                    tracing::info!("this server now trains the models");
                    self.became_trainer = true;
                }
                self.lock = Some(lock);
                engine.set_trainer(true);
            }
            Ok(None) => {}
            Err(err) => tracing::warn!(error = %err, "trying the training lock failed"),
        }
    }

    /// The trainer: trains for queued jobs, a forced retrain, the cadence or a new election, and
    /// publishes on a shared store.
    fn train_if_due(&mut self, shared: &Shared, mut jobs: Vec<String>) {
        let engine = &shared.engine;
        // Jobs queued while another server trained are served by this training now.
        jobs.extend(self.waiting.drain(..).map(|w| w.job));
        let cluster = engine.config().cluster;
        if self.became_trainer
            && let Err(err) = engine.load_published_models()
        {
            // So that versions keep increasing across trainers.
            tracing::warn!(error = %err, "loading the published models before training failed");
        }
        let forced = engine.retrain_due_ms().ok().flatten().is_some();
        // Scheduled from the models in use as well, so models trained just before (the demo)
        // or through the API are not trained again at once.
        let scheduled = shared.config.train_every.is_some_and(|every| {
            let since_ms = engine.models().trained_at_ms.max(self.attempted_ms);
            since_ms == 0 || engine.now_ms() - since_ms >= every.as_millis() as i64
        });
        if jobs.is_empty() && !forced && !scheduled && !self.became_trainer {
            return;
        }
        self.became_trainer = false;
        self.attempted_ms = engine.now_ms();
        let trained = engine.train();
        if let Some(after_training) = shared.config.after_training {
            after_training();
        }
        let outcome = match trained {
            Ok(snapshot) if !cluster => Ok(snapshot.version),
            Ok(snapshot) => match self.lock.as_mut().map(|lock| lock.is_held()) {
                // Without the election (on demand) the engine's trainer flag stood for the lock.
                Some(false) => {
                    tracing::warn!(version = snapshot.version, "lost the training lock: not publishing");
                    self.lock = None;
                    engine.set_trainer(false);
                    Err(String::from("this server lost the training lock before publishing"))
                }
                _ => engine.publish_models().map_err(|err| {
                    tracing::error!(error = %err, "publishing the models failed");
                    err.to_string()
                }),
            },
            Err(err) => {
                tracing::error!(error = %err, "training failed; the previous models stay in use");
                Err(err.to_string())
            }
        };
        match outcome {
            Ok(version) => {
                tracing::info!(version, forced, jobs = jobs.len(), "models trained and swapped in");
                shared.finish(&jobs, JobStatus::Succeeded, Some(version), None);
            }
            Err(error) => shared.finish(&jobs, JobStatus::Failed, None, Some(&error)),
        }
    }

    /// Not the trainer: loads what the trainer publishes; a queued job asks it to train (the
    /// durable retrain marker) and succeeds once a newer version is in use here.
    fn follow(&mut self, shared: &Shared, jobs: Vec<String>) {
        let engine = &shared.engine;
        if engine.config().cluster
            && let Err(err) = engine.load_published_models()
        {
            tracing::warn!(error = %err, "loading the published models failed; retrying");
        }
        for job in jobs {
            match engine.request_training() {
                Ok(()) => self.waiting.push(Waiting { job, before: engine.models().version, since: Instant::now() }),
                Err(err) => shared.finish(&[job], JobStatus::Failed, None, Some(&err.to_string())),
            }
        }
        let version = engine.models().version;
        self.waiting.retain(|waiting| {
            if version > waiting.before {
                shared.finish(std::slice::from_ref(&waiting.job), JobStatus::Succeeded, Some(version), None);
                false
            } else if waiting.since.elapsed() >= TRAINED_ELSEWHERE_WITHIN {
                let error = "the server holding the training lock published no newer models within 15 minutes";
                shared.finish(std::slice::from_ref(&waiting.job), JobStatus::Failed, None, Some(error));
                false
            } else {
                true
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use attune_core::validate::RawEvent;
    use attune_store::{EmbeddedStore, NewEvent, Store};

    use super::*;
    use crate::{EngineConfig, IngestItem, ManualClock};

    const T0: i64 = 1_760_000_000_000;
    const WITHIN: Duration = Duration::from_secs(60);

    fn engine(dir: &std::path::Path) -> (Arc<Engine>, Arc<ManualClock>) {
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir).unwrap());
        let clock = Arc::new(ManualClock::new(T0));
        let engine = Engine::open(store, clock.clone(), EngineConfig::default()).unwrap();
        (Arc::new(engine), clock)
    }

    fn views(engine: &Engine, user: &str, items: &[&str]) {
        let batch: Vec<IngestItem> = items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                IngestItem::Raw(RawEvent {
                    id: Some(format!("{user}-{item}-{i}")),
                    kind: Some("view".into()),
                    user: Some(user.into()),
                    item: Some((*item).into()),
                    ..RawEvent::default()
                })
            })
            .collect();
        let report = engine.ingest(batch).unwrap();
        assert_eq!(report.accepted, items.len(), "{report:?}");
    }

    fn config(train_every: Option<Duration>) -> SchedulerConfig {
        SchedulerConfig { train_every, model_poll: Duration::from_millis(10), ..SchedulerConfig::on_demand() }
    }

    /// Waits (up to a minute) until `check` holds.
    fn eventually(what: &str, check: impl Fn() -> bool) {
        let started = Instant::now();
        while !check() {
            assert!(started.elapsed() < WITHIN, "{what} did not happen within a minute");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_queued_job_trains_and_reports_its_version() {
        let dir = tempfile::tempdir().unwrap();
        let (engine, _clock) = engine(dir.path());
        views(&engine, "u-1", &["a", "b", "c"]);
        let scheduler = Scheduler::start(Arc::clone(&engine), SchedulerConfig::on_demand());
        assert_eq!(engine.models().version, 0, "on demand, nothing trains before a job");
        let job = scheduler.queue_training("key_test").unwrap();
        assert_eq!(job.status, JobStatus::Running);
        let done = scheduler.wait_for(&job.id, WITHIN).unwrap();
        assert_eq!(done.status, JobStatus::Succeeded, "{done:?}");
        assert_eq!(done.version, Some(engine.models().version));
        assert_eq!(scheduler.job(&job.id), Some(done));
        assert!(scheduler.job("job-unknown").is_none());
        let audit = engine.audit_log(0, 100).unwrap();
        assert!(audit.iter().any(|entry| entry.action == "models.train" && entry.target == job.id), "{audit:?}");
        scheduler.shutdown();
    }

    #[test]
    fn the_after_training_hook_runs_after_each_training_before_its_job_is_answered() {
        static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        fn count() {
            CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        let dir = tempfile::tempdir().unwrap();
        let (engine, _clock) = engine(dir.path());
        views(&engine, "u-1", &["a", "b", "c"]);
        let config = SchedulerConfig { after_training: Some(count), ..SchedulerConfig::on_demand() };
        let scheduler = Scheduler::start(Arc::clone(&engine), config);
        for round in 1..=2 {
            let job = scheduler.queue_training("key_test").unwrap();
            let done = scheduler.wait_for(&job.id, WITHIN).unwrap();
            assert_eq!(done.status, JobStatus::Succeeded, "{done:?}");
            assert_eq!(CALLS.load(std::sync::atomic::Ordering::SeqCst), round);
        }
        scheduler.shutdown();
    }

    #[test]
    fn a_failed_training_keeps_the_previous_models() {
        let dir = tempfile::tempdir().unwrap();
        let (engine, _clock) = engine(dir.path());
        views(&engine, "u-1", &["a", "b", "c"]);
        let scheduler = Scheduler::start(Arc::clone(&engine), SchedulerConfig::on_demand());
        let first = scheduler.queue_training("key_test").unwrap();
        let first = scheduler.wait_for(&first.id, WITHIN).unwrap();
        assert_eq!(first.status, JobStatus::Succeeded);
        let served = engine.models();
        // An event whose payload does not decode: the next training's scan fails on it.
        engine
            .store()
            .append_events(vec![NewEvent {
                id: "broken".into(),
                subject: "u-2".into(),
                ts_ms: T0,
                expires_ms: i64::MAX,
                payload: vec![0xff, 0xff, 0xff],
            }])
            .unwrap();
        let second = scheduler.queue_training("key_test").unwrap();
        let second = scheduler.wait_for(&second.id, WITHIN).unwrap();
        assert_eq!(second.status, JobStatus::Failed, "{second:?}");
        assert!(second.error.as_deref().is_some_and(|e| !e.is_empty()));
        assert_eq!(second.version, None);
        assert!(Arc::ptr_eq(&served, &engine.models()), "the previous snapshot stays in use");
        assert!(engine.ready(), "a failed training still settles readiness");
        scheduler.shutdown();
    }

    #[test]
    fn the_cadence_and_a_forced_retrain_train_without_a_job() {
        let dir = tempfile::tempdir().unwrap();
        let (engine, clock) = engine(dir.path());
        views(&engine, "u-1", &["a", "b", "c"]);
        let scheduler = Scheduler::start(Arc::clone(&engine), config(Some(Duration::from_secs(3600))));
        eventually("the training at start", || engine.models().version == 1);
        clock.advance(30 * 60 * 1000);
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(engine.models().version, 1, "half a period later nothing trains");
        clock.advance(31 * 60 * 1000);
        eventually("the training a period later", || engine.models().version == 2);
        // A forced retrain (what an erasure asks for) does not wait for the period.
        engine.request_training().unwrap();
        eventually("the forced retrain", || engine.models().version == 3);
        eventually("the marker cleared", || engine.retrain_due_ms().unwrap().is_none());
        scheduler.shutdown();
    }

    #[test]
    fn periodic_jobs_run_and_stop_with_the_scheduler() {
        let dir = tempfile::tempdir().unwrap();
        let (engine, _clock) = engine(dir.path());
        let config = SchedulerConfig {
            flush_every: Some(Duration::from_millis(10)),
            retention_every: Some(Duration::from_millis(10)),
            purge_every: Some(Duration::from_millis(10)),
            ..SchedulerConfig::on_demand()
        };
        let scheduler = Scheduler::start(Arc::clone(&engine), config);
        // Four holders: the handle, and the flush, retention and purge threads.
        eventually("the threads started", || Arc::strong_count(&scheduler.shared) == 4);
        eventually("a sweep ran", || engine.audit_log(0, 10).is_ok());
        scheduler.shutdown();
        assert_eq!(Arc::strong_count(&scheduler.shared), 1, "every thread ended");
        // A job queued after the end is answered, not left running for ever.
        let job = scheduler.queue_training("key_test").unwrap();
        let job = scheduler.wait_for(&job.id, WITHIN).unwrap();
        assert_eq!(job.status, JobStatus::Failed);
    }
}
