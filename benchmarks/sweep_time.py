"""How long the paper-scale sweeps take on N cores, from the speed of runs already measured here: each finished
run's steps over its wall time (results/table1.jsonl, and the rows of results/learning.jsonl that give a wall
time per run). A run takes one core, as in a sweep; its rate is the median of its (script, env)'s runs; where
none ran yet, the median of the other scripts' runs on that env; else the median over all of that script's
runs. The line says which rates were borrowed or assumed. Speeds on
these machines drift by up to 2x from day to day, and so do these estimates.

    python benchmarks/sweep_time.py --cores 2 16 64
"""
import argparse
import json
import os
import sys
from collections import defaultdict

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import RESULTS  # noqa: E402
from benchmarks.table1 import FULL, SETTINGS  # noqa: E402

ATARI = ["BreakoutNoFrameskip-v4", "PongNoFrameskip-v4", "BeamRiderNoFrameskip-v4"]
SWEEPS = {  # name: [(script, env, steps)], one entry per run
    "Table 1 (table1.py --full)": [(script, t, FULL["total_timesteps"]) for _ in FULL["seeds"] for t in FULL["tasks"]
                                   for _, script, _, _ in SETTINGS],
    "MuJoCo, ppo_continuous.py, 7 tasks x 3 seeds x 1M": [("ppo_continuous", t, 1_000_000) for _ in range(3)
                                                          for t in FULL["tasks"]],
    "Atari, ppo_atari.py, 3 games x 3 seeds x 10M": [("ppo_atari", g, 10_000_000) for _ in range(3) for g in ATARI],
}


def measured_rates() -> dict:
    """{(script, env): [env steps per second of one run]} from the results files."""
    rates = defaultdict(list)
    for row in map(json.loads, open(os.path.join(RESULTS, "table1.jsonl"))):
        if row["kind"] == "run" and row.get("wall_s"):
            rates[(row["script"], row["env_id"])].append(row["total_timesteps"] / row["wall_s"])
    for row in map(json.loads, open(os.path.join(RESULTS, "learning.jsonl"))):
        walls = row.get("wall_s_per_seed") or ([row["wall_s"]] if len(row["seeds"]) == 1 else [])
        rates[(row["script"], row["env_id"])] += [row["total_timesteps"] / w for w in walls if w]
    return {key: r for key, r in rates.items() if r}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cores", type=int, nargs="+", default=[2, 16, 64])
    a = p.parse_args()
    rates = measured_rates()
    for name, runs in SWEEPS.items():
        if not any(s == runs[0][0] for s, _ in rates):
            print(f"{name}: no run of {runs[0][0]}.py has a wall time per run in results/ yet")
            continue
        seconds, assumed, borrowed = [], set(), set()
        for script, env, steps in runs:
            other = [r for (s, e), rs in rates.items() if e == env and s != script for r in rs]
            if rates.get((script, env)):
                rate = float(np.median(rates[(script, env)]))
            elif other:  # the MLP scripts step the same env at much the same speed
                rate = float(np.median(other))
                borrowed.add(f"{script} on {env}")
            else:
                rate = float(np.median([r for (s, _), rs in rates.items() if s == script for r in rs]))
                assumed.add(env)
            seconds.append(steps / rate)
        total = sum(seconds)
        # N cores run N runs at once; the sweep cannot end before its longest run does.
        times = ", ".join(f"{n} cores {max(total / n, max(seconds)) / 3600:.1f} h" for n in a.cores)
        print(f"{name}: {len(runs)} runs, {total / 3600:.0f} core-hours; {times}"
              + (f"; rate of another script on the same env for: {', '.join(sorted(borrowed))}" if borrowed else "")
              + (f"; rate assumed, no run measured yet on: {', '.join(sorted(assumed))}" if assumed else ""))


if __name__ == "__main__":
    main()
