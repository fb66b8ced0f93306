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

use crate::{Engine, Result, UserError, to_json};

/// The presentation variants a slot chooses among when none are configured.
pub const DEFAULT_VARIANTS: [&str; 2] = ["calm_list", "grid"];

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

impl Editorial {
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
pub struct Editorial {
    /// Slot settings by slot.
    pub slots: FxHashMap<String, SlotSettings>,
    /// Picks by id.
    pub picks: FxHashMap<String, Pick>,
    /// Rules by id.
    pub rules: FxHashMap<String, Rule>,
    /// Flags by item id.
    pub flags: FxHashMap<String, Flag>,
}

impl Engine {
    pub(crate) fn load_editorial(&self) -> Result<()> {
        let editorial = Editorial {
            slots: self.scan_json(Table::Slots, "", "slot")?.into_iter().collect(),
            picks: self.scan_json(Table::Picks, "", "pick")?.into_iter().collect(),
            rules: self.scan_json(Table::Rules, "", "rule")?.into_iter().collect(),
            flags: self.scan_json(Table::Flags, "", "flag")?.into_iter().collect(),
        };
        *self.editorial.write() = editorial;
        Ok(())
    }

    /// A slot's settings (defaults for a slot never configured).
    pub fn slot(&self, slot: &str) -> SlotSettings {
        self.editorial.read().slots.get(slot).cloned().unwrap_or_default()
    }

    /// Every configured slot.
    pub fn slots(&self) -> Vec<(String, SlotSettings)> {
        let mut all: Vec<_> = self.editorial.read().slots.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Sets a slot's settings.
    pub fn put_slot(&self, slot: &str, settings: SlotSettings, key_id: &str) -> Result<()> {
        self.store.put(Table::Slots, slot, &to_json(&settings))?;
        self.editorial.write().slots.insert(slot.to_owned(), settings);
        self.audit(key_id, "slots.put", slot)
    }

    /// Adds or replaces a pick.
    pub fn put_pick(&self, pick: Pick, key_id: &str) -> Result<()> {
        self.store.put(Table::Picks, &pick.id, &to_json(&pick))?;
        let id = pick.id.clone();
        self.editorial.write().picks.insert(id.clone(), pick);
        self.audit(key_id, "picks.put", &id)
    }

    /// A pick.
    pub fn pick(&self, id: &str) -> Option<Pick> {
        self.editorial.read().picks.get(id).cloned()
    }

    /// Every pick, by id.
    pub fn picks(&self) -> Vec<Pick> {
        let mut all: Vec<_> = self.editorial.read().picks.values().cloned().collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    /// Deletes a pick.
    pub fn delete_pick(&self, id: &str, key_id: &str) -> Result<()> {
        if self.editorial.write().picks.remove(id).is_none() {
            return Err(UserError::not_found("pick", id).into());
        }
        self.store.delete(Table::Picks, id)?;
        self.audit(key_id, "picks.delete", id)
    }

    /// Adds or replaces a rule.
    pub fn put_rule(&self, rule: Rule, key_id: &str) -> Result<()> {
        self.store.put(Table::Rules, &rule.id, &to_json(&rule))?;
        let id = rule.id.clone();
        self.editorial.write().rules.insert(id.clone(), rule);
        self.audit(key_id, "rules.put", &id)
    }

    /// A rule.
    pub fn rule(&self, id: &str) -> Option<Rule> {
        self.editorial.read().rules.get(id).cloned()
    }

    /// Rules (only those due for review at `now_ms` when `due_only`), by id.
    pub fn rules(&self, due_only: bool) -> Vec<Rule> {
        let now_ms = self.now_ms();
        let mut all: Vec<_> =
            self.editorial.read().rules.values().filter(|r| !due_only || r.due(now_ms)).cloned().collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    /// Deletes a rule.
    pub fn delete_rule(&self, id: &str, key_id: &str) -> Result<()> {
        if self.editorial.write().rules.remove(id).is_none() {
            return Err(UserError::not_found("rule", id).into());
        }
        self.store.delete(Table::Rules, id)?;
        self.audit(key_id, "rules.delete", id)
    }

    /// Flags an item: it is held back from recommendations until cleared.
    pub fn flag_item(&self, item: &str, note: &str, key_id: &str) -> Result<Flag> {
        if self.item(item).is_none() {
            return Err(UserError::not_found("item", item).into());
        }
        let flag =
            Flag { item: item.to_owned(), note: note.to_owned(), key_id: key_id.to_owned(), at_ms: self.now_ms() };
        self.store.put(Table::Flags, item, &to_json(&flag))?;
        self.editorial.write().flags.insert(item.to_owned(), flag.clone());
        self.audit(key_id, "flags.put", item)?;
        Ok(flag)
    }

    /// Clears a flag.
    pub fn clear_flag(&self, item: &str, key_id: &str) -> Result<()> {
        if self.editorial.write().flags.remove(item).is_none() {
            return Err(UserError::not_found("flag", item).into());
        }
        self.store.delete(Table::Flags, item)?;
        self.audit(key_id, "flags.delete", item)
    }

    /// Every flag.
    pub fn flags(&self) -> Vec<Flag> {
        let mut all: Vec<_> = self.editorial.read().flags.values().cloned().collect();
        all.sort_by(|a, b| a.item.cmp(&b.item));
        all
    }
}
