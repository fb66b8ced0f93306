//! Export: everything stored about a person (`GET /v1/users/{id}/export`).

use super::*;

impl PrivacyCtx<'_> {
    // ---- export ----

    /// Every stored record about a person and their aliases. `NotFound` when the person is
    /// unknown. The caller audits (`users.export`, ids only).
    pub fn export_person(&self, id: &str) -> Result<PersonExport> {
        let person = self.people.known_person(id)?;
        let view = self.profiles().person(&person)?;
        let mut ids = view.aliases.clone();
        ids.push(person.clone());
        let events = self.profiles().events_of(&person)?.into_iter().map(|(_, event)| event).collect();
        let merges = self.merges_naming(&ids)?.into_iter().map(|(_, merge)| merge).collect();
        let mut forgotten = Vec::new();
        for (key, bytes) in self.scan_records(Table::Forgotten, &format!("{person}\0"))? {
            let record: ForgottenRecord = from_json("forgotten item", &bytes)?;
            let item = key.split_once('\0').map_or(key.as_str(), |(_, item)| item).to_owned();
            forgotten.push((item, record.at_ms));
        }
        let audit = self.audit_naming(&ids)?.into_iter().map(|(_, entry)| entry).collect();
        let mut decisions = Vec::new();
        let mut notifications = Vec::new();
        let mut decided_zones = Vec::new();
        for subject in &ids {
            if let Some(bytes) = self.store.get(Table::Zones, subject)? {
                decided_zones.push((subject.clone(), bytes));
            }
            decisions.extend(self.scan_records(Table::Decisions, &format!("{subject}\0"))?);
            notifications.extend(self.scan_records(Table::Notifications, &format!("{subject}\0"))?);
        }
        Ok(PersonExport {
            stored_consent: self.people.stored_consent(&person)?,
            stored_preferences: match self.store.get(Table::Preferences, &person)? {
                Some(bytes) => Some(from_json("preferences", &bytes)?),
                None => None,
            },
            view,
            events,
            merges,
            forgotten,
            audit,
            decisions,
            notifications,
            decided_zones,
        })
    }
}
