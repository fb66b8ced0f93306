//! Human in the loop: per-slot settings, editorial picks, personalization rules (with a quarterly
//! review date) and flags that hold an item back until an editor clears it.
//!
//! All of it is small, read on every decision, and written rarely: the engine keeps it in memory
//! behind one lock and writes through to the store.

use std::collections::BTreeMap;

use attune_core::{Channel, JourneyStage};
use attune_store::Table;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use std::sync::Arc;

use attune_store::Store;
use parking_lot::{RwLock, RwLockReadGuard};

use crate::audit::AuditLog;
use crate::clock::Clock;
use crate::error::{Invalid, Result, UserError};
use crate::records::{scan_json, to_json};

/// The presentation variants a slot chooses among when none are configured.
pub const DEFAULT_VARIANTS: [&str; 2] = ["calm_list", "grid"];

/// The limits editorial settings are held to, whoever writes them (the API, the console, the
/// demo): the constructors ([`SlotSettings::new`], [`Pick::new`], [`Rule::new`]) check them, and
/// so does every `put_*`, whatever built its argument.
pub mod limits {
    /// A slot's `max_items` is 1 to this.
    pub const MAX_ITEMS: u32 = 100;
    /// A slot has 1 to this many presentation variants.
    pub const MAX_VARIANTS: usize = 3;
    /// Conditions name at most this many goals.
    pub const MAX_GOALS: usize = 20;
    /// A rule boosts (and excludes) at most this many tags.
    pub const MAX_RULE_TAGS: usize = 50;
    /// A tag, goal or variant is 1 to this many characters.
    pub const MAX_TAG_CHARS: usize = 64;
    /// A pick's or a flag's note is at most this many characters.
    pub const MAX_NOTE_CHARS: usize = 1000;
    /// A rule's owner is 1 to this many characters.
    pub const MAX_OWNER_CHARS: usize = 128;
}

type Checked<T> = std::result::Result<T, UserError>;

/// Tags (goals, variants): at most `max`, each 1–64 printable characters.
fn check_tags(tags: &[String], field: &str, max: usize) -> Checked<()> {
    if tags.len() > max {
        return Err(UserError::invalid(Invalid::Value, field, format!("`{field}` holds at most {max} tags.")));
    }
    for (i, tag) in tags.iter().enumerate() {
        let n_chars = tag.chars().count();
        if n_chars == 0 || n_chars > limits::MAX_TAG_CHARS || tag.chars().any(char::is_control) {
            return Err(UserError::invalid(
                Invalid::Value,
                format!("{field}[{i}]"),
                format!("A tag is 1–{} printable characters.", limits::MAX_TAG_CHARS),
            ));
        }
    }
    Ok(())
}

/// An id (item, slot): 1–128 printable characters.
fn check_id(id: &str, field: &str) -> Checked<()> {
    attune_core::check_id(id).map_err(|err| UserError::invalid(Invalid::Id, field, format!("The {field} {err}.")))
}

fn check_share(value: f32, field: &str) -> Checked<()> {
    if (0.0..=1.0).contains(&value) {
        Ok(())
    } else {
        Err(UserError::invalid(Invalid::Value, field, format!("`{field}` is between 0 and 1.")))
    }
}

fn check_note(note: &str, field: &str) -> Checked<()> {
    if note.chars().count() > limits::MAX_NOTE_CHARS {
        return Err(UserError::invalid(
            Invalid::Value,
            field,
            format!("`{field}` is at most {} characters.", limits::MAX_NOTE_CHARS),
        ));
    }
    Ok(())
}

