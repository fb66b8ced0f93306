//! People: who is in memory (consent, preferences, the folded profile, counts), the aliases
//! merged into each person, and the person-only operations (resolve, effective consent,
//! preferences). What spans people and other components (the person view, identify and merge,
//! consent changes, refolding a profile) lives in `profiles.rs`.

use std::collections::BTreeSet;
use std::sync::Arc;

use attune_core::{Consent, Preferences, Profile, SeenZone, ZoneId};
use attune_store::{Store, Table};
use parking_lot::{Mutex, RwLock};
use rustc_hash::FxHashMap;

use crate::audit::AuditLog;
use crate::clock::Clock;
use crate::error::{Invalid, Result, UserError};
use crate::records::{from_json, scan_json, to_json};

/// What the engine keeps in memory per person.
#[derive(Debug, Clone, Default)]
pub struct PersonState {
    /// Explicit consent, if the person answered.
    pub consent: Option<Consent>,
    /// Explicit preferences, if any (boxed: most people set none, and every person's state is
    /// one allocator block).
    pub preferences: Option<Box<Preferences>>,
    /// The folded profile: only with personalization consent.
    pub profile: Option<Profile>,
    /// Events stored for this person (their own id, not aliases).
    pub n_events: u64,
    /// Items bought or dismissed (sorted): never recommended, whatever the personalization
    /// consent — honoring "not interested" and not selling twice is not personalization. Kept
    /// only while the events behind it are stored.
    pub excluded: Vec<attune_core::ItemIdx>,
    /// Last change.
    pub updated_ms: i64,
    /// The time zone the person's latest decide request named (`Table::Zones`): kept only with
    /// personalization consent, like the profile; [`Preferences::zone_in_force`] weighs it
    /// against the zone of their events.
    pub decided_zone: Option<SeenZone>,
    /// Events were stored under this id as a known person (`user`, not `anonymous_id`): the id
    /// is a person, and `identify` never merges it into another one unless an admin forces it.
    pub known_user: bool,
}

pub(crate) const N_SHARDS: usize = 32;

type Shard = RwLock<FxHashMap<Box<str>, Box<PersonState>>>;

/// Anonymous ids merged into people: alias → person, and the reverse index person → aliases
/// (so that a person's aliases cost their number, not the map's size). Changed only through
/// its methods, which keep both in step.
#[derive(Debug, Default, Clone)]
pub(crate) struct Aliases {
    person_of: FxHashMap<String, String>,
    of_person: FxHashMap<String, BTreeSet<String>>,
}

impl Aliases {
    /// The person `alias` is merged into.
    pub(crate) fn get(&self, alias: &str) -> Option<&String> {
        self.person_of.get(alias)
    }

    /// Whether `alias` is merged into someone.
    pub(crate) fn contains_key(&self, alias: &str) -> bool {
        self.person_of.contains_key(alias)
    }

    /// Whether anything is merged into `person`.
    pub(crate) fn has_aliases(&self, person: &str) -> bool {
        self.of_person.get(person).is_some_and(|aliases| !aliases.is_empty())
    }

    /// The aliases of `person`, sorted.
    pub(crate) fn of(&self, person: &str) -> Vec<String> {
        self.of_person.get(person).map(|aliases| aliases.iter().cloned().collect()).unwrap_or_default()
    }

    /// Merges `alias` into `person`; returns the person it was merged into before, if any.
    pub(crate) fn insert(&mut self, alias: String, person: String) -> Option<String> {
        self.of_person.entry(person.clone()).or_default().insert(alias.clone());
        let before = self.person_of.insert(alias.clone(), person.clone());
        if let Some(before) = &before
            && *before != person
        {
            self.unindex(&alias, before);
        }
        before
    }

    /// Undoes the merge of `alias`; returns the person it was merged into.
    pub(crate) fn remove(&mut self, alias: &str) -> Option<String> {
        let person = self.person_of.remove(alias)?;
        self.unindex(alias, &person);
        Some(person)
    }

    fn unindex(&mut self, alias: &str, person: &str) {
        if let Some(aliases) = self.of_person.get_mut(person) {
            aliases.remove(alias);
            if aliases.is_empty() {
                self.of_person.remove(person);
            }
        }
    }

