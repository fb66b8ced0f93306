//! Simulated audience for `attune demo`: a few thousand made-up people with goals, consent choices,
//! onboarding answers and weeks of sessions, written out as `API.md` Event objects.
//!
//! The behaviour is shaped so that every part of the engine has something to find:
//!
//! - **Goals.** Each person has one or two goals (`sleep`, `stress_relief`, `focus`, `digital_detox`,
//!   `movement`, weighted by popularity) and a couple of favourite topics. Items are picked mostly by
//!   matching tags, with a popularity skew and a per-goal core of favourites, so people who share a
//!   goal co-consume a common set of items (signal for collaborative filtering), plus some noise.
//! - **Context.** Time of day follows the goal in the person's own time zone (sleep content in the
//!   evening, focus in the morning, movement early and after work); `evening` and `morning` items
//!   follow the clock; rain favours indoor items. Each event carries `device` and `timezone`;
//!   `weather` appears only sometimes (mostly for people who granted `contextual` consent).
//! - **Journey.** People move from new to exploring, researching and ready to buy at their own
//!   pace; only those further along put products, courses and retreats in the cart and buy them
//!   (`properties.value` is the item's price).
//! - **Everything else.** Dwell time and scroll depth follow interest and item length; `click`s
//!   come from feeds and emails, `not_interested` lands on off-goal or `less_of` items, plus
//!   `rating`, `survey` (1–10, mostly 6–9), `search`, `email_open` and `notification_open`.
//! - **Anonymous visitors.** About one visitor in ten is never identified: their events carry an
//!   `anonymous_id` (`anon-…`) instead of `user`, and they are not in [`Simulation::people`].
//!
//! Everything is derived from [`SimConfig::seed`]: the same catalog and config give the same
//! people and the same events, with ids `sim-000001`, `sim-000002`, … in time order. Events are
//! never later than [`SimConfig::now`] and never about an item before its `published_at`.

use jiff::{SignedDuration, Timestamp, civil, tz::TimeZone};
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::{Map, Value, json};

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// How many known people (the demo uses 3000). About a tenth as many anonymous visitors come on top.
    pub people: usize,
    /// How many days of history, ending at `now`.
    pub days: i64,
    /// The seed: the same seed gives the same simulation.
    pub seed: u64,
    /// The end of the simulated period; no event is later.
    pub now: Timestamp,
}

impl Default for SimConfig {
    /// 3000 people over 60 days ending now, seed 7.
    fn default() -> Self {
        SimConfig { people: 3000, days: 60, seed: 7, now: Timestamp::now() }
    }
}

/// One simulated (known) person.
#[derive(Debug, Clone)]
pub struct SimPerson {
    /// The user id (`u-00001`, …), as used in `user` of their events.
    pub id: String,
    /// Their true goals, most important first (declared or not).
    pub goals: Vec<String>,
    /// The body of `PUT /v1/users/{id}/consent`: all five purposes, explicitly.
    pub consent: Value,
    /// The body of `PUT /v1/users/{id}/preferences` from the onboarding quiz; `{}` (an empty object)
    /// for people who skipped it.
    pub preferences: Value,
}

/// The simulated audience and what it did.
#[derive(Debug, Clone)]
pub struct Simulation {
    /// The known people, in id order.
    pub people: Vec<SimPerson>,
    /// `API.md` Event objects, sorted by `ts`, ids `sim-000001`, … in that order.
    pub events: Vec<Value>,
}

const GOALS: [&str; 5] = ["sleep", "stress_relief", "focus", "digital_detox", "movement"];
const GOAL_POPULARITY: [f64; 5] = [0.32, 0.30, 0.16, 0.10, 0.12];

/// Relative activity per local hour (0–23), per goal.
const HOURS: [[f64; 24]; 5] = [
    // sleep: evenings and the small hours
    [
        3.0, 2.0, 1.0, 1.0, 0.5, 0.5, 1.0, 2.0, 2.0, 1.0, 1.0, 1.0, 2.0, 2.0, 1.0, 1.0, 1.0, 1.5, 2.0, 3.0, 5.0, 9.0,
        11.0, 8.0,
    ],
    // stress_relief: lunch and after work
    [
        1.0, 0.5, 0.3, 0.3, 0.2, 0.3, 1.0, 3.0, 4.0, 3.0, 3.0, 3.0, 5.0, 5.0, 3.0, 3.0, 3.0, 5.0, 6.0, 6.0, 6.0, 5.0,
        4.0, 2.0,
    ],
    // focus: mornings and working hours
    [
        0.3, 0.1, 0.1, 0.1, 0.1, 0.3, 2.0, 6.0, 9.0, 8.0, 6.0, 4.0, 3.0, 4.0, 5.0, 5.0, 4.0, 2.0, 1.5, 1.5, 2.0, 2.0,
        1.0, 0.5,
    ],
    // digital_detox: evenings, early mornings
    [
        1.0, 0.5, 0.2, 0.1, 0.1, 0.3, 2.0, 4.0, 4.0, 3.0, 2.0, 2.0, 3.0, 3.0, 2.0, 2.0, 2.0, 3.0, 4.0, 5.0, 6.0, 6.0,
        4.0, 2.0,
    ],
    // movement: early mornings and after work
    [
        0.3, 0.1, 0.1, 0.1, 0.3, 2.0, 6.0, 7.0, 4.0, 3.0, 2.0, 2.0, 4.0, 4.0, 2.0, 2.0, 3.0, 5.0, 6.0, 5.0, 3.0, 2.0,
        1.0, 0.5,
    ],
];

