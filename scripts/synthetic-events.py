#!/usr/bin/env python3
"""Writes N synthetic events as JSON lines, in the shape `attune bench ingest` uses (views, clicks
and dwells of 100,000 people on 10,000 items over the last 30 days), for timing `attune import`:

    python3 scripts/synthetic-events.py 1000000 events.jsonl [id-prefix]
"""
import datetime
import json
import random
import sys

n, path = int(sys.argv[1]), sys.argv[2]
prefix = sys.argv[3] if len(sys.argv) > 3 else "bench"
random.seed(7)
now = int(datetime.datetime.now(datetime.timezone.utc).timestamp())
types = ["view", "view", "click", "dwell"]
with open(path, "w") as out:
    for i in range(n):
        kind = random.choice(types)
        ts = datetime.datetime.fromtimestamp(now - random.randrange(30 * 86400), datetime.timezone.utc)
        event = {
            "id": f"{prefix}-{i}",
            "type": kind,
            "user": f"u-{random.randrange(100000)}",
            "item": f"i-{random.randrange(10000)}",
            "ts": ts.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "context": {"device": "mobile", "timezone": "Europe/Berlin"},
        }
        if kind == "dwell":
            event["properties"] = {"dwell_ms": random.randrange(1000, 200000), "scroll_depth": 0.5}
        out.write(json.dumps(event, separators=(",", ":")) + "\n")
