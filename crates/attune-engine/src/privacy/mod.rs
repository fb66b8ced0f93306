//! Privacy operations: forgetting an item, exporting everything about a person, erasure with a
//! receipt (crash-safe), retention sweeps, what consent withdrawal does to stored events, the
//! privacy report, and the secret that signs `/me` links.
//!
//! # Key conventions (erasure and export find records by them)
//!
//! Erasure and export cannot know every record format other modules invent, so records about a
//! person are found by key:
//!
//! - [`Table::Decisions`] (decisions and exposures) and [`Table::Notifications`] (plans): every
//!   record that names a person is keyed `<person id>\0<anything>`, where the person id is the id
//!   the request named (a user or an anonymous id); erasure and export visit the prefix of the
//!   person and of each alias. Values should be JSON objects with an integer `at_ms` (ms since
//!   the epoch): the retention sweep deletes those older than
//!   [`EngineConfig::decision_retention_days`](crate::EngineConfig) (records without `at_ms` are
//!   kept). A secondary index (by time, by slot) must hold no person id in its key or value, or
//!   it survives erasure.
//! - [`Table::Zones`]: `<person>` → `{"timezone": …, "at_ms": …}`, the zone their latest decide
//!   request named (only with personalization consent: withdrawing it deletes the record, as do
//!   erasure and, after the decision retention, the sweep).
//! - [`Table::Forgotten`]: `<person>\0<item>`; [`Table::Erasures`]: `pending\0<person>` while an
//!   erasure runs, `rewrite\0<person>` while a consent withdrawal rewrites events, receipts under
//!   their receipt id (`rcpt_…`).
//! - [`Table::Meta`]: `retrain_due` (see [`crate::models::Models::retrain_due_ms`]), `purge_due` (see
//!   [`crate::Engine::purge_due_ms`]), `me_link_secret`, and `me_link\0<person>`: the generation of the
//!   person's `/me` links (erasure deletes it, so links issued before an erasure never work
//!   again); `erasure_ledger_secret` and `erasure_ledger_checked` (see [`crate::ledger`]).
//!
//! # Deleted bytes
//!
//! A deletion is logical until the store purges ([`attune_store::Store::purge`]): erasure purges
//! at once; forgetting an item, a consent withdrawal and the retention sweep ask for a purge by
//! [`PURGE_DEADLINE_MS`] later ([`crate::Engine::purge_due_ms`]), which `attune serve` runs within a
//! minute of that time ([`crate::Engine::purge_if_due`]), so their bytes leave the store's files within
//! 11 minutes.
//!
//! # What the model layer must honor
//!
//! - [`crate::Engine::register_erasure_hook`]: called with the erased ids (person and aliases) once an
//!   erasure has removed the stored data; drop those users' factors from live models then. Models
//!   persisted in [`Table::Models`] must not outlive an erasure with the person's factors: retrain
//!   (see below) or rewrite them.
//! - [`crate::Engine::retrain_due_ms`]: after an erasure or a forgotten item the next training must start
//!   by this time (at most [`RETRAIN_DEADLINE_MS`] later); item-side statistics (co-occurrences,
//!   popularity) are cleaned by that training. Check it at start too: an erasure completed at
//!   start (after a crash) ran before any hook was registered.
//! - [`crate::Engine::forgotten_items`]: never cite these items as a reason ("Because you read …") and
//!   skip the person's interactions with them in training.

use std::collections::BTreeSet;

use attune_core::{Consent, Event, Preferences, Purpose, SeenZone};
use attune_store::{StoredEvent, Table};
use parking_lot::{Mutex, RwLock};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use std::path::Path;

use attune_store::Store;

use crate::audit::{AuditEntry, AuditLog};
use crate::catalog::Catalog;
use crate::clock::Clock;
use crate::cluster::ClusterState;
use crate::decisions::DecisionLog;
use crate::error::Result;
use crate::experiments::Experiments;
use crate::models::Models;
use crate::people::People;
use crate::profiles::{PersonView, ProfilesCtx};
use crate::records::{from_json, to_json};

