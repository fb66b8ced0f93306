//! What spans people and the other components: the person view (`GET /v1/users/{id}`),
//! identify and merge, and refolding a person's profile from the store.

use attune_core::{Consent, Event, EventType, JourneyStage, Preferences, Profile, Purpose};
use attune_store::Table;
use rustc_hash::FxHashSet;

use attune_store::Store;

use crate::audit::AuditLog;
use crate::catalog::Catalog;
use crate::clock::Clock;
use crate::cluster::ClusterState;
use crate::error::{Invalid, Result, UserError};
use crate::fold::FoldCtx;
use crate::models::Models;
use crate::people::People;
use crate::records::{decode_event, to_json, try_events};

/// What Attune knows and infers about a person (`GET /v1/users/{id}`).
#[derive(Debug, Clone, PartialEq)]
pub struct PersonView {
    /// The person's id (an anonymous id merged into a person shows the person).
    pub id: String,
    /// Effective consent.
    pub consent: Consent,
    /// Whether the person answered (false: server defaults apply).
    pub consent_given: bool,
    /// Explicit preferences (defaults when none).
    pub preferences: Preferences,
    /// Whether personalization is on (consent and not paused).
    pub personalization_on: bool,
    /// Detected journey stage.
    pub journey_stage: JourneyStage,
    /// Engagement, 0–1.
    pub engagement: f32,
    /// Tag affinities, strongest first, 0–1.
    pub affinities: Vec<(String, f32)>,
    /// Recent items, newest first, with when.
    pub recent: Vec<(String, i64)>,
    /// Anonymous ids merged into this person.
    pub aliases: Vec<String>,
    /// Events stored under the person's own id and its aliases.
    pub n_events: u64,
    /// Folded events per channel (channels without any left out), from the profile.
    pub channels: Vec<(attune_core::Channel, u32)>,
    /// The time zone Attune uses for the person: their preferences' or, failing that, the latest
    /// `context.timezone` of their events or decide requests; `None`: UTC.
    pub timezone: Option<String>,
    /// Where [`PersonView::timezone`] comes from: `preferences`, `events`, `decide` or `none`.
    pub timezone_source: &'static str,
    /// The local send hour learned from when the person engages (`None`: not enough evidence,
    /// the default hour applies); see [`attune_core::send_hour::learned_hour`].
    pub send_hour: Option<i8>,
    /// Last change, ms since the epoch.
    pub updated_ms: i64,
}

/// The outcome of `POST /v1/identify`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MergeReport {
    /// Events of the anonymous id that now belong to the person.
    pub merged_events: u64,
}

/// What the person-level operations read and write.
pub(crate) struct ProfilesCtx<'a> {
    pub store: &'a dyn Store,
    pub clock: &'a dyn Clock,
    pub audit: &'a AuditLog,
    pub catalog: &'a Catalog,
    pub people: &'a People,
    pub cluster: &'a ClusterState,
    pub models: &'a Models,
}

