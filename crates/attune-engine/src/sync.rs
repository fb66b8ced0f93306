//! Cluster sync: [`SyncCtx::sync_from_store`] folds what other processes wrote to the shared
//! store since the last call (see [`crate::cluster`] for the rules).

use std::{collections::BTreeSet, time::Instant};

use attune_core::{Consent, Item, Preferences, Purpose, Schema, SeenZone};
use attune_store::{Store, Table};

use crate::audit::AuditLog;
use crate::catalog::Catalog;
use crate::clock::Clock;
use crate::cluster::{Changes, ClusterState, ErasureTombstone, TOMBSTONE_PREFIX, TOMBSTONE_TTL_MS, tombstone_hash};
use crate::decisions::DecisionLog;
use crate::editorial::Editorial;
use crate::error::Result;
use crate::experiments::Experiments;
use crate::fold::FoldCtx;
use crate::keys::{ApiKey, Keys};
use crate::people::People;
use crate::profiles::ProfilesCtx;
use crate::records::{decode_event, from_json, scan_json, try_events};
use crate::variants::VariantBandits;

/// Events decoded and folded per step of a sync (bounds its memory).
const FOLD_BATCH: usize = 10_000;

/// Record tables another process may change, reloaded by [`SyncCtx::sync_from_store`].
const SYNCED_TABLES: [Table; 11] = [
    Table::Items,
    Table::Schemas,
    Table::Keys,
    Table::Aliases,
    Table::Consent,
    Table::Preferences,
    Table::Zones,
    Table::Slots,
    Table::Picks,
    Table::Rules,
    Table::Flags,
];

/// What one [`SyncCtx::sync_from_store`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncReport {
    /// Events other processes appended, folded now.
    pub events_folded: usize,
    /// The watermark after the sync (highest sequence number read).
    pub watermark: u64,
    /// Changed records per table name (only tables with changes).
    pub changed: Vec<(&'static str, usize)>,
    /// Profiles rebuilt (alias or consent changes).
    pub profiles_rebuilt: usize,
    /// People dropped from memory because another server is erasing them.
    pub erased: usize,
    /// Whether the editorial state was reloaded.
    pub editorial_reloaded: bool,
    /// Wall time of the sync.
    pub seconds: f64,
}

/// What a sync reads and changes: every component another server may have changed.
pub(crate) struct SyncCtx<'a> {
    pub store: &'a dyn Store,
    pub clock: &'a dyn Clock,
    pub audit: &'a AuditLog,
    pub catalog: &'a Catalog,
    pub people: &'a People,
    pub keys: &'a Keys,
    pub editorial: &'a Editorial,
    pub experiments: &'a Experiments,
    pub variants: &'a VariantBandits,
    pub decisions: &'a DecisionLog,
    pub cluster: &'a ClusterState,
    pub models: &'a crate::models::Models,
}

