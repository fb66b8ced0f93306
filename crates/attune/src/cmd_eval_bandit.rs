//! `attune eval bandit DIR`: off-policy evaluation of Attune's contextual bandit on the Open
//! Bandit Dataset (ZOZOTOWN's logs of a uniform-random and a Bernoulli Thompson sampling policy
//! choosing which of 80 fashion items to show at 3 positions).
//!
//! Per campaign: both logs are read and sorted by time; the earliest `1 − test_fraction` of all
//! their rounds (one cut time shared by both logs) trains Attune's policy (a LinUCB over the
//! person's features, [`attune_rank::LinUcb`]) and the reward model DR needs (an L2-regularized
//! logistic regression over person × item × position features); the later rounds of each log
//! evaluate it. The estimators live in [`attune_rank::ope`]; this file reads the CSV files, builds
//! features and prints the report. `--dump FILE` writes the exact evaluation inputs for
//! `scripts/obp_check.py`, which recomputes them with obp 0.5.7.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use attune_rank::LinUcb;
use attune_rank::ope::{self, ActionDist, Cube, Estimate, LoggedRound, LogisticModel};
use rustc_hash::FxHashMap;

/// Arguments of `attune eval bandit`.
#[derive(Debug, clap::Args)]
pub struct BanditArgs {
    /// Open Bandit Dataset folder holding `random/` and `bts/`, each with campaign folders
    /// (`all/all.csv` and `all/item_context.csv`, likewise `men`, `women`), as
    /// `fetch-datasets.sh` writes it under `open-bandit/`.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Campaigns to evaluate, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "all,men,women")]
    pub campaigns: Vec<String>,
    /// Share of the rounds, the latest in time, held out for evaluation (the rest trains).
    #[arg(long, default_value_t = 0.3)]
    pub test_fraction: f64,
    /// LinUCB's exploration strength: the policy ranks items by `θᵀx + alpha·sqrt(xᵀA⁻¹x)`.
    #[arg(long, default_value_t = 0.2)]
    pub alpha: f64,
    /// L2 penalty of the reward model (a logistic regression) that DR and DM use (default:
    /// chosen from 0.1, 1, 10, 100, 1000 by log loss on the last 20% of the training part).
    #[arg(long)]
    pub lambda: Option<f64>,
    /// Print one JSON object per estimate and line instead of markdown tables.
    #[arg(long)]
    pub json: bool,
    /// Write the exact evaluation inputs (rounds, the policy's action_dist, the reward model's
    /// estimates) and Attune's estimates to FILE, one JSON object per campaign and log, for
    /// `scripts/obp_check.py`.
    #[arg(long, value_name = "FILE")]
    pub dump: Option<PathBuf>,
}

/// The two logging policies of the dataset: folder name and the name in the report.
const LOGS: [(&str, &str); 2] = [("random", "Random"), ("bts", "Bernoulli TS")];

/// Runs the evaluation and prints the report on stdout.
pub fn run(args: BanditArgs) -> anyhow::Result<()> {
    if !(args.test_fraction > 0.0 && args.test_fraction < 1.0) {
        bail!("--test-fraction must be in (0, 1), got {}", args.test_fraction);
    }
    if !(args.alpha >= 0.0 && args.alpha.is_finite()) {
        bail!("--alpha must be a finite number >= 0, got {}", args.alpha);
    }
    if let Some(lambda) = args.lambda
        && !(lambda >= 0.0 && lambda.is_finite())
    {
        bail!("--lambda must be a finite number >= 0, got {lambda}");
    }
    let mut dump = match &args.dump {
        Some(path) => Some(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => None,
    };
    for campaign in &args.campaigns {
        let report = evaluate_campaign(&args, campaign)?;
        if args.json {
            for line in report.json_lines() {
                println!("{line}");
            }
        } else {
            report.print_markdown();
        }
        if let Some(out) = dump.as_mut() {
            for record in &report.dumps {
                serde_json::to_writer(&mut *out, record)?;
                out.write_all(b"\n")?;
            }
        }
    }
    if let Some(mut out) = dump {
        out.flush()?;
    }
    Ok(())
}

/// One campaign's log of one policy, sorted by time.
struct Log {
    rounds: Vec<Round>,
}

/// One logged impression with its context.
struct Round {
    /// Microseconds since the Unix epoch.
    time_us: i64,
    item: usize,
    /// 0-based.
    position: usize,
    click: f64,
    pscore: f64,
    /// The four categorical person features, as read.
    user: [String; 4],
    /// The person's affinity to each item (`user-item_affinity_k`), mostly 0.
    affinity: Vec<f64>,
}

/// The items' features: `item_feature_0` (numeric) and the category `item_feature_1`.
struct Items {
    feature_0: Vec<f64>,
    category: Vec<usize>,
    n_categories: usize,
}

/// One-hot encodings of the person features, with categories taken from the training rounds
/// (a category first seen later encodes as all zeros, the regularized "average person").
struct UserEncoder {
    categories: [BTreeMap<String, usize>; 4],
    width: usize,
}

impl UserEncoder {
    fn fit<'a>(rounds: impl Iterator<Item = &'a Round>) -> UserEncoder {
        let mut categories: [BTreeMap<String, usize>; 4] = Default::default();
        for round in rounds {
            for (k, value) in round.user.iter().enumerate() {
                if !categories[k].contains_key(value) {
                    categories[k].insert(value.clone(), 0);
                }
            }
        }
        let mut width = 0;
        for map in &mut categories {
            for index in map.values_mut() {
                *index = width;
                width += 1;
            }
        }
        UserEncoder { categories, width }
    }

    /// Writes the one-hot of `user` into `out` (length `width`, zeroed by the caller).
    fn encode(&self, user: &[String; 4], out: &mut [f64]) {
        for (map, value) in self.categories.iter().zip(user) {
            if let Some(&index) = map.get(value) {
                out[index] = 1.0;
            }
        }
    }

    /// The index of `user_feature_0`'s value, for the person × item-category interaction.
    fn first_feature(&self, user: &[String; 4]) -> Option<usize> {
        self.categories[0].get(&user[0]).copied()
    }
}

