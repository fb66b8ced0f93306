//! The four-dimension report (`GET /v1/report`) and notification timing
//! (`POST /v1/notifications/plan`): quiet hours in the person's time zone and one calm frequency
//! budget shared by every channel.
//!
//! Notification plans are kept in `Table::Notifications` under `person \0 plan id` with an `at_ms`
//! field (the privacy layer's convention: export and erasure find them by prefix, retention sweeps
//! them after 90 days).

use attune_core::{BuiltinType, Event, Purpose};
use attune_store::Table;
use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};

use attune_store::Store;

use crate::clock::Clock;
use crate::error::{Result, UserError, corrupt};
use crate::experiments::Experiments;
use crate::models::Models;
use crate::people::People;
use crate::privacy::PrivacyReport;
use crate::records::to_json;

/// `GET /v1/report`: behavioral, attitudinal, business and ethical figures for a period.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Period start (ms).
    pub from_ms: i64,
    /// Period end (ms, exclusive).
    pub to_ms: i64,
    /// People with at least one stored event in the period.
    pub active_people: u64,
    /// Events per active person.
    pub engagement_depth: f64,
    /// Share of reading (dwell) events that reached 90 % of the page.
    pub completion: f64,
    /// Share of active people seen on at least two days.
    pub return_rate: f64,
    /// Mean survey score (1–10) and how many answers.
    pub survey_mean: Option<f64>,
    /// Survey answers.
    pub survey_count: u64,
    /// Share of active people who bought.
    pub conversion: f64,
    /// Revenue per active person.
    pub revenue_per_person: f64,
    /// Total revenue.
    pub revenue: f64,
    /// Consent, opt-outs, erasures, pauses, data held past retention.
    pub ethical: PrivacyReport,
    /// With a global holdout: per week of the period, personalized people against the holdout
    /// on the four dimensions (empty without a holdout).
    pub holdout_weeks: Vec<GroupWeek>,
    /// Per week of the period, the four dimensions: the same as `holdout_weeks` with a global
    /// holdout, else one group, `everyone` (the console's weekly trend).
    pub weeks: Vec<GroupWeek>,
}

/// One week of one group (`personalized`, `holdout` or `everyone`) on the four dimensions.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GroupWeek {
    /// Week start (ms): the period's start plus whole weeks.
    pub week_start_ms: i64,
    /// `personalized` (everyone outside the global holdout) or `holdout`; `everyone` without a
    /// global holdout.
    pub group: &'static str,
    /// Behavioral: people with an event that week.
    pub active_people: u64,
    /// Behavioral: events per active person.
    pub events_per_person: f64,
    /// Attitudinal: mean survey score (1–10).
    pub survey_mean: Option<f64>,
    /// Attitudinal: answers.
    pub survey_count: u64,
    /// Business: share of active people who bought.
    pub conversion: f64,
    /// Business: revenue per active person.
    pub revenue_per_person: f64,
    /// Ethical: share of active people now without personalization consent or with it paused.
    pub opt_out_rate: f64,
    /// Ethical: share of active people who said not interested.
    pub not_interested_rate: f64,
}

#[derive(Default)]
struct GroupAcc {
    people: FxHashMap<String, (u64, bool, bool)>,
    revenue: f64,
    survey_sum: f64,
    survey_count: u64,
}

/// A notification plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationPlan {
    /// `ntf-…`.
    pub id: String,
    /// The channel (`email`, `push`, …).
    pub channel: String,
    /// When to send (ms), or none.
    pub send_at_ms: Option<i64>,
    /// Why: `preferred_hour` (the person's learned hour), `default_hour` (moved out of the
    /// default quiet hours to the default hour: nothing learned yet), `quiet_hours`,
    /// `as_requested`, `frequency_cap`, `no_consent`.
    pub reason: String,
    /// When the plan was made (ms).
    pub at_ms: i64,
    /// For an email digest (`POST /v1/digest`): the items it sent. The plans of one person are
    /// their digest log: later digests leave these items out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<String>,
    /// For an email digest: the decision that chose its items (clicks attribute to it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision_id: Option<String>,
}