mod consent;
mod erasure;
mod export;
mod ledger;
mod retention;

use erasure::split_target;

/// How soon after an erasure (or a forgotten item) the next training must run: item-side
/// statistics still hold the person's interactions until then.
pub const RETRAIN_DEADLINE_MS: i64 = 15 * 60 * 1000;

/// How soon after forgetting an item, a consent withdrawal or a retention sweep deleted
/// something the store must purge (make the deletion physical). Purges are batched: one purge
/// covers every deletion requested before it.
pub const PURGE_DEADLINE_MS: i64 = 10 * 60 * 1000;

/// How soon after an erasure the store must purge its deleted bytes. The erasure itself answers
/// at once (everything is deleted and gone from every answer); the purge, which rewrites the
/// store's files, is batched, so that one purge covers every erasure of the last minute instead
/// of each erasure waiting for its own (19 s at the median under load in `attune bench soak`).
pub const ERASURE_PURGE_DEADLINE_MS: i64 = 60 * 1000;

/// Default retention of audit entries, in days.
pub const DEFAULT_AUDIT_RETENTION_DAYS: u32 = 400;

/// Default retention of logged decisions, exposures and notification plans, in days.
pub const DEFAULT_DECISION_RETENTION_DAYS: u32 = 90;

const DAY_MS: i64 = 86_400_000;
const PENDING_PREFIX: &str = "pending\0";
const REWRITE_PREFIX: &str = "rewrite\0";
const RECEIPT_PREFIX: &str = "rcpt_";
const META_PURGE_DUE: &str = "purge_due";
const META_LINK_SECRET: &str = "me_link_secret";
const ME_LINK_PREFIX: &str = "me_link\0";

/// A callback the model layer registers to drop erased people's factors at once.
pub type ErasureHook = Box<dyn Fn(&[String]) + Send + Sync>;

/// The privacy layer's in-memory state, one per engine.
#[derive(Default)]
pub(crate) struct PrivacyState {
    hooks: RwLock<Vec<ErasureHook>>,
    /// Forgotten items by person, for the decide path (which never waits on storage).
    forgotten: RwLock<FxHashMap<String, Vec<String>>>,
    link_secret: RwLock<[u8; 32]>,
    /// One erasure or consent rewrite at a time (each is several steps over the same records).
    exclusive: Mutex<()>,
    /// The erasure ledger's hashes, once the store has been checked against all of them (see
    /// `ledger.rs`): erasures add theirs and keep the checked count current.
    pub(crate) ledger_hashes: Mutex<Option<std::collections::BTreeSet<String>>>,
}

impl PrivacyState {
    /// The secret that signs `/me` links (loaded by [`PrivacyCtx::open_privacy`]).
    pub(crate) fn link_secret(&self) -> [u8; 32] {
        *self.link_secret.read()
    }

    /// Items `person` asked to forget, from memory (see [`PrivacyCtx::forget_item`]).
    pub(crate) fn forgotten_items(&self, person: &str) -> Vec<String> {
        self.forgotten.read().get(person).cloned().unwrap_or_default()
    }

    /// Registers a callback called with the erased ids right after an erasure.
    pub(crate) fn register_erasure_hook(&self, hook: ErasureHook) {
        self.hooks.write().push(hook);
    }
}

/// What the privacy operations read and change: nearly everything that names a person.
pub(crate) struct PrivacyCtx<'a> {
    pub store: &'a dyn Store,
    pub clock: &'a dyn Clock,
    pub audit: &'a AuditLog,
    pub catalog: &'a Catalog,
    pub people: &'a People,
    pub cluster: &'a ClusterState,
    pub decisions: &'a DecisionLog,
    pub experiments: &'a Experiments,
    pub models: &'a Models,
    pub privacy: &'a PrivacyState,
    /// Retention of audit entries, in days.
    pub audit_retention_days: u32,
    /// Retention of logged decisions, exposures and notification plans, in days.
    pub decision_retention_days: u32,
    /// The erasure ledger file, if any.
    pub erasure_ledger: Option<&'a Path>,
}

