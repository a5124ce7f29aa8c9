"""Plot learning curves saved by benchmarks/learning.py: per env, the mean over seeds of the mean return of
the last 100 episodes against env steps, with the range over seeds shaded.

    pip install -r benchmarks/requirements.txt
    python benchmarks/plot.py --runs ppo_clip:CartPole-v1 ppo_clip:Hopper-v4 \
        "ppo_clip:Hopper-v4:--no-anneal-clip" --out benchmarks/results/ppo_clip.png

Each run is script:env_id[:extra flags], as given to benchmarks/learning.py. `--at 250000 500000` also prints
each curve's value (mean over seeds) at those steps.
"""
import argparse
import glob
import os

import sys

import matplotlib
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import curve_name  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def smoothed(curve: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """The mean of the last 100 episodic returns, read at each grid step."""
    steps, returns = curve[:, 0], curve[:, 1]
    running = np.array([returns[max(0, i - 99): i + 1].mean() for i in range(len(returns))])
    return np.interp(grid, steps, running, left=np.nan)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", nargs="+", required=True, help="script:env_id[:extra flags]; one panel per env")
    p.add_argument("--out", required=True)
    p.add_argument("--at", type=float, nargs="*", default=[], help="also print each run's curve at these env steps")
    a = p.parse_args()
    envs = list(dict.fromkeys(r.split(":")[1] for r in a.runs))
    fig, axes = plt.subplots(1, len(envs), figsize=(5 * len(envs), 3.6), squeeze=False)
    for run in a.runs:
        script, env_id, extra = (run.split(":", 2) + [""])[:3]
        files = sorted(glob.glob(os.path.join(RESULTS, "curves", curve_name(script, env_id, extra, "*"))))
        curves = [np.loadtxt(f, delimiter=",", skiprows=1, ndmin=2) for f in files]
        grid = np.linspace(max(c[0, 0] for c in curves), max(c[-1, 0] for c in curves), 200)
        ys = np.array([smoothed(c, grid) for c in curves])
        if a.at:
            at = np.array([smoothed(c, np.array(a.at)) for c in curves]).mean(0)
            print(f"{run}: " + ", ".join(f"{step:,.0f} steps {value:.1f}" for step, value in zip(a.at, at)))
        ax = axes[0, envs.index(env_id)]
        ax.plot(grid, np.nanmean(ys, 0), label=f"{script} {extra} ({len(curves)} seeds)".replace("  ", " "))
        ax.fill_between(grid, np.nanmin(ys, 0), np.nanmax(ys, 0), alpha=0.2)
        ax.set_title(env_id)
        ax.set_xlabel("env steps")
        ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 0))
        ax.set_ylabel("mean return, last 100 episodes")
        ax.legend(loc="upper left", bbox_to_anchor=(0, -0.3), fontsize="small")  # below: labels carry flags
    fig.tight_layout()
    fig.savefig(a.out, dpi=110, bbox_inches="tight")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
