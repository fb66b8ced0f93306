"""Checks Attune's experiment analysis against GrowthBook's stats engine (gbstats 0.8.0).

Reads the JSON written by the engine test `experiments_gbstats` (sufficient statistics built
from real decisions and events, and Attune's results), recomputes every result with gbstats and
fails when a lift, an interval bound or a p-value differs by more than 1e-6.
"""

import json
import math
import sys

from gbstats.frequentist.tests import SequentialTwoSidedTTest, TwoSidedTTest
from gbstats.models.statistics import (
    ProportionStatistic,
    RegressionAdjustedStatistic,
    SampleMeanStatistic,
)
from gbstats.utils import check_srm

TOLERANCE = 1e-6


def statistic(kind, arm, pre=False):
    if kind == "proportion":
        return ProportionStatistic(n=arm["n"], sum=arm["pre_sum" if pre else "sum"])
    return SampleMeanStatistic(
        n=arm["n"],
        sum=arm["pre_sum" if pre else "sum"],
        sum_squares=arm["pre_sum_squares" if pre else "sum_squares"],
    )


def adjusted(kind, arm):
    return RegressionAdjustedStatistic(
        n=arm["n"],
        post_statistic=statistic(kind, arm),
        pre_statistic=statistic(kind, arm, pre=True),
        post_pre_sum_of_products=arm["post_pre_sum_of_products"],
        theta=0,
    )


def compare(label, ours, theirs, problems):
    """`ours` is Attune's result or None (no analysis); gbstats answers its default output then."""
    if ours is None:
        if theirs.error_message is None and not (theirs.expected == 0 and theirs.p_value == 1):
            problems.append(f"{label}: Attune has no result, gbstats has {theirs}")
        return 0
    pairs = [
        ("lift", ours["expected"], theirs.expected),
        ("ci low", ours["ci"][0], theirs.ci[0]),
        ("ci high", ours["ci"][1], theirs.ci[1]),
        ("p-value", ours["p_value"], theirs.p_value),
    ]
    for name, a, b in pairs:
        if not (math.isfinite(a) and math.isfinite(b)) or abs(a - b) > TOLERANCE:
            problems.append(f"{label} {name}: Attune {a!r}, gbstats {b!r}")
    return len(pairs)


def main(path):
    cases = json.load(open(path))
    passed = failed = 0
    for case in cases:
        problems = []
        checked = 0
        kind = case["kind"]
        control = case["arms"][0]
        for arm in case["arms"][1:]:
            label = f"{case['experiment']} {case['metric']} {arm['arm']}"
            a, b = statistic(kind, control), statistic(kind, arm)
            checked += compare(f"{label} TwoSidedTTest", arm["two_sided"], TwoSidedTTest(a, b).compute_result(), problems)
            checked += compare(
                f"{label} SequentialTwoSidedTTest",
                arm["sequential"],
                SequentialTwoSidedTTest(statistic(kind, control), statistic(kind, arm)).compute_result(),
                problems,
            )
            checked += compare(
                f"{label} RegressionAdjustedStatistic",
                arm["cuped"],
                TwoSidedTTest(adjusted(kind, control), adjusted(kind, arm)).compute_result(),
                problems,
            )
        srm = check_srm(case["srm"]["users"], case["srm"]["weights"])
        if abs(srm - case["srm"]["p_value"]) > TOLERANCE:
            problems.append(f"{case['experiment']} SRM: Attune {case['srm']['p_value']!r}, gbstats {srm!r}")
        checked += 1
        if problems or checked < 5:
            failed += 1
            print(f"FAIL {case['experiment']} ({case['metric']}, {kind}): " + "; ".join(problems or ["nothing checked"]))
        else:
            passed += 1
            print(f"ok   {case['experiment']} ({case['metric']}, {kind}): {checked} values agree within {TOLERANCE}")
    # The known value of the brief.
    known = TwoSidedTTest(ProportionStatistic(n=1000, sum=100), ProportionStatistic(n=1000, sum=120)).compute_result()
    assert abs(known.expected - 0.2) < 1e-4 and abs(known.ci[0] + 0.1008) < 1e-4 and abs(known.p_value - 0.1924) < 1e-4
    print(f"gbstats: {passed} passed, {failed} failed")
    return 1 if failed or passed < 3 else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
