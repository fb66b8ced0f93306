//! The engine's front: [`Engine`] owns the components (each owns its state and its store
//! access) and wires them together; every public method is a short delegation to a component or
//! to a pipeline context built over the components it needs. Nothing below the front knows the
//! [`Engine`]; only the [`crate::scheduler`], which drives it, sits above.

use std::sync::Arc;

use attune_core::{Consent, Preferences, Schema};
use attune_store::{Store, Table};

use crate::audit::{AuditEntry, AuditLog};
use crate::catalog::Catalog;
use crate::clock::{Clock, Ids, UlidIds};
use crate::decisions::DecisionLog;
use crate::editorial::Editorial;
use crate::error::{self, EngineError, Result};
use crate::experiments::Experiments;
use crate::ingest::{IngestItem, IngestReport, PreparedBatch};
use crate::keys::{ApiKey, Keys, Scope};
use crate::memory::MemoryEstimate;
use crate::models::Models;
use crate::people::People;
use crate::privacy::{ErasureReceipt, ForgetReport, PersonExport, PrivacyReport, SweepReport};
use crate::profiles::{MergeReport, PersonView};
use crate::sync::SyncReport;
use crate::variants::VariantBandits;
use crate::{
    catalog, cluster, decide, decisions, digest, editorial, experiments, fold, ingest, ledger, measure, memory, models,
    privacy, profiles, records, sync, variants,
};

/// How the engine behaves where the API leaves a choice to the operator.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Consent for purposes a person has not answered.
    pub default_consent: Consent,
    /// Retention of behavioral events, in days.
    pub default_retention_days: u32,
    /// Retention of audit entries, in days (default 400).
    pub audit_retention_days: u32,
    /// Retention of logged decisions, exposures and notification plans, in days (default 90).
    pub decision_retention_days: u32,
    /// How much of a feed draws on declared goals before a person has a history.
    pub revelation: decide::Revelation,
    /// How training chooses the served ranker.
    pub ranker: attune_rank::RankerOptions,
    /// Other processes share the store: track folded events so that [`Engine::sync_from_store`]
    /// can fold theirs (see [`cluster`]). Off for the embedded store (one process).
    pub cluster: bool,
    /// The erasure ledger file (see [`ledger`]): every erasure is appended to it, and the people
    /// it names are erased again at start. `None`: no ledger (erasures do not survive restoring
    /// a backup taken before them).
    pub erasure_ledger: Option<std::path::PathBuf>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            default_consent: Consent::default(),
            default_retention_days: attune_core::schema::DEFAULT_RETENTION_DAYS,
            audit_retention_days: privacy::DEFAULT_AUDIT_RETENTION_DAYS,
            decision_retention_days: privacy::DEFAULT_DECISION_RETENTION_DAYS,
            revelation: decide::Revelation::default(),
            ranker: attune_rank::RankerOptions::default(),
            cluster: false,
            erasure_ledger: None,
        }
    }
}

/// The `meta` record with the version of each engine record family.
const ENGINE_FORMAT_KEY: &str = "engine:format";

/// The engine's record families and the version of their encoding this build writes: event
/// payloads (postcard of `attune_core::Event`), JSON records in the tables, the erasure ledger.
pub const ENGINE_FAMILIES: [(&str, u32); 3] = [("event_payload", 1), ("records", 1), ("erasure_ledger", 1)];

/// The file a complete backup directory holds, written last.
pub const BACKUP_MANIFEST: &str = "BACKUP";

/// Checks the versions of the engine's record families (`engine:format` in
/// [`Table::Meta`], [`ENGINE_FAMILIES`]): refuses a newer one, stamps a store written
/// before the record existed (their encodings then were these, version 1).
fn check_format(store: &dyn Store) -> Result<()> {
    let record = |families: &[(&str, u32)]| {
        families.iter().map(|(name, version)| format!("{name} {version}\n")).collect::<String>().into_bytes()
    };
    match store.get(Table::Meta, ENGINE_FORMAT_KEY)? {
        Some(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            for line in text.lines().filter(|line| !line.is_empty()) {
                let (name, version) = line
                    .split_once(' ')
                    .and_then(|(name, v)| Some((name, v.trim().parse::<u32>().ok()?)))
                    .ok_or_else(|| error::corrupt("engine format record", line))?;
                match ENGINE_FAMILIES.iter().find(|(family, _)| *family == name) {
                    Some((_, known)) if version <= *known => {}
                    _ => {
                        return Err(EngineError::Internal(attune_store::StoreError::Format(format!(
                            "the store holds `{name}` records in version {version}, which this build of attune \
                             does not read: run a newer attune"
                        ))));
                    }
                }
            }
            if bytes != record(&ENGINE_FAMILIES) {
                store.put(Table::Meta, ENGINE_FORMAT_KEY, &record(&ENGINE_FAMILIES))?;
            }
        }
        None => store.put(Table::Meta, ENGINE_FORMAT_KEY, &record(&ENGINE_FAMILIES))?,
    }
    Ok(())
}