/// The reward model's feature layout: `[1, person one-hot, item one-hot, position one-hot,
/// item_feature_0, affinity(person, item), user_feature_0 one-hot × item category one-hot]`.
struct RewardFeatures<'a> {
    users: &'a UserEncoder,
    items: &'a Items,
    len_list: usize,
}

impl RewardFeatures<'_> {
    fn n_items(&self) -> usize {
        self.items.feature_0.len()
    }

    fn width(&self) -> usize {
        1 + self.users.width
            + self.n_items()
            + self.len_list
            + 2
            + self.users.categories[0].len() * self.items.n_categories
    }

    fn row(&self, round: &Round, item: usize, position: usize) -> Vec<f64> {
        let mut row = vec![0.0; self.width()];
        row[0] = 1.0;
        let mut offset = 1;
        self.users.encode(&round.user, &mut row[offset..offset + self.users.width]);
        offset += self.users.width;
        row[offset + item] = 1.0;
        offset += self.n_items();
        row[offset + position] = 1.0;
        offset += self.len_list;
        row[offset] = self.items.feature_0[item];
        row[offset + 1] = round.affinity.get(item).copied().unwrap_or(0.0);
        offset += 2;
        if let Some(user_0) = self.users.first_feature(&round.user) {
            row[offset + user_0 * self.items.n_categories + self.items.category[item]] = 1.0;
        }
        row
    }
}

/// Estimates of one policy on one log.
struct Line {
    policy: String,
    log: &'static str,
    estimator: &'static str,
    estimate: Estimate,
}