/// Settings of one page slot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlotSettings {
    /// Share of each response filled with editorial picks (0–1).
    pub editorial_share: f32,
    /// Share of each response given to less obvious items from adjacent interests (0–1).
    pub serendipity_share: f32,
    /// At most this many items per response, whatever the request's count.
    pub max_items: Option<u32>,
    /// Presentation variants (2–3) the slot chooses among.
    pub variants: Vec<String>,
    /// Variant rules, tried in order before the learned choice.
    pub rules: Vec<VariantRule>,
    /// Whether items the person already consumed (viewed, read, rated, bought) may come back:
    /// `false` (the default) for feeds of what is new to the person; `true` for a "practice
    /// again" or "your favourites" slot. Bought and dismissed items never come back either way.
    #[serde(default)]
    pub repeats: bool,
    /// Settings that differ on one channel (by [`Channel`] wire name): an email digest may take
    /// fewer items, no serendipity, or other variants than the same slot on the web.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub channels: BTreeMap<String, ChannelSettings>,
}

/// A slot's settings on one channel: each field set replaces the slot's own.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChannelSettings {
    /// See [`SlotSettings::editorial_share`].
    pub editorial_share: Option<f32>,
    /// See [`SlotSettings::serendipity_share`].
    pub serendipity_share: Option<f32>,
    /// See [`SlotSettings::max_items`].
    pub max_items: Option<u32>,
    /// See [`SlotSettings::variants`].
    pub variants: Option<Vec<String>>,
    /// See [`SlotSettings::repeats`].
    pub repeats: Option<bool>,
}

impl ChannelSettings {
    /// Checks a channel's overrides of `slot` under the slot's rules; `field` is
    /// `channels.<name>`.
    fn check(&self, field: &str, slot: &SlotSettings) -> Checked<()> {
        for (value, name) in [(self.editorial_share, "editorial_share"), (self.serendipity_share, "serendipity_share")]
        {
            if let Some(value) = value {
                check_share(value, &format!("{field}.{name}"))?;
            }
        }
        if self.editorial_share.unwrap_or(slot.editorial_share)
            + self.serendipity_share.unwrap_or(slot.serendipity_share)
            > 1.0
        {
            return Err(UserError::invalid(
                Invalid::Value,
                format!("{field}.serendipity_share"),
                "`editorial_share` and `serendipity_share` add up to at most 1 on every channel.",
            ));
        }
        if self.max_items.is_some_and(|m| !(1..=limits::MAX_ITEMS).contains(&m)) {
            return Err(UserError::invalid(
                Invalid::Count,
                format!("{field}.max_items"),
                format!("`max_items` is 1 to {}.", limits::MAX_ITEMS),
            ));
        }
        if let Some(variants) = &self.variants {
            if !(1..=limits::MAX_VARIANTS).contains(&variants.len()) {
                return Err(UserError::invalid(
                    Invalid::Value,
                    format!("{field}.variants"),
                    format!("A slot has 1 to {} presentation variants.", limits::MAX_VARIANTS),
                ));
            }
            check_tags(variants, &format!("{field}.variants"), limits::MAX_VARIANTS)?;
        }
        Ok(())
    }
}

impl SlotSettings {
    /// The settings in effect on `channel`: the slot's, with that channel's overrides applied.
    pub fn for_channel(&self, channel: Channel) -> SlotSettings {
        let mut settings = self.clone();
        if let Some(over) = self.channels.get(channel.as_str()) {
            settings.editorial_share = over.editorial_share.unwrap_or(settings.editorial_share);
            settings.serendipity_share = over.serendipity_share.unwrap_or(settings.serendipity_share);
            settings.max_items = over.max_items.or(settings.max_items);
            if let Some(variants) = &over.variants {
                settings.variants = variants.clone();
            }
            settings.repeats = over.repeats.unwrap_or(settings.repeats);
        }
        settings
    }
}

impl EditorialSettings {
    /// The settings of `slot` on `channel` (defaults for a slot never configured).
    pub fn slot_settings(&self, slot: &str, channel: Channel) -> SlotSettings {
        self.slots.get(slot).map(|settings| settings.for_channel(channel)).unwrap_or_default()
    }

    /// Whether `slot` allows repeats on `channel` (without copying its settings).
    pub fn repeats(&self, slot: &str, channel: Channel) -> bool {
        self.slots.get(slot).is_some_and(|settings| {
            settings.channels.get(channel.as_str()).and_then(|c| c.repeats).unwrap_or(settings.repeats)
        })
    }
}

