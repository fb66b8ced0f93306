"""Checks `attune eval bandit` against Open Bandit Pipeline (obp 0.5.7).

Reads the file `attune eval bandit --dump FILE` writes (one JSON object per campaign and logging
policy: the evaluation rounds, the evaluated policy's action_dist, the reward model's estimates and
Attune's numbers) and, for each:

1. reads the same log with obp's own `OpenBanditDataset` and checks that Attune's evaluation
   rounds are its latest rounds (same items, positions, clicks and propensities, in time order);
2. recomputes the on-policy click rate and the IPS, SNIPS, DM and DR estimates with obp's
   estimators on the same inputs and fails when any differs from Attune's by more than 1e-6;
3. prints obp's bootstrap 95% interval beside Attune's normal-approximation one (informational:
   the two methods differ, so they are not required to match).
"""

import json
import sys

import numpy as np
from obp.dataset import OpenBanditDataset
from obp.ope import (
    DirectMethod,
    DoublyRobust,
    InverseProbabilityWeighting,
    SelfNormalizedInverseProbabilityWeighting,
)

TOLERANCE = 1e-6
ESTIMATORS = [
    ("ipw", InverseProbabilityWeighting()),
    ("snipw", SelfNormalizedInverseProbabilityWeighting()),
    ("dm", DirectMethod()),
    ("dr", DoublyRobust()),
]


def main(path):
    failures = []
    compared = 0
    with open(path) as f:
        records = [json.loads(line) for line in f if line.strip()]
    if not records:
        sys.exit(f"{path}: no records (did `attune eval bandit --dump` run?)")
    for rec in records:
        name = f"{rec['campaign']}/{rec['log']} {rec['policy']}"
        n, n_actions, len_list = rec["n_rounds"], rec["n_actions"], rec["len_list"]
        action = np.asarray(rec["action"], dtype=int)
        position = np.asarray(rec["position"], dtype=int)
        reward = np.asarray(rec["reward"], dtype=float)
        pscore = np.asarray(rec["pscore"], dtype=float)
        action_dist = np.asarray(rec["action_dist"], dtype=float).reshape(n, n_actions, len_list)
        q_hat = np.asarray(rec["estimated_rewards_by_reg_model"], dtype=float).reshape(n, n_actions, len_list)

        dataset = OpenBanditDataset(behavior_policy=rec["log"], campaign=rec["campaign"], data_path=rec["data_path"])
        feedback = dataset.obtain_batch_bandit_feedback()
        for field, ours in [("action", action), ("position", position), ("reward", reward), ("pscore", pscore)]:
            theirs = np.asarray(feedback[field])[-n:]
            if theirs.shape != ours.shape or not np.allclose(theirs, ours, rtol=0, atol=1e-12):
                failures.append(f"{name}: the evaluation rounds' {field} are not obp's last {n} rounds")
        if feedback["n_actions"] != n_actions or dataset.len_list != len_list:
            failures.append(f"{name}: obp reads {feedback['n_actions']} actions × {dataset.len_list} positions")

        print(f"\n{name}: {n} rounds, {n_actions} actions × {len_list} positions")
        print(f"  {'estimator':<10} {'attune':>12} {'obp':>12} {'|diff|':>9}   attune 95% CI (normal)   obp 95% CI (bootstrap)")
        on_policy = reward.mean()
        rows = [("on_policy", rec["attune"]["on_policy"], on_policy, None)]
        kwargs = dict(
            reward=reward,
            action=action,
            position=position,
            pscore=pscore,
            action_dist=action_dist,
            estimated_rewards_by_reg_model=q_hat,
        )
        for key, estimator in ESTIMATORS:
            ours = rec["attune"][key]
            try:
                value = estimator.estimate_policy_value(**kwargs)
                interval = estimator.estimate_interval(**kwargs, n_bootstrap_samples=10000, random_state=12345)
            except (ValueError, ZeroDivisionError, FloatingPointError) as error:
                value, interval = float("nan"), None
                if ours is not None:
                    failures.append(f"{name} {key}: obp fails ({error}) where Attune gives {ours['value']}")
            rows.append((key, ours, value, interval))
        for key, ours, value, interval in rows:
            if ours is None:
                print(f"  {key:<10} {'undefined':>12} {value:>12.6f}")
                if np.isfinite(value):
                    failures.append(f"{name} {key}: Attune says undefined, obp gives {value}")
                continue
            diff = abs(ours["value"] - value)
            compared += 1
            ci = f"[{ours['low']:.5f}, {ours['high']:.5f}]"
            boot = f"[{interval['95.0% CI (lower)']:.5f}, {interval['95.0% CI (upper)']:.5f}]" if interval else ""
            print(f"  {key:<10} {ours['value']:>12.6f} {value:>12.6f} {diff:>9.2e}   {ci:<24} {boot}")
            if not diff <= TOLERANCE:
                failures.append(f"{name} {key}: Attune {ours['value']!r}, obp {value!r} (|diff| {diff:.3e} > {TOLERANCE})")
    if failures:
        print("\nFAILED: Attune's off-policy evaluation differs from obp 0.5.7:", file=sys.stderr)
        for failure in failures:
            print(f"  {failure}", file=sys.stderr)
        print(f"obp: {compared} passed, {len(failures)} failed")
        sys.exit(1)
    print(f"\nobp 0.5.7 agrees with Attune on {compared} estimates over {len(records)} policy × log pairs (|diff| <= {TOLERANCE})")
    print(f"obp: {compared} passed, 0 failed")


if __name__ == "__main__":
    main(sys.argv[1])
