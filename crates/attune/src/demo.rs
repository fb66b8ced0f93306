//! `attune demo`: a calm wellness publisher and shop in one command — a catalog of articles,
//! meditations, courses, retreats and products (`demo/catalog.json`), a simulated audience of a
//! few thousand people with goals, their consent, preferences and events; then the server.

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Instant};

use anyhow::Context;
use attune_core::Consent;
use attune_engine::{Engine, IngestItem};
use attune_server::{
    AppState,
    extract::from_value,
    routes::{catalog::to_item, events::parse_event_value, users::to_preferences},
    wire::{ItemIn, PreferencesIn},
};

use crate::demo_sim::{SimConfig, simulate};

/// The demo catalog, shipped in the binary.
pub const CATALOG_JSON: &str = include_str!("../demo/catalog.json");

/// Demo options.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Address to listen on.
    #[arg(long, env = "ATTUNE_LISTEN", default_value = "127.0.0.1:7700")]
    pub listen: SocketAddr,
    /// Data directory (created; reused when it already holds the demo).
    #[arg(long, env = "ATTUNE_DATA", default_value = "./attune-data")]
    pub data: PathBuf,
    /// Simulated people.
    #[arg(long, default_value_t = 3000)]
    pub people: usize,
    /// Days of simulated history, ending now.
    #[arg(long, default_value_t = 60)]
    pub days: i64,
    /// Seed of the simulation.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Load the data and exit without serving.
    #[arg(long)]
    pub no_serve: bool,
}

/// Parses the shipped catalog into wire items.
pub fn demo_items() -> anyhow::Result<Vec<serde_json::Value>> {
    let catalog: serde_json::Value = serde_json::from_str(CATALOG_JSON).context("parsing demo/catalog.json")?;
    Ok(catalog["items"].as_array().cloned().unwrap_or_default())
}