impl Default for SlotSettings {
    fn default() -> Self {
        SlotSettings {
            editorial_share: 0.2,
            serendipity_share: 0.1,
            max_items: None,
            variants: DEFAULT_VARIANTS.iter().map(|v| (*v).to_owned()).collect(),
            rules: Vec::new(),
            repeats: false,
            channels: BTreeMap::new(),
        }
    }
}

impl SlotSettings {
    /// Checked settings: shares 0–1 adding up to at most 1, `max_items` 1–100, 1–3 variants,
    /// per-channel overrides under the same rules (on every channel, the shares in effect add up
    /// to at most 1), and rules that pick one of the variants under valid conditions. The error
    /// names the field (`channels.email.max_items`, `rules[0].when.channel`, ...).
    pub fn new(
        editorial_share: f32,
        serendipity_share: f32,
        max_items: Option<u32>,
        variants: Vec<String>,
        rules: Vec<VariantRule>,
        repeats: bool,
        channels: BTreeMap<String, ChannelSettings>,
    ) -> Checked<SlotSettings> {
        let settings =
            SlotSettings { editorial_share, serendipity_share, max_items, variants, rules, repeats, channels };
        settings.check()?;
        Ok(settings)
    }

    /// Checks the rules of [`SlotSettings::new`].
    pub fn check(&self) -> Checked<()> {
        check_share(self.editorial_share, "editorial_share")?;
        check_share(self.serendipity_share, "serendipity_share")?;
        if self.editorial_share + self.serendipity_share > 1.0 {
            return Err(UserError::invalid(
                Invalid::Value,
                "serendipity_share",
                "`editorial_share` and `serendipity_share` add up to at most 1.",
            ));
        }
        if self.max_items.is_some_and(|m| !(1..=limits::MAX_ITEMS).contains(&m)) {
            return Err(UserError::invalid(
                Invalid::Count,
                "max_items",
                format!("`max_items` is 1 to {}.", limits::MAX_ITEMS),
            ));
        }
        if !(1..=limits::MAX_VARIANTS).contains(&self.variants.len()) {
            return Err(UserError::invalid(
                Invalid::Value,
                "variants",
                format!("A slot has 1 to {} presentation variants.", limits::MAX_VARIANTS),
            ));
        }
        check_tags(&self.variants, "variants", limits::MAX_VARIANTS)?;
        for (name, overrides) in &self.channels {
            overrides.check(&format!("channels.{name}"), self)?;
        }
        for (i, rule) in self.rules.iter().enumerate() {
            let known = self.variants.contains(&rule.variant)
                || self.channels.values().any(|c| c.variants.as_ref().is_some_and(|v| v.contains(&rule.variant)));
            if !known {
                return Err(UserError::invalid(
                    Invalid::Value,
                    format!("rules[{i}].variant"),
                    "A rule's variant is one of the slot's variants (on some channel).",
                ));
            }
            rule.when.check(&format!("rules[{i}].when"))?;
        }
        Ok(())
    }
}

/// Conditions on the person and the moment; every set field must match.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Conditions {
    /// The slot.
    pub slot: Option<String>,
    /// The journey stage (wire name).
    pub journey_stage: Option<String>,
    /// Any of these declared goals.
    pub goals: Vec<String>,
    /// The device (`mobile`, ...).
    pub device: Option<String>,
    /// Whether the decision is personalized.
    pub personalized: Option<bool>,
    /// Any of these channels ([`Channel`] wire names; empty: every channel).
    #[serde(default)]
    pub channel: Vec<String>,
}

/// What a decision is being made for, as conditions see it.
#[derive(Debug, Clone, Copy)]
pub struct Situation<'a> {
    /// The slot.
    pub slot: &'a str,
    /// The journey stage.
    pub journey_stage: JourneyStage,
    /// Declared goals.
    pub goals: &'a [String],
    /// The device.
    pub device: Option<&'a str>,
    /// Whether the decision is personalized.
    pub personalized: bool,
    /// Where the decision is shown.
    pub channel: Channel,
}