/// Time zones: IANA name, POSIX rule (so results do not depend on the machine's tz database),
/// standard offset in hours (a fallback), share of people.
const ZONES: [(&str, &str, i8, f64); 12] = [
    ("Europe/Berlin", "CET-1CEST,M3.5.0,M10.5.0/3", 1, 0.24),
    ("Europe/London", "GMT0BST,M3.5.0/1,M10.5.0", 0, 0.20),
    ("America/New_York", "EST5EDT,M3.2.0,M11.1.0", -5, 0.14),
    ("Europe/Paris", "CET-1CEST,M3.5.0,M10.5.0/3", 1, 0.08),
    ("Europe/Amsterdam", "CET-1CEST,M3.5.0,M10.5.0/3", 1, 0.06),
    ("America/Los_Angeles", "PST8PDT,M3.2.0,M11.1.0", -8, 0.06),
    ("Europe/Madrid", "CET-1CEST,M3.5.0,M10.5.0/3", 1, 0.05),
    ("Europe/Stockholm", "CET-1CEST,M3.5.0,M10.5.0/3", 1, 0.04),
    ("America/Chicago", "CST6CDT,M3.2.0,M11.1.0", -6, 0.04),
    ("Europe/Zurich", "CET-1CEST,M3.5.0,M10.5.0/3", 1, 0.03),
    ("Australia/Sydney", "AEST-10AEDT,M10.1.0,M4.1.0/3", 10, 0.03),
    ("Asia/Tokyo", "JST-9", 9, 0.03),
];

const DEVICES: [&str; 3] = ["mobile", "desktop", "tablet"];

const SEARCHES: [&[&str]; 5] = [
    &[
        "sleep meditation",
        "can't sleep",
        "bedtime routine",
        "weighted blanket",
        "herbal tea for sleep",
        "waking up at night",
        "eye mask",
        "sleep story",
        "yoga nidra",
        "sleep medtation",
    ],
    &[
        "breathing exercise",
        "anxiety",
        "calm down quickly",
        "box breathing",
        "self compassion",
        "stress at work",
        "grounding",
        "weekend retreat",
    ],
    &["focus music", "deep work", "concentration", "pomodoro", "morning routine", "planner", "procrastination"],
    &["screen time", "phone habits", "digital detox retreat", "notifications", "alarm clock", "screen free evening"],
    &["yoga for beginners", "stretching", "yoga for back pain", "walking", "yoga mat", "mobility", "desk stretches"],
];

const SURVEY_WEIGHTS: [f64; 10] = [1.0, 1.0, 2.0, 3.0, 6.0, 12.0, 20.0, 24.0, 18.0, 8.0];
const SURVEY_WEIGHTS_UNTAILORED: [f64; 10] = [1.0, 1.5, 3.0, 4.0, 9.0, 16.0, 22.0, 19.0, 11.0, 4.0];

const DAY: i64 = 86_400;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Article,
    Meditation,
    Course,
    Retreat,
    Product,
    Other,
}

impl Kind {
    fn index(self) -> usize {
        self as usize
    }
}

