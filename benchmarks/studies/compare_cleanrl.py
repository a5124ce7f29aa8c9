"""Our ppo_atari.py runs beside CleanRL's, tenth of the run by tenth: the health scalars and the score.

    python benchmarks/studies/compare_cleanrl.py benchmarks/out/runs/<run 1> <run 2> ... \
        --cleanrl ../shared/cleanrl_breakout_1m

For each tenth of the steps it prints, per side, the mean over runs of approx_kl, clipfrac, entropy and explained
variance (each run's mean over the iterations in that tenth), and the mean game score of the episodes that
ended in it. CleanRL's side is read from its CSVs (`iteration_scalars_seedS.csv`, `episodic_return_seedS.csv`,
converted from its TensorBoard logs). CleanRL logs each iteration's last minibatch and we log the mean over the
iteration's minibatches, so the per-iteration figures are comparable in trend and size, not exactly.
"""
import argparse
import csv
import glob
import os

import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

TAGS = {"approx_kl": "losses/approx_kl", "clipfrac": "losses/clipfrac", "entropy": "losses/entropy",
        "explained_variance": "losses/explained_variance"}


def ours(run_dir: str) -> dict:
    acc = EventAccumulator(run_dir, size_guidance={"scalars": 0})
    acc.Reload()
    series = {name: np.array([(e.step, e.value) for e in acc.Scalars(tag)]) for name, tag in TAGS.items()}
    series["episodic_return"] = np.array([(e.step, e.value) for e in acc.Scalars("charts/episodic_return")])
    return series


def cleanrl(folder: str, seed: str) -> dict:
    def read(name):
        with open(os.path.join(folder, f"{name}_seed{seed}.csv")) as f:
            return list(csv.DictReader(f))
    rows = read("iteration_scalars")
    series = {name: np.array([(float(r["global_step"]), float(r[name])) for r in rows]) for name in TAGS}
    series["episodic_return"] = np.array([(float(r["global_step"]), float(r["episodic_return"]))
                                          for r in read("episodic_return")])
    return series


def by_tenth(runs: list, name: str, total: int) -> list:
    """Per tenth of the steps, the mean over runs of each run's mean in that tenth."""
    out = []
    for k in range(10):
        lo, hi = k * total / 10, (k + 1) * total / 10
        means = [s[name][(s[name][:, 0] > lo) & (s[name][:, 0] <= hi), 1].mean() for s in runs]
        out.append(float(np.nanmean(means)))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="our run folders")
    p.add_argument("--cleanrl", default=os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared",
                                                     "cleanrl_breakout_1m"))
    p.add_argument("--total-timesteps", type=int, default=1_000_000)
    a = p.parse_args()
    mine = [ours(r) for r in a.runs]
    seeds = sorted(f.rsplit("seed", 1)[1][:-4] for f in glob.glob(os.path.join(a.cleanrl, "iteration_scalars_seed*.csv")))
    theirs = [cleanrl(a.cleanrl, s) for s in seeds]
    print(f"ours: {len(mine)} runs; CleanRL: seeds {', '.join(seeds)}")
    for name in [*TAGS, "episodic_return"]:
        print(f"\n{name}, by tenth of {a.total_timesteps:,} steps (ours / CleanRL)")
        for k, (x, y) in enumerate(zip(by_tenth(mine, name, a.total_timesteps), by_tenth(theirs, name, a.total_timesteps))):
            print(f"  {k + 1:>2}/10  {x:10.4g}  {y:10.4g}")
    last = lambda runs: [float(s["episodic_return"][-100:, 1].mean()) for s in runs]  # noqa: E731
    print(f"\nlast 100 games: ours {np.round(last(mine), 1).tolist()}, CleanRL {np.round(last(theirs), 1).tolist()}")


if __name__ == "__main__":
    main()