impl Conditions {
    /// Checks the conditions (`field` names them in the error): a known journey stage, a valid
    /// slot id, at most 20 goals of 1–64 characters.
    pub fn check(&self, field: &str) -> Checked<()> {
        if let Some(stage) = &self.journey_stage
            && JourneyStage::parse(stage).is_none()
        {
            return Err(UserError::invalid(
                Invalid::Value,
                format!("{field}.journey_stage"),
                "`journey_stage` is new, exploring, researching, ready_to_buy or customer.",
            ));
        }
        if let Some(slot) = &self.slot {
            check_id(slot, &format!("{field}.slot"))?;
        }
        check_tags(&self.goals, &format!("{field}.goals"), limits::MAX_GOALS)
    }

    /// Whether the situation satisfies every set condition.
    pub fn matches(&self, situation: &Situation<'_>) -> bool {
        self.slot.as_deref().is_none_or(|s| s == situation.slot)
            && self.journey_stage.as_deref().is_none_or(|s| s == situation.journey_stage.as_str())
            && (self.goals.is_empty() || self.goals.iter().any(|g| situation.goals.contains(g)))
            && self.device.as_deref().is_none_or(|d| Some(d) == situation.device)
            && self.personalized.is_none_or(|p| p == situation.personalized)
            && (self.channel.is_empty() || self.channel.iter().any(|c| c == situation.channel.as_str()))
    }
}

/// A rule choosing a slot's variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VariantRule {
    /// When it applies.
    pub when: Conditions,
    /// The variant to show.
    pub variant: String,
}

/// An editor's pick.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pick {
    /// The pick's id.
    pub id: String,
    /// The item.
    pub item: String,
    /// Who it is for (empty: everyone). Goals match if any overlaps the person's.
    pub audience: Conditions,
    /// Slots it may fill (empty: every slot).
    pub slots: Vec<String>,
    /// Active from (ms), if set.
    pub from_ms: Option<i64>,
    /// Active until (ms), if set.
    pub until_ms: Option<i64>,
    /// A note for editors (also shown as the reason's detail).
    pub note: Option<String>,
}

impl Pick {
    /// A checked pick: valid item and slot ids, `until` after `from`, a note of at most 1,000
    /// characters, valid audience conditions. (That the item exists is checked when it is put.)
    pub fn new(
        id: String,
        item: String,
        audience: Conditions,
        slots: Vec<String>,
        from_ms: Option<i64>,
        until_ms: Option<i64>,
        note: Option<String>,
    ) -> Checked<Pick> {
        let pick = Pick { id, item, audience, slots, from_ms, until_ms, note };
        pick.check()?;
        Ok(pick)
    }

    /// Checks the rules of [`Pick::new`].
    pub fn check(&self) -> Checked<()> {
        check_id(&self.id, "id")?;
        check_id(&self.item, "item")?;
        for (i, slot) in self.slots.iter().enumerate() {
            check_id(slot, &format!("slots[{i}]"))?;
        }
        if let (Some(from), Some(until)) = (self.from_ms, self.until_ms)
            && until <= from
        {
            return Err(UserError::invalid(Invalid::Value, "until", "`until` is after `from`."));
        }
        if let Some(note) = &self.note {
            check_note(note, "note")?;
        }
        self.audience.check("audience")
    }

    /// Whether the pick applies to a situation at `now_ms`.
    pub fn applies(&self, situation: &Situation<'_>, now_ms: i64) -> bool {
        self.from_ms.is_none_or(|from| now_ms >= from)
            && self.until_ms.is_none_or(|until| now_ms < until)
            && (self.slots.is_empty() || self.slots.iter().any(|s| s == situation.slot))
            && Conditions { slot: None, ..self.audience.clone() }.matches(situation)
    }
}

/// What a personalization rule does.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RuleEffect {
    /// Multiply the score of items carrying any of these tags by 1.5.
    pub boost_tags: Vec<String>,
    /// Never show items carrying any of these tags.
    pub exclude_tags: Vec<String>,
    /// Show this slot variant.
    pub variant: Option<String>,
}