struct CampaignReport {
    campaign: String,
    n_items: usize,
    len_list: usize,
    n_train: usize,
    cut: jiff::Timestamp,
    policy: String,
    reward_model: String,
    /// Per log: rounds where the deterministic policy shows the logged item at the logged
    /// position, those of them with a click, and all rounds.
    matches: Vec<(&'static str, usize, usize, usize)>,
    lines: Vec<Line>,
    dumps: Vec<serde_json::Value>,
}

fn evaluate_campaign(args: &BanditArgs, campaign: &str) -> anyhow::Result<CampaignReport> {
    if campaign.is_empty() || campaign.contains(['/', '\\']) || campaign == "." || campaign == ".." {
        bail!("campaign {campaign:?} is not a folder name (expected all, men or women)");
    }
    let items = read_items(&args.dir.join("random").join(campaign).join("item_context.csv"))?;
    let n_items = items.feature_0.len();
    let mut logs = Vec::new();
    for (folder, _) in LOGS {
        let path = args.dir.join(folder).join(campaign).join(format!("{campaign}.csv"));
        logs.push(read_log(&path, n_items)?);
    }
    let len_list = logs.iter().flat_map(|l| &l.rounds).map(|r| r.position + 1).max().context("the logs are empty")?;

    // One cut time for both logs: the first time at or after which `test_fraction` of all rounds lie.
    let mut times: Vec<i64> = logs.iter().flat_map(|l| l.rounds.iter().map(|r| r.time_us)).collect();
    times.sort_unstable();
    let n_train_target = ((times.len() as f64) * (1.0 - args.test_fraction)).floor() as usize;
    let cut_us = times[n_train_target.min(times.len() - 1)];
    let mut train: Vec<&Round> = logs.iter().flat_map(|l| l.rounds.iter().filter(|r| r.time_us < cut_us)).collect();
    train.sort_by_key(|r| r.time_us);
    if train.is_empty() {
        bail!("no round falls before the cut; lower --test-fraction");
    }

    // Attune's policy: LinUCB over the person's features, one arm per item, fed every training
    // round (the logged item as the arm, the click as the reward).
    let users = UserEncoder::fit(train.iter().copied());
    let dim = 1 + users.width;
    let context_of = |round: &Round| -> Vec<f64> {
        let mut x = vec![0.0; dim];
        x[0] = 1.0;
        users.encode(&round.user, &mut x[1..]);
        x
    };
    let mut bandit = LinUcb::new(n_items, dim, args.alpha);
    for round in &train {
        bandit.update(round.item, &context_of(round), round.click);
    }

    // The reward model for DM and DR, its penalty chosen on the training part's own time split.
    let features = RewardFeatures { users: &users, items: &items, len_list };
    let train_rows: Vec<Vec<f64>> = train.iter().map(|r| features.row(r, r.item, r.position)).collect();
    let train_labels: Vec<f64> = train.iter().map(|r| r.click).collect();
    let (lambda, validation) = match args.lambda {
        Some(lambda) => (lambda, String::new()),
        None => choose_lambda(&train_rows, &train_labels)?,
    };
    let (reward_model, fit) = LogisticModel::fit(&train_rows, &train_labels, lambda)?;
    drop(train_rows);

    let policy = format!("Attune LinUCB (alpha {})", args.alpha);
    let cut = jiff::Timestamp::from_microsecond(cut_us).context("cut time out of range")?;
    let mut lines = Vec::new();
    let mut dumps = Vec::new();
    let mut matches = Vec::new();
    let mut log_losses = Vec::new();
    let mut ranking_cache: FxHashMap<[String; 4], Vec<usize>> = FxHashMap::default();
    for ((folder, name), log) in LOGS.iter().zip(&logs) {
        let test: Vec<&Round> = log.rounds.iter().filter(|r| r.time_us >= cut_us).collect();
        if test.is_empty() {
            bail!("the {folder} log has no round after the cut; raise --test-fraction");
        }
        let rounds: Vec<LoggedRound> = test
            .iter()
            .map(|r| LoggedRound { action: r.item, position: r.position, reward: r.click, pscore: r.pscore })
            .collect();
        let rankings: Vec<Vec<usize>> = test
            .iter()
            .map(|r| {
                ranking_cache
                    .entry(r.user.clone())
                    .or_insert_with(|| top_arms(&bandit.ucb(&context_of(r)), len_list))
                    .clone()
            })
            .collect();
        let dist = ActionDist::from_rankings(n_items, len_list, &rankings)?;
        let mut q_hat = Cube::zeros(test.len(), n_items, len_list);
        for (i, round) in test.iter().enumerate() {
            for item in 0..n_items {
                for position in 0..len_list {
                    q_hat.set(i, item, position, reward_model.predict(&features.row(round, item, position)));
                }
            }
        }
        let matched: Vec<&LoggedRound> = rounds
            .iter()
            .enumerate()
            .filter(|(i, r)| dist.cube().get(*i, r.action, r.position) > 0.0)
            .map(|(_, r)| r)
            .collect();
        let matched_clicks = matched.iter().filter(|r| r.reward > 0.0).count();
        matches.push((*folder, matched.len(), matched_clicks, rounds.len()));
        log_losses.push((*folder, log_loss(&rounds, &q_hat), constant_log_loss(&rounds, &train_labels)));

        let on_policy = ope::on_policy(&rounds)?;
        lines.push(Line {
            policy: format!("{name} (logged)"),
            log: folder,
            estimator: "on-policy",
            estimate: on_policy,
        });
        let context = EvalContext { campaign, folder, data_path: &args.dir, rounds: &rounds, q_hat: &q_hat, on_policy };
        context.estimate(&policy, &dist, &mut lines, args.dump.is_some().then_some(&mut dumps))?;
        // A check of the estimators on real data: the uniform Random policy's click rate
        // estimated from the Bernoulli-TS log should agree with Random's own rate.
        if *folder == "bts" {
            let uniform = Cube::new(
                rounds.len(),
                n_items,
                len_list,
                vec![1.0 / n_items as f64; rounds.len() * n_items * len_list],
            )?;
            let uniform = ActionDist::new(uniform)?;
            context.estimate(
                "Random (uniform), estimated",
                &uniform,
                &mut lines,
                args.dump.is_some().then_some(&mut dumps),
            )?;
        }
    }
    let reward_model = format!(
        "logistic regression, {} features, lambda {lambda}{validation}, {} Newton steps{}; log loss on the evaluation rounds: {}",
        features.width(),
        fit.iterations,
        if fit.converged { "" } else { " (not converged)" },
        log_losses
            .iter()
            .map(|(log, model, constant)| format!("{log} {model:.5} (the training click rate alone: {constant:.5})"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(CampaignReport {
        campaign: campaign.to_owned(),
        n_items,
        len_list,
        n_train: train.len(),
        cut,
        policy,
        reward_model,
        matches,
        lines,
        dumps,
    })
}

/// The penalties [`choose_lambda`] tries.
const LAMBDA_GRID: [f64; 5] = [0.1, 1.0, 10.0, 100.0, 1000.0];

/// Picks the reward model's penalty: fits on the earlier 80% of the (time-sorted) training rows
/// and keeps the penalty with the lowest log loss on the later 20%. Returns it and a note for
/// the report.
fn choose_lambda(rows: &[Vec<f64>], labels: &[f64]) -> anyhow::Result<(f64, String)> {
    let n_fit = rows.len() * 4 / 5;
    if n_fit == 0 || n_fit == rows.len() {
        return Ok((1.0, " (too few rows to choose it)".to_owned()));
    }
    let mut best: Option<(f64, f64)> = None;
    for lambda in LAMBDA_GRID {
        let (model, _) = LogisticModel::fit(&rows[..n_fit], &labels[..n_fit], lambda)?;
        let loss: f64 = rows[n_fit..]
            .iter()
            .zip(&labels[n_fit..])
            .map(|(row, &y)| {
                let p = model.predict(row).clamp(1e-15, 1.0 - 1e-15);
                -(y * p.ln() + (1.0 - y) * (1.0 - p).ln())
            })
            .sum::<f64>()
            / (rows.len() - n_fit) as f64;
        if best.is_none_or(|(_, b)| loss < b) {
            best = Some((lambda, loss));
        }
    }
    let (lambda, loss) = best.context("the grid is not empty")?;
    Ok((lambda, format!(" (chosen from {LAMBDA_GRID:?} on the training part's last 20%: log loss {loss:.5})")))
}

/// What every estimate on one log shares.
struct EvalContext<'a> {
    campaign: &'a str,
    folder: &'static str,
    data_path: &'a Path,
    rounds: &'a [LoggedRound],
    q_hat: &'a Cube,
    on_policy: Estimate,
}

impl EvalContext<'_> {
    /// Adds IPS, SNIPS, DM and DR of the policy `dist` to `lines`, and its inputs to `dumps`.
    fn estimate(
        &self,
        policy: &str,
        dist: &ActionDist,
        lines: &mut Vec<Line>,
        dumps: Option<&mut Vec<serde_json::Value>>,
    ) -> anyhow::Result<()> {
        let ips = ope::ips(self.rounds, dist)?;
        // SNIPS is undefined when the policy never agrees with the log; say so instead of failing.
        let snips = ope::snips(self.rounds, dist).ok();
        let dm = ope::direct_method(self.rounds, dist, self.q_hat)?;
        let dr = ope::doubly_robust(self.rounds, dist, self.q_hat)?;
        for (estimator, estimate) in [("IPS", Some(ips)), ("SNIPS", snips), ("DM", Some(dm)), ("DR", Some(dr))] {
            if let Some(estimate) = estimate {
                lines.push(Line { policy: policy.to_owned(), log: self.folder, estimator, estimate });
            } else {
                eprintln!(
                    "{}/{}: {policy}: SNIPS undefined: the policy never shows a logged item where it was logged",
                    self.campaign, self.folder
                );
            }
        }
        let Some(dumps) = dumps else {
            return Ok(());
        };
        let estimate_json = |e: Option<Estimate>| {
            e.map(|e| serde_json::json!({"value": e.value, "std_err": e.std_err, "low": e.low, "high": e.high}))
        };
        let (n_rounds, n_actions, len_list) = dist.cube().shape();
        dumps.push(serde_json::json!({
            "campaign": self.campaign,
            "log": self.folder,
            "policy": policy,
            "data_path": self.data_path.display().to_string(),
            "n_rounds": n_rounds,
            "n_actions": n_actions,
            "len_list": len_list,
            "action": self.rounds.iter().map(|r| r.action).collect::<Vec<_>>(),
            "position": self.rounds.iter().map(|r| r.position).collect::<Vec<_>>(),
            "reward": self.rounds.iter().map(|r| r.reward).collect::<Vec<_>>(),
            "pscore": self.rounds.iter().map(|r| r.pscore).collect::<Vec<_>>(),
            "action_dist": dist.cube().values(),
            "estimated_rewards_by_reg_model": self.q_hat.values(),
            "attune": {
                "on_policy": estimate_json(Some(self.on_policy)),
                "ipw": estimate_json(Some(ips)),
                "snipw": estimate_json(snips),
                "dm": estimate_json(Some(dm)),
                "dr": estimate_json(Some(dr)),
            },
        }));
        Ok(())
    }
}

/// The `k` arms with the highest scores, best first (lower index first on ties).
fn top_arms(scores: &[f64], k: usize) -> Vec<usize> {
    let mut arms: Vec<usize> = (0..scores.len()).collect();
    arms.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    arms.truncate(k);
    arms
}

/// Mean negative log-likelihood of the logged clicks under the reward model.
fn log_loss(rounds: &[LoggedRound], q_hat: &Cube) -> f64 {
    let total: f64 = rounds
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let p = q_hat.get(i, r.action, r.position).clamp(1e-15, 1.0 - 1e-15);
            -(r.reward * p.ln() + (1.0 - r.reward) * (1.0 - p).ln())
        })
        .sum();
    total / rounds.len() as f64
}