impl SyncCtx<'_> {
    fn fold(&self) -> FoldCtx<'_> {
        FoldCtx { store: self.store, catalog: self.catalog, people: self.people, cluster: self.cluster }
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

    /// Folds what other processes wrote to the shared store since the last call: their events,
    /// and changed items, schemas, keys, aliases, consent, preferences, the zones decide
    /// requests named and editorial state (see
    /// the [module documentation](crate::cluster)). Cheap when nothing changed; safe to call from
    /// one thread while requests are served. Does nothing unless the engine was opened with
    /// [`EngineConfig::cluster`](crate::EngineConfig).
    pub(crate) fn sync_from_store(&self) -> Result<SyncReport> {
        let mut report = SyncReport::default();
        if !self.cluster.enabled {
            return Ok(report);
        }
        let _one_at_a_time = self.cluster.syncing.lock();
        let started = Instant::now();
        // Records first: events are folded under the consent and aliases in force now.
        self.sync_records(&mut report)?;
        // Experiment definitions, their bucket ranges and the global holdout (a few records),
        // and what the slots' variant bandits learned on every server (one record per slot).
        self.experiments.load()?;
        self.variants.load_stats()?;
        self.sync_events(&mut report)?;
        // Last: an erased person's events folded just above go with them.
        self.sync_erasures(&mut report)?;
        report.seconds = started.elapsed().as_secs_f64();
        Ok(report)
    }

    fn sync_events(&self, report: &mut SyncReport) -> Result<()> {
        let from = self.cluster.tail.lock().floor();
        let now_ms = self.clock.now_ms();
        let mut batch = Vec::new();
        let mut highest = 0;
        try_events(
            |visit| self.store.scan_events(from, visit),
            |row| {
                highest = highest.max(row.seq);
                if !self.cluster.claim(row.seq) {
                    return Ok(true);
                }
                batch.push(decode_event(&row.payload)?);
                if batch.len() >= FOLD_BATCH {
                    report.events_folded += batch.len();
                    self.fold_synced(std::mem::take(&mut batch), now_ms);
                }
                Ok(true)
            },
        )?;
        report.events_folded += batch.len();
        self.fold_synced(batch, now_ms);
        let mut tail = self.cluster.tail.lock();
        tail.advance(highest);
        tail.prune();
        report.watermark = tail.scanned_to;
        Ok(())
    }

    fn fold_synced(&self, events: Vec<attune_core::Event>, now_ms: i64) {
        let events =
            events.into_iter().map(|event| (self.people.resolve(event.subject.id()), Box::new(event))).collect();
        self.fold().apply_events(events, now_ms);
    }

    fn sync_records(&self, report: &mut SyncReport) -> Result<()> {
        let mut editorial_changed = false;
        for table in SYNCED_TABLES {
            let changes = self.cluster.changes(self.store, table)?;
            if changes.len() == 0 {
                continue;
            }
            let n = match table {
                Table::Items => self.apply_item_changes(changes)?,
                Table::Schemas => self.apply_schema_changes(changes)?,
                Table::Keys => self.apply_key_changes(changes)?,
                Table::Aliases => self.apply_alias_changes(changes, report)?,
                Table::Consent => self.apply_consent_changes(changes, report)?,
                Table::Preferences => self.apply_preference_changes(changes)?,
                Table::Zones => self.apply_zone_changes(changes)?,
                _ => {
                    editorial_changed = true;
                    changes.len()
                }
            };
            if n > 0 {
                report.changed.push((table.name(), n));
            }
        }
        if editorial_changed {
            self.editorial.reload()?;
            report.editorial_reloaded = true;
        }
        Ok(())
    }

    fn apply_item_changes(&self, changes: Changes) -> Result<usize> {
        let mut items = Vec::new();
        for (_, bytes) in &changes.changed {
            items.push(from_json::<Item>("item", bytes)?);
        }
        let n = self.catalog.apply_stored_items(items);
        Ok(n)
    }

    fn apply_schema_changes(&self, changes: Changes) -> Result<usize> {
        let mut parsed = Vec::new();
        for (name, bytes) in changes.changed {
            parsed.push((name, from_json::<Schema>("schema", &bytes)?));
        }
        let (n, signal_changed) = self.catalog.apply_stored_schemas(parsed, changes.removed);
        // Another server changed what a declared type means: refold as it did.
        self.profiles().refold_declared(&signal_changed)?;
        Ok(n)
    }

    fn apply_key_changes(&self, changes: Changes) -> Result<usize> {
        let mut parsed = Vec::new();
        for (_, bytes) in &changes.changed {
            parsed.push(from_json::<ApiKey>("key", bytes)?);
        }
        let n = self.keys.apply_stored(parsed, &changes.removed);
        Ok(n)
    }

    fn apply_alias_changes(&self, changes: Changes, report: &mut SyncReport) -> Result<usize> {
        let mut parsed = Vec::new();
        for (alias, bytes) in changes.changed {
            parsed.push((alias, from_json::<String>("alias", &bytes)?));
        }
        // People whose profile must be refolded, and anonymous ids whose own profile goes.
        let mut rebuild: BTreeSet<String> = BTreeSet::new();
        let mut merged: Vec<String> = Vec::new();
        {
            let mut aliases = self.people.aliases.write();
            for (alias, person) in parsed {
                let before = aliases.insert(alias.clone(), person.clone());
                if before.as_ref() != Some(&person) {
                    rebuild.extend(before);
                    rebuild.insert(person);
                    merged.push(alias);
                }
            }
            for alias in &changes.removed {
                if let Some(person) = aliases.remove(alias) {
                    rebuild.insert(person);
                    rebuild.insert(alias.clone());
                }
            }
        }
        let n = merged.len() + changes.removed.len();
        for alias in &merged {
            self.people.update(alias, |state| state.profile = None);
        }
        for person in &rebuild {
            self.profiles().rebuild_profile(person)?;
        }
        report.profiles_rebuilt += rebuild.len();
        Ok(n)
    }

    fn apply_consent_changes(&self, changes: Changes, report: &mut SyncReport) -> Result<usize> {
        let mut updates: Vec<(String, Option<Consent>)> = Vec::new();
        for (person, bytes) in changes.changed {
            updates.push((person, Some(from_json::<Consent>("consent", &bytes)?)));
        }
        updates.extend(changes.removed.into_iter().map(|person| (person, None)));
        let mut n = 0;
        for (person, consent) in updates {
            let effective = consent.unwrap_or(self.people.default_consent());
            let needs_rebuild = self.people.read(&person, |state| {
                let known = state.and_then(|s| s.consent);
                (known != consent).then(|| state.is_none_or(|s| s.profile.is_none()))
            });
            let Some(had_no_profile) = needs_rebuild else { continue };
            n += 1;
            let now_ms = self.clock.now_ms();
            self.people.update(&person, |state| {
                state.consent = consent;
                state.updated_ms = state.updated_ms.max(now_ms);
                if !effective.allows(Purpose::Personalization) {
                    state.profile = None;
                }
            });
            if effective.allows(Purpose::Personalization) && had_no_profile {
                self.profiles().rebuild_profile(&person)?;
                report.profiles_rebuilt += 1;
            }
        }
        Ok(n)
    }

    fn apply_preference_changes(&self, changes: Changes) -> Result<usize> {
        let mut updates: Vec<(String, Option<Preferences>)> = Vec::new();
        for (person, bytes) in changes.changed {
            updates.push((person, Some(from_json::<Preferences>("preferences", &bytes)?)));
        }
        updates.extend(changes.removed.into_iter().map(|person| (person, None)));
        let mut n = 0;
        for (person, preferences) in updates {
            let same =
                self.people.read(&person, |state| state.and_then(|s| s.preferences.as_deref()) == preferences.as_ref());
            if !same {
                self.people.update(&person, |state| state.preferences = preferences.map(Box::new));
                n += 1;
            }
        }
        Ok(n)
    }

    fn apply_zone_changes(&self, changes: Changes) -> Result<usize> {
        let mut n = 0;
        for (person, bytes) in &changes.changed {
            n +=
                usize::from(self.people.apply_stored_zone(person, Some(from_json::<SeenZone>("decided zone", bytes)?)));
        }
        for person in &changes.removed {
            n += usize::from(self.people.apply_stored_zone(person, None));
        }
        Ok(n)
    }

    /// Applies tombstones of erasures completed elsewhere (once each), and deletes tombstones older
    /// than [`TOMBSTONE_TTL_MS`].
    fn sync_tombstones(&self, report: &mut SyncReport) -> Result<()> {
        let now_ms = self.clock.now_ms();
        let mut fresh: Vec<(String, ErasureTombstone)> = Vec::new();
        let mut expired: Vec<String> = Vec::new();
        for (key, tombstone) in
            scan_json::<ErasureTombstone>(self.store, Table::Erasures, TOMBSTONE_PREFIX, "erasure tombstone")?
        {
            if now_ms - tombstone.at_ms > TOMBSTONE_TTL_MS {
                expired.push(key);
            } else {
                fresh.push((key, tombstone));
            }
        }
        for key in expired {
            self.store.delete(Table::Erasures, &key)?;
        }
        let mut seen = self.cluster.tombstones_seen.lock();
        let unseen: Vec<ErasureTombstone> =
            fresh.into_iter().filter(|(key, _)| seen.insert(key.clone())).map(|(_, t)| t).collect();
        drop(seen);
        if unseen.is_empty() {
            return Ok(());
        }
        let mut candidates = self.people.ids();
        candidates.extend(self.people.aliases.read().keys().cloned());
        let erased: Vec<String> = candidates
            .into_iter()
            .filter(|id| unseen.iter().any(|t| t.hashes.contains(&tombstone_hash(t.salt, id))))
            .collect();
        if erased.is_empty() {
            return Ok(());
        }
        self.people.aliases.write().retain(|alias, person| !erased.contains(alias) && !erased.contains(person));
        for id in &erased {
            self.people.remove(id);
        }
        self.people.forget_decided_zones(&erased)?;
        self.decisions.forget_decisions_of(&erased);
        self.decisions.delete_stored_decisions_of(&erased)?;
        report.erased += erased.len();
        Ok(())
    }

    /// Drops from memory the people another server is erasing (`pending\0<person>` records).
    fn sync_erasures(&self, report: &mut SyncReport) -> Result<()> {
        self.sync_tombstones(report)?;
        let mut ids: Vec<String> = Vec::new();
        for (_, pending) in scan_json::<serde_json::Value>(self.store, Table::Erasures, "pending\0", "pending erasure")?
        {
            let named = pending["ids"].as_array().into_iter().flatten().filter_map(|id| id.as_str());
            ids.extend(named.map(str::to_owned));
        }
        let known: Vec<String> = ids
            .into_iter()
            .filter(|id| self.people.read(id, |state| state.is_some()) || self.people.aliases.read().contains_key(id))
            .collect();
        if known.is_empty() {
            return Ok(());
        }
        self.people.aliases.write().retain(|alias, person| !known.contains(alias) && !known.contains(person));
        for id in &known {
            self.people.remove(id);
        }
        self.people.forget_decided_zones(&known)?;
        self.decisions.forget_decisions_of(&known);
        self.decisions.delete_stored_decisions_of(&known)?;
        report.erased += known.len();
        Ok(())
    }
}