/// What `DELETE /v1/users/{id}/history/{item}` removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForgetReport {
    /// Stored events about the item (of the person and their aliases) that were deleted.
    pub events: u64,
    /// When the deleted bytes must be purged from the store's files by (ms since the epoch).
    pub purge_by_ms: i64,
}

/// Proof of an erasure: counts only, no personal data (not even the id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErasureReceipt {
    /// `rcpt_…`, the key of the receipt and the audit entry's target.
    pub receipt_id: String,
    /// When the erasure completed.
    pub erased_at_ms: i64,
    /// Events deleted.
    pub events: u64,
    /// Anonymous ids (merged devices) erased with the person.
    pub aliases: u64,
    /// Other records deleted: consent, preferences, merge log entries, forgotten items,
    /// decisions, exposures, notification plans.
    pub records: u64,
    /// Audit entries whose target named the person, now naming the receipt instead.
    pub audit_redacted: u64,
    /// Whether the erasure was interrupted (a crash) and completed at the next start.
    pub completed_at_start: bool,
    /// When the deleted bytes are purged from the store's files by (ms since the epoch); `None`
    /// in receipts written before erasures batched their purge (they purged before answering).
    #[serde(default)]
    pub purge_by_ms: Option<i64>,
}

/// An entry of the merge log (`POST /v1/identify`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeRecord {
    /// The device or browser id.
    pub anonymous_id: String,
    /// The person it was merged into.
    pub user: String,
    /// When.
    pub at_ms: i64,
    /// The key that merged.
    pub key_id: String,
}

/// Every stored record about a person and their aliases (`GET /v1/users/{id}/export`).
#[derive(Debug, Clone)]
pub struct PersonExport {
    /// What Attune knows and infers (the profile view).
    pub view: PersonView,
    /// Consent as stored (`None`: the person never answered; server defaults apply).
    pub stored_consent: Option<Consent>,
    /// Preferences as stored.
    pub stored_preferences: Option<Preferences>,
    /// Every stored event of the person and their aliases, in sequence order.
    pub events: Vec<Event>,
    /// Merge log entries that name the person or an alias.
    pub merges: Vec<MergeRecord>,
    /// Forgotten items, with when.
    pub forgotten: Vec<(String, i64)>,
    /// Audit entries whose target names the person or an alias.
    pub audit: Vec<AuditEntry>,
    /// Decisions and exposures (`Table::Decisions`), key and raw value.
    pub decisions: Vec<(String, Vec<u8>)>,
    /// Notification plans and email digests (the digest log: `items`, `decision_id`)
    /// (`Table::Notifications`), key and raw value.
    pub notifications: Vec<(String, Vec<u8>)>,
    /// The time zone last seen in a decide request of the person or an alias
    /// (`Table::Zones`), key and raw value.
    pub decided_zones: Vec<(String, Vec<u8>)>,
}

/// What one retention sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Events past their retention, deleted.
    pub events_deleted: u64,
    /// People whose profile was refolded without them.
    pub people_rebuilt: u64,
    /// Audit entries past the audit retention, deleted.
    pub audit_deleted: u64,
    /// Decisions and exposures past their retention, deleted.
    pub decisions_deleted: u64,
    /// Notification plans past their retention, deleted.
    pub notifications_deleted: u64,
    /// Time zones seen in decide requests past the decision retention, forgotten.
    pub decided_zones_deleted: u64,
    /// Events still held past their retention after the sweep (0 unless events expired while
    /// it ran).
    pub held_past_retention: u64,
    /// When the deleted bytes must be purged from the store's files by, if anything was deleted.
    pub purge_by_ms: Option<i64>,
}