/// The same for the constant training click rate, the baseline a reward model must beat.
fn constant_log_loss(rounds: &[LoggedRound], train_labels: &[f64]) -> f64 {
    let p = (train_labels.iter().sum::<f64>() / train_labels.len() as f64).clamp(1e-15, 1.0 - 1e-15);
    let total: f64 = rounds.iter().map(|r| -(r.reward * p.ln() + (1.0 - r.reward) * (1.0 - p).ln())).sum();
    total / rounds.len() as f64
}

impl CampaignReport {
    fn print_markdown(&self) {
        println!(
            "### Open Bandit Dataset `{}`: {} items × {} positions; trained on {} rounds before {}, evaluated on the rest\n",
            self.campaign,
            self.n_items,
            self.len_list,
            self.n_train,
            self.cut.strftime("%Y-%m-%d %H:%M:%S UTC")
        );
        println!("| policy | log evaluated on | rounds | estimator | click rate | 95% CI |");
        println!("|---|---|---|---|---|---|");
        for line in &self.lines {
            let e = &line.estimate;
            println!(
                "| {} | {} | {} | {} | {:.5} | [{:.5}, {:.5}] |",
                line.policy, line.log, e.n_rounds, line.estimator, e.value, e.low, e.high
            );
        }
        println!();
        let matched: Vec<String> = self
            .matches
            .iter()
            .map(|(log, n, clicks, total)| format!("{log} {n} of {total} ({clicks} with a click)"))
            .collect();
        println!(
            "{}: rounds where it shows the logged item at the logged position: {}. IPS and SNIPS \
             weigh only these; with no click among them they are 0 with a degenerate interval.",
            self.policy,
            matched.join(", ")
        );
        println!("Reward model (DM, DR): {}.\n", self.reward_model);
    }