/// The engine. Cheap to share: wrap it in an `Arc`.
pub struct Engine {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn Ids>,
    config: EngineConfig,
    catalog: Catalog,
    people: People,
    keys: Keys,
    audit: AuditLog,
    privacy: privacy::PrivacyState,
    editorial: Editorial,
    models: Models,
    /// People erased since the models were trained: their factors are never used again.
    decisions: DecisionLog,
    /// The slots' variant bandits (see [`variants`]).
    variants: variants::VariantBandits,
    experiments: Experiments,
    cluster: cluster::ClusterState,
}

impl Engine {
    /// Opens the engine over `store`: loads the catalog, schemas, keys, aliases, consent and
    /// preferences, then folds every stored event into profiles, then completes erasures a crash
    /// interrupted (see [`privacy`]).
    pub fn open(store: Arc<dyn Store>, clock: Arc<dyn Clock>, config: EngineConfig) -> Result<Engine> {
        // The record families' versions are checked before anything is read.
        check_format(&*store)?;
        let cluster = cluster::ClusterState::new(config.cluster);
        let audit = AuditLog::new(store.clone(), clock.clone());
        let keys = Keys::open(store.clone(), clock.clone())?;
        let catalog = Catalog::open(store.clone())?;
        let people = People::open(store.clone(), clock.clone(), audit.clone(), config.default_consent)?;
        let editorial = Editorial::open(store.clone(), clock.clone(), audit.clone())?;
        let variants = VariantBandits::open(store.clone())?;
        let models = Models::new(store.clone(), clock.clone(), config.ranker, config.cluster);
        let experiments = Experiments::open(store.clone(), clock.clone(), audit.clone())?;
        let decisions = DecisionLog::new(store.clone(), clock.clone(), config.cluster);
        decisions.build_review_index()?;
        let engine = Engine {
            cluster,
            store,
            clock,
            ids: Arc::new(UlidIds),
            config,
            catalog,
            people,
            keys,
            audit,
            privacy: privacy::PrivacyState::default(),
            editorial,
            models,
            decisions,
            variants,
            experiments,
        };
        engine.load()?;
        engine.privacy_ctx().open_privacy()?;
        engine.privacy_ctx().reapply_ledger()?;
        Ok(engine)
    }

    /// Writes a consistent copy of the store into the new directory `dest` while serving
    /// ([`attune_store::Store::backup`]), then the erasure ledger beside it (copied after the
    /// snapshot, so it names everyone erased up to the end of the backup), then a `BACKUP`
    /// manifest, last: a directory without one is an incomplete backup.
    pub fn backup(&self, dest: &std::path::Path) -> Result<attune_store::BackupReport> {
        let taken_at_ms = self.now_ms();
        let report = self.store.backup(dest)?;
        if let Some(ledger) = &self.config.erasure_ledger {
            ledger::merge(std::slice::from_ref(ledger), &dest.join(ledger::LEDGER_FILE))
                .map_err(|err| error::corrupt("erasure ledger copy", err))?;
        }
        let manifest = format!(
            "attune backup\ntaken_at_ms {taken_at_ms}\nbackend {}\nevents {}\nrecords {}\n",
            self.store.backend(),
            report.events,
            report.records
        );
        std::fs::write(dest.join(BACKUP_MANIFEST), manifest)
            .and_then(|()| std::fs::File::open(dest.join(BACKUP_MANIFEST))?.sync_all())
            .and_then(|()| std::fs::File::open(dest)?.sync_all())
            .map_err(|err| error::corrupt("backup manifest", err))?;
        Ok(report)
    }

    /// This engine with another source of decision ids (tests: [`SequentialIds`]).
    pub fn with_ids(mut self, ids: Arc<dyn Ids>) -> Engine {
        self.ids = ids;
        self
    }

    fn load(&self) -> Result<()> {
        self.fold().replay_events()
    }

    // ---- the pipelines' views of the components ----