/// A personalization rule, owned by someone and due for review on a date.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    /// The rule's id.
    pub id: String,
    /// When it applies.
    pub when: Conditions,
    /// What it does.
    pub then: RuleEffect,
    /// Who answers for it.
    pub owner: String,
    /// Review date (`YYYY-MM-DD`); past it the rule is listed as due.
    pub review_by: String,
    /// When it was last written.
    pub updated_ms: i64,
}

impl Rule {
    /// A checked rule: a review date (`YYYY-MM-DD`), an owner of 1–128 characters (trimmed),
    /// at most 50 boosted and 50 excluded tags, valid conditions.
    pub fn new(
        id: String,
        when: Conditions,
        then: RuleEffect,
        owner: &str,
        review_by: String,
        updated_ms: i64,
    ) -> Checked<Rule> {
        let rule = Rule { id, when, then, owner: owner.trim().to_owned(), review_by, updated_ms };
        rule.check()?;
        Ok(rule)
    }

    /// Checks the rules of [`Rule::new`].
    pub fn check(&self) -> Checked<()> {
        check_id(&self.id, "id")?;
        if self.review_by.parse::<jiff::civil::Date>().is_err() {
            return Err(UserError::invalid(
                Invalid::Timestamp,
                "review_by",
                "`review_by` is a date such as 2027-03-01.",
            ));
        }
        let n_chars = self.owner.chars().count();
        if self.owner.trim() != self.owner || n_chars == 0 || n_chars > limits::MAX_OWNER_CHARS {
            return Err(UserError::invalid(
                Invalid::Value,
                "owner",
                format!("`owner` is 1–{} characters.", limits::MAX_OWNER_CHARS),
            ));
        }
        check_tags(&self.then.boost_tags, "then.boost_tags", limits::MAX_RULE_TAGS)?;
        check_tags(&self.then.exclude_tags, "then.exclude_tags", limits::MAX_RULE_TAGS)?;
        self.when.check("when")
    }

    /// Whether the rule is due for review at `now_ms` (its date has passed).
    pub fn due(&self, now_ms: i64) -> bool {
        let today =
            jiff::Timestamp::from_millisecond(now_ms).map(|ts| ts.strftime("%Y-%m-%d").to_string()).unwrap_or_default();
        self.review_by.as_str() <= today.as_str()
    }
}

/// An editor's flag on an item: held back until cleared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flag {
    /// The item.
    pub item: String,
    /// Why.
    pub note: String,
    /// Who flagged it (key id).
    pub key_id: String,
    /// When.
    pub at_ms: i64,
}

/// Everything editorial, in memory.
#[derive(Debug, Default, Clone)]
pub struct EditorialSettings {
    /// Slot settings by slot.
    pub slots: FxHashMap<String, SlotSettings>,
    /// Picks by id.
    pub picks: FxHashMap<String, Pick>,
    /// Rules by id.
    pub rules: FxHashMap<String, Rule>,
    /// Flags by item id.
    pub flags: FxHashMap<String, Flag>,
}

/// Slots, picks, rules and flags: in memory behind one lock, written through to their tables,
/// checked on every `put_*` and audited.
pub struct Editorial {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    audit: AuditLog,
    settings: RwLock<EditorialSettings>,
}

impl Editorial {
    /// Loads the stored settings.
    pub(crate) fn open(store: Arc<dyn Store>, clock: Arc<dyn Clock>, audit: AuditLog) -> Result<Editorial> {
        let editorial = Editorial { store, clock, audit, settings: RwLock::new(EditorialSettings::default()) };
        editorial.reload()?;
        Ok(editorial)
    }

