#!/usr/bin/env python3
"""Where a pod start spends its time, from a server log of `cargo bench --bench pod_start`
run with WKUBE_LOG="warn,control::scheduler=debug,control::api::routes=debug,node=debug".

Stages per pod (server clock, log timestamps): create committed (the POST's request line,
logged after the response is built) -> bound by the scheduler -> pod worker spawned by the
node agent -> container started -> Running status written. Only the serial phase is
measured: its creates are one at a time, so the n-th pod POST is serial-<n-1> (the first
POST is the warm-up pod). The scheduler logs "bound" after its bind returns, racing the
node agent's watch of the same commit, so the gap after it can be negative.

Usage: scripts/pod-start-stages.py SERVER_LOG
"""

import math
import re
import sys
from datetime import datetime

ANSI = re.compile(r"\x1b\[[0-9;]*m")
LINE = re.compile(r"^(\S+Z)\s+DEBUG\s+(\S+): (.*)$")
POD = re.compile(r'pod="([^"]+)"')
STAGES = ["bound", "starting pod worker", "container started", "status written"]


def parse(path):
    for raw in open(path, encoding="utf-8", errors="replace"):
        m = LINE.match(ANSI.sub("", raw.rstrip("\n")))
        if m:
            ts = datetime.fromisoformat(m.group(1).replace("Z", "+00:00"))
            yield ts, m.group(3)


def main(path):
    times = {}  # pod -> {stage: first time}
    posts = 0
    for ts, msg in parse(path):
        if msg.startswith("request method=POST path=/api/v1/namespaces/default/pods "):
            name = "warmup" if posts == 0 else f"serial-{posts - 1}"
            posts += 1
            times.setdefault(name, {}).setdefault("created", ts)
            continue
        pod = POD.search(msg)
        for stage in STAGES:
            if pod and msg.startswith(stage):
                if stage == "status written" and 'phase="Running"' not in msg:
                    continue
                times.setdefault(pod.group(1), {}).setdefault(stage, ts)
    order = ["created"] + STAGES
    gaps = {b: [] for b in order[1:]}
    for name, t in times.items():
        if not name.startswith("serial-") or not all(s in t for s in order):
            continue
        for a, b in zip(order, order[1:]):
            gaps[b].append((t[b] - t[a]).total_seconds() * 1e3)
    n = len(gaps["bound"])
    print(f"{n} serial pods; ms between stages (p50 / p99 / max)")
    for a, b in zip(order, order[1:]):
        v = sorted(gaps[b])
        p50, p99 = (v[max(1, math.ceil(p * len(v))) - 1] for p in (0.5, 0.99))
        print(f"  {a:>20} -> {b:<20} {p50:6.2f} / {p99:6.2f} / {v[-1]:6.2f}")


if __name__ == "__main__":
    main(sys.argv[1])