/// The "ethical" numbers of `GET /v1/report`.
#[derive(Debug, Clone, PartialEq)]
pub struct PrivacyReport {
    /// People known (aliases count with their person).
    pub people: u64,
    /// Per purpose: how many people's effective consent allows it.
    pub consent_granted: Vec<(Purpose, u64)>,
    /// People without personalization consent.
    pub opted_out: u64,
    /// Erasures completed (receipts held).
    pub erasures: u64,
    /// People who paused personalization in their preferences.
    pub personalization_paused: u64,
    /// Stored events past their retention: 0 after a sweep.
    pub held_past_retention: u64,
}

impl PrivacyReport {
    /// The share of people whose consent allows `purpose` (0 when nobody is known).
    pub fn consent_rate(&self, purpose: Purpose) -> f64 {
        let granted = self.consent_granted.iter().find(|(p, _)| *p == purpose).map_or(0, |(_, n)| *n);
        if self.people == 0 { 0.0 } else { granted as f64 / self.people as f64 }
    }
}

/// The crash-safety record of an erasure: written before anything is deleted, removed after.
/// Counts are taken before deleting, so a receipt completed after a crash still counts all.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PendingErasure {
    receipt_id: String,
    person: String,
    ids: Vec<String>,
    key_id: String,
    events: u64,
    aliases: u64,
    records: u64,
}