    /// Reads everything again from the store (at start, and when another server changed it).
    pub(crate) fn reload(&self) -> Result<()> {
        let store = &*self.store;
        let settings = EditorialSettings {
            slots: scan_json(store, Table::Slots, "", "slot")?.into_iter().collect(),
            picks: scan_json(store, Table::Picks, "", "pick")?.into_iter().collect(),
            rules: scan_json(store, Table::Rules, "", "rule")?.into_iter().collect(),
            flags: scan_json(store, Table::Flags, "", "flag")?.into_iter().collect(),
        };
        *self.settings.write() = settings;
        Ok(())
    }

    /// Reads everything (the decide path holds this for one decision).
    pub fn read(&self) -> RwLockReadGuard<'_, EditorialSettings> {
        self.settings.read()
    }

    /// A slot's settings (defaults for a slot never configured).
    pub fn slot(&self, slot: &str) -> SlotSettings {
        self.settings.read().slots.get(slot).cloned().unwrap_or_default()
    }

    /// Every configured slot.
    pub fn slots(&self) -> Vec<(String, SlotSettings)> {
        let mut all: Vec<_> = self.settings.read().slots.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Sets a slot's settings (checked: [`SlotSettings::check`]).
    pub fn put_slot(&self, slot: &str, settings: SlotSettings, key_id: &str) -> Result<()> {
        check_id(slot, "slot")?;
        settings.check()?;
        self.store.put(Table::Slots, slot, &to_json(&settings))?;
        self.settings.write().slots.insert(slot.to_owned(), settings);
        self.audit.record(key_id, "slots.put", slot)
    }

    /// Adds or replaces a pick (checked: [`Pick::check`]; `item_known` says whether the catalog
    /// has the item, which must exist).
    pub fn put_pick(&self, pick: Pick, key_id: &str, item_known: impl Fn(&str) -> bool) -> Result<()> {
        pick.check()?;
        if !item_known(&pick.item) {
            return Err(UserError::not_found("item", &pick.item).into());
        }
        self.store.put(Table::Picks, &pick.id, &to_json(&pick))?;
        let id = pick.id.clone();
        self.settings.write().picks.insert(id.clone(), pick);
        self.audit.record(key_id, "picks.put", &id)
    }

    /// A pick.
    pub fn pick(&self, id: &str) -> Option<Pick> {
        self.settings.read().picks.get(id).cloned()
    }

    /// Every pick, by id.
    pub fn picks(&self) -> Vec<Pick> {
        let mut all: Vec<_> = self.settings.read().picks.values().cloned().collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    /// Deletes a pick.
    pub fn delete_pick(&self, id: &str, key_id: &str) -> Result<()> {
        if self.settings.write().picks.remove(id).is_none() {
            return Err(UserError::not_found("pick", id).into());
        }
        self.store.delete(Table::Picks, id)?;
        self.audit.record(key_id, "picks.delete", id)
    }

    /// Adds or replaces a rule (checked: [`Rule::check`]).
    pub fn put_rule(&self, rule: Rule, key_id: &str) -> Result<()> {
        rule.check()?;
        self.store.put(Table::Rules, &rule.id, &to_json(&rule))?;
        let id = rule.id.clone();
        self.settings.write().rules.insert(id.clone(), rule);
        self.audit.record(key_id, "rules.put", &id)
    }

    /// A rule.
    pub fn rule(&self, id: &str) -> Option<Rule> {
        self.settings.read().rules.get(id).cloned()
    }

    /// Rules (only those due for review now when `due_only`), by id.
    pub fn rules(&self, due_only: bool) -> Vec<Rule> {
        let now_ms = self.clock.now_ms();
        let mut all: Vec<_> =
            self.settings.read().rules.values().filter(|r| !due_only || r.due(now_ms)).cloned().collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    /// Deletes a rule.
    pub fn delete_rule(&self, id: &str, key_id: &str) -> Result<()> {
        if self.settings.write().rules.remove(id).is_none() {
            return Err(UserError::not_found("rule", id).into());
        }
        self.store.delete(Table::Rules, id)?;
        self.audit.record(key_id, "rules.delete", id)
    }

    /// Flags an item (`item_known`: whether the catalog has it): it is held back from
    /// recommendations until cleared.
    pub fn flag_item(&self, item: &str, note: &str, key_id: &str, item_known: impl Fn(&str) -> bool) -> Result<Flag> {
        check_id(item, "item")?;
        check_note(note, "note")?;
        if !item_known(item) {
            return Err(UserError::not_found("item", item).into());
        }
        let flag = Flag {
            item: item.to_owned(),
            note: note.to_owned(),
            key_id: key_id.to_owned(),
            at_ms: self.clock.now_ms(),
        };
        self.store.put(Table::Flags, item, &to_json(&flag))?;
        self.settings.write().flags.insert(item.to_owned(), flag.clone());
        self.audit.record(key_id, "flags.put", item)?;
        Ok(flag)
    }

    /// Clears a flag.
    pub fn clear_flag(&self, item: &str, key_id: &str) -> Result<()> {
        if self.settings.write().flags.remove(item).is_none() {
            return Err(UserError::not_found("flag", item).into());
        }
        self.store.delete(Table::Flags, item)?;
        self.audit.record(key_id, "flags.delete", item)
    }

    /// Every flag.
    pub fn flags(&self) -> Vec<Flag> {
        let mut all: Vec<_> = self.settings.read().flags.values().cloned().collect();
        all.sort_by(|a, b| a.item.cmp(&b.item));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kind and field of a refusal.
    fn refusal<T: std::fmt::Debug>(result: Checked<T>) -> (Invalid, String) {
        match result {
            Err(UserError::Invalid { kind, field, .. }) => (kind, field.unwrap_or_default()),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    fn variants(names: &[&str]) -> Vec<String> {
        names.iter().map(|v| (*v).to_owned()).collect()
    }

    fn slot(editorial: f32, serendipity: f32, max_items: Option<u32>, names: &[&str]) -> Checked<SlotSettings> {
        SlotSettings::new(editorial, serendipity, max_items, variants(names), Vec::new(), false, BTreeMap::new())
    }

    #[test]
    fn slot_settings_hold_to_the_limits() {
        assert!(slot(0.2, 0.1, Some(10), &["calm_list", "grid"]).is_ok());
        assert!(slot(0.5, 0.5, Some(limits::MAX_ITEMS), &["a", "b", "c"]).is_ok(), "the limits themselves pass");
        assert_eq!(refusal(slot(1.5, 0.0, None, &["a"])), (Invalid::Value, "editorial_share".into()));
        assert_eq!(refusal(slot(0.2, -0.1, None, &["a"])), (Invalid::Value, "serendipity_share".into()));
        assert_eq!(refusal(slot(f32::NAN, 0.0, None, &["a"])), (Invalid::Value, "editorial_share".into()));
        assert_eq!(refusal(slot(0.6, 0.5, None, &["a"])), (Invalid::Value, "serendipity_share".into()));
        assert_eq!(refusal(slot(0.2, 0.1, Some(0), &["a"])), (Invalid::Count, "max_items".into()));
        assert_eq!(refusal(slot(0.2, 0.1, Some(101), &["a"])), (Invalid::Count, "max_items".into()));
        assert_eq!(refusal(slot(0.2, 0.1, None, &[])), (Invalid::Value, "variants".into()));
        assert_eq!(refusal(slot(0.2, 0.1, None, &["a", "b", "c", "d"])), (Invalid::Value, "variants".into()));
        assert_eq!(refusal(slot(0.2, 0.1, None, &["a", ""])), (Invalid::Value, "variants[1]".into()));
        let rule = |variant: &str, stage: Option<&str>| VariantRule {
            when: Conditions { journey_stage: stage.map(str::to_owned), ..Conditions::default() },
            variant: variant.to_owned(),
        };
        let with_rules =
            |rules| SlotSettings::new(0.2, 0.1, None, variants(&["a", "b"]), rules, false, BTreeMap::new());
        assert!(with_rules(vec![rule("b", Some("customer"))]).is_ok());
        assert_eq!(
            refusal(with_rules(vec![rule("a", None), rule("z", None)])),
            (Invalid::Value, "rules[1].variant".into())
        );
        assert_eq!(
            refusal(with_rules(vec![rule("a", Some("sleepy"))])),
            (Invalid::Value, "rules[0].when.journey_stage".into())
        );
    }

    fn pick(item: &str, slots: &[&str], from_ms: Option<i64>, until_ms: Option<i64>, note: usize) -> Checked<Pick> {
        let note = (note > 0).then(|| "n".repeat(note));
        Pick::new("p-1".into(), item.into(), Conditions::default(), variants(slots), from_ms, until_ms, note)
    }

    #[test]
    fn picks_hold_to_the_limits() {
        assert!(pick("art-1", &["home"], Some(1), Some(2), limits::MAX_NOTE_CHARS).is_ok());
        assert_eq!(refusal(pick("", &[], None, None, 0)), (Invalid::Id, "item".into()));
        assert_eq!(refusal(pick("art-1", &["ok", "bad\nslot"], None, None, 0)), (Invalid::Id, "slots[1]".into()));
        assert_eq!(refusal(pick("art-1", &[], Some(2), Some(2), 0)), (Invalid::Value, "until".into()));
        assert_eq!(
            refusal(pick("art-1", &[], None, None, limits::MAX_NOTE_CHARS + 1)),
            (Invalid::Value, "note".into())
        );
        let goals =
            Conditions { goals: (0..=limits::MAX_GOALS).map(|i| format!("g{i}")).collect(), ..Conditions::default() };
        let crowded = Pick::new("p".into(), "art-1".into(), goals, Vec::new(), None, None, None);
        assert_eq!(refusal(crowded), (Invalid::Value, "audience.goals".into()));
    }

    #[test]
    fn rules_hold_to_the_limits() {
        let effect = |n_tags: usize| RuleEffect {
            boost_tags: (0..n_tags).map(|i| format!("t{i}")).collect(),
            ..RuleEffect::default()
        };
        let rule = |owner: &str, review_by: &str, n_tags: usize| {
            Rule::new("r-1".into(), Conditions::default(), effect(n_tags), owner, review_by.into(), 0)
        };
        let ok = rule("  ana  ", "2027-03-01", limits::MAX_RULE_TAGS).unwrap();
        assert_eq!(ok.owner, "ana", "the owner is trimmed");
        assert_eq!(refusal(rule("ana", "next spring", 0)), (Invalid::Timestamp, "review_by".into()));
        assert_eq!(refusal(rule("   ", "2027-03-01", 0)), (Invalid::Value, "owner".into()));
        assert_eq!(refusal(rule(&"o".repeat(129), "2027-03-01", 0)), (Invalid::Value, "owner".into()));
        assert_eq!(
            refusal(rule("ana", "2027-03-01", limits::MAX_RULE_TAGS + 1)),
            (Invalid::Value, "then.boost_tags".into())
        );
    }

    #[test]
    fn the_engine_refuses_what_the_constructors_would() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(attune_store::EmbeddedStore::open(dir.path()).unwrap());
        let clock = std::sync::Arc::new(crate::ManualClock::new(1_760_000_000_000));
        let engine = crate::Engine::open(store, clock, crate::EngineConfig::default()).unwrap();
        // Built past the constructor: put_slot checks it all the same, and stores nothing.
        let settings = SlotSettings { editorial_share: 0.9, serendipity_share: 0.9, ..SlotSettings::default() };
        assert!(matches!(engine.put_slot("home", settings, "test"), Err(crate::EngineError::User(_))));
        assert!(engine.slots().is_empty());
        let unknown = pick("art-unknown", &[], None, None, 0).unwrap();
        assert!(matches!(
            engine.put_pick(unknown, "test"),
            Err(crate::EngineError::User(UserError::NotFound { what: "item", .. }))
        ));
        let long_note = "n".repeat(limits::MAX_NOTE_CHARS + 1);
        assert!(matches!(engine.flag_item("art-unknown", &long_note, "test"), Err(crate::EngineError::User(_))));
    }
}