    pub(crate) fn fold(&self) -> fold::FoldCtx<'_> {
        fold::FoldCtx { store: &*self.store, catalog: &self.catalog, people: &self.people, cluster: &self.cluster }
    }

    fn ingest_ctx(&self) -> ingest::IngestCtx<'_> {
        ingest::IngestCtx {
            store: &*self.store,
            clock: &*self.clock,
            catalog: &self.catalog,
            people: &self.people,
            cluster: &self.cluster,
            decisions: &self.decisions,
            variants: &self.variants,
        }
    }

    fn sync_ctx(&self) -> sync::SyncCtx<'_> {
        sync::SyncCtx {
            store: &*self.store,
            clock: &*self.clock,
            audit: &self.audit,
            catalog: &self.catalog,
            people: &self.people,
            keys: &self.keys,
            editorial: &self.editorial,
            experiments: &self.experiments,
            variants: &self.variants,
            decisions: &self.decisions,
            cluster: &self.cluster,
            models: &self.models,
        }
    }

    fn privacy_ctx(&self) -> privacy::PrivacyCtx<'_> {
        privacy::PrivacyCtx {
            store: &*self.store,
            clock: &*self.clock,
            audit: &self.audit,
            catalog: &self.catalog,
            people: &self.people,
            cluster: &self.cluster,
            decisions: &self.decisions,
            experiments: &self.experiments,
            models: &self.models,
            privacy: &self.privacy,
            audit_retention_days: self.config.audit_retention_days,
            decision_retention_days: self.config.decision_retention_days,
            erasure_ledger: self.config.erasure_ledger.as_deref(),
        }
    }

    fn decide_ctx(&self) -> decide::DecideCtx<'_> {
        decide::DecideCtx {
            clock: &*self.clock,
            ids: &*self.ids,
            revelation: self.config.revelation,
            catalog: &self.catalog,
            editorial: &self.editorial,
            models: &self.models,
            people: &self.people,
            experiments: &self.experiments,
            variants: &self.variants,
            decisions: &self.decisions,
        }
    }

    fn measure_ctx(&self) -> measure::MeasureCtx<'_> {
        measure::MeasureCtx {
            store: &*self.store,
            clock: &*self.clock,
            people: &self.people,
            models: &self.models,
            experiments: &self.experiments,
        }
    }

    fn digest_ctx(&self) -> digest::DigestCtx<'_> {
        digest::DigestCtx { store: &*self.store, decide: self.decide_ctx(), measure: self.measure_ctx() }
    }

    pub(crate) fn profiles(&self) -> profiles::ProfilesCtx<'_> {
        profiles::ProfilesCtx {
            store: &*self.store,
            clock: &*self.clock,
            audit: &self.audit,
            catalog: &self.catalog,
            people: &self.people,
            cluster: &self.cluster,
            models: &self.models,
        }
    }

    /// The store (for the binary's maintenance commands).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Now, by the engine's clock.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Reads the catalog.
    pub fn catalog(&self) -> parking_lot::RwLockReadGuard<'_, catalog::ItemIndex> {
        self.catalog.read()
    }

    /// Number of people (ids with consent, preferences or events) in memory.
    pub fn n_people(&self) -> usize {
        self.people.len()
    }

    /// Whether the engine is ready to serve (`GET /readyz`): the store is open (it is, once the
    /// engine exists) and the models are loaded — a first training has finished (even one that
    /// failed or found nothing to learn: decisions then use the catalog's general ranking), or
    /// models published by another server were looked for and loaded if there were any. Until
    /// then decisions work, but without models.
    pub fn ready(&self) -> bool {
        self.models.settled()
    }

    /// The person id an id resolves to (anonymous ids merged into a person resolve to the person).
    pub fn resolve(&self, id: &str) -> String {
        self.people.resolve(id)
    }

    /// The effective consent of a (resolved) person.
    pub fn consent_of(&self, person: &str) -> Consent {
        self.people.consent_of(person)
    }

    // ---- catalog ----

    /// Adds or replaces items, durably. Returns how many.
    pub fn upsert_items(&self, items: Vec<attune_core::Item>) -> Result<usize> {
        self.catalog.upsert_items(items)
    }

    /// An item by id.
    pub fn item(&self, id: &str) -> Option<Arc<attune_core::Item>> {
        self.catalog.item(id)
    }

    /// Marks an item unavailable (it is never recommended again; history keeps it).
    pub fn withdraw_item(&self, id: &str) -> Result<()> {
        self.catalog.withdraw_item(id)
    }

    // ---- schemas ----

    /// Declares (or redeclares) an event type.
    pub fn put_schema(&self, name: &str, schema: Schema) -> Result<()> {
        if self.catalog.put_schema(name, schema)? {
            // What the type means changed: the profiles its stored events shaped are refolded.
            self.profiles().refold_declared(&[name.to_owned()])?;
        }
        Ok(())
    }

    /// A declared schema.
    pub fn schema(&self, name: &str) -> Option<Schema> {
        self.catalog.schema(name)
    }

    /// Every declared schema.
    pub fn schemas(&self) -> Vec<(String, Schema)> {
        self.catalog.schemas()
    }

    // ---- keys ----

    /// Creates a key; returns the stored key and the secret (shown once).
    pub fn create_key(&self, name: &str, scopes: Vec<Scope>) -> Result<(ApiKey, String)> {
        self.create_key_with(name, scopes, false)
    }

    /// [`Engine::create_key`], marking a key minted while the server runs open (without an
    /// admin key): such keys stop working once an admin key is set.
    pub fn create_key_with(&self, name: &str, scopes: Vec<Scope>, minted_open: bool) -> Result<(ApiKey, String)> {
        self.keys.create(name, scopes, minted_open)
    }

    /// Creates a browser key for `origins` (normalized by the caller) with `scopes` (a subset of
    /// `events:write` and `decide`); returns the stored key and the secret.
    pub fn create_browser_key(
        &self,
        name: &str,
        scopes: Vec<Scope>,
        origins: Vec<String>,
        minted_open: bool,
    ) -> Result<(ApiKey, String)> {
        self.keys.create_browser(name, scopes, origins, minted_open)
    }

    /// Revokes a key by id.
    pub fn revoke_key(&self, id: &str) -> Result<()> {
        self.keys.revoke(id)
    }

    /// Every key (without secrets).
    pub fn list_keys(&self) -> Vec<ApiKey> {
        self.keys.list()
    }

    /// The live (not revoked) key with this hash (a console session holds the hash, never
    /// the key).
    pub fn key_by_hash(&self, hash: &str) -> Option<ApiKey> {
        self.keys.by_hash(hash)
    }

    /// The key a secret belongs to, if any and not revoked.
    pub fn authenticate(&self, secret: &str) -> Option<ApiKey> {
        self.keys.authenticate(secret)
    }

    /// Every origin of a live browser key (for CORS preflights, which carry no key).
    pub fn browser_origins(&self) -> Vec<String> {
        self.keys.browser_origins()
    }

    /// Whether a browser key (without an identity token) may act for `id`: an anonymous id of
    /// the browser form ([`keys::is_browser_visitor_id`]) that is not merged into anyone and is
    /// not a person of its own beyond the consent its visitor gave (no events as a user, no
    /// preferences, nothing merged into it).
    pub fn browser_visitor_allowed(&self, id: &str) -> bool {
        self.people.browser_visitor_allowed(id)
    }

    // ---- editorial ----

    /// A slot's settings (defaults for a slot never configured).
    pub fn slot(&self, slot: &str) -> editorial::SlotSettings {
        self.editorial.slot(slot)
    }

    /// Every configured slot.
    pub fn slots(&self) -> Vec<(String, editorial::SlotSettings)> {
        self.editorial.slots()
    }

    /// Sets a slot's settings (checked: [`editorial::SlotSettings::check`]).
    pub fn put_slot(&self, slot: &str, settings: editorial::SlotSettings, key_id: &str) -> Result<()> {
        self.editorial.put_slot(slot, settings, key_id)
    }

    /// Adds or replaces a pick (checked: [`editorial::Pick::check`]; the item must exist).
    pub fn put_pick(&self, pick: editorial::Pick, key_id: &str) -> Result<()> {
        self.editorial.put_pick(pick, key_id, |item| self.item(item).is_some())
    }

    /// A pick.
    pub fn pick(&self, id: &str) -> Option<editorial::Pick> {
        self.editorial.pick(id)
    }

    /// Every pick, by id.
    pub fn picks(&self) -> Vec<editorial::Pick> {
        self.editorial.picks()
    }

    /// Deletes a pick.
    pub fn delete_pick(&self, id: &str, key_id: &str) -> Result<()> {
        self.editorial.delete_pick(id, key_id)
    }

    /// Adds or replaces a rule (checked: [`editorial::Rule::check`]).
    pub fn put_rule(&self, rule: editorial::Rule, key_id: &str) -> Result<()> {
        self.editorial.put_rule(rule, key_id)
    }

    /// A rule.
    pub fn rule(&self, id: &str) -> Option<editorial::Rule> {
        self.editorial.rule(id)
    }

    /// Rules (only those due for review at `now_ms` when `due_only`), by id.
    pub fn rules(&self, due_only: bool) -> Vec<editorial::Rule> {
        self.editorial.rules(due_only)
    }

    /// Deletes a rule.
    pub fn delete_rule(&self, id: &str, key_id: &str) -> Result<()> {
        self.editorial.delete_rule(id, key_id)
    }

    /// Flags an item: it is held back from recommendations until cleared.
    pub fn flag_item(&self, item: &str, note: &str, key_id: &str) -> Result<editorial::Flag> {
        self.editorial.flag_item(item, note, key_id, |item| self.item(item).is_some())
    }

    /// Clears a flag.
    pub fn clear_flag(&self, item: &str, key_id: &str) -> Result<()> {
        self.editorial.clear_flag(item, key_id)
    }

    /// Every flag.
    pub fn flags(&self) -> Vec<editorial::Flag> {
        self.editorial.flags()
    }

    /// Every slot that is configured or has shown a variant, sorted.
    pub fn variant_slots(&self) -> Vec<String> {
        self.variants.slots(self.editorial.slots().into_iter().map(|(slot, _)| slot).collect())
    }

    /// How each variant of `slot` performs: the slot's configured variants first (in order, with
    /// zero counts if never shown), then variants it showed before its settings changed. Counts
    /// are this server's view: the stored totals plus its own increments not flushed yet.
    pub fn variant_performance(&self, slot: &str) -> Vec<variants::VariantPerformance> {
        self.variants.performance(slot, self.editorial.slot(slot).variants)
    }

    // ---- decision log ----

    /// A logged decision still in memory.
    pub fn logged_decision(&self, id: &str) -> Option<decisions::LoggedDecision> {
        self.decisions.logged(id)
    }

    /// Recent decisions, newest first: for a slot (if given), at or after `since_ms` — read
    /// from the store (after flushing this server's), so the log survives restarts, every server
    /// of one database shows the same, and erasure and retention reach it. Reads the review
    /// index newest first and stops after `limit` decisions (or at `since_ms`).
    pub fn recent_decisions(
        &self,
        slot: Option<&str>,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<decisions::LoggedDecision>> {
        self.flush_decisions()?;
        self.decisions.recent(slot, since_ms, limit)
    }

    /// A person's stored decisions, newest first (found by key prefix).
    pub fn decisions_of(&self, person: &str, limit: usize) -> Result<Vec<decisions::LoggedDecision>> {
        self.flush_decisions()?;
        self.decisions.of_person(person, limit)
    }

    /// The keyed pseudonym editors see instead of a person id: `p_` and the first 16 hex digits
    /// of HMAC-SHA256 under the server's secret (stable, not reversible without the secret).
    pub fn pseudonym(&self, person: &str) -> String {
        decisions::pseudonym(&self.link_secret(), person)
    }

    /// Persists decisions logged since the last flush (one durable batch), with the exposures,
    /// the variant bandits' increments and the time zones decide requests named, after retrying
    /// the attribution of answers whose decision was not stored yet. Called every second by the
    /// scheduler and at shutdown.
    pub fn flush_decisions(&self) -> Result<usize> {
        self.experiments.flush_exposures()?;
        self.people.flush_zones()?;
        self.decisions.retry_attributions(&self.people, &self.variants);
        self.variants.flush_stats()?;
        self.decisions.flush()
    }

    /// Drops a person's decisions from memory (erasure).
    pub fn forget_decisions_of(&self, ids: &[String]) {
        self.decisions.forget_decisions_of(ids)
    }

    // ---- experiments ----

    /// Adds or changes an experiment. Its bucket ranges are resized, never reassigned: raising a
    /// weight or the coverage moves nobody.
    pub fn put_experiment(
        &self,
        experiment: experiments::Experiment,
        key_id: &str,
    ) -> Result<experiments::StoredExperiment> {
        self.experiments.put_experiment(experiment, key_id)
    }

    /// Stops (no more assignment or exposure; results stay) or archives an experiment.
    pub fn set_experiment_status(
        &self,
        id: &str,
        status: experiments::Status,
        key_id: &str,
    ) -> Result<experiments::StoredExperiment> {
        self.experiments.set_experiment_status(id, status, key_id)
    }

    /// Every experiment, by id.
    pub fn experiments(&self) -> Vec<experiments::Experiment> {
        self.experiments.experiments()
    }

    /// Every experiment with its allocation and status, by id.
    pub fn stored_experiments(&self) -> Vec<experiments::StoredExperiment> {
        self.experiments.stored_experiments()
    }

    /// An experiment by id.
    pub fn experiment(&self, id: &str) -> Option<experiments::Experiment> {
        self.experiments.experiment(id)
    }

    /// An experiment with its allocation and status.
    pub fn stored_experiment(&self, id: &str) -> Option<experiments::StoredExperiment> {
        self.experiments.stored_experiment(id)
    }

    /// Sets the global holdout: a stable share of everyone kept on the non-personalized default
    /// on every slot (and out of experiments). Growing it moves nobody out of it.
    pub fn put_holdout(&self, share: f64, key_id: &str) -> Result<experiments::Holdout> {
        self.experiments.put_holdout(share, key_id)
    }

    /// The global holdout.
    pub fn holdout(&self) -> experiments::Holdout {
        self.experiments.holdout()
    }

    /// Whether a (resolved) person is in the global holdout.
    pub fn in_global_holdout(&self, person: &str) -> bool {
        self.experiments.in_global_holdout(person)
    }

    /// The stored exposures of an experiment: (person, exposure).
    pub fn exposures(&self, id: &str) -> Result<Vec<(String, experiments::Exposure)>> {
        self.experiments.exposures(id)
    }

    /// Brings the analysis state of every running experiment (default window) up to date, so
    /// that a query finds little to read: the scheduler calls it every few seconds, and right
    /// after start, off the request path. Returns the experiments refreshed.
    pub fn refresh_experiment_results(&self) -> Result<usize> {
        self.experiments.refresh_results(&self.people)
    }

    /// The cumulative lift of an experiment's primary metric at up to `n_points` moments evenly
    /// spaced from its first exposure to now, with always-valid intervals (the chart on the
    /// console). Each person counts from their exposure, with their events up to the moment.
    pub fn experiment_timeline(&self, id: &str, window_ms: i64, n_points: usize) -> Result<experiments::LiftTimeline> {
        self.experiments.timeline(&self.people, id, window_ms, n_points)
    }

    /// Per metric and arm: sufficient statistics over exposed people, the analysis against the
    /// control, and the sample-ratio check, computed from the store at query time (see
    /// [`experiments::experiment_results`](experiments::Experiments::results)).
    pub fn experiment_results(&self, id: &str, window_ms: i64) -> Result<experiments::ExperimentResults> {
        self.experiments.results(&self.people, id, window_ms)
    }

    // ---- models ----

    /// The models decisions use now.
    pub fn models(&self) -> Arc<models::ModelSnapshot> {
        self.models.current()
    }

    /// Trains every model from the event log and swaps them in. On error the previous models stay.
    pub fn train(&self) -> Result<Arc<models::ModelSnapshot>> {
        self.models.train(&self.catalog, &self.people)
    }

    /// Whether this process trains the models: always on its own store; on a shared one, while it
    /// holds the training lock (the scheduler's model thread reports that with
    /// [`Engine::set_trainer`]).
    pub fn is_trainer(&self) -> bool {
        self.models.is_trainer()
    }

    /// Records whether this process holds the cluster's training lock.
    pub fn set_trainer(&self, holds_the_lock: bool) {
        self.models.set_trainer(holds_the_lock)
    }

    /// Asks whichever process trains to train now (on a shared store: the lock holder, within its
    /// next poll), through the same durable marker an erasure leaves.
    pub fn request_training(&self) -> Result<()> {
        self.models.request_retrain_by(self.now_ms())
    }

    /// When the next training must have started (ms since the epoch), if an erasure or a
    /// forgotten item requires one: item-side statistics still hold the removed interactions.
    pub fn retrain_due_ms(&self) -> Result<Option<i64>> {
        self.models.retrain_due_ms()
    }

    /// Clears the retrain marker after a training that read the store from `training_started_ms`
    /// on; a marker set later (an erasure during the training) stays.
    pub fn clear_retrain_due(&self, training_started_ms: i64) -> Result<()> {
        self.models.clear_retrain_due(training_started_ms)
    }

    /// Writes the models in use to `Table::Models` for the other processes on the store: the
    /// chunks of the new version first, then the `current` header that names them, then the
    /// previous version's chunks are deleted. Returns the published version. The caller must hold
    /// the cluster's training lock (only one process publishes).
    pub fn publish_models(&self) -> Result<u64> {
        self.models.publish(&self.catalog)
    }

    /// The version published in the store, if any.
    pub fn published_models_version(&self) -> Result<Option<u64>> {
        self.models.published_version()
    }

    /// Loads the published models if their version differs from the one in use, renumbering items
    /// to this process's catalog, and swaps them in. Returns the version loaded (`None`: nothing
    /// new).
    pub fn load_published_models(&self) -> Result<Option<u64>> {
        self.models.load_published(&self.catalog)
    }

    // ---- audit ----

    /// Records an action in the audit log.
    pub fn audit(&self, key_id: &str, action: &str, target: &str) -> Result<()> {
        self.audit.record(key_id, action, target)
    }

    /// Audit entries at or after `since_ms`, oldest first, at most `limit`.
    pub fn audit_log(&self, since_ms: i64, limit: usize) -> Result<Vec<AuditEntry>> {
        self.audit.entries(since_ms, limit)
    }

    // ---- decisions ----

    /// Decides what to show. Never fails for an unknown person or an empty history.
    pub fn decide(&self, request: &decide::DecideRequest) -> Result<decide::Decision> {
        self.decide_ctx().decide(request)
    }

    /// Items similar to `id` (the served ranker's item-kNN neighbours; content similarity for
    /// items the models have not seen). Unavailable and flagged items are left out.
    pub fn similar_items(&self, id: &str, count: usize) -> Result<Vec<(Arc<attune_core::Item>, f32)>> {
        self.decide_ctx().similar_items(id, count)
    }

    /// Builds one email digest. Reserves a send from the shared budget only when it has items.
    pub fn digest(&self, request: &digest::DigestRequest) -> Result<digest::Digest> {
        self.digest_ctx().digest(request)
    }

    /// Every item the person's stored digests sent (sorted, unique).
    pub fn digest_items_sent(&self, person: &str) -> Result<Vec<String>> {
        self.digest_ctx().digest_items_sent(person)
    }

    /// The four dimensions over events with `from_ms <= ts < to_ms`.
    pub fn report(&self, from_ms: i64, to_ms: i64) -> Result<measure::Report> {
        let ethical = self.privacy_report(self.now_ms())?;
        self.measure_ctx().report(from_ms, to_ms, ethical)
    }

    /// Plans one notification: consent for the channel, quiet hours in the person's time zone,
    /// and one frequency budget across channels. A plan with a send time reserves one send.
    pub fn plan_notification(&self, id: &str, channel: &str, not_before_ms: i64) -> Result<measure::NotificationPlan> {
        self.measure_ctx().plan_notification(id, channel, not_before_ms)
    }

    /// Walks the people, the catalog and the models once (a few milliseconds per 100,000
    /// people; each shard is read-locked only while it is walked).
    pub fn memory_estimate(&self) -> MemoryEstimate {
        memory::estimate(&self.people, &self.catalog, &self.models)
    }

    // ---- privacy ----

    /// Sets consent (unset purposes were filled with defaults by the caller). Effective at once:
    /// withdrawing personalization drops the profile; granting it rebuilds it from stored events;
    /// withdrawing a purpose applies it to what is stored (see [`privacy`]).
    pub fn put_consent(&self, id: &str, consent: Consent, key_id: &str) -> Result<()> {
        self.privacy_ctx().put_consent(id, consent, key_id)
    }

    /// Erases a person (an anonymous id merged into a person erases that person) and every alias:
    /// events, consent, preferences, aliases, merge log entries, forgotten items, decisions,
    /// exposures, notification plans and in-memory state. Audit entries that named them now name
    /// the receipt. Then the erasure hooks run, a retraining is requested, and a purge of the
    /// deleted bytes from the store's files is due within [`privacy::ERASURE_PURGE_DEADLINE_MS`]
    /// (the receipt's `purge_by_ms`; the scheduler's purge job runs it, one purge for every
    /// erasure before it). Crash-safe: a `pending` record written first makes [`Engine::open`]
    /// complete an interrupted erasure. `NotFound` when the person is unknown.
    pub fn erase_person(&self, id: &str, key_id: &str) -> Result<ErasureReceipt> {
        self.privacy_ctx().erase_person(id, key_id)
    }

    /// Testing only: starts an erasure and stops after `steps` of its steps, as a crash would.
    /// [`Engine::open`] completes it.
    #[doc(hidden)]
    pub fn erase_interrupted(&self, id: &str, key_id: &str, steps: usize) -> Result<String> {
        self.privacy_ctx().erase_interrupted(id, key_id, steps)
    }

    /// A stored erasure receipt.
    pub fn erasure_receipt(&self, receipt_id: &str) -> Result<Option<ErasureReceipt>> {
        self.privacy_ctx().erasure_receipt(receipt_id)
    }

    /// When the store must purge deleted bytes by (ms since the epoch), if a deletion is waiting
    /// for a purge (see [`privacy`]).
    pub fn purge_due_ms(&self) -> Result<Option<i64>> {
        self.privacy_ctx().purge_due_ms()
    }

    /// Purges if a purge is due at `now_ms` (the scheduler's purge job asks every
    /// [`scheduler::PURGE_CHECK_EVERY`]); returns whether it purged.
    ///
    /// Runs beside erasures and consent rewrites, not after them: the marker is cleared before
    /// the store purges, and every deletion asks for a purge after it is done, so a deletion the
    /// running purge may have missed leaves the marker set for the next one.
    pub fn purge_if_due(&self, now_ms: i64) -> Result<bool> {
        self.privacy_ctx().purge_if_due(now_ms)
    }

    /// Every stored record about a person and their aliases. `NotFound` when the person is
    /// unknown. The caller audits (`users.export`, ids only).
    pub fn export_person(&self, id: &str) -> Result<PersonExport> {
        self.privacy_ctx().export_person(id)
    }

    /// Deletes what is past its retention: events (and refolds the profiles they shaped), audit
    /// entries older than [`EngineConfig::audit_retention_days`], decisions, exposures and
    /// notification plans older than [`EngineConfig::decision_retention_days`]. The scheduler
    /// runs it hourly.
    pub fn sweep_retention(&self, now_ms: i64) -> Result<SweepReport> {
        self.privacy_ctx().sweep_retention(now_ms)
    }

    /// The secret that signs `/me` links (32 random bytes, generated at first start, kept in
    /// `Table::Meta`).
    pub fn link_secret(&self) -> [u8; 32] {
        self.privacy.link_secret()
    }

    /// Registers a callback called with the erased ids (the person and their aliases) right
    /// after an erasure removed their stored data: the model layer drops their factors there.
    pub fn register_erasure_hook(&self, hook: privacy::ErasureHook) {
        self.privacy.register_erasure_hook(hook)
    }

    /// Items `person` asked to forget (`DELETE /v1/users/{id}/history/{item}`), from memory.
    /// `person` is a resolved id ([`Engine::resolve`]). Decide must never cite them as a reason,
    /// and training must skip the person's interactions with them. Forgetting is sticky: a later
    /// interaction with the item shapes the profile again, but the item stays out of reasons
    /// until the person is erased.
    pub fn forgotten_items(&self, person: &str) -> Vec<String> {
        self.privacy.forgotten_items(person)
    }

    /// Forgets one item: deletes the stored events of the person and their aliases about it,
    /// refolds the profile without them, records the item in `Table::Forgotten`, asks for a
    /// retraining and audits. `NotFound` when the person is unknown.
    pub fn forget_item(&self, id: &str, item: &str, key_id: &str) -> Result<ForgetReport> {
        self.privacy_ctx().forget_item(id, item, key_id)
    }

    /// The generation of `person`'s `/me` links, creating one if there is none (minting a link).
    /// A link carries the generation it was issued under and works only while it is current.
    pub fn me_link_generation(&self, person: &str) -> Result<String> {
        self.privacy_ctx().me_link_generation(person)
    }

    /// The current generation of `person`'s `/me` links, if any link was minted since the
    /// person was last erased or their links revoked.
    pub fn current_me_link_generation(&self, person: &str) -> Result<Option<String>> {
        self.privacy_ctx().current_me_link_generation(person)
    }

    /// Revokes every `/me` link of `id` issued so far (audited). `NotFound` when unknown.
    pub fn revoke_me_links(&self, id: &str, key_id: &str) -> Result<()> {
        self.privacy_ctx().revoke_me_links(id, key_id)
    }

    /// Consent rates per purpose, opt-outs, erasures, paused personalization and data held past
    /// retention (must be 0 after a sweep): the `ethical` part of `GET /v1/report`.
    pub fn privacy_report(&self, now_ms: i64) -> Result<PrivacyReport> {
        self.privacy_ctx().privacy_report(now_ms)
    }

    // ---- cluster ----

    /// Folds what other processes wrote to the shared store since the last call: their events,
    /// and changed items, schemas, keys, aliases, consent, preferences and editorial state (see
    /// [`cluster`]). Cheap when nothing changed; safe to call from one thread while requests are
    /// served. Does nothing unless the engine was opened with [`EngineConfig::cluster`].
    pub fn sync_from_store(&self) -> Result<SyncReport> {
        self.sync_ctx().sync_from_store()
    }

    // ---- events ----

    /// Ingests a batch. Refused events never fail the others. Returns after accepted events are
    /// durable.
    ///
    /// Three stages: validate and encode every event (in parallel for large batches, e.g.
    /// `attune import`), append durably (one store call, one fsync), then fold the new events
    /// into profiles (in parallel across people shards, each person's events in batch order).
    pub fn ingest(&self, batch: Vec<IngestItem>) -> Result<IngestReport> {
        self.ingest_ctx().ingest(batch)
    }

    /// [`ingest`](Engine::ingest) for bulk loads (`attune import`): the same validation, consent
    /// rules, deduplication and durability, stored with the backend's bulk path, which is faster
    /// per event for large batches (tens of thousands of events) and slower for small ones.
    pub fn ingest_bulk(&self, batch: Vec<IngestItem>) -> Result<IngestReport> {
        self.ingest_ctx().ingest_bulk(batch)
    }

    /// The first half of [`ingest_bulk`](Engine::ingest_bulk): validates and encodes a batch (on
    /// all cores when it is large) without storing anything, so that a bulk load can prepare the
    /// next batch while the previous one is stored. Consent and identity are read now: a batch
    /// prepared before a change to them is stored as prepared.
    pub fn prepare_batch(&self, batch: Vec<IngestItem>) -> PreparedBatch {
        self.ingest_ctx().prepare_batch(batch)
    }

    /// The second half of [`ingest_bulk`](Engine::ingest_bulk) (`bulk`) or of
    /// [`ingest`](Engine::ingest): stores a prepared batch durably, then folds its new events.
    pub fn store_batch(&self, batch: PreparedBatch, bulk: bool) -> Result<IngestReport> {
        self.ingest_ctx().store_batch(batch, bulk)
    }

    /// Decodes a stored event payload.
    pub fn decode_event(payload: &[u8]) -> Result<attune_core::Event> {
        records::decode_event(payload)
    }

    // ---- people ----

    /// What Attune knows about `id`; `NotFound` when nothing is known.
    pub fn person(&self, id: &str) -> Result<PersonView> {
        self.profiles().person(id)
    }

    /// The device's history becomes the person's (`POST /v1/identify`). Logged and audited.
    /// Refuses (`identity_conflict`) to merge an id that is itself a known person (see
    /// [`Engine::is_known_person`]): that would hand one person's history to another.
    pub fn identify(&self, anonymous_id: &str, user: &str, key_id: &str) -> Result<MergeReport> {
        self.identify_with(anonymous_id, user, key_id, false)
    }

    /// [`Engine::identify`]; with `force` (an admin's explicit request) a known person is merged
    /// too. A merge stays undoable ([`Engine::unmerge`]).
    pub fn identify_with(&self, anonymous_id: &str, user: &str, key_id: &str, force: bool) -> Result<MergeReport> {
        self.profiles().identify_with(anonymous_id, user, key_id, force)
    }

    /// Undoes a merge: the anonymous id's history is its own again.
    pub fn unmerge(&self, anonymous_id: &str, key_id: &str) -> Result<()> {
        self.profiles().unmerge(anonymous_id, key_id)
    }

    /// Every stored event of a person and their aliases, in sequence order.
    pub fn events_of(&self, person: &str) -> Result<Vec<(u64, attune_core::Event)>> {
        self.profiles().events_of(person)
    }

    /// Refolds a person's profile from the store (after a merge, a consent grant, a forgotten item).
    pub fn rebuild_profile(&self, person: &str) -> Result<()> {
        self.profiles().rebuild_profile(person)
    }

    /// Anonymous ids merged into `person`, sorted.
    pub fn aliases_of(&self, person: &str) -> Vec<String> {
        self.people.aliases_of(person)
    }

    /// Sets explicit preferences.
    pub fn put_preferences(&self, id: &str, preferences: Preferences, key_id: &str) -> Result<()> {
        self.people.put_preferences(id, preferences, key_id)
    }

    /// Whether `id` is a person in its own right, not merely a device: events were stored under
    /// it as a `user`, it has consent or preferences of its own, or other ids are merged into it.
    pub fn is_known_person(&self, id: &str) -> bool {
        self.people.is_known_person(id)
    }

    /// Loads stored consent for a person (used by the privacy layer).
    pub fn stored_consent(&self, id: &str) -> Result<Option<Consent>> {
        self.people.stored_consent(id)
    }

    /// Events stored, and bytes on disk.
    pub fn store_stats(&self) -> Result<(u64, u64)> {
        Ok((self.store.event_count()?, self.store.disk_bytes()))
    }
}
