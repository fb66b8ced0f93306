//! Retention: the sweep of expired events, audit entries, decisions, exposures, notification
//! plans and the zones seen in decide requests.

use super::*;

impl PrivacyCtx<'_> {
    // ---- retention ----

    /// Deletes what is past its retention: events (and refolds the profiles they shaped), audit
    /// entries older than [`EngineConfig::audit_retention_days`](crate::EngineConfig), decisions,
    /// exposures, notification plans and zones seen in decide requests older than
    /// [`EngineConfig::decision_retention_days`](crate::EngineConfig). The server runs it hourly.
    pub fn sweep_retention(&self, now_ms: i64) -> Result<SweepReport> {
        let mut report = SweepReport::default();
        // The store has no visitor over expired events, so the subjects come from one scan of
        // the log; it runs only when something expired.
        let mut subjects = BTreeSet::new();
        if self.store.count_expired_events(now_ms)? > 0 {
            self.store.scan_events(0, &mut |row| {
                if row.expires_ms <= now_ms {
                    subjects.insert(row.subject);
                }
                true
            })?;
        }
        report.events_deleted = self.store.delete_expired_events(now_ms)?;
        if report.events_deleted > 0 {
            self.experiments.note_events_deleted()?;
        }
        let people: BTreeSet<String> = subjects.iter().map(|subject| self.people.resolve(subject)).collect();
        for person in &people {
            if self.people.read(person, |state| state.is_some()) {
                self.refresh_person(person)?;
                report.people_rebuilt += 1;
            }
        }

        let audit_cutoff = now_ms.saturating_sub(i64::from(self.audit_retention_days) * DAY_MS);
        for (key, bytes) in self.scan_records(Table::Audit, "")? {
            let entry: AuditEntry = from_json("audit", &bytes)?;
            if entry.at_ms < audit_cutoff {
                self.store.delete(Table::Audit, &key)?;
                report.audit_deleted += 1;
            }
        }
        let decision_cutoff = now_ms.saturating_sub(i64::from(self.decision_retention_days) * DAY_MS);
        report.decisions_deleted = self.delete_dated_before(Table::Decisions, decision_cutoff)?;
        self.decisions.sweep_review_index(decision_cutoff)?;
        self.experiments.sweep_exposures(decision_cutoff)?;
        report.notifications_deleted = self.delete_dated_before(Table::Notifications, decision_cutoff)?;
        report.decided_zones_deleted = self.sweep_decided_zones(decision_cutoff)?;
        report.held_past_retention = self.store.count_expired_events(now_ms)?;
        let deleted = report.events_deleted
            + report.audit_deleted
            + report.decisions_deleted
            + report.notifications_deleted
            + report.decided_zones_deleted;
        if deleted > 0 {
            report.purge_by_ms = Some(self.request_purge()?);
        }
        Ok(report)
    }

    /// Forgets the zones seen in decide requests before `cutoff_ms` (in memory and stored).
    fn sweep_decided_zones(&self, cutoff_ms: i64) -> Result<u64> {
        let mut expired = Vec::new();
        self.store.scan(Table::Zones, "", &mut |person, bytes| {
            if serde_json::from_slice::<SeenZone>(bytes).map_or(true, |seen| seen.at_ms < cutoff_ms) {
                expired.push(person.to_owned());
            }
            true
        })?;
        self.people.forget_decided_zones(&expired)?;
        Ok(expired.len() as u64)
    }

    /// Deletes the records of `table` whose JSON value has an integer `at_ms` before `cutoff_ms`.
    pub(super) fn delete_dated_before(&self, table: Table, cutoff_ms: i64) -> Result<u64> {
        let mut expired = Vec::new();
        self.store.scan(table, "", &mut |key, bytes| {
            let at_ms = serde_json::from_slice::<serde_json::Value>(bytes).ok().and_then(|v| v["at_ms"].as_i64());
            if at_ms.is_some_and(|at| at < cutoff_ms) {
                expired.push(key.to_owned());
            }
            true
        })?;
        for key in &expired {
            self.store.delete(table, key)?;
        }
        Ok(expired.len() as u64)
    }
}
