//! Three experiments built from real decisions and events through the engine — a proportion
//! (click-through), a revenue mean and a CUPED case (reading time with a pre-exposure covariate)
//! — analysed from the store; the results survive a restart and a second engine on the same
//! store (a second server) agrees. With `ATTUNE_GBSTATS_OUT=<file>` the sufficient statistics and
//! Attune's results are written there as JSON for `scripts/ci-gbstats.sh`, which checks them
//! against GrowthBook's `gbstats` 0.8.0.

mod support;

use attune_engine::{
    decide::{DecideRequest, PlacementRequest},
    experiments::{ExperimentResults, WINDOW_MS},
};
use serde_json::{Value, json};
use support::{DAY, HOUR, Setup, T0, event, ingest, two_arms};

const PEOPLE: usize = 1200;

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The JSON the gbstats check reads: per experiment and metric, both arms' sufficient statistics
/// and Attune's three analyses.
fn dump(id: &str, metric: &str, results: &ExperimentResults) -> Value {
    let m = results.metric(metric).expect("metric");
    let test = |t: Option<attune_engine::stats::TestResult>| {
        t.map_or(Value::Null, |t| json!({"expected": t.expected, "ci": [t.ci.0, t.ci.1], "p_value": t.p_value}))
    };
    let arms: Vec<Value> = m
        .arms
        .iter()
        .map(|a| {
            json!({"arm": a.arm, "n": a.stats.n, "sum": a.stats.sum, "sum_squares": a.stats.sum_squares,
                "pre_sum": a.stats.pre_sum, "pre_sum_squares": a.stats.pre_sum_squares,
                "post_pre_sum_of_products": a.stats.post_pre_sum_of_products,
                "two_sided": test(a.lift), "sequential": test(a.sequential), "cuped": test(a.cuped)})
        })
        .collect();
    let exposed: Vec<u64> = results.exposed.iter().map(|(_, n)| *n).collect();
    json!({"experiment": id, "metric": metric, "kind": m.kind, "arms": arms,
        "srm": {"users": exposed, "weights": [0.5, 0.5], "p_value": results.srm_p}})
}