    fn json_lines(&self) -> Vec<serde_json::Value> {
        self.lines
            .iter()
            .map(|line| {
                let e = &line.estimate;
                serde_json::json!({
                    "campaign": self.campaign,
                    "policy": line.policy,
                    "log": line.log,
                    "estimator": line.estimator,
                    "n_rounds": e.n_rounds,
                    "value": e.value,
                    "std_err": e.std_err,
                    "ci_low": e.low,
                    "ci_high": e.high,
                    "train_rounds": self.n_train,
                    "cut": self.cut.to_string(),
                })
            })
            .collect()
    }
}

/// Reads `item_context.csv`: `,item_id,item_feature_0,item_feature_1,…`, item ids 0..n.
fn read_items(path: &Path) -> anyhow::Result<Items> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().context("empty file")?.split(',').collect();
    let column = |name: &str| {
        header.iter().position(|h| *h == name).with_context(|| format!("{}: no column {name}", path.display()))
    };
    let (id_col, f0_col, f1_col) = (column("item_id")?, column("item_feature_0")?, column("item_feature_1")?);
    let mut by_id: BTreeMap<usize, (f64, String)> = BTreeMap::new();
    for (line_no, line) in lines.enumerate().filter(|(_, l)| !l.is_empty()) {
        let fields: Vec<&str> = line.split(',').collect();
        let at = |col: usize| {
            fields.get(col).copied().with_context(|| format!("{}:{}: too few fields", path.display(), line_no + 2))
        };
        let id: usize = at(id_col)?.parse().with_context(|| format!("{}:{}: item_id", path.display(), line_no + 2))?;
        let f0: f64 =
            at(f0_col)?.parse().with_context(|| format!("{}:{}: item_feature_0", path.display(), line_no + 2))?;
        by_id.insert(id, (f0, at(f1_col)?.to_owned()));
    }
    if by_id.is_empty() || by_id.keys().copied().ne(0..by_id.len()) {
        bail!("{}: item ids must be 0..n without gaps", path.display());
    }
    let mut categories: BTreeMap<String, usize> = BTreeMap::new();
    for (_, c) in by_id.values() {
        let next = categories.len();
        categories.entry(c.clone()).or_insert(next);
    }
    Ok(Items {
        feature_0: by_id.values().map(|(f, _)| *f).collect(),
        category: by_id.values().map(|(_, c)| categories[c]).collect(),
        n_categories: categories.len(),
    })
}