impl ProfilesCtx<'_> {
    fn fold(&self) -> FoldCtx<'_> {
        FoldCtx { store: self.store, catalog: self.catalog, people: self.people, cluster: self.cluster }
    }

    /// What Attune knows about `id`; `NotFound` when nothing is known.
    pub(crate) fn person(&self, id: &str) -> Result<PersonView> {
        let person = self.people.resolve(id);
        let now_ms = self.clock.now_ms();
        let aliases = self.people.aliases_of(&person);
        let n_alias_events: u64 =
            aliases.iter().map(|alias| self.people.read(alias, |s| s.map_or(0, |s| s.n_events))).sum();
        let catalog = self.catalog.read();
        let population = self.models.current().hour_prior.clone();
        self.people.read(&person, |state| {
            let state = state.ok_or_else(|| UserError::not_found("user", id))?;
            let consent = state.consent.unwrap_or(self.people.default_consent());
            let preferences = state.preferences.as_deref().cloned().unwrap_or_default();
            let profile = state.profile.as_ref().filter(|_| consent.personalization);
            let affinities = profile
                .map(|p| p.top_affinities(now_ms, 10))
                .unwrap_or_default()
                .into_iter()
                .map(|(tag, w)| (catalog.tag_name(tag).to_owned(), w))
                .collect();
            let recent = profile
                .map(|p| p.recent.iter().rev().take(20).map(|r| (catalog.id(r.item).to_owned(), r.ts_ms)).collect())
                .unwrap_or_default();
            let decided = state.decided_zone.filter(|_| profile.is_some());
            let zone = preferences.zone_in_force(profile, decided);
            let (timezone, timezone_source) = (zone.map(|(z, _)| z.to_owned()), zone.map_or("none", |(_, from)| from));
            let send_hour = profile.and_then(|p| p.send_hour(&population, preferences.quiet_hours));
            Ok(PersonView {
                id: person.clone(),
                timezone,
                timezone_source,
                send_hour,
                consent,
                consent_given: state.consent.is_some(),
                personalization_on: consent.personalization && preferences.personalization,
                preferences,
                journey_stage: JourneyStage::detect(profile, now_ms),
                engagement: profile.map_or(0.0, |p| p.engagement(now_ms)),
                affinities,
                recent,
                aliases: aliases.clone(),
                n_events: state.n_events + n_alias_events,
                channels: profile
                    .map(|p| {
                        attune_core::Channel::ALL
                            .into_iter()
                            .map(|c| (c, p.channels[c.index()]))
                            .filter(|(_, n)| *n > 0)
                            .collect()
                    })
                    .unwrap_or_default(),
                updated_ms: state.updated_ms,
            })
        })
    }

    /// The device's history becomes the person's (`POST /v1/identify`), logged and audited;
    /// refuses (`identity_conflict`) to merge an id that is itself a known person unless `force`
    /// (an admin's explicit request). A merge stays undoable ([`ProfilesCtx::unmerge`]).
    pub(crate) fn identify_with(
        &self,
        anonymous_id: &str,
        user: &str,
        key_id: &str,
        force: bool,
    ) -> Result<MergeReport> {
        if anonymous_id == user {
            return Err(UserError::invalid(Invalid::Identify, "user", "`anonymous_id` and `user` must differ.").into());
        }
        let target = self.people.resolve(user);
        if target == anonymous_id {
            return Err(UserError::Conflict(
                "`user` is itself merged into `anonymous_id`; identify the other way round.".into(),
            )
            .into());
        }
        if let Some(existing) = self.people.aliases.read().get(anonymous_id)
            && *existing != target
        {
            return Err(UserError::Conflict(
                "`anonymous_id` is already merged into another person; an admin can undo that merge first.".into(),
            )
            .into());
        }
        let repeated = self.people.aliases.read().get(anonymous_id).is_some_and(|existing| *existing == target);
        if repeated {
            // The same merge again (a retried request, a second login): nothing moves.
            return Ok(MergeReport { merged_events: 0 });
        }
        if !force && self.people.is_known_person(anonymous_id) {
            return Err(UserError::IdentityConflict(
                "`anonymous_id` names a known person (events as a user, consent, preferences or merged ids); \
                 one person is never merged into another unless an admin sends `\"force\": true`."
                    .into(),
            )
            .into());
        }
        // Anonymous ids merged into this anonymous id move along with it.
        let mut moved = self.people.aliases_of(anonymous_id);
        moved.push(anonymous_id.to_owned());
        let entries: Vec<(String, Vec<u8>)> = moved.iter().map(|a| (a.clone(), to_json(&target))).collect();
        self.store.put_many(Table::Aliases, &entries)?;
        let now_ms = self.clock.now_ms();
        let merge_id = ulid::Ulid::generate().to_string();
        self.store.put(
            Table::Merges,
            &merge_id,
            &to_json(
                &serde_json::json!({"anonymous_id": anonymous_id, "user": target, "at_ms": now_ms, "key_id": key_id}),
            ),
        )?;
        {
            let mut aliases = self.people.aliases.write();
            for alias in &moved {
                aliases.insert(alias.clone(), target.clone());
            }
        }
        let merged_events: u64 = moved.iter().map(|a| self.people.read(a, |s| s.map_or(0, |s| s.n_events))).sum();
        for alias in &moved {
            self.people.update(alias, |state| state.profile = None);
        }
        self.people.update(&target, |state| state.updated_ms = now_ms);
        self.rebuild_profile(&target)?;
        // The device's decide requests were the person's too: the latest zone they named moves.
        let seen = moved.iter().filter_map(|a| self.people.read(a, |s| s.and_then(|s| s.decided_zone)));
        if let Some(seen) = seen.max_by_key(|seen| seen.at_ms) {
            self.people.note_decided_zone(&target, seen.timezone.name(), seen.at_ms);
        }
        let action = if force { "identify.merge_forced" } else { "identify.merge" };
        self.audit.record(key_id, action, &format!("{anonymous_id} -> {target}"))?;
        Ok(MergeReport { merged_events })
    }

    /// Undoes a merge: the anonymous id's history is its own again.
    pub(crate) fn unmerge(&self, anonymous_id: &str, key_id: &str) -> Result<()> {
        let person = self
            .people
            .aliases
            .read()
            .get(anonymous_id)
            .cloned()
            .ok_or_else(|| UserError::not_found("merge", anonymous_id))?;
        self.store.delete(Table::Aliases, anonymous_id)?;
        self.people.aliases.write().remove(anonymous_id);
        self.rebuild_profile(&person)?;
        self.rebuild_profile(anonymous_id)?;
        self.audit.record(key_id, "identify.unmerge", &format!("{anonymous_id} -/-> {person}"))
    }

    /// Every stored event of a person and their aliases, in sequence order.
    pub(crate) fn events_of(&self, person: &str) -> Result<Vec<(u64, Event)>> {
        let mut events = Vec::new();
        for subject in self.people.subjects_of(person) {
            try_events(
                |visit| self.store.subject_events(&subject, visit),
                |row| {
                    events.push((row.seq, decode_event(&row.payload)?));
                    Ok(true)
                },
            )?;
        }
        events.sort_by_key(|(seq, _)| *seq);
        Ok(events)
    }

    /// Refolds a person's profile from the store (after a merge, a consent grant, a forgotten item).
    pub(crate) fn rebuild_profile(&self, person: &str) -> Result<()> {
        let events = self.events_of(person)?;
        let consent = self.people.consent_of(person);
        self.people.update(person, |state| {
            state.profile = consent.allows(Purpose::Personalization).then(Profile::default);
            state.excluded.clear();
        });
        for (seq, event) in &events {
            // With cluster sync, an event another process appended may not be folded here yet:
            // claim it, so the sync does not fold it a second time.
            self.cluster.claim(*seq);
            self.fold().fold_into(person, event, event.ts_ms, false);
        }
        Ok(())
    }

    /// Refolds the profiles of everyone with stored events of these declared types (their signal
    /// changed). One scan of the event log; runs on a schema change, which is rare.
    pub(crate) fn refold_declared(&self, types: &[String]) -> Result<usize> {
        if types.is_empty() {
            return Ok(0);
        }
        let mut people: FxHashSet<String> = FxHashSet::default();
        try_events(
            |visit| self.store.scan_events(0, visit),
            |row| {
                let event = decode_event(&row.payload)?;
                if let EventType::Declared(name) = &event.kind
                    && types.iter().any(|t| t == name)
                {
                    people.insert(self.people.resolve(event.subject.id()));
                }
                Ok(true)
            },
        )?;
        for person in &people {
            self.rebuild_profile(person)?;
        }
        Ok(people.len())
    }
}