#[test]
fn experiments_from_decisions_and_events_are_stable_and_dumped_for_gbstats() {
    let setup = Setup::embedded(T0 - 3 * DAY);
    let (engine, clock) = (&setup.engine, &setup.clock);
    let items = (0..40)
        .map(|i| {
            support::item(
                format!("i-{i}"),
                if i % 4 == 0 { "product" } else { "article" },
                ["sleep", "focus", "tea", "nature"][i % 4],
            )
        })
        .collect();
    engine.upsert_items(items).expect("items");
    let cases = [
        ("exp-ctr", "feed", "click_through"),
        ("exp-revenue", "shop", "revenue_per_person"),
        ("exp-cuped", "read", "dwell_seconds"),
    ];
    for (id, slot, _) in cases {
        engine.put_experiment(two_arms(id, slot, &[]), "test").expect("experiment");
    }
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    // Before exposure: every reader of the CUPED case has a level that shows in their reading
    // time before and after.
    let level: Vec<f64> = (0..PEOPLE).map(|_| 20.0 + 200.0 * rng.next()).collect();
    let mut pre = Vec::new();
    for (p, l) in level.iter().enumerate() {
        for k in 0..2 {
            let dwell = (l * (0.6 + 0.8 * rng.next()) * 1000.0).round();
            pre.push(event(
                format!("pre-{p}-{k}"),
                "dwell",
                &format!("read-{p}"),
                "i-1",
                T0 - 2 * DAY + k * HOUR,
                json!({"dwell_ms": dwell}),
            ));
        }
    }
    clock.set(T0 - DAY);
    ingest(engine, pre);
    // Exposure: one decision per person on the experiment's slot (a second one later must not
    // count twice).
    clock.set(T0);
    let mut arms: Vec<Vec<String>> = vec![Vec::new(); cases.len()];
    for (c, (_, slot, _)) in cases.iter().enumerate() {
        let prefix = ["ctr", "shop", "read"][c];
        for p in 0..PEOPLE {
            let user = format!("{prefix}-{p}");
            for _ in 0..2 {
                let decision = engine
                    .decide(&DecideRequest {
                        subject: Some(user.clone()),
                        placements: vec![PlacementRequest { slot: (*slot).into(), count: 3 }],
                        ..DecideRequest::default()
                    })
                    .expect("decide");
                if arms[c].len() == p {
                    arms[c].push(decision.experiments[0].1.clone());
                }
            }
        }
    }
    engine.flush_decisions().expect("flush");
    // Outcomes over the following days, some late (day 5): a lift for the personalized arm.
    clock.set(T0 + 6 * DAY);
    let mut post = Vec::new();
    for p in 0..PEOPLE {
        let treated = |c: usize| arms[c][p] == "personalized";
        let rate = if treated(0) { 0.30 } else { 0.22 };
        if rng.next() < rate {
            post.push(event(format!("ctr-{p}"), "click", &format!("ctr-{p}"), "i-2", T0 + 5 * DAY, json!({})));
        }
        let buys = if treated(1) { 0.12 } else { 0.09 };
        if rng.next() < buys {
            let value = (10.0 + 90.0 * rng.next() * if treated(1) { 1.15 } else { 1.0 }).round();
            post.push(event(
                format!("buy-{p}"),
                "purchase",
                &format!("shop-{p}"),
                "i-4",
                T0 + 2 * HOUR,
                json!({"value": value}),
            ));
        }
        let dwell = (level[p] * (0.6 + 0.8 * rng.next()) * if treated(2) { 1.08 } else { 1.0 } * 1000.0).round();
        post.push(event(
            format!("dwell-{p}"),
            "dwell",
            &format!("read-{p}"),
            "i-3",
            T0 + 3 * HOUR,
            json!({"dwell_ms": dwell}),
        ));
    }
    ingest(engine, post);
    let results: Vec<ExperimentResults> =
        cases.iter().map(|(id, _, _)| engine.experiment_results(id, WINDOW_MS).expect("results")).collect();
    for (c, r) in results.iter().enumerate() {
        let exposed: u64 = r.exposed.iter().map(|(_, n)| n).sum();
        assert_eq!(exposed, PEOPLE as u64, "one exposure per person");
        let control = arms[c].iter().filter(|a| *a == "control").count() as u64;
        assert_eq!(r.exposed[0].1, control);
        assert!(!r.srm_mismatch, "{}", r.srm_p);
        let metric = r.metric(cases[c].2).unwrap();
        let lift = metric.arms[1].lift.expect("a lift");
        assert!(lift.ci.0 < lift.expected && lift.expected < lift.ci.1);
        let sequential = metric.arms[1].sequential.expect("a sequential lift");
        assert!(sequential.ci.0 < lift.ci.0 && lift.ci.1 < sequential.ci.1, "always-valid intervals are wider");
    }
    let cuped = results[2].metric("dwell_seconds").unwrap();
    let (plain, adjusted) = (cuped.arms[1].lift.unwrap(), cuped.arms[1].cuped.unwrap());
    assert!(adjusted.ci.1 - adjusted.ci.0 < 0.8 * (plain.ci.1 - plain.ci.0), "CUPED narrows: {plain:?} {adjusted:?}");

    // A restart loses nothing, and a second engine on the same store (a second server) agrees.
    let setup = setup.restart();
    let reopened = &setup.engine;
    let other = setup.open();
    for (c, (id, _, _)) in cases.iter().enumerate() {
        assert_eq!(reopened.experiment_results(id, WINDOW_MS).unwrap(), results[c]);
        assert_eq!(other.experiment_results(id, WINDOW_MS).unwrap(), results[c]);
    }

    if let Ok(path) = std::env::var("ATTUNE_GBSTATS_OUT") {
        let out: Vec<Value> = cases.iter().zip(&results).map(|((id, _, metric), r)| dump(id, metric, r)).collect();
        std::fs::write(&path, serde_json::to_vec_pretty(&out).unwrap()).expect("write the dump");
    }
}

/// Erasure removes a person's exposure (record and index), the receipt counts it, and the
/// experiment keeps only an anonymous count; an anonymous id merged into a known person is
/// assigned by the known id.
#[test]
fn erasure_removes_exposures_and_merged_people_keep_the_known_arm() {
    let setup = Setup::embedded(T0);
    let (engine, store) = (&setup.engine, &setup.store);
    engine.put_experiment(two_arms("exp-e", "feed", &[]), "test").expect("experiment");
    let decide = |subject: &str| support::decide(engine, subject, "feed", 2);
    ingest(engine, vec![event("k-1", "survey", "known-1", "i-0", T0 - HOUR, json!({"score": 7}))]);
    let known_arm = decide("known-1").experiments[0].1.clone();
    engine.identify("anon-1", "known-1", "test").expect("identify");
    for _ in 0..3 {
        assert_eq!(decide("anon-1").experiments[0].1, known_arm, "the known id's arm");
    }
    engine.flush_decisions().expect("flush");
    assert_eq!(engine.exposures("exp-e").unwrap().len(), 1);
    let receipt = engine.erase_person("known-1", "test").expect("erase");
    assert!(receipt.records >= 2, "the exposure and the decisions are counted: {receipt:?}");
    assert!(engine.exposures("exp-e").unwrap().is_empty());
    let mut left = Vec::new();
    store
        .scan(attune_store::Table::Decisions, "", &mut |key, _| {
            left.push(key.to_owned());
            true
        })
        .unwrap();
    assert!(left.iter().all(|k| !k.starts_with("known-1") && !k.starts_with("anon-1")), "{left:?}");
    let results = engine.experiment_results("exp-e", WINDOW_MS).unwrap();
    let erasures = results.metric("erasures").unwrap();
    assert_eq!(erasures.arms.iter().map(|a| a.stats.n).sum::<u64>(), 1);
    assert_eq!(results.exposed.iter().map(|(_, n)| n).sum::<u64>(), 0);
}