/// A catalog item, digested for the simulation.
struct SimItem {
    id: String,
    kind: Kind,
    /// Bit `g` set when the item carries goal `GOALS[g]`.
    goals: u8,
    /// Bits of the interned non-goal tags (the first 128).
    topics: u128,
    evening: bool,
    morning: bool,
    indoor: bool,
    outdoor: bool,
    price: Option<f64>,
    purchasable: bool,
    /// Minutes a fully engaged person spends on its page.
    minutes: f64,
    /// Seconds since the epoch; no event about it before then.
    published: i64,
    /// Seconds since the epoch from which it is no longer shown (withdrawn items).
    withdrawn: i64,
    popularity: f64,
    /// Bit `g` set when the item is in the core that people with goal `g` all gravitate to.
    core: u8,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Who {
    User,
    Anonymous,
}

/// A simulated visitor's hidden traits.
struct Persona {
    who: Who,
    /// Index into the subject ids.
    subject: u32,
    /// Goal indices, primary first.
    goals: Vec<usize>,
    goal_mask: u8,
    favourites: u128,
    less_of_topics: u128,
    less_of_goals: u8,
    kind_taste: [f64; 6],
    zone: usize,
    device: usize,
    /// Propensity to buy, 0–1.
    buyer: f64,
    sessions: usize,
    /// Days before `now` of the first visit.
    first_visit_days_ago: i64,
    personalization: bool,
    contextual: bool,
    email: bool,
    push: bool,
}

/// A not-yet-numbered event.
struct Raw {
    ts: i64,
    seq: u64,
    kind: &'static str,
    who: Who,
    subject: u32,
    item: Option<u32>,
    channel: &'static str,
    device: &'static str,
    zone: u8,
    weather: Option<&'static str>,
    props: Vec<(&'static str, Value)>,
}

/// One session's setting.
struct Session {
    ts: i64,
    goal: usize,
    hour: i8,
    device: &'static str,
    channel: &'static str,
    weather: Option<&'static str>,
    stage: u8,
}

struct Sim<'a> {
    items: Vec<SimItem>,
    zones: Vec<TimeZone>,
    today: Vec<civil::Date>,
    config: &'a SimConfig,
    rng: StdRng,
    raws: Vec<Raw>,
    seq: u64,
    /// Per goal: the interned topics its items carry, weighted by how many items carry them.
    goal_topics: [Vec<(usize, f64)>; 5],
    /// All interned topics with their counts.
    topic_counts: Vec<(String, usize)>,
}

/// Simulates `config.people` people (plus anonymous visitors) using `catalog`, a slice of `API.md`
/// Item objects. Malformed items are skipped; an empty catalog gives people with searches and
/// surveys but no item events.
pub fn simulate(catalog: &[Value], config: &SimConfig) -> Simulation {
    let mut rng = StdRng::seed_from_u64(config.seed ^ 0x5eed_a77e_0000_0001);
    let days = config.days.max(1);
    let now_s = config.now.as_second();

    // Digest the catalog.
    let mut topic_counts: Vec<(String, usize)> = Vec::new();
    let mut items: Vec<SimItem> = Vec::new();
    for raw in catalog {
        let Some(item) = digest_item(raw, &mut topic_counts, now_s, days) else { continue };
        items.push(item);
    }
    // Popularity: a Zipf-like skew over a seeded order, so that some items are everyone's favourites.
    let mut order: Vec<usize> = (0..items.len()).collect();
    shuffle(&mut order, &mut rng);
    for (rank, &i) in order.iter().enumerate() {
        items[i].popularity = 1.0 / ((rank as f64) + 4.0).powf(0.9);
    }
    // The core of each goal: its most popular items (the first eight, or a fifth in small catalogs).
    for g in 0..GOALS.len() {
        let mut with_goal: Vec<usize> = (0..items.len()).filter(|&i| items[i].goals & (1 << g) != 0).collect();
        with_goal.sort_by(|&a, &b| items[b].popularity.total_cmp(&items[a].popularity));
        let core = (with_goal.len() / 5).clamp(1, 8);
        for &i in with_goal.iter().take(core) {
            items[i].core |= 1 << g;
        }
    }
    let mut goal_topics: [Vec<(usize, f64)>; 5] = Default::default();
    for (g, topics) in goal_topics.iter_mut().enumerate() {
        let mut counts = vec![0.0; topic_counts.len().min(128)];
        for it in items.iter().filter(|it| it.goals & (1 << g) != 0) {
            for (t, c) in counts.iter_mut().enumerate() {
                if it.topics & (1u128 << t) != 0 {
                    *c += 1.0;
                }
            }
        }
        *topics = counts.into_iter().enumerate().filter(|(_, c)| *c > 0.0).collect();
    }

    let zones: Vec<TimeZone> = ZONES
        .iter()
        .map(|&(_, posix, std, _)| TimeZone::posix(posix).unwrap_or_else(|_| TimeZone::fixed(jiff::tz::offset(std))))
        .collect();
    let today = zones.iter().map(|tz| config.now.to_zoned_datetime(tz.clone()).date()).collect();

    let mut sim = Sim { items, zones, today, config, rng, raws: Vec::new(), seq: 0, goal_topics, topic_counts };

    // Known people, then anonymous visitors.
    let mut subjects: Vec<String> = Vec::new();
    let mut people = Vec::with_capacity(config.people);
    let mut personas = Vec::new();
    for n in 0..config.people {
        let id = format!("u-{:05}", n + 1);
        let (persona, person) = sim.make_person(Who::User, subjects.len() as u32, id.clone(), days);
        subjects.push(id);
        people.push(person.expect("a known person"));
        personas.push(persona);
    }
    let anonymous = config.people.div_ceil(10);
    for n in 0..anonymous {
        let id = format!("anon-{:08x}{:04x}", sim.rng.random::<u32>(), n);
        let (persona, _) = sim.make_person(Who::Anonymous, subjects.len() as u32, id.clone(), days);
        subjects.push(id);
        personas.push(persona);
    }
    for persona in &personas {
        sim.run(persona);
    }

    let Sim { mut raws, items, .. } = sim;
    raws.sort_by_key(|r| (r.ts, r.seq));
    let events = raws
        .into_iter()
        .enumerate()
        .map(|(n, r)| {
            let mut event = Map::new();
            event.insert("id".into(), json!(format!("sim-{:06}", n + 1)));
            event.insert("type".into(), json!(r.kind));
            let key = if r.who == Who::User { "user" } else { "anonymous_id" };
            event.insert(key.into(), json!(subjects[r.subject as usize]));
            if let Some(i) = r.item {
                event.insert("item".into(), json!(items[i as usize].id));
            }
            let ts = Timestamp::from_second(r.ts).unwrap_or(config.now);
            event.insert("ts".into(), json!(ts.to_string()));
            event.insert("channel".into(), json!(r.channel));
            let mut context = Map::new();
            context.insert("device".into(), json!(r.device));
            context.insert("timezone".into(), json!(ZONES[r.zone as usize].0));
            if let Some(w) = r.weather {
                context.insert("weather".into(), json!(w));
            }
            event.insert("context".into(), Value::Object(context));
            if !r.props.is_empty() {
                let props: Map<String, Value> = r.props.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
                event.insert("properties".into(), Value::Object(props));
            }
            Value::Object(event)
        })
        .collect();
    Simulation { people, events }
}

/// Reads one catalog item; `None` if it has no id.
fn digest_item(raw: &Value, topic_counts: &mut Vec<(String, usize)>, now_s: i64, days: i64) -> Option<SimItem> {
    let id = raw.get("id")?.as_str()?.to_owned();
    let kind = match raw.get("kind").and_then(Value::as_str).unwrap_or("") {
        "article" => Kind::Article,
        "meditation" => Kind::Meditation,
        "course" => Kind::Course,
        "retreat" => Kind::Retreat,
        "product" => Kind::Product,
        _ => Kind::Other,
    };
    let attrs = raw.get("attributes");
    let attr = |name: &str| attrs.and_then(|a| a.get(name)).and_then(Value::as_f64);
    let price = attr("price").filter(|p| p.is_finite() && *p >= 0.0);
    let (mut goals, mut topics) = (0u8, 0u128);
    let (mut evening, mut morning, mut indoor, mut outdoor) = (false, false, false, false);
    for tag in raw.get("tags").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
        if let Some(g) = GOALS.iter().position(|g| *g == tag) {
            goals |= 1 << g;
            continue;
        }
        let t = match topic_counts.iter().position(|(name, _)| name == tag) {
            Some(t) => t,
            None => {
                topic_counts.push((tag.to_owned(), 0));
                topic_counts.len() - 1
            }
        };
        topic_counts[t].1 += 1;
        if t < 128 {
            topics |= 1u128 << t;
        }
        match tag {
            "evening" => evening = true,
            "morning" => morning = true,
            "home" | "sound" | "reading" | "tea" | "rest" => indoor = true,
            "walking" | "nature" => outdoor = true,
            _ => {}
        }
    }
    let minutes = match kind {
        Kind::Article => attr("reading_minutes").unwrap_or(6.0),
        Kind::Meditation => attr("duration_minutes").unwrap_or(10.0).min(45.0),
        Kind::Course => 3.0,
        Kind::Retreat => 4.0,
        Kind::Product => 1.5,
        Kind::Other => attr("reading_minutes").or(attr("duration_minutes")).unwrap_or(3.0).min(30.0),
    }
    .max(0.5);
    let published = raw
        .get("published_at")
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<Timestamp>().ok())
        .map_or(i64::MIN, |t| t.as_second());
    let available = raw.get("available").and_then(Value::as_bool).unwrap_or(true);
    // A withdrawn item was still shown during the first part of the period: its history stays.
    let withdrawn = if available { i64::MAX } else { now_s - days * DAY / 3 };
    Some(SimItem {
        id,
        kind,
        goals,
        topics,
        evening,
        morning,
        indoor,
        outdoor,
        purchasable: price.is_some() || matches!(kind, Kind::Course | Kind::Retreat | Kind::Product),
        price,
        minutes,
        published,
        withdrawn,
        popularity: 0.0,
        core: 0,
    })
}

