#!/usr/bin/env python3
"""eval_peers.py (../shared/peers) with grids cut to fit a large catalog on 2 shared cores.

Usage:  python3 scripts/peers-large.py DATA_DIR/amazon-video [eval_peers.py options]
        (e.g. --models pop,itemknn-rec,rp3beta-rec,ials-wide --json OUT.json --write-split DIR)

Same split, candidates, metrics, models and refit as eval_peers.py (imported from it, unchanged);
only the search is smaller, so that a dataset with 20,000+ items and 30,000 people finishes in
under an hour while other jobs share the machine:
  * validation scores a fixed random sample of VAL_PEOPLE validation people (seed 42), like the
    served ranker's own search (RankerOptions::max_validation_people = 3,000); test still scores
    every test person;
  * the recency half-lives are RECENCY_H (h = 0 is the unweighted model);
  * item-kNN keeps its whole K grid; RP3beta-rec searches RP3_GRID (alpha 0, .3, .5 at beta .3,
    K 1000): on amazon-video a first run over alpha 0/.3/.5/.8 x beta .3/.5/.7 took ~270 s per
    point and was cut after two (alpha 0 with beta .3 and .5, tied best at validation NDCG .0621);
    the served ranker's own search found beta .7 far worse there (.0095) than beta .5 (.0427);
  * iALS-wide tries its first IALS_TRIALS random configurations plus the ones chosen on
    ml-100k and ml-latest-small (EVAL.md);
  * EASE is not run: a dense inversion of a 20,000+ item Gram matrix does not fit the time.
"""
import os
import sys

PEERS = os.environ.get("ATTUNE_PEERS", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "peers"))
sys.path.insert(0, PEERS)
import numpy as np  # noqa: E402
import eval_peers as ep  # noqa: E402

VAL_PEOPLE = 3000
RECENCY_H = [0, 1, 2, 3, 5, 10]
RP3_GRID = [(a, 0.3, 1000) for a in (0.0, 0.3, 0.5)]
IALS_TRIALS = 4
IALS_KNOWN = [(256, 10.0, 2.0), (64, 20.0, 2.0)]

_original_grids = ep.grids


def grids(quick, threads, seed, ials_trials, bpr_trials=8):
    g = _original_grids(quick, threads, seed, min(ials_trials, IALS_TRIALS), bpr_trials)
    g["rp3beta-rec"] = [({"alpha": a, "beta": b, "topK": k},
                         lambda p: ep.RP3beta(p["alpha"], p["beta"], p["topK"])) for a, b, k in RP3_GRID]
    known = [({"factors": f, "reg": r, "alpha": a, "iters": 15},
              lambda p: ep.IALS(p["factors"], p["reg"], p["alpha"], p["iters"], threads, seed))
             for f, r, a in IALS_KNOWN]
    g["ials-wide"] = g["ials-wide"] + [k for k in known if k[0] not in [p for p, _ in g["ials-wide"]]]
    return g


class Fold(ep.Fold):
    """The first fold built is the full one (all test people); the second, validation, keeps a
    fixed sample of VAL_PEOPLE test people."""
    built = 0

    def __init__(self, *args):
        super().__init__(*args)
        Fold.built += 1
        if Fold.built == 2 and len(self.test_users) > VAL_PEOPLE:
            keep = np.sort(np.random.default_rng(42).choice(len(self.test_users), VAL_PEOPLE, replace=False))
            self.test_users = self.test_users[keep]
            self.test_items = [self.test_items[k] for k in keep]
            ep.log(f"validation: scoring a sample of {VAL_PEOPLE} people")


ep.grids = grids
ep.Fold = Fold
ep.RECENCY_H = RECENCY_H

if __name__ == "__main__":
    ep.main()