/// The crash-safety record of a consent withdrawal that rewrites events (contextual fields).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PendingRewrite {
    delete_seqs: Vec<u64>,
    append: Vec<RewrittenEvent>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RewrittenEvent {
    id: String,
    subject: String,
    ts_ms: i64,
    expires_ms: i64,
    payload: Vec<u8>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct ForgottenRecord {
    at_ms: i64,
}

/// The erasure steps, in order. [`crate::Engine::erase_interrupted`] stops after some of them to test
/// that a restart completes the rest.
const ERASURE_STEPS: usize = 6;

impl PrivacyCtx<'_> {
    fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    fn scan_records(&self, table: Table, prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
        crate::records::scan_records(self.store, table, prefix)
    }

    fn profiles(&self) -> ProfilesCtx<'_> {
        ProfilesCtx {
            store: self.store,
            clock: self.clock,
            audit: self.audit,
            catalog: self.catalog,
            people: self.people,
            cluster: self.cluster,
            models: self.models,
        }
    }

    // ---- start ----

    /// At start: loads the `/me` link secret (generated on first start) and forgotten items,
    /// completes interrupted rewrites and erasures, and finishes an interrupted purge.
    pub(crate) fn open_privacy(&self) -> Result<()> {
        let secret = match self.store.get(Table::Meta, META_LINK_SECRET)? {
            Some(bytes) => bytes.try_into().map_err(|_| crate::error::corrupt("me link secret", "length"))?,
            None => {
                let secret: [u8; 32] = rand::random();
                self.store.put(Table::Meta, META_LINK_SECRET, &secret)?;
                secret
            }
        };
        *self.privacy.link_secret.write() = secret;

        let mut forgotten: FxHashMap<String, Vec<String>> = FxHashMap::default();
        self.store.scan(Table::Forgotten, "", &mut |key, _| {
            if let Some((person, item)) = key.split_once('\0') {
                forgotten.entry(person.to_owned()).or_default().push(item.to_owned());
            }
            true
        })?;
        *self.privacy.forgotten.write() = forgotten;

        for (key, bytes) in self.scan_records(Table::Erasures, REWRITE_PREFIX)? {
            let rewrite: PendingRewrite = from_json("pending rewrite", &bytes)?;
            self.finish_rewrite(&key, &rewrite)?;
        }
        let pending = self.scan_records(Table::Erasures, PENDING_PREFIX)?;
        for (_, bytes) in &pending {
            let pending: PendingErasure = from_json("pending erasure", bytes)?;
            tracing::warn!(receipt = %pending.receipt_id, "completing an erasure interrupted by a crash");
            self.run_erasure(&pending, ERASURE_STEPS, true)?;
        }
        // Whatever was due (an erasure completed just now or before a crash, a forgotten item)
        // is purged before serving.
        if self.store.get(Table::Meta, META_PURGE_DUE)?.is_some() {
            self.purge_now()?;
        }
        Ok(())
    }

    // ---- hooks and markers for the model layer ----

    fn request_retrain(&self) -> Result<()> {
        self.models.request_retrain_by(self.now_ms() + RETRAIN_DEADLINE_MS)
    }

    // ---- forgetting ----

    /// Forgets one item: deletes the stored events of the person and their aliases about it,
    /// refolds the profile without them, records the item in [`Table::Forgotten`], asks for a
    /// retraining and audits. `NotFound` when the person is unknown.
    pub fn forget_item(&self, id: &str, item: &str, key_id: &str) -> Result<ForgetReport> {
        let person = self.people.known_person(id)?;
        let seqs: Vec<u64> = self
            .profiles()
            .events_of(&person)?
            .into_iter()
            .filter(|(_, event)| event.item.as_deref() == Some(item))
            .map(|(seq, _)| seq)
            .collect();
        let events = self.store.delete_events(&seqs)?;
        if events > 0 {
            self.experiments.note_events_deleted()?;
        }
        let now_ms = self.now_ms();
        self.store.put(Table::Forgotten, &format!("{person}\0{item}"), &to_json(&ForgottenRecord { at_ms: now_ms }))?;
        {
            let mut forgotten = self.privacy.forgotten.write();
            let items = forgotten.entry(person.clone()).or_default();
            if !items.iter().any(|known| known == item) {
                items.push(item.to_owned());
            }
        }
        self.refresh_person(&person)?;
        self.people.update(&person, |state| state.updated_ms = state.updated_ms.max(now_ms));
        self.request_retrain()?;
        let purge_by_ms = self.request_purge()?;
        self.audit.record(key_id, "users.forget", &person)?;
        Ok(ForgetReport { events, purge_by_ms })
    }

    // ---- /me links ----

    /// The generation of `person`'s `/me` links, creating one if there is none (minting a link).
    /// A link carries the generation it was issued under and works only while it is current.
    pub fn me_link_generation(&self, person: &str) -> Result<String> {
        if let Some(current) = self.current_me_link_generation(person)? {
            return Ok(current);
        }
        let generation = hex::encode(rand::random::<[u8; 16]>());
        self.store.put(Table::Meta, &format!("{ME_LINK_PREFIX}{person}"), generation.as_bytes())?;
        Ok(generation)
    }

    /// The current generation of `person`'s `/me` links, if any link was minted since the
    /// person was last erased or their links revoked.
    pub fn current_me_link_generation(&self, person: &str) -> Result<Option<String>> {
        Ok(self
            .store
            .get(Table::Meta, &format!("{ME_LINK_PREFIX}{person}"))?
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
    }

    /// Revokes every `/me` link of `id` issued so far (audited). `NotFound` when unknown.
    pub fn revoke_me_links(&self, id: &str, key_id: &str) -> Result<()> {
        let person = self.people.known_person(id)?;
        self.store.delete(Table::Meta, &format!("{ME_LINK_PREFIX}{person}"))?;
        self.audit.record(key_id, "users.me_link_revoke", &person)
    }

    // ---- report ----

    /// Consent rates per purpose, opt-outs, erasures, paused personalization and data held past
    /// retention (must be 0 after a sweep): the `ethical` part of `GET /v1/report`.
    pub fn privacy_report(&self, now_ms: i64) -> Result<PrivacyReport> {
        let aliases = self.people.aliases.read().clone();
        let default_consent = self.people.default_consent();
        let mut people = 0u64;
        let mut granted = [0u64; Purpose::ALL.len()];
        let mut opted_out = 0u64;
        let mut paused = 0u64;
        for shard in self.people.shards() {
            for (id, state) in shard.read().iter() {
                if aliases.contains_key(id) {
                    continue;
                }
                people += 1;
                let consent = state.consent.unwrap_or(default_consent);
                for (n, purpose) in granted.iter_mut().zip(Purpose::ALL) {
                    *n += u64::from(consent.allows(purpose));
                }
                opted_out += u64::from(!consent.personalization);
                paused += u64::from(state.preferences.as_ref().is_some_and(|p| !p.personalization));
            }
        }
        Ok(PrivacyReport {
            people,
            consent_granted: Purpose::ALL.into_iter().zip(granted).collect(),
            opted_out,
            erasures: self.scan_records(Table::Erasures, RECEIPT_PREFIX)?.len() as u64,
            personalization_paused: paused,
            held_past_retention: self.store.count_expired_events(now_ms)?,
        })
    }

    // ---- helpers ----

    /// Recounts the person's (and aliases') stored events and refolds the profile from the
    /// store, after events were deleted.
    fn refresh_person(&self, person: &str) -> Result<()> {
        let mut subjects = self.people.aliases_of(person);
        subjects.push(person.to_owned());
        for subject in &subjects {
            let mut n_events = 0u64;
            self.store.subject_events(subject, &mut |_| {
                n_events += 1;
                true
            })?;
            self.people.update(subject, |state| state.n_events = n_events);
        }
        self.profiles().rebuild_profile(person)
    }

    /// The stored rows (with retention data) of a person and their aliases, decoded.
    fn stored_rows_of(&self, person: &str) -> Result<Vec<(StoredEvent, Event)>> {
        let mut subjects = self.people.aliases_of(person);
        subjects.push(person.to_owned());
        let mut rows = Vec::new();
        for subject in &subjects {
            self.store.subject_events(subject, &mut |row| {
                rows.push(row);
                true
            })?;
        }
        rows.into_iter().map(|row| crate::records::decode_event(&row.payload).map(|event| (row, event))).collect()
    }

    /// Merge log entries (key, entry) that name one of `ids`.
    fn merges_naming(&self, ids: &[String]) -> Result<Vec<(String, MergeRecord)>> {
        let mut merges = Vec::new();
        for (key, bytes) in self.scan_records(Table::Merges, "")? {
            let merge: MergeRecord = from_json("merge", &bytes)?;
            if ids.iter().any(|id| *id == merge.user || *id == merge.anonymous_id) {
                merges.push((key, merge));
            }
        }
        Ok(merges)
    }

    /// Audit entries (key, entry) whose target names one of `ids`.
    fn audit_naming(&self, ids: &[String]) -> Result<Vec<(String, AuditEntry)>> {
        let mut entries = Vec::new();
        for (key, bytes) in self.scan_records(Table::Audit, "")? {
            let entry: AuditEntry = from_json("audit", &bytes)?;
            if split_target(&entry.target).into_iter().any(|part| ids.iter().any(|id| id == part)) {
                entries.push((key, entry));
            }
        }
        Ok(entries)
    }
}

/// Audit targets name one id, or two for merges (`anon -> person`, `anon -/-> person`).
#[cfg(test)]
mod tests {
    use super::{erasure::target_separator, *};

    #[test]
    fn audit_targets_split_into_ids() {
        assert_eq!(split_target("u-1"), ["u-1"]);
        assert_eq!(split_target("a-9 -> u-42"), ["a-9", "u-42"]);
        assert_eq!(split_target("a-9 -/-> u-42"), ["a-9", "u-42"]);
        assert_eq!(split_target("id with spaces"), ["id with spaces"]);
        assert_eq!(target_separator("a -> b"), " -> ");
    }
}
