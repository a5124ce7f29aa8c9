"""Plot learning curves saved by benchmarks/learning.py: per env, the mean over seeds of the mean return of
the last 100 episodes against env steps, with the range over seeds shaded.

    pip install -r benchmarks/requirements.txt
    python benchmarks/plot.py --runs ppo_clip:CartPole-v1 ppo_clip:Hopper-v4 --out benchmarks/results/ppo_clip.png
"""
import argparse
import glob
import os

import matplotlib
import numpy as np

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
    p.add_argument("--runs", nargs="+", required=True, help="script:env_id pairs; one panel per env")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    envs = list(dict.fromkeys(r.split(":")[1] for r in a.runs))
    fig, axes = plt.subplots(1, len(envs), figsize=(5 * len(envs), 3.6), squeeze=False)
    for run in a.runs:
        script, env_id = run.split(":")
        files = sorted(glob.glob(os.path.join(RESULTS, "curves", f"{script}_{env_id}_seed*.csv")))
        curves = [np.loadtxt(f, delimiter=",", skiprows=1, ndmin=2) for f in files]
        grid = np.linspace(0, max(c[-1, 0] for c in curves), 200)
        ys = np.array([smoothed(c, grid) for c in curves])
        ax = axes[0, envs.index(env_id)]
        ax.plot(grid, np.nanmean(ys, 0), label=f"{script} ({len(curves)} seeds)")
        ax.fill_between(grid, np.nanmin(ys, 0), np.nanmax(ys, 0), alpha=0.2)
        ax.set_title(env_id)
        ax.set_xlabel("env steps")
        ax.set_ylabel("mean return, last 100 episodes")
        ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(a.out, dpi=110)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
