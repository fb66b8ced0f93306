//! Consent withdrawal applied to what is already stored: events deleted or rewritten without
//! the withdrawn fields (a `rewrite` record makes it resumable), counts moved to aggregates.

use super::*;

impl PrivacyCtx<'_> {
    /// Sets consent (unset purposes were filled with defaults by the caller). Effective at once:
    /// withdrawing personalization drops the profile; granting it rebuilds it from stored events.
    pub fn put_consent(&self, id: &str, consent: Consent, key_id: &str) -> Result<()> {
        crate::people::check_user_id(id)?;
        let person = self.people.resolve(id);
        let before = self.people.consent_of(&person);
        self.store.put(Table::Consent, &person, &to_json(&consent))?;
        let now_ms = self.now_ms();
        let had_profile = self.people.update(&person, |state| {
            state.consent = Some(consent);
            state.updated_ms = now_ms;
            let had = state.profile.is_some();
            if !consent.allows(Purpose::Personalization) {
                state.profile = None;
            }
            had
        });
        if consent.allows(Purpose::Personalization) && !had_profile {
            self.profiles().rebuild_profile(&person)?;
        }
        if !consent.allows(Purpose::Personalization) {
            // The zone seen in decide requests is profile data: it goes with the profile.
            self.people.forget_decided_zones(std::slice::from_ref(&person))?;
        }
        self.apply_consent_change(&person, before, consent)?;
        self.audit.record(key_id, "consent.put", &person)
    }

    // ---- consent withdrawal ----

    /// What a consent change does to stored events. The rule is the ingest rule, applied again:
    /// an event is kept individually only while the person consents to `analytics` or to the
    /// event type's purpose; otherwise it is deleted and only counted in the daily aggregates
    /// (per day and type: no id, no person, no item). Withdrawing `contextual` removes `geo` and
    /// `weather` from stored events (rewritten crash-safely: see [`PendingRewrite`]).
    pub(crate) fn apply_consent_change(&self, person: &str, before: Consent, after: Consent) -> Result<()> {
        let kept = |consent: &Consent, purpose: Purpose| consent.analytics || consent.allows(purpose);
        let loses_individual = Purpose::ALL.into_iter().any(|p| kept(&before, p) && !kept(&after, p));
        let loses_contextual = before.contextual && !after.contextual;
        if !loses_individual && !loses_contextual {
            return Ok(());
        }
        let _exclusive = self.privacy.exclusive.lock();
        let mut to_aggregate: FxHashMap<String, u64> = FxHashMap::default();
        let mut delete_seqs = Vec::new();
        let mut rewrite = PendingRewrite { delete_seqs: Vec::new(), append: Vec::new() };
        for (row, mut event) in self.stored_rows_of(person)? {
            if !kept(&after, self.purpose_of(&event)) {
                let day = jiff::Timestamp::from_millisecond(event.ts_ms)
                    .map(|ts| ts.strftime("%Y-%m-%d").to_string())
                    .unwrap_or_default();
                *to_aggregate.entry(format!("{day}\0{}", event.kind.as_str())).or_default() += 1;
                delete_seqs.push(row.seq);
            } else if !after.contextual && (event.context.geo.is_some() || event.context.weather.is_some()) {
                event.context.geo = None;
                event.context.weather = None;
                rewrite.delete_seqs.push(row.seq);
                rewrite.append.push(RewrittenEvent {
                    id: row.id,
                    subject: row.subject,
                    ts_ms: row.ts_ms,
                    expires_ms: row.expires_ms,
                    payload: postcard::to_stdvec(&event).expect("events always encode"),
                });
            }
        }
        if !to_aggregate.is_empty() {
            // Count first: a crash in between leaves an event both counted and stored, never lost
            // from the counts.
            crate::ingest::add_aggregates(self.store, to_aggregate)?;
            self.store.delete_events(&delete_seqs)?;
            self.experiments.note_events_deleted()?;
            self.refresh_person(person)?;
        }
        if !rewrite.append.is_empty() {
            let key = format!("{REWRITE_PREFIX}{person}");
            self.store.put(Table::Erasures, &key, &to_json(&rewrite))?;
            self.finish_rewrite(&key, &rewrite)?;
        }
        if !delete_seqs.is_empty() || !rewrite.append.is_empty() {
            self.request_purge()?;
        }
        Ok(())
    }

    /// Replaces the events' payloads by their rewritten versions in place (same sequence number,
    /// so servers sharing the store do not fold them a second time; `delete_seqs[i]` is the
    /// number of `append[i]`). Idempotent, so [`crate::Engine::open`] can repeat it after a crash.
    pub(super) fn finish_rewrite(&self, key: &str, rewrite: &PendingRewrite) -> Result<()> {
        let rows: Vec<(u64, Vec<u8>)> =
            rewrite.delete_seqs.iter().zip(&rewrite.append).map(|(&seq, e)| (seq, e.payload.clone())).collect();
        self.store.replace_payloads(&rows)?;
        self.store.delete(Table::Erasures, key)?;
        Ok(())
    }

    pub(super) fn purpose_of(&self, event: &Event) -> Purpose {
        match event.kind.builtin() {
            Some(builtin) => builtin.schema().purpose,
            // A schema removed since keeps its events under the strictest reading: personalization.
            None => {
                self.catalog.schemas.read().get(event.kind.as_str()).map_or(Purpose::Personalization, |s| s.purpose)
            }
        }
    }
}