    /// Keeps the merges `keep(alias, person)` accepts.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&String, &String) -> bool) {
        let dropped: Vec<(String, String)> = self
            .person_of
            .iter()
            .filter(|(alias, person)| !keep(alias, person))
            .map(|(alias, person)| (alias.clone(), person.clone()))
            .collect();
        for (alias, person) in dropped {
            self.person_of.remove(&alias);
            self.unindex(&alias, &person);
        }
    }

    /// Every merge, alias → person.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.person_of.iter()
    }

    /// Every merged alias.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &String> {
        self.person_of.keys()
    }

    /// How many aliases are merged.
    pub(crate) fn len(&self) -> usize {
        self.person_of.len()
    }
}

/// People by id, sharded to keep lock contention low, and the aliases merged into them.
///
/// A map slot holds the id and a pointer, not the state: a hash map keeps up to half of its
/// slots empty after growing, and `PersonState` (with its profile inline) is several hundred
/// bytes, so at 1M people unboxed slots cost more memory than the people themselves
/// (`attune bench scale`, docs/scale.md).
pub struct People {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    audit: AuditLog,
    default_consent: Consent,
    shards: Vec<Shard>,
    pub(crate) aliases: RwLock<Aliases>,
    /// Zones seen in decide requests, not stored yet ([`People::flush_zones`]): the latest per
    /// person, so at most one entry each however long flushes wait.
    pending_zones: Mutex<FxHashMap<String, SeenZone>>,
    /// Held while zones are checked and stored, and while they are forgotten: a zone is never
    /// stored after its person's was deleted (whoever removes a person from memory forgets
    /// their zone afterwards, so a flush either comes first and is undone, or finds them gone).
    zone_writes: Mutex<()>,
}

impl People {
    /// Loads aliases, consent and preferences (profiles are folded by the event replay).
    pub(crate) fn open(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        audit: AuditLog,
        default_consent: Consent,
    ) -> Result<People> {
        let people = People {
            shards: (0..N_SHARDS).map(|_| RwLock::new(FxHashMap::default())).collect(),
            aliases: RwLock::new(Aliases::default()),
            pending_zones: Mutex::new(FxHashMap::default()),
            zone_writes: Mutex::new(()),
            store,
            clock,
            audit,
            default_consent,
        };
        let aliases: Vec<(String, String)> = scan_json(&*people.store, Table::Aliases, "", "alias")?;
        let consents: Vec<(String, Consent)> = scan_json(&*people.store, Table::Consent, "", "consent")?;
        let preferences: Vec<(String, Preferences)> = scan_json(&*people.store, Table::Preferences, "", "preferences")?;
        {
            let mut merged = people.aliases.write();
            for (alias, person) in aliases {
                merged.insert(alias, person);
            }
        }
        for (id, consent) in consents {
            people.update(&id, |person| person.consent = Some(consent));
        }
        for (id, preferences) in preferences {
            people.update(&id, |person| person.preferences = Some(Box::new(preferences)));
        }
        for (id, zone) in scan_json::<SeenZone>(&*people.store, Table::Zones, "", "decided zone")? {
            people.update(&id, |person| person.decided_zone = Some(zone));
        }
        Ok(people)
    }

    pub(crate) fn shard_index(id: &str) -> usize {
        (xxhash_rust::xxh3::xxh3_64(id.as_bytes()) % N_SHARDS as u64) as usize
    }

    fn shard(&self, id: &str) -> &Shard {
        &self.shards[People::shard_index(id)]
    }

    /// The shards, to walk everyone (reports, the memory estimate).
    pub(crate) fn shards(&self) -> &[Shard] {
        &self.shards
    }

    pub(crate) fn read<T>(&self, id: &str, f: impl FnOnce(Option<&PersonState>) -> T) -> T {
        f(self.shard(id).read().get(id).map(|state| &**state))
    }

    pub(crate) fn update<T>(&self, id: &str, f: impl FnOnce(&mut PersonState) -> T) -> T {
        let mut shard = self.shard(id).write();
        // Look up before inserting: `entry` would allocate the key on every call.
        if let Some(state) = shard.get_mut(id) {
            return f(state);
        }
        f(shard.entry(Box::from(id)).or_default())
    }