/// A plan's reason when the person's consent forbids the channel.
pub const NO_CONSENT: &str = "no_consent";
/// A plan's reason when the shared frequency budget allows no send.
pub const FREQUENCY_CAP: &str = "frequency_cap";

/// Sends allowed per person in any rolling 7 days, across every channel.
pub const WEEKLY_BUDGET: usize = 3;
/// At least this long between two sends to one person.
pub const MIN_GAP_MS: i64 = 20 * 3_600_000;
/// The hour (local) a send moves to when the requested time is late at night.
pub const PREFERRED_HOUR: i8 = 18;
const DAY_MS: i64 = 86_400_000;

/// What the report and notification timing read.
pub(crate) struct MeasureCtx<'a> {
    pub store: &'a dyn Store,
    pub clock: &'a dyn Clock,
    pub people: &'a People,
    pub models: &'a Models,
    pub experiments: &'a Experiments,
}

impl MeasureCtx<'_> {
    /// The four dimensions over events with `from_ms <= ts < to_ms`; `ethical` is the privacy
    /// report of now.
    pub fn report(&self, from_ms: i64, to_ms: i64, ethical: PrivacyReport) -> Result<Report> {
        let mut people: FxHashMap<String, (u64, FxHashSet<i64>, bool)> = FxHashMap::default();
        let (mut dwell, mut completed, mut survey_sum, mut survey_count, mut revenue) = (0u64, 0u64, 0.0, 0u64, 0.0);
        let mut failure = None;
        let with_holdout = self.experiments.holdout().share > 0.0;
        let mut groups: FxHashMap<(i64, bool), GroupAcc> = FxHashMap::default();
        self.store.scan_events(0, &mut |row| {
            if row.ts_ms < from_ms || row.ts_ms >= to_ms {
                return true;
            }
            let event: Event = match postcard::from_bytes(&row.payload) {
                Ok(event) => event,
                Err(err) => {
                    failure = Some(corrupt("event payload", err));
                    return false;
                }
            };
            let person = self.people.resolve(event.subject.id());
            {
                let week = (event.ts_ms - from_ms).div_euclid(7 * DAY_MS);
                let acc =
                    groups.entry((week, with_holdout && self.experiments.in_global_holdout(&person))).or_default();
                let p = acc.people.entry(person.clone()).or_default();
                p.0 += 1;
                match event.kind.builtin() {
                    Some(BuiltinType::Purchase) => {
                        p.1 = true;
                        acc.revenue += event.prop_f64("value").unwrap_or(0.0);
                    }
                    Some(BuiltinType::NotInterested) => p.2 = true,
                    Some(BuiltinType::Survey) => {
                        if let Some(score) = event.prop_f64("score") {
                            acc.survey_sum += score;
                            acc.survey_count += 1;
                        }
                    }
                    _ => {}
                }
            }
            let entry = people.entry(person).or_default();
            entry.0 += 1;
            entry.1.insert(event.ts_ms.div_euclid(DAY_MS));
            match event.kind.builtin() {
                Some(BuiltinType::Dwell) => {
                    dwell += 1;
                    if event.prop_f64("scroll_depth").is_some_and(|d| d >= 0.9) {
                        completed += 1;
                    }
                }
                Some(BuiltinType::Survey) => {
                    if let Some(score) = event.prop_f64("score") {
                        survey_sum += score;
                        survey_count += 1;
                    }
                }
                Some(BuiltinType::Purchase) => {
                    entry.2 = true;
                    revenue += event.prop_f64("value").unwrap_or(0.0);
                }
                _ => {}
            }
            true
        })?;
        if let Some(err) = failure {
            return Err(err);
        }
        let mut weeks: Vec<GroupWeek> = groups
            .into_iter()
            .map(|((week, held), acc)| {
                let n = acc.people.len() as f64;
                let share = |count: usize| if n == 0.0 { 0.0 } else { count as f64 / n };
                let opted_out = acc
                    .people
                    .keys()
                    .filter(|p| {
                        !self.people.consent_of(p).personalization
                            || self
                                .people
                                .read(p, |s| s.and_then(|s| s.preferences.as_ref()).is_some_and(|x| !x.personalization))
                    })
                    .count();
                GroupWeek {
                    week_start_ms: from_ms + week * 7 * DAY_MS,
                    group: match (with_holdout, held) {
                        (false, _) => "everyone",
                        (true, true) => "holdout",
                        (true, false) => "personalized",
                    },
                    active_people: acc.people.len() as u64,
                    events_per_person: if n == 0.0 {
                        0.0
                    } else {
                        acc.people.values().map(|p| p.0 as f64).sum::<f64>() / n
                    },
                    survey_mean: (acc.survey_count > 0).then(|| acc.survey_sum / acc.survey_count as f64),
                    survey_count: acc.survey_count,
                    conversion: share(acc.people.values().filter(|p| p.1).count()),
                    revenue_per_person: if n == 0.0 { 0.0 } else { acc.revenue / n },
                    opt_out_rate: share(opted_out),
                    not_interested_rate: share(acc.people.values().filter(|p| p.2).count()),
                }
            })
            .collect();
        weeks.sort_by(|a, b| (a.week_start_ms, a.group).cmp(&(b.week_start_ms, b.group)));
        let holdout_weeks = if with_holdout { weeks.clone() } else { Vec::new() };
        let active = people.len() as u64;
        let per = |n: f64| if active == 0 { 0.0 } else { n / active as f64 };
        Ok(Report {
            from_ms,
            to_ms,
            active_people: active,
            engagement_depth: per(people.values().map(|p| p.0 as f64).sum()),
            completion: if dwell == 0 { 0.0 } else { completed as f64 / dwell as f64 },
            return_rate: per(people.values().filter(|p| p.1.len() >= 2).count() as f64),
            survey_mean: (survey_count > 0).then(|| survey_sum / survey_count as f64),
            survey_count,
            conversion: per(people.values().filter(|p| p.2).count() as f64),
            revenue_per_person: per(revenue),
            revenue,
            ethical,
            holdout_weeks,
            weeks,
        })
    }

    /// Plans one notification: consent for the channel, quiet hours in the person's time zone,
    /// and one frequency budget across channels. A plan with a send time reserves one send.
    pub fn plan_notification(&self, id: &str, channel: &str, not_before_ms: i64) -> Result<NotificationPlan> {
        let plan = self.next_send(id, channel, not_before_ms)?;
        self.store_plan(&self.people.resolve(id), plan)
    }

    /// What [`MeasureCtx::plan_notification`] would answer, without reserving anything: the digest
    /// reserves its send only once it has items to send.
    pub(crate) fn next_send(&self, id: &str, channel: &str, not_before_ms: i64) -> Result<NotificationPlan> {
        let person = self.people.resolve(id);
        let now_ms = self.clock.now_ms();
        let plan = |send_at_ms: Option<i64>, reason: &str| NotificationPlan {
            id: format!("ntf-{}", ulid::Ulid::generate()),
            channel: channel.to_owned(),
            send_at_ms,
            reason: reason.to_owned(),
            at_ms: now_ms,
            items: Vec::new(),
            decision_id: None,
        };
        let consent = self.people.consent_of(&person);
        let purpose = match channel {
            "email" => Some(Purpose::Email),
            "push" => Some(Purpose::Push),
            _ => None,
        };
        if purpose.is_some_and(|p| !consent.allows(p)) {
            return Ok(plan(None, NO_CONSENT));
        }
        // The person's zone (their preferences, else the latest their events' or decide
        // requests' context named) and
        // their learned send hour.
        let population = self.models.current().hour_prior.clone();
        let (preferences, zone, learned) = self.people.read(&person, |s| {
            let profile = s.and_then(|s| s.profile.as_ref());
            let decided = s.and_then(|s| s.decided_zone).filter(|_| profile.is_some());
            let preferences = s.and_then(|s| s.preferences.as_deref().cloned()).unwrap_or_default();
            let zone = preferences.zone_in_force(profile, decided).map(|(zone, _)| zone.to_owned());
            let learned = profile.and_then(|p| p.send_hour(&population, preferences.quiet_hours));
            (preferences, zone, learned)
        });
        let tz = zone.as_deref().and_then(|name| jiff::tz::TimeZone::get(name).ok()).unwrap_or(jiff::tz::TimeZone::UTC);
        let earliest = not_before_ms.max(now_ms);
        let local_of = |ms: i64| {
            jiff::Timestamp::from_millisecond(ms)
                .map_err(|_| {
                    UserError::invalid(crate::error::Invalid::Timestamp, "not_before", "`not_before` is out of range.")
                })
                .map(|t| t.to_zoned_datetime(tz.clone()))
        };
        let at_local = |date: jiff::civil::Date, hour: i8, fallback: i64| {
            date.at(hour, 0, 0, 0)
                .to_zoned_datetime(tz.clone())
                .map(|z| z.timestamp().as_millisecond())
                .unwrap_or(fallback)
        };

        // The budget: at most WEEKLY_BUDGET sends in any 7 days, and MIN_GAP_MS between two.
        let reserved: Vec<i64> = crate::records::scan_json::<NotificationPlan>(
            self.store,
            Table::Notifications,
            &format!("{person}\0"),
            "notification plan",
        )?
        .into_iter()
        .filter_map(|(_, plan)| plan.send_at_ms)
        .collect();
        let mut candidate = earliest;
        let mut reason = if learned.is_some() { "preferred_hour" } else { "as_requested" };
        for _ in 0..32 {
            // A learned hour: the next time it comes round (within that hour, now).
            if let Some(hour) = learned {
                let local = local_of(candidate)?;
                if local.hour() != hour {
                    let mut date = local.date();
                    if local.hour() > hour {
                        date = date.tomorrow().unwrap_or(date);
                    }
                    candidate = at_local(date, hour, candidate + DAY_MS).max(candidate);
                }
            }
            let in_week = reserved.iter().filter(|&&t| (t - candidate).abs() < 7 * DAY_MS).count();
            if let Some(&too_close) = reserved.iter().find(|&&t| (t - candidate).abs() < MIN_GAP_MS) {
                candidate = too_close + MIN_GAP_MS;
                reason = "frequency_cap";
                continue;
            }
            if in_week >= WEEKLY_BUDGET {
                return Ok(plan(None, FREQUENCY_CAP));
            }
            if learned.is_some() {
                // The learned hour lies outside the night and the person's quiet hours.
                return Ok(plan(Some(candidate), reason));
            }
            // Quiet hours, and the calm default: nothing between 21:00 and 08:00 local unless the
            // person set other quiet hours.
            let local = local_of(candidate)?;
            let minute = (local.hour() as u16) * 60 + local.minute() as u16;
            let quiet =
                preferences.quiet_hours.unwrap_or(attune_core::QuietHours { start_min: 21 * 60, end_min: 8 * 60 });
            if quiet.contains(minute) {
                // Move to the end of quiet hours, or to the preferred hour if that is later that day.
                let end = quiet.end_min;
                let mut moved = local.date().at((end / 60) as i8, (end % 60) as i8, 0, 0);
                if moved <= local.datetime() {
                    moved = moved.checked_add(jiff::Span::new().days(1)).unwrap_or(moved);
                }
                let preferred = moved.date().at(PREFERRED_HOUR, 0, 0, 0);
                let (target, why) = if preferences.quiet_hours.is_none() && preferred > moved {
                    (preferred, "default_hour")
                } else {
                    (moved, "quiet_hours")
                };
                candidate = target
                    .to_zoned_datetime(tz.clone())
                    .map(|z| z.timestamp().as_millisecond())
                    .unwrap_or(candidate + DAY_MS);
                if reason == "as_requested" {
                    reason = why;
                }
                continue;
            }
            return Ok(plan(Some(candidate), reason));
        }
        Ok(plan(None, FREQUENCY_CAP))
    }

    pub(crate) fn store_plan(&self, person: &str, plan: NotificationPlan) -> Result<NotificationPlan> {
        if plan.send_at_ms.is_some() {
            self.store.put(Table::Notifications, &format!("{person}\0{}", plan.id), &to_json(&plan))?;
        }
        Ok(plan)
    }
}