/// Loads the demo catalog and audience into `engine` (skipped when the catalog is there already).
pub fn load(engine: &Engine, people: usize, days: i64, seed: u64) -> anyhow::Result<()> {
    let items = demo_items()?;
    if engine.catalog().n_available() > 0 {
        eprintln!("the data directory already holds a catalog: reusing it");
        return Ok(());
    }
    let started = Instant::now();
    let mut catalog = Vec::with_capacity(items.len());
    for (i, value) in items.iter().enumerate() {
        let item: ItemIn =
            from_value(value.clone(), &format!("items[{i}]")).map_err(|e| anyhow::anyhow!("{}", e.message))?;
        catalog.push(to_item(item, i).map_err(|e| anyhow::anyhow!("{}", e.message))?);
    }
    let n_items = engine.upsert_items(catalog)?;
    let simulation = simulate(&items, &SimConfig { people, days, seed, now: jiff::Timestamp::now() });
    // Consent and preferences arrive one person at a time, as from a site's banner and quiz;
    // many threads at once let the store's group commit share fsyncs between them.
    let defaults = Consent::default();
    let per_thread = simulation.people.len().div_ceil(32).max(1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = simulation
            .people
            .chunks(per_thread)
            .map(|people| {
                scope.spawn(move || -> anyhow::Result<()> {
                    for person in people {
                        let flag = |name: &str, default: bool| {
                            person.consent.get(name).and_then(|v| v.as_bool()).unwrap_or(default)
                        };
                        let consent = Consent {
                            personalization: flag("personalization", defaults.personalization),
                            contextual: flag("contextual", defaults.contextual),
                            analytics: flag("analytics", defaults.analytics),
                            email: flag("email", defaults.email),
                            push: flag("push", defaults.push),
                        };
                        engine.put_consent(&person.id, consent, "demo")?;
                        if person.preferences.as_object().is_some_and(|o| !o.is_empty()) {
                            let preferences: PreferencesIn = from_value(person.preferences.clone(), "preferences")
                                .map_err(|e| anyhow::anyhow!("{}", e.message))?;
                            let preferences =
                                to_preferences(preferences).map_err(|e| anyhow::anyhow!("{}", e.message))?;
                            engine.put_preferences(&person.id, preferences, "demo")?;
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        workers.into_iter().try_for_each(|worker| worker.join().map_err(|_| anyhow::anyhow!("a loader panicked"))?)
    })?;
    eprintln!("demo: consent and preferences stored after {:.1} s", started.elapsed().as_secs_f64());
    if let Some(person) = simulation.people.first() {
        eprintln!("demo: {} declared the goals {:?}; ask for their feed below", person.id, person.goals);
    }
    let n_events = simulation.events.len();
    let mut accepted = 0;
    for chunk in simulation.events.chunks(5000) {
        let batch: Vec<IngestItem> =
            chunk.iter().enumerate().map(|(i, value)| parse_event_value(value.clone(), i)).collect();
        let report = engine.ingest(batch)?;
        accepted += report.accepted;
        if let Some((_, rejection)) = report.rejected.first() {
            eprintln!("demo: a simulated event was rejected ({}): {}", rejection.code.as_str(), rejection.message);
        }
    }
    eprintln!(
        "demo: {n_items} items, {} people, {accepted} of {n_events} events loaded in {:.1} s",
        simulation.people.len(),
        started.elapsed().as_secs_f64()
    );
    editorial_setup(engine)?;
    let ids: Vec<String> = simulation.people.iter().map(|p| p.id.clone()).collect();
    simulate_experiment(engine, &ids, seed)?;
    Ok(())
}

/// The home feed experiment's first week: every simulated person gets a decision on the home
/// feed (their exposure), then outcomes that depend on what they saw — clicks, purchases, survey
/// answers, a few `not_interested` and opt-outs — so the experiment and the report show real
/// lifts with intervals.
fn simulate_experiment(engine: &Engine, people: &[String], seed: u64) -> anyhow::Result<()> {
    use attune_core::validate::RawEvent;
    use attune_engine::decide::{DecideRequest, PlacementRequest};
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut events = Vec::new();
    for (k, person) in people.iter().enumerate() {
        let decision = engine.decide(&DecideRequest {
            subject: Some(person.clone()),
            placements: vec![PlacementRequest { slot: "home_feed".into(), count: 6 }],
            ..DecideRequest::default()
        })?;
        let Some((_, arm)) = decision.experiments.first() else { continue };
        let Some(item) = decision.placements.first().and_then(|p| p.items.first()) else { continue };
        let personalized = arm == "personalized";
        let event = |kind: &str, n: usize, properties: serde_json::Value| {
            IngestItem::Raw(RawEvent {
                id: Some(format!("demo-exp-{k}-{n}")),
                kind: Some(kind.into()),
                user: Some(person.clone()),
                item: (kind != "survey").then(|| item.item.id.clone()),
                properties: properties.as_object().cloned().unwrap_or_default(),
                decision_id: Some(decision.id.clone()),
                ..RawEvent::default()
            })
        };
        if next() < if personalized { 0.34 } else { 0.26 } {
            events.push(event("click", 0, serde_json::json!({})));
        }
        if next() < if personalized { 0.07 } else { 0.05 } {
            let value = (15.0 + 60.0 * next()).round();
            events.push(event("purchase", 1, serde_json::json!({"value": value})));
        }
        if next() < 0.3 {
            let base = if personalized { 7.3 } else { 6.7 };
            let score = (base + 2.0 * (next() - 0.5) * 3.0).round().clamp(1.0, 10.0) as i64;
            events.push(event("survey", 2, serde_json::json!({"score": score})));
        }
        if next() < if personalized { 0.02 } else { 0.03 } {
            events.push(event("not_interested", 3, serde_json::json!({})));
        }
    }
    for chunk in events.chunks(5000) {
        engine.ingest(chunk.to_vec())?;
    }
    engine.flush_decisions()?;
    eprintln!("demo: {} outcomes of the home feed experiment simulated", events.len());
    Ok(())
}

/// What an editorial team would have set up: picks, two rules (one past its review date), an
/// experiment on the home feed and a flagged item, so the console shows each of its parts.
fn editorial_setup(engine: &Engine) -> anyhow::Result<()> {
    use attune_engine::{
        editorial::{Conditions, Pick, Rule, RuleEffect},
        experiments::{Arm, Experiment, Policy},
    };
    const DEMO: &str = "demo";
    let now_ms = engine.now_ms();
    let day_ms = 86_400_000;
    let date = |ms: i64| attune_engine::clock::rfc3339(ms)[..10].to_owned();
    engine.put_pick(
        Pick {
            id: "sleep-foundations".into(),
            item: "crs-sleep-foundations".into(),
            audience: Conditions { goals: vec!["sleep".into()], ..Conditions::default() },
            slots: vec!["home_feed".into()],
            from_ms: None,
            until_ms: Some(now_ms + 30 * day_ms),
            note: Some("Our sleep course, for people working on sleep".into()),
        },
        DEMO,
    )?;
    engine.put_pick(
        Pick {
            id: "winter-retreat".into(),
            item: "ret-silent-weekend-black-forest".into(),
            audience: Conditions::default(),
            slots: Vec::new(),
            from_ms: None,
            until_ms: Some(now_ms + 60 * day_ms),
            note: Some("The season's retreat".into()),
        },
        DEMO,
    )?;
    engine.put_rule(
        Rule {
            id: "gentle-for-newcomers".into(),
            when: Conditions { journey_stage: Some("new".into()), ..Conditions::default() },
            then: RuleEffect { boost_tags: vec!["beginner-friendly".into()], ..RuleEffect::default() },
            owner: "editorial@calm.example".into(),
            review_by: date(now_ms - 3 * day_ms),
            updated_ms: now_ms,
        },
        DEMO,
    )?;
    engine.put_rule(
        Rule {
            id: "focus-at-work".into(),
            when: Conditions { goals: vec!["focus".into()], ..Conditions::default() },
            then: RuleEffect { boost_tags: vec!["work".into()], ..RuleEffect::default() },
            owner: "editorial@calm.example".into(),
            review_by: date(now_ms + 80 * day_ms),
            updated_ms: now_ms,
        },
        DEMO,
    )?;
    engine.put_experiment(
        Experiment {
            id: "home-feed-personalized".into(),
            slot: "home_feed".into(),
            arms: vec![
                Arm { name: "popular".into(), weight: 0.45, policy: Policy::Popular },
                Arm { name: "personalized".into(), weight: 0.45, policy: Policy::Default },
            ],
            holdout: 0.1,
            metrics: vec!["click_through".into(), "purchase_conversion".into()],
            coverage: 1.0,
        },
        DEMO,
    )?;
    engine.flag_item("art-bedroom-light", "Check the product links before it runs again", DEMO)?;
    Ok(())
}

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let admin_key = std::env::var("ATTUNE_ADMIN_KEY").ok().filter(|k| !k.is_empty());
    crate::serve::check_listen(&args.listen, admin_key.as_deref())?;
    let engine = crate::serve::open_engine(&args.data)?;
    load(&engine, args.people, args.days, args.seed)?;
    let snapshot = engine.train()?;
    eprintln!(
        "demo: models trained on {} interactions of {} people ({})",
        snapshot.n_interactions,
        snapshot.n_users,
        snapshot.stats.iter().map(|s| format!("{} {:.2} s", s.name, s.fit_seconds)).collect::<Vec<_>>().join(", ")
    );
    if args.no_serve {
        return Ok(());
    }
    let schedule = attune_engine::SchedulerConfig::serving(
        std::time::Duration::from_secs(3600),
        std::time::Duration::from_secs(1),
    );
    let scheduler = Arc::new(attune_engine::Scheduler::start(Arc::clone(&engine), schedule));
    let state = AppState::new(Arc::clone(&engine), admin_key.as_deref(), 0.0).with_scheduler(Arc::clone(&scheduler));
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("binding {}", args.listen))?;
        let address = listener.local_addr()?;
        let site_key = crate::demo_site::browser_key(&engine, address, admin_key.is_none())?;
        let site = crate::demo_site::router(demo_items()?, site_key);
        let auth = if admin_key.is_some() { " -H \"Authorization: Bearer $ATTUNE_ADMIN_KEY\"" } else { "" };
        println!();
        println!("Attune demo is running on http://{address}");
        println!("  the demo site:    http://{address}/demo/ (attune.js, consent banner, personalized slots)");
        let sign_in = if admin_key.is_some() { " (sign in with $ATTUNE_ADMIN_KEY)" } else { "" };
        println!("  editors' console: http://{address}/console{sign_in}");
        println!("  API document:     http://{address}/v1/openapi.json");
        println!("  metrics:          http://{address}/metrics");
        println!();
        println!("Try:");
        println!("  curl -s{auth} http://{address}/v1/users/u-00001");
        println!(
            "  curl -s{auth} -X POST http://{address}/v1/decide -H 'Content-Type: application/json' \\\n    -d '{{\"user\": \"u-00001\", \"placements\": [{{\"slot\": \"home_feed\", \"count\": 5}}], \"explain\": true}}'"
        );
        println!("  curl -s{auth} http://{address}/v1/items/art-breathing-at-dawn/similar?count=5");
        println!("  curl -s{auth} http://{address}/v1/items/art-breathing-at-dawn");
        println!(
            "  curl -s{auth} -X POST http://{address}/v1/events -H 'Content-Type: application/json' \\\n    -d '{{\"events\": [{{\"id\": \"try-1\", \"type\": \"view\", \"anonymous_id\": \"a-try\", \"item\": \"art-breathing-at-dawn\"}}]}}'"
        );
        println!(
            "  curl -s{auth} -X PUT http://{address}/v1/users/a-try/preferences -H 'Content-Type: application/json' \\\n    -d '{{\"goals\": [\"sleep\"]}}'"
        );
        println!();
        println!("Press Ctrl-C to stop; the data stays in {}.", args.data.display());
        let app = attune_server::app(state).merge(site);
        let limits = attune_server::server::ServerLimits::default();
        let served =
            attune_server::server::serve(listener, app, limits, crate::serve::shutdown_signal()).await.context("serving");
        // Stops the jobs and persists the decision log once more.
        tokio::task::spawn_blocking(move || scheduler.shutdown()).await.context("stopping the scheduler")?;
        served
    })
}