impl Sim<'_> {
    fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p.clamp(0.0, 1.0))
    }

    fn uniform(&mut self) -> f64 {
        self.rng.random::<f64>()
    }

    fn between(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo { lo } else { self.rng.random_range(lo..=hi) }
    }

    /// A standard normal draw (Box–Muller).
    fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(1e-12);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    fn pick<T: Copy>(&mut self, choices: &[(T, f64)]) -> Option<T> {
        let total: f64 = choices.iter().map(|c| c.1.max(0.0)).sum();
        if total <= 0.0 {
            return None;
        }
        let mut x = self.uniform() * total;
        for &(value, w) in choices {
            x -= w.max(0.0);
            if x < 0.0 {
                return Some(value);
            }
        }
        choices.iter().rev().find(|c| c.1 > 0.0).map(|c| c.0)
    }

    fn pick_index(&mut self, weights: &[f64]) -> usize {
        let choices: Vec<(usize, f64)> = weights.iter().copied().enumerate().collect();
        self.pick(&choices).unwrap_or(0)
    }

    fn make_person(&mut self, who: Who, subject: u32, id: String, days: i64) -> (Persona, Option<SimPerson>) {
        let primary = self.pick_index(&GOAL_POPULARITY);
        let mut goals = vec![primary];
        if self.chance(0.4) {
            let mut weights = GOAL_POPULARITY;
            weights[primary] = 0.0;
            goals.push(self.pick_index(&weights));
        }
        let goal_mask = goals.iter().fold(0u8, |m, g| m | 1 << g);

        // Two or three favourite topics, drawn from what the primary goal's items talk about.
        let mut favourites = 0u128;
        for _ in 0..self.between(2, 3) {
            let g = goals[self.between(0, goals.len() as i64 - 1) as usize];
            let topics = self.goal_topics[g].clone();
            if let Some(t) = self.pick(&topics) {
                favourites |= 1u128 << t;
            }
        }

        let zone = self.pick_index(&ZONES.map(|z| z.3));
        let device_weights = if primary == 2 { [0.45, 0.45, 0.10] } else { [0.62, 0.26, 0.12] };
        let device = self.pick_index(&device_weights);
        let buyer = match self.uniform() {
            u if u < 0.55 => self.uniform() * 0.15,
            u if u < 0.85 => 0.15 + self.uniform() * 0.35,
            _ => 0.5 + self.uniform() * 0.5,
        };
        let mut kind_taste = [1.0; 6];
        kind_taste[Kind::Article.index()] = 0.5 + self.uniform();
        kind_taste[Kind::Meditation.index()] = 0.5 + self.uniform();

        // Activity: heavy-tailed, about eight sessions on average for known people.
        let activity = (0.75 * self.normal() - 0.28).exp();
        let sessions = match who {
            Who::User => ((8.0 * activity).round() as usize).clamp(1, 60),
            Who::Anonymous => self.between(1, 3) as usize,
        };
        let u = self.uniform();
        let first_visit_days_ago = ((days as f64) * (1.0 - 0.9 * u * u)).floor().clamp(0.0, (days - 1) as f64) as i64;

        // Consent: most allow personalization, about a third allow context.
        let personalization = !self.chance(0.10);
        let contextual = self.chance(0.30);
        let analytics = !self.chance(0.06);
        let email = self.chance(0.45);
        let push = self.chance(0.20);

        // Preferences from the onboarding quiz.
        let mut less_of_topics = 0u128;
        let mut less_of_goals = 0u8;
        let mut prefs = Map::new();
        if self.chance(0.60) {
            let declared: Vec<&str> = if goals.len() > 1 && self.chance(0.2) {
                vec![GOALS[primary]]
            } else {
                goals.iter().map(|&g| GOALS[g]).collect()
            };
            prefs.insert("goals".into(), json!(declared));
            if self.chance(0.25) {
                // Something they would rather see less of: another goal, or a topic they do not favour.
                let tag = if self.chance(0.4) {
                    let others: Vec<(usize, f64)> =
                        (0..GOALS.len()).filter(|g| goal_mask & (1 << g) == 0).map(|g| (g, 1.0)).collect();
                    self.pick(&others).map(|g| {
                        less_of_goals |= 1 << g;
                        GOALS[g].to_owned()
                    })
                } else {
                    let others: Vec<(usize, f64)> = self
                        .topic_counts
                        .iter()
                        .enumerate()
                        .take(128)
                        .filter(|(t, (_, n))| *n >= 3 && favourites & (1u128 << t) == 0)
                        .map(|(t, (_, n))| (t, *n as f64))
                        .collect();
                    self.pick(&others).map(|t| {
                        less_of_topics |= 1u128 << t;
                        self.topic_counts[t].0.clone()
                    })
                };
                if let Some(tag) = tag {
                    prefs.insert("less_of".into(), json!([tag]));
                }
            }
        }
        if self.chance(0.08) {
            let start = ["21:00", "21:30", "22:00", "22:30", "23:00"][self.between(0, 4) as usize];
            let end = ["06:30", "07:00", "07:30", "08:00"][self.between(0, 3) as usize];
            prefs.insert("quiet_hours".into(), json!({"start": start, "end": end}));
            prefs.insert("timezone".into(), json!(ZONES[zone].0));
        }
        if self.chance(0.03) {
            prefs.insert("personalization".into(), json!("off"));
        }

        let persona = Persona {
            who,
            subject,
            goals: goals.clone(),
            goal_mask,
            favourites,
            less_of_topics,
            less_of_goals,
            kind_taste,
            zone,
            device,
            buyer,
            sessions,
            first_visit_days_ago,
            personalization,
            contextual,
            email: email && who == Who::User,
            push: push && who == Who::User,
        };
        let person = (who == Who::User).then(|| SimPerson {
            id,
            goals: goals.iter().map(|&g| GOALS[g].to_owned()).collect(),
            consent: json!({
                "personalization": personalization,
                "contextual": contextual,
                "analytics": analytics,
                "email": email,
                "push": push,
            }),
            preferences: Value::Object(prefs),
        });
        (persona, person)
    }

    /// The UTC second of a local time `days_ago` days before today in zone `z`.
    fn local_ts(&self, z: usize, days_ago: i64, hour: i8, minute: i8, second: i8) -> i64 {
        let date = self.today[z].checked_sub(SignedDuration::from_hours(24 * days_ago)).unwrap_or(self.today[z]);
        let dt = date.at(hour, minute, second, 0);
        match self.zones[z].to_ambiguous_timestamp(dt).compatible() {
            Ok(ts) => ts.as_second(),
            Err(_) => self.config.now.as_second() - days_ago * DAY,
        }
    }

    fn weather(&mut self, z: usize, ts: i64) -> &'static str {
        let month =
            Timestamp::from_second(ts).map(|t| t.to_zoned_datetime(self.zones[z].clone()).date().month()).unwrap_or(1);
        let southern = ZONES[z].0.starts_with("Australia/");
        let month = if southern { (month + 5) % 12 + 1 } else { month };
        let weights: [f64; 5] = match month {
            12 | 1 | 2 => [2.0, 4.0, 3.0, 1.5, 1.0],
            6..=8 => [6.0, 3.0, 1.5, 0.0, 0.2],
            _ => [3.0, 4.0, 3.0, 0.2, 0.8],
        };
        ["clear", "clouds", "rain", "snow", "fog"][self.pick_index(&weights)]
    }

    fn push_event(
        &mut self,
        p: &Persona,
        s: &Session,
        ts: i64,
        kind: &'static str,
        item: Option<usize>,
        props: Vec<(&'static str, Value)>,
    ) {
        self.push_event_on(p, s, ts, kind, item, s.channel, props);
    }

    #[allow(clippy::too_many_arguments)]
    fn push_event_on(
        &mut self,
        p: &Persona,
        s: &Session,
        ts: i64,
        kind: &'static str,
        item: Option<usize>,
        channel: &'static str,
        props: Vec<(&'static str, Value)>,
    ) {
        self.seq += 1;
        self.raws.push(Raw {
            ts,
            seq: self.seq,
            kind,
            who: p.who,
            subject: p.subject,
            item: item.map(|i| i as u32),
            channel,
            device: s.device,
            zone: p.zone as u8,
            weather: s.weather,
            props,
        });
    }

    /// How strongly `p` is drawn to item `i` in session `s`; 0 when it cannot be shown.
    fn affinity(&self, p: &Persona, st: &State, s: &Session, i: usize) -> f64 {
        let it = &self.items[i];
        if it.published > s.ts || it.withdrawn <= s.ts || st.dismissed[i] || st.in_session[i] {
            return 0.0;
        }
        let mut w = it.popularity;
        if it.goals & p.goal_mask != 0 {
            w *= if it.goals & (1 << p.goals[0]) != 0 { 10.0 } else { 5.0 };
            if it.goals & (1 << s.goal) != 0 {
                w *= 1.5;
            }
            if it.core & p.goal_mask != 0 {
                w *= 2.5;
            }
        } else if it.goals == 0 {
            w *= 1.5;
        }
        w *= 1.8f64.powi((it.topics & p.favourites).count_ones() as i32);
        if it.topics & p.less_of_topics != 0 || it.goals & p.less_of_goals != 0 {
            w *= 0.08;
        }
        w *= p.kind_taste[it.kind.index()];
        if it.purchasable {
            w *= [0.15, 0.35, 1.0, 1.6][s.stage as usize];
            if st.bought[i] {
                w *= 0.15;
            }
        }
        let evening = s.hour >= 19 || s.hour < 3;
        let morning = (5..11).contains(&s.hour);
        if it.evening {
            w *= if evening {
                1.6
            } else if morning {
                0.6
            } else {
                1.0
            };
        }
        if it.morning {
            w *= if morning {
                1.6
            } else if evening {
                0.5
            } else {
                1.0
            };
        }
        match s.weather {
            Some("rain" | "snow") if it.indoor => w *= 1.3,
            Some("rain" | "snow") if it.outdoor => w *= 0.6,
            Some("clear") if it.outdoor => w *= 1.3,
            _ => {}
        }
        let seen = st.seen[i];
        if seen > 0 {
            let repeat: f64 = match it.kind {
                Kind::Meditation => 0.6,
                Kind::Article => 0.25,
                _ => 0.5,
            };
            w *= repeat.powi(i32::from(seen.min(4)));
        }
        if it.published != i64::MIN && s.ts - it.published < 14 * DAY {
            w *= 1.4;
        }
        w
    }

    fn choose_item(&mut self, p: &Persona, st: &State, s: &Session, boost_goal: Option<usize>) -> Option<usize> {
        let explore = self.chance(0.08);
        let choices: Vec<(usize, f64)> = (0..self.items.len())
            .map(|i| {
                let it = &self.items[i];
                let w = if explore {
                    let ok = it.published <= s.ts && it.withdrawn > s.ts && !st.dismissed[i] && !st.in_session[i];
                    if ok { it.popularity } else { 0.0 }
                } else {
                    let mut w = self.affinity(p, st, s, i);
                    if let Some(g) = boost_goal
                        && it.goals & (1 << g) != 0
                    {
                        w *= 3.0;
                    }
                    w
                };
                (i, w)
            })
            .collect();
        self.pick(&choices)
    }

    /// Runs every session of one visitor.
    fn run(&mut self, p: &Persona) {
        let n = self.items.len();
        let mut st = State {
            seen: vec![0; n],
            dismissed: vec![false; n],
            bought: vec![false; n],
            in_session: vec![false; n],
            cart: Vec::new(),
        };
        let mut days_ago: Vec<i64> = (0..p.sessions)
            .map(|k| if k == 0 { p.first_visit_days_ago } else { self.between(0, p.first_visit_days_ago) })
            .collect();
        days_ago.sort_unstable_by(|a, b| b.cmp(a));
        let max_stage: u8 = match p.buyer {
            b if b < 0.15 => 1,
            b if b < 0.4 => 2,
            _ => 3,
        };
        let rate = 0.25 + 0.5 * p.buyer;
        let now = self.config.now.as_second();
        for (k, &ago) in days_ago.iter().enumerate() {
            let stage = if p.who == Who::Anonymous { 0 } else { ((k as f64 * rate) as u8).min(max_stage) };
            let goal = if p.goals.len() > 1 && self.chance(0.3) { p.goals[1] } else { p.goals[0] };
            let hour = self.pick_index(&HOURS[goal]) as i8;
            let minute = self.between(0, 59) as i8;
            let second = self.between(0, 59) as i8;
            let mut ts = self.local_ts(p.zone, ago, hour, minute, second);
            // Leave room for the session itself before `now`.
            while ts > now - 3600 {
                ts -= DAY;
            }
            let device = if self.chance(0.8) { p.device } else { self.between(0, 2) as usize };
            let device = DEVICES[device];
            let channel = if device != "desktop" && self.chance(0.4) { "app" } else { "web" };
            let with_weather = if p.contextual { 0.5 } else { 0.03 };
            let weather = if self.chance(with_weather) { Some(self.weather(p.zone, ts)) } else { None };
            let s = Session { ts, goal, hour, device, channel, weather, stage };
            st.in_session.iter_mut().for_each(|x| *x = false);
            let first = self.raws.len();
            self.session(p, &mut st, &s, k);
            // A long session that would run past `now` happened a day earlier instead.
            let last = self.raws[first..].iter().map(|r| r.ts).max().unwrap_or(i64::MIN);
            let shift = if last > now { (last - now + DAY - 1) / DAY * DAY } else { 0 };
            self.raws[first..].iter_mut().for_each(|r| r.ts -= shift);
        }
    }

    fn session(&mut self, p: &Persona, st: &mut State, s: &Session, k: usize) {
        let mut t = s.ts;
        let mut first_channel: Option<&'static str> = None;
        let mut boost_goal = None;

        // How they arrived.
        if p.email && k > 0 && self.chance(0.18) {
            let week = self.rng.random_range(1..=52);
            self.push_event_on(
                p,
                s,
                t,
                "email_open",
                None,
                "email",
                vec![("campaign", json!(format!("weekly-calm-{week:02}")))],
            );
            t += self.between(20, 600);
            first_channel = Some("email");
        } else if p.push && k > 0 && self.chance(0.10) {
            self.push_event_on(p, s, t, "notification_open", None, "app", vec![("campaign", json!("gentle-reminder"))]);
            t += self.between(2, 10);
        }
        if self.chance(0.18) {
            let queries = SEARCHES[s.goal];
            let query = queries[self.between(0, queries.len() as i64 - 1) as usize];
            let results = self.between(3, 24);
            self.push_event(p, s, t, "search", None, vec![("query", json!(query)), ("results", json!(results))]);
            t += self.between(4, 20);
            boost_goal = Some(s.goal);
        }

        // Returning to something left in the cart.
        if s.stage == 3 && !st.cart.is_empty() && self.chance(0.35) {
            let i = st.cart.remove(self.between(0, st.cart.len() as i64 - 1) as usize);
            if !st.bought[i] && self.items[i].withdrawn > s.ts {
                t = self.interact(p, st, s, i, t, None, true);
            }
        }

        let count = 1 + self.pick_index(&[0.25, 0.30, 0.22, 0.13, 0.06, 0.04]);
        for j in 0..count {
            let Some(i) = self.choose_item(p, st, s, if j == 0 { boost_goal } else { None }) else { break };
            let via = if j == 0 { first_channel } else { None };
            t = self.interact(p, st, s, i, t, via, false);
        }

        // A dismissal in the feed: something off their goals, often what they asked for less of.
        if k > 0 && self.chance(0.10) {
            let choices: Vec<(usize, f64)> = (0..self.items.len())
                .map(|i| {
                    let it = &self.items[i];
                    let shown = it.published <= s.ts && it.withdrawn > s.ts && !st.dismissed[i] && st.seen[i] == 0;
                    let w = if !shown {
                        0.0
                    } else if it.topics & p.less_of_topics != 0 || it.goals & p.less_of_goals != 0 {
                        6.0
                    } else if it.goals & p.goal_mask == 0 {
                        1.0
                    } else {
                        0.03
                    };
                    (i, w * it.popularity)
                })
                .collect();
            if let Some(i) = self.pick(&choices) {
                st.dismissed[i] = true;
                let props = if self.chance(0.4) { vec![("reason", json!("not_for_me"))] } else { Vec::new() };
                self.push_event(p, s, t, "not_interested", Some(i), props);
                t += self.between(3, 15);
            }
        }

        // Now and then: "how well does this feel tailored to you?"
        if p.who == Who::User && k >= 2 && self.chance(0.06) {
            let weights = if p.personalization { SURVEY_WEIGHTS } else { SURVEY_WEIGHTS_UNTAILORED };
            let score = 1 + self.pick_index(&weights);
            let at = t + self.between(5, 30);
            self.push_event(p, s, at, "survey", None, vec![("score", json!(score))]);
        }
    }

    /// One item: (click,) view, dwell, maybe rating, cart, purchase, dismissal. Returns the time after.
    #[allow(clippy::too_many_arguments)]
    fn interact(
        &mut self,
        p: &Persona,
        st: &mut State,
        s: &Session,
        i: usize,
        mut t: i64,
        via: Option<&'static str>,
        from_cart: bool,
    ) -> i64 {
        st.in_session[i] = true;
        st.seen[i] = st.seen[i].saturating_add(1);
        let (goals, topics, minutes, price, purchasable) = {
            let it = &self.items[i];
            (it.goals, it.topics, it.minutes, it.price, it.purchasable)
        };
        let unwanted = topics & p.less_of_topics != 0 || goals & p.less_of_goals != 0;
        let on_goal = goals & p.goal_mask != 0 || topics & p.favourites != 0;

        if let Some(channel) = via {
            self.push_event_on(p, s, t, "click", Some(i), channel, Vec::new());
            t += self.between(3, 12);
        } else if !from_cart && self.chance(0.55) {
            let position = 1 + self.pick_index(&[0.3, 0.22, 0.16, 0.11, 0.08, 0.06, 0.04, 0.03]);
            self.push_event(p, s, t, "click", Some(i), vec![("position", json!(position))]);
            t += self.between(1, 6);
        }
        self.push_event(p, s, t, "view", Some(i), Vec::new());

        // How much of it they take in.
        let u = self.uniform();
        let completion: f64 = if unwanted {
            0.05 + 0.2 * u
        } else if on_goal {
            0.45 + 0.55 * u.powf(0.7)
        } else {
            0.1 + 0.5 * u
        };
        if self.chance(0.85) {
            let jitter = 0.8 + 0.4 * self.uniform();
            let dwell_ms = (minutes * 60_000.0 * completion * jitter).max(4_000.0).round() as i64;
            let depth = (completion * (0.9 + 0.2 * self.uniform())).clamp(0.02, 1.0);
            let depth = (depth * 100.0).round() / 100.0;
            t += dwell_ms / 1000;
            self.push_event(
                p,
                s,
                t,
                "dwell",
                Some(i),
                vec![("dwell_ms", json!(dwell_ms)), ("scroll_depth", json!(depth))],
            );
        } else {
            t += self.between(2, 6);
        }

        if unwanted && self.chance(0.5) {
            st.dismissed[i] = true;
            t += self.between(1, 5);
            self.push_event(p, s, t, "not_interested", Some(i), Vec::new());
        } else if completion > 0.5 && self.chance(0.07) {
            let stars =
                if on_goal { 3 + self.pick_index(&[1.0, 4.0, 6.0]) } else { 2 + self.pick_index(&[2.0, 4.0, 2.0]) };
            t += self.between(2, 10);
            self.push_event(p, s, t, "rating", Some(i), vec![("rating", json!(stars))]);
        }

        // Buying: only further along the journey, and rarer for expensive things.
        if purchasable && !st.bought[i] && s.stage >= 2 {
            let price = price.unwrap_or(0.0);
            let affordability = if price > 300.0 { 0.4 } else { 1.0 };
            let interest = if on_goal { 1.0 } else { 0.3 };
            let cart_p = if from_cart {
                1.0
            } else if s.stage == 2 {
                0.08 * interest
            } else {
                0.35 * interest * affordability
            };
            if !unwanted && (from_cart || self.chance(cart_p)) {
                if !from_cart {
                    t += self.between(5, 40);
                    let props = vec![("value", json!(price)), ("quantity", json!(1))];
                    self.push_event(p, s, t, "add_to_cart", Some(i), props);
                }
                let buy_p = if s.stage < 3 {
                    0.1
                } else if from_cart {
                    0.6
                } else {
                    0.55 * affordability
                };
                if self.chance(buy_p) {
                    t += self.between(30, 240);
                    st.bought[i] = true;
                    st.cart.retain(|&c| c != i);
                    self.push_event(
                        p,
                        s,
                        t,
                        "purchase",
                        Some(i),
                        vec![("value", json!(price)), ("currency", json!("EUR"))],
                    );
                } else if !st.cart.contains(&i) {
                    st.cart.push(i);
                }
            }
        }
        t + self.between(5, 45)
    }
}

/// What one visitor has done so far.
struct State {
    seen: Vec<u16>,
    dismissed: Vec<bool>,
    bought: Vec<bool>,
    in_session: Vec<bool>,
    cart: Vec<usize>,
}

fn shuffle<T>(v: &mut [T], rng: &mut StdRng) {
    for i in (1..v.len()).rev() {
        let j = rng.random_range(0..=i);
        v.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    fn catalog() -> Vec<Value> {
        let item = |id: &str, kind: &str, tags: &[&str], price: Option<f64>, available: bool| {
            let mut attributes = json!({"reading_minutes": 6, "level": "beginner"});
            if let Some(p) = price {
                attributes["price"] = json!(p);
            }
            json!({
                "id": id, "kind": kind, "title": id, "tags": tags, "attributes": attributes,
                "available": available, "published_at": "2025-03-01T08:00:00Z",
                "variants": {"foundational": {"headline": id}, "contextual": {"headline": id}, "emotional": {"headline": id}},
            })
        };
        vec![
            item("art-sleep-1", "article", &["sleep", "evening", "rest"], None, true),
            item("art-sleep-2", "article", &["sleep", "breathing", "beginner-friendly"], None, true),
            item("med-sleep-3", "meditation", &["sleep", "body_scan", "evening"], None, true),
            item("prd-mask", "product", &["sleep", "travel", "rest"], Some(29.0), true),
            item("art-focus-1", "article", &["focus", "work", "morning"], None, true),
            item("med-focus-2", "meditation", &["focus", "breathing", "work"], None, true),
            item("art-calm-1", "article", &["stress_relief", "breathing", "mindfulness"], None, true),
            item("crs-calm-2", "course", &["stress_relief", "journaling", "self_compassion"], Some(59.0), true),
            item("art-detox-1", "article", &["digital_detox", "screens", "evening"], None, true),
            item("prd-mat", "product", &["movement", "yoga", "home"], Some(79.0), true),
            item("art-walk", "article", &["movement", "walking", "nature"], None, true),
            item("ret-old", "retreat", &["stress_relief", "nature", "rest"], Some(450.0), false),
            json!({"no": "id"}),
        ]
    }

    fn config(seed: u64) -> SimConfig {
        SimConfig { people: 300, days: 30, seed, now: "2026-11-28T12:00:00Z".parse().unwrap() }
    }

    #[test]
    fn same_seed_same_simulation() {
        let a = simulate(&catalog(), &config(42));
        let b = simulate(&catalog(), &config(42));
        assert_eq!(a.events, b.events);
        assert_eq!(a.people.len(), b.people.len());
        for (x, y) in a.people.iter().zip(&b.people) {
            assert_eq!((&x.id, &x.goals, &x.consent, &x.preferences), (&y.id, &y.goals, &y.consent, &y.preferences));
        }
        let c = simulate(&catalog(), &config(43));
        assert_ne!(a.events, c.events);
    }

    #[test]
    fn events_have_the_api_shape() {
        let cfg = config(1);
        let sim = simulate(&catalog(), &cfg);
        assert_eq!(sim.people.len(), 300);
        assert!(!sim.events.is_empty());
        let known: BTreeSet<&str> = sim.people.iter().map(|p| p.id.as_str()).collect();
        let items: BTreeSet<&str> = [
            "art-sleep-1",
            "art-sleep-2",
            "med-sleep-3",
            "prd-mask",
            "art-focus-1",
            "med-focus-2",
            "art-calm-1",
            "crs-calm-2",
            "art-detox-1",
            "prd-mat",
            "art-walk",
            "ret-old",
        ]
        .into();
        let needs_item = ["view", "click", "add_to_cart", "purchase", "rating", "dwell", "not_interested"];
        let types = [
            "view",
            "click",
            "add_to_cart",
            "purchase",
            "rating",
            "dwell",
            "not_interested",
            "search",
            "survey",
            "email_open",
            "notification_open",
        ];
        let mut ids = BTreeSet::new();
        let mut last: Option<Timestamp> = None;
        let mut seen_types = BTreeSet::new();
        let mut anonymous = 0;
        for (n, e) in sim.events.iter().enumerate() {
            let id = e["id"].as_str().unwrap();
            assert_eq!(id, format!("sim-{:06}", n + 1));
            assert!(ids.insert(id.to_owned()), "duplicate id {id}");
            let has_user = e.get("user").is_some();
            let has_anon = e.get("anonymous_id").is_some();
            assert!(has_user != has_anon, "exactly one of user/anonymous_id: {e}");
            if has_user {
                assert!(known.contains(e["user"].as_str().unwrap()));
            } else {
                anonymous += 1;
                assert!(e["anonymous_id"].as_str().unwrap().starts_with("anon-"));
            }
            let ts: Timestamp = e["ts"].as_str().unwrap().parse().unwrap();
            assert!(ts <= cfg.now);
            assert!(ts >= cfg.now - SignedDuration::from_hours(24 * (cfg.days + 1)));
            assert!(last.is_none_or(|l| l <= ts), "events sorted by ts");
            last = Some(ts);
            let kind = e["type"].as_str().unwrap();
            assert!(types.contains(&kind), "{kind}");
            seen_types.insert(kind.to_owned());
            match e.get("item") {
                Some(item) => assert!(items.contains(item.as_str().unwrap())),
                None => assert!(!needs_item.contains(&kind), "{e}"),
            }
            let ctx = e["context"].as_object().unwrap();
            assert!(DEVICES.contains(&ctx["device"].as_str().unwrap()));
            assert!(ZONES.iter().any(|z| z.0 == ctx["timezone"].as_str().unwrap()));
            assert!(ctx.keys().all(|k| ["device", "timezone", "weather"].contains(&k.as_str())));
            let props = e.get("properties");
            match kind {
                "purchase" => {
                    let value = props.unwrap()["value"].as_f64().unwrap();
                    assert!([29.0, 59.0, 79.0, 450.0].contains(&value));
                }
                "dwell" => {
                    assert!(props.unwrap()["dwell_ms"].as_i64().unwrap() > 0);
                    let depth = props.unwrap()["scroll_depth"].as_f64().unwrap();
                    assert!((0.0..=1.0).contains(&depth));
                }
                "survey" => assert!((1..=10).contains(&props.unwrap()["score"].as_i64().unwrap())),
                "rating" => assert!((1..=5).contains(&props.unwrap()["rating"].as_i64().unwrap())),
                "search" => assert!(!props.unwrap()["query"].as_str().unwrap().is_empty()),
                _ => {}
            }
        }
        assert!(anonymous > 0);
        for kind in [
            "view",
            "click",
            "dwell",
            "search",
            "not_interested",
            "add_to_cart",
            "purchase",
            "survey",
            "rating",
            "email_open",
        ] {
            assert!(seen_types.contains(kind), "no {kind} events");
        }
        // Withdrawn items keep their early history only.
        let withdrawn_at = cfg.now - SignedDuration::from_hours(24 * cfg.days / 3);
        for e in sim.events.iter().filter(|e| e.get("item").is_some_and(|i| i == "ret-old")) {
            assert!(
                e["ts"].as_str().unwrap().parse::<Timestamp>().unwrap() < withdrawn_at + SignedDuration::from_hours(24)
            );
        }
    }

    #[test]
    fn people_have_goals_consent_and_preferences() {
        let sim = simulate(&catalog(), &config(5));
        let mut declined = 0;
        let mut quiz = 0;
        for p in &sim.people {
            assert!((1..=2).contains(&p.goals.len()));
            assert!(p.goals.iter().all(|g| GOALS.contains(&g.as_str())));
            for purpose in ["personalization", "contextual", "analytics", "email", "push"] {
                assert!(p.consent[purpose].is_boolean());
            }
            declined += usize::from(p.consent["personalization"] == false);
            let prefs = p.preferences.as_object().unwrap();
            quiz += usize::from(prefs.contains_key("goals"));
        }
        assert!((10..=60).contains(&declined), "{declined}");
        assert!((140..=220).contains(&quiz), "{quiz}");
    }

    #[test]
    fn sleep_people_view_sleep_items_more() {
        let sim = simulate(&catalog(), &config(9));
        let sleepers: BTreeSet<&str> =
            sim.people.iter().filter(|p| p.goals.iter().any(|g| g == "sleep")).map(|p| p.id.as_str()).collect();
        let sleep_items = ["art-sleep-1", "art-sleep-2", "med-sleep-3", "prd-mask"];
        // (views of sleep items, all views) for sleepers and for everyone else.
        let mut counts: BTreeMap<bool, (f64, f64)> = BTreeMap::new();
        for e in sim.events.iter().filter(|e| e["type"] == "view") {
            let Some(user) = e.get("user").and_then(Value::as_str) else { continue };
            let c = counts.entry(sleepers.contains(user)).or_default();
            c.1 += 1.0;
            if sleep_items.contains(&e["item"].as_str().unwrap()) {
                c.0 += 1.0;
            }
        }
        let share = |k: bool| counts[&k].0 / counts[&k].1;
        assert!(share(true) > 2.0 * share(false), "sleepers {} vs others {}", share(true), share(false));
        assert!(share(true) > 0.5);
    }

    #[test]
    fn empty_inputs_do_not_panic() {
        let sim = simulate(&[], &config(3));
        assert!(sim.events.iter().all(|e| e.get("item").is_none()));
        let none = simulate(&catalog(), &SimConfig { people: 0, ..config(3) });
        assert!(none.people.is_empty() && none.events.is_empty());
    }
}