/// Reads a campaign log (`,timestamp,item_id,position,click,propensity_score,user_feature_0..3,
/// user-item_affinity_0..`) and sorts it by time, as obp's `OpenBanditDataset` does.
fn read_log(path: &Path, n_items: usize) -> anyhow::Result<Log> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().context("empty file")?.split(',').collect();
    let column = |name: &str| {
        header.iter().position(|h| *h == name).with_context(|| format!("{}: no column {name}", path.display()))
    };
    let ts_col = column("timestamp")?;
    let item_col = column("item_id")?;
    let position_col = column("position")?;
    let click_col = column("click")?;
    let pscore_col = column("propensity_score")?;
    let user_cols =
        [column("user_feature_0")?, column("user_feature_1")?, column("user_feature_2")?, column("user_feature_3")?];
    let affinity_cols: Vec<Option<usize>> =
        (0..n_items).map(|k| header.iter().position(|h| *h == format!("user-item_affinity_{k}"))).collect();
    let mut rounds = Vec::new();
    for (line_no, line) in lines.enumerate().filter(|(_, l)| !l.is_empty()) {
        let at_line = || format!("{}:{}", path.display(), line_no + 2);
        let fields: Vec<&str> = line.split(',').collect();
        let at = |col: usize| fields.get(col).copied().with_context(|| format!("{}: too few fields", at_line()));
        let time: jiff::Timestamp = at(ts_col)?.parse().with_context(|| format!("{}: timestamp", at_line()))?;
        let item: usize = at(item_col)?.parse().with_context(|| format!("{}: item_id", at_line()))?;
        if item >= n_items {
            bail!("{}: item_id {item} is not in item_context.csv ({n_items} items)", at_line());
        }
        let position: usize = at(position_col)?.parse().with_context(|| format!("{}: position", at_line()))?;
        if position == 0 {
            bail!("{}: positions start at 1", at_line());
        }
        let click: f64 = at(click_col)?.parse().with_context(|| format!("{}: click", at_line()))?;
        if click != 0.0 && click != 1.0 {
            bail!("{}: click must be 0 or 1, got {click}", at_line());
        }
        let pscore: f64 = at(pscore_col)?.parse().with_context(|| format!("{}: propensity_score", at_line()))?;
        if !(pscore > 0.0 && pscore <= 1.0) {
            bail!("{}: propensity_score must be in (0, 1], got {pscore}", at_line());
        }
        let user = [at(user_cols[0])?, at(user_cols[1])?, at(user_cols[2])?, at(user_cols[3])?].map(str::to_owned);
        let mut affinity = vec![0.0; n_items];
        for (k, col) in affinity_cols.iter().enumerate() {
            if let Some(col) = col {
                affinity[k] = at(*col)?.parse().with_context(|| format!("{}: user-item_affinity_{k}", at_line()))?;
            }
        }
        rounds.push(Round {
            time_us: time.as_microsecond(),
            item,
            position: position - 1,
            click,
            pscore,
            user,
            affinity,
        });
    }
    if rounds.is_empty() {
        bail!("{}: no rounds", path.display());
    }
    rounds.sort_by_key(|r| r.time_us);
    Ok(Log { rounds })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a small Open Bandit Dataset folder: 4 items, 2 positions, two person types. In the
    /// random log every item is shown uniformly (propensity 1/4); in the "bts" log item 2 is
    /// shown half the time. Persons of type "a" click item 1, persons of type "b" click item 3;
    /// nothing else is clicked.
    fn write_dataset(dir: &Path) {
        let items = ",item_id,item_feature_0,item_feature_1,item_feature_2,item_feature_3\n\
                     0,0,-0.5,c1,x,y\n1,1,0.5,c1,x,y\n2,2,1.0,c2,x,y\n3,3,-1.0,c2,x,y\n";
        for (log, campaign) in [("random", "all"), ("bts", "all")] {
            let folder = dir.join(log).join(campaign);
            std::fs::create_dir_all(&folder).unwrap();
            std::fs::write(folder.join("item_context.csv"), items).unwrap();
            let mut csv = String::from(
                ",timestamp,item_id,position,click,propensity_score,user_feature_0,user_feature_1,\
                 user_feature_2,user_feature_3,user-item_affinity_0,user-item_affinity_1,\
                 user-item_affinity_2,user-item_affinity_3\n",
            );
            for i in 0..400usize {
                let person = if i % 2 == 0 { "a" } else { "b" };
                let (item, pscore) = match log {
                    "random" => ((i / 2) % 4, 0.25),
                    _ if i % 4 < 2 => (2, 0.5),
                    _ => ((i / 4) % 3 + usize::from((i / 4) % 3 >= 2), 1.0 / 6.0),
                };
                let position = 1 + (i / 3) % 2;
                let click = u8::from((person == "a" && item == 1) || (person == "b" && item == 3));
                // Written out of time order: the reader sorts.
                let second = (i * 7919) % 400;
                csv.push_str(&format!(
                    "{i},2019-11-24 00:{:02}:{:02}.000000+00:00,{item},{position},{click},{pscore},{person},u,v,w,0.0,0.0,0.0,0.0\n",
                    second / 60,
                    second % 60
                ));
            }
            std::fs::write(folder.join(format!("{campaign}.csv")), csv).unwrap();
        }
    }

    fn args(dir: &Path, dump: Option<PathBuf>) -> BanditArgs {
        BanditArgs {
            dir: dir.to_path_buf(),
            campaigns: vec!["all".into()],
            test_fraction: 0.3,
            alpha: 0.0,
            lambda: Some(1.0),
            json: false,
            dump,
        }
    }

    #[test]
    fn evaluates_a_learnable_policy_on_both_logs_and_dumps_the_exact_inputs() {
        let dir = tempfile::tempdir().unwrap();
        write_dataset(dir.path());
        let report = evaluate_campaign(&args(dir.path(), Some(dir.path().join("dump.jsonl"))), "all").unwrap();
        // 800 rounds, a cut at the 560th: the earlier 70% of both logs train.
        assert_eq!(report.n_train, 560);
        assert_eq!((report.n_items, report.len_list), (4, 2));
        // The policy on both logs, and the uniform Random policy estimated from the bts log.
        let dumped: Vec<(&str, &str)> =
            report.dumps.iter().map(|d| (d["log"].as_str().unwrap(), d["policy"].as_str().unwrap())).collect();
        assert_eq!(
            dumped,
            [
                ("random", "Attune LinUCB (alpha 0)"),
                ("bts", "Attune LinUCB (alpha 0)"),
                ("bts", "Random (uniform), estimated")
            ]
        );
        for dump in &report.dumps {
            let n = dump["n_rounds"].as_u64().unwrap() as usize;
            let reward: Vec<f64> = serde_json::from_value(dump["reward"].clone()).unwrap();
            let action: Vec<usize> = serde_json::from_value(dump["action"].clone()).unwrap();
            let position: Vec<usize> = serde_json::from_value(dump["position"].clone()).unwrap();
            let pscore: Vec<f64> = serde_json::from_value(dump["pscore"].clone()).unwrap();
            let dist: Vec<f64> = serde_json::from_value(dump["action_dist"].clone()).unwrap();
            let q_hat: Vec<f64> = serde_json::from_value(dump["estimated_rewards_by_reg_model"].clone()).unwrap();
            assert_eq!(dist.len(), n * 4 * 2);
            assert_eq!(q_hat.len(), n * 4 * 2);
            // A proper distribution over the items at every round and position.
            for i in 0..n {
                for k in 0..2 {
                    let sum: f64 = (0..4).map(|a| dist[(i * 4 + a) * 2 + k]).sum();
                    assert_eq!(sum, 1.0, "round {i} position {k}");
                }
            }
            // The learnt policy puts each person's clicked item first: type a (item 1) and
            // type b (item 3), so its true click rate at position 0 is 1.
            let on_policy = reward.iter().sum::<f64>() / n as f64;
            assert_eq!(dump["attune"]["on_policy"]["value"].as_f64().unwrap(), on_policy);
            let ips_by_hand: f64 =
                (0..n).map(|i| dist[(i * 4 + action[i]) * 2 + position[i]] / pscore[i] * reward[i]).sum::<f64>()
                    / n as f64;
            assert!((dump["attune"]["ipw"]["value"].as_f64().unwrap() - ips_by_hand).abs() < 1e-12);
            if dump["policy"] != "Attune LinUCB (alpha 0)" {
                continue;
            }
            let shows_clicked_first =
                (0..n).filter(|&i| reward[i] == 1.0).all(|i| dist[(i * 4 + action[i]) * 2] == 1.0);
            assert!(shows_clicked_first, "{}: the policy did not learn who clicks what", dump["log"]);
            // The reward model sees clicks where they happen.
            let clicked_q: Vec<f64> =
                (0..n).filter(|&i| reward[i] == 1.0).map(|i| q_hat[(i * 4 + action[i]) * 2 + position[i]]).collect();
            let unclicked_q: Vec<f64> =
                (0..n).filter(|&i| reward[i] == 0.0).map(|i| q_hat[(i * 4 + action[i]) * 2 + position[i]]).collect();
            let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
            assert!(mean(&clicked_q) > 0.5 && mean(&unclicked_q) < 0.2, "{} {}", mean(&clicked_q), mean(&unclicked_q));
        }
        // The report lines: the logged policies' rates and four estimates per log.
        let estimators: Vec<(&str, &str)> = report.lines.iter().map(|l| (l.log, l.estimator)).collect();
        assert_eq!(
            estimators,
            [
                ("random", "on-policy"),
                ("random", "IPS"),
                ("random", "SNIPS"),
                ("random", "DM"),
                ("random", "DR"),
                ("bts", "on-policy"),
                ("bts", "IPS"),
                ("bts", "SNIPS"),
                ("bts", "DM"),
                ("bts", "DR"),
                ("bts", "IPS"),
                ("bts", "SNIPS"),
                ("bts", "DM"),
                ("bts", "DR")
            ]
        );
        for line in &report.lines {
            assert!(line.estimate.low <= line.estimate.value && line.estimate.value <= line.estimate.high);
        }
        // `run` writes the dump to disk, one line per log.
        run(args(dir.path(), Some(dir.path().join("dump.jsonl")))).unwrap();
        let written = std::fs::read_to_string(dir.path().join("dump.jsonl")).unwrap();
        assert_eq!(written.lines().count(), 3);
    }

    #[test]
    fn bad_data_is_an_error_naming_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        write_dataset(dir.path());
        let log = dir.path().join("bts/all/all.csv");
        let text = std::fs::read_to_string(&log).unwrap();
        let broken = text.replacen(",0.5,a,", ",0,a,", 1);
        std::fs::write(&log, &broken).unwrap();
        let error = format!("{:#}", evaluate_campaign(&args(dir.path(), None), "all").err().unwrap());
        assert!(error.contains("all.csv:") && error.contains("propensity_score must be in (0, 1]"), "{error}");
        std::fs::write(&log, text.replacen(",2,", ",9,", 1)).unwrap();
        let error = format!("{:#}", evaluate_campaign(&args(dir.path(), None), "all").err().unwrap());
        assert!(error.contains("item_id 9 is not in item_context.csv"), "{error}");
        let error = format!("{:#}", evaluate_campaign(&args(dir.path(), None), "kids").err().unwrap());
        assert!(error.contains("kids") && error.contains("item_context.csv"), "{error}");
        let error = format!("{:#}", evaluate_campaign(&args(dir.path(), None), "../x").err().unwrap());
        assert!(error.contains("not a folder name"), "{error}");
        let error = format!("{:#}", run(BanditArgs { test_fraction: 1.0, ..args(dir.path(), None) }).err().unwrap());
        assert!(error.contains("--test-fraction"), "{error}");
    }

    #[test]
    fn the_command_line_reaches_eval_bandit_and_leaves_plain_eval_alone() {
        use clap::Parser;
        let cli = crate::Cli::try_parse_from([
            "attune",
            "eval",
            "bandit",
            "/data/obd",
            "--campaigns",
            "all,men",
            "--alpha",
            "0",
        ])
        .unwrap();
        let crate::Command::Eval(eval) = cli.command else { panic!("not eval") };
        let Some(crate::cmd_eval::EvalCommand::Bandit(bandit)) = eval.command else { panic!("not bandit") };
        assert_eq!(bandit.dir, PathBuf::from("/data/obd"));
        assert_eq!(bandit.campaigns, ["all", "men"]);
        assert_eq!((bandit.alpha, bandit.lambda, bandit.test_fraction), (0.0, None, 0.3));
        let cli = crate::Cli::try_parse_from(["attune", "eval", "--data", "/data/ml-100k"]).unwrap();
        let crate::Command::Eval(eval) = cli.command else { panic!("not eval") };
        assert!(eval.command.is_none() && eval.data.is_some());
        assert!(crate::Cli::try_parse_from(["attune", "eval", "bandit"]).is_err(), "DIR is required");
    }

    #[test]
    fn top_arms_ranks_by_score_then_index() {
        assert_eq!(top_arms(&[0.1, 0.5, 0.5, 0.2], 3), vec![1, 2, 3]);
        assert_eq!(top_arms(&[0.3], 1), vec![0]);
    }
}
