"""A trial program: records each execution, reports a score per step, fails on a=bad.

Every execution appends its parameters to ``executions.log`` beside this file (outside
the state folder), so tests can count how often each trial really ran.
"""

import json
import sys
import time
from pathlib import Path

import sweepflow

params = dict(item.split("=", 1) for item in sys.argv[1:] if "=" in item)
with (Path(__file__).resolve().parent / "executions.log").open("a") as log:
    log.write(json.dumps(params, sort_keys=True) + "\n")
print("training with", json.dumps(params, sort_keys=True), flush=True)
if params.get("a") == "bad":
    print("boom: a=bad is not a number", file=sys.stderr, flush=True)
    sys.exit(3)
time.sleep(float(params.get("sleep", 0)))
base = sum(10**i * float(params[k]) for i, k in enumerate(("b", "a")) if k in params)
for step in range(3):
    sweepflow.log_metrics({"score": base + step / 10}, step=step)