    pub(crate) fn remove(&self, id: &str) -> Option<PersonState> {
        self.shard(id).write().remove(id).map(|state| *state)
    }

    /// Every person id in memory.
    pub(crate) fn ids(&self) -> Vec<String> {
        self.shards.iter().flat_map(|s| s.read().keys().map(|id| id.to_string()).collect::<Vec<_>>()).collect()
    }

    /// Number of people (ids with consent, preferences or events) in memory.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.read().len()).sum()
    }

    /// Whether nobody is in memory.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Consent for purposes a person has not answered.
    pub fn default_consent(&self) -> Consent {
        self.default_consent
    }

    /// The person id an id resolves to (anonymous ids merged into a person resolve to the person).
    pub fn resolve(&self, id: &str) -> String {
        self.aliases.read().get(id).cloned().unwrap_or_else(|| id.to_owned())
    }

    /// The effective consent of a (resolved) person.
    pub fn consent_of(&self, person: &str) -> Consent {
        self.read(person, |state| state.and_then(|s| s.consent)).unwrap_or(self.default_consent)
    }

    /// Whether `person` withdrew personalization consent or paused personalization (one read;
    /// the experiments' opt-out guardrail asks it for every exposed person at every query).
    pub fn personalization_off(&self, person: &str) -> bool {
        self.read(person, |state| {
            let consent = state.and_then(|s| s.consent).unwrap_or(self.default_consent);
            let paused = state.and_then(|s| s.preferences.as_ref()).is_some_and(|p| !p.personalization);
            !consent.personalization || paused
        })
    }

    /// Anonymous ids merged into `person`, sorted (from the reverse index: costs their number).
    pub fn aliases_of(&self, person: &str) -> Vec<String> {
        self.aliases.read().of(person)
    }

    /// The person and their aliases: every subject whose events are theirs.
    pub(crate) fn subjects_of(&self, person: &str) -> Vec<String> {
        let mut subjects = self.aliases_of(person);
        subjects.push(person.to_owned());
        subjects
    }

    /// Whether `id` is a person in its own right, not merely a device: events were stored under
    /// it as a `user`, it has consent or preferences of its own, or other ids are merged into it.
    pub fn is_known_person(&self, id: &str) -> bool {
        let own = self
            .read(id, |state| state.is_some_and(|s| s.known_user || s.consent.is_some() || s.preferences.is_some()));
        own || self.aliases.read().has_aliases(id)
    }

    /// Whether a browser key (without an identity token) may act for `id`: an anonymous id of
    /// the browser form ([`crate::keys::is_browser_visitor_id`]) that is not merged into anyone
    /// and is not a person of its own beyond the consent its visitor gave (no events as a user,
    /// no preferences, nothing merged into it).
    pub fn browser_visitor_allowed(&self, id: &str) -> bool {
        if !crate::keys::is_browser_visitor_id(id) || self.aliases.read().contains_key(id) {
            return false;
        }
        let own = self.read(id, |state| state.is_some_and(|s| s.known_user || s.preferences.is_some()));
        !own && !self.aliases.read().has_aliases(id)
    }

    /// The resolved person behind `id`, or `NotFound` when nothing is known about them.
    pub(crate) fn known_person(&self, id: &str) -> Result<String> {
        let person = self.resolve(id);
        if self.read(&person, |state| state.is_some()) {
            Ok(person)
        } else {
            Err(UserError::not_found("user", id).into())
        }
    }

    /// Notes the time zone a decide request named for `person` (validated by the caller), at
    /// `at_ms`: kept, and queued to be stored by the next [`People::flush_zones`], when the
    /// person has a profile (personalization consent) and the zone is not already the one last
    /// seen for them. Cheap when nothing changes: one read.
    pub(crate) fn note_decided_zone(&self, person: &str, zone: &str, at_ms: i64) {
        let changed = |state: Option<&PersonState>| {
            state.is_some_and(|s| {
                s.profile.is_some()
                    && attune_core::preferences::latest_seen_zone(s.profile.as_ref(), s.decided_zone)
                        .is_none_or(|(seen, _)| seen != zone)
            })
        };
        if !self.read(person, changed) {
            return;
        }
        let Some(timezone) = ZoneId::intern(zone) else { return };
        let seen = SeenZone { timezone, at_ms };
        let noted = self.update(person, |state| {
            let newer = state.decided_zone.is_none_or(|before| before.at_ms <= at_ms);
            let noted = state.profile.is_some() && newer;
            if noted {
                state.decided_zone = Some(seen);
            }
            noted
        });
        if noted {
            self.pending_zones.lock().insert(person.to_owned(), seen);
        }
    }

    /// Stores the zones noted since the last call (one batch), each only while it is still the
    /// person's (not erased, consent not withdrawn, not replaced since).
    pub(crate) fn flush_zones(&self) -> Result<usize> {
        if self.pending_zones.lock().is_empty() {
            return Ok(0);
        }
        let _writes = self.zone_writes.lock();
        let pending = std::mem::take(&mut *self.pending_zones.lock());
        let entries: Vec<(String, Vec<u8>)> = pending
            .into_iter()
            .filter(|(person, seen)| {
                self.read(person, |state| state.is_some_and(|s| s.profile.is_some() && s.decided_zone == Some(*seen)))
            })
            .map(|(person, seen)| (person, to_json(&seen)))
            .collect();
        if !entries.is_empty() {
            self.store.put_many(Table::Zones, &entries)?;
        }
        Ok(entries.len())
    }

    /// Drops the zone seen in decide requests for these ids, from memory and the store (consent
    /// withdrawn, erasure, retention). Called after the person left memory, when they do.
    pub(crate) fn forget_decided_zones(&self, ids: &[String]) -> Result<()> {
        let _writes = self.zone_writes.lock();
        self.pending_zones.lock().retain(|person, _| !ids.contains(person));
        for id in ids {
            self.update_if_present(id, |state| state.decided_zone = None);
            self.store.delete(Table::Zones, id)?;
        }
        Ok(())
    }

    /// Applies a zone record another server stored (the newer of it and this server's wins), or
    /// removed (consent withdrawn, erasure, retention: gone here too). Cluster sync.
    pub(crate) fn apply_stored_zone(&self, person: &str, zone: Option<SeenZone>) -> bool {
        self.update_if_present(person, |state| {
            let after = match zone {
                Some(seen) if state.profile.is_some() => {
                    Some(state.decided_zone.filter(|mine| mine.at_ms > seen.at_ms).unwrap_or(seen))
                }
                _ => None,
            };
            let changed = state.decided_zone != after;
            state.decided_zone = after;
            changed
        })
        .unwrap_or(false)
    }

    /// Changes a person already in memory; `None` (and nothing created) for anyone else.
    pub(crate) fn update_if_present<T>(&self, id: &str, f: impl FnOnce(&mut PersonState) -> T) -> Option<T> {
        self.shard(id).write().get_mut(id).map(|state| f(state))
    }

    /// Sets explicit preferences.
    pub fn put_preferences(&self, id: &str, preferences: Preferences, key_id: &str) -> Result<()> {
        check_user_id(id)?;
        let person = self.resolve(id);
        self.store.put(Table::Preferences, &person, &to_json(&preferences))?;
        let now_ms = self.clock.now_ms();
        self.update(&person, |state| {
            state.preferences = Some(Box::new(preferences));
            state.updated_ms = now_ms;
        });
        self.audit.record(key_id, "preferences.put", &person)
    }

    /// Loads stored consent for a person (used by the privacy layer).
    pub fn stored_consent(&self, id: &str) -> Result<Option<Consent>> {
        match self.store.get(Table::Consent, id)? {
            Some(bytes) => Ok(Some(from_json("consent", &bytes)?)),
            None => Ok(None),
        }
    }
}

/// Checks a user id from a request.
pub(crate) fn check_user_id(id: &str) -> Result<()> {
    attune_core::check_id(id).map_err(|err| UserError::invalid(Invalid::Id, "id", format!("The user id {err}.")))?;
    Ok(())
}
