"""Table 1's figure and Figure 3's PPO column, drawn from the runs that benchmarks/table1.py --full recorded in
results/table1.jsonl (one protocol, PROTOCOL in table1.py).

    pip install -r benchmarks/requirements.txt
    python benchmarks/table1_figures.py     # results/table1.png, results/figure3_ppo.png, and Figure 3's table

table1.png: each setting's normalised score beside the paper's, ours with its 95% bootstrap interval (over
seeds within each setting and task, as table1.py computes it), over the tasks that have a run of every
setting. figure3_ppo.png: the clipping eps = 0.2 runs, which are the paper's Figure 3 PPO runs (same
settings, tasks and budget): per task, the mean over seeds of the mean return of the episodes that ended in
each 20k-step window, the range over seeds shaded, and the paper's final value as read off its plot
(../shared/PAPER.md, "about") as a dashed line. The table beside it: per task, the paper's value and ours,
the mean over seeds of each run's score (the mean return of its last 100 episodes). Last, for the "no clipping
or penalty" runs, per task, where they peaked beside where they ended: does the unconstrained surrogate collapse?
"""
import argparse
import os
import sys

import matplotlib
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import table1  # noqa: E402
from benchmarks.common import RESULTS  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# The paper's Figure 3, PPO (clip) at 1M steps, read off its plots (../shared/PAPER.md): approximate.
FIGURE3 = {"HalfCheetah-v4": 1800, "Hopper-v4": 2250, "InvertedDoublePendulum-v4": 8000, "InvertedPendulum-v4": 1000,
           "Reacher-v4": -8, "Swimmer-v4": 110, "Walker2d-v4": 3000}
CLIP = "clipping, eps = 0.2"


def full_runs() -> dict:
    """{(setting, env_id, seed): row} of the paper-budget runs under the table's protocol."""
    return table1.recorded(table1.FULL["total_timesteps"], table1.PAPER_FLAGS, table1.PROTOCOL)


def seeds_of(runs: dict, setting: str, task: str) -> list:
    """The rows of the recorded seeds of one (setting, task), in seed order."""
    return [runs[(setting, task, seed)] for seed in table1.FULL["seeds"] if (setting, task, seed) in runs]


def draw_table1(runs: dict, out: str) -> str | None:
    raw, random = table1.complete_tasks({key: r["last100"] for key, r in runs.items()}, table1.PAPER_TASKS,
                                        table1.FULL["seeds"])
    if not random:
        return None
    settings, tasks = list(raw), list(random)
    scored = table1.table_scores(raw, random)
    draws = table1.bootstrap(raw, random)
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    y = np.arange(len(settings))[::-1]
    ours = np.array([scored[s][0] for s in settings])
    low, high = np.array([table1.interval(draws[s]) for s in settings]).T
    ax.errorbar(ours, y, xerr=[ours - low, high - ours], fmt="o", capsize=3, label="here, 95% bootstrap interval")
    ax.plot([paper for *_, paper in table1.SETTINGS], y, "x", color="black", markersize=8, label="paper")
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_yticks(y, settings)
    ax.set_xlabel("normalised score (random policy 0, best setting 1)")
    seeds = sorted({len(x) for by_task in raw.values() for x in by_task.values()})
    ax.set_title(f"Table 1: {len(tasks)} of 7 tasks, {'-'.join(map(str, seeds))} seeds each, 1M steps per run",
                 fontsize="medium")
    ax.legend(loc="lower left", fontsize="small")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def draw_figure3(runs: dict, out: str) -> list:
    """The PNG, and per task (task, seeds, our mean score, its std over seeds, the paper's value)."""
    window = table1.CURVE_WINDOW
    fig, axes = plt.subplots(2, 4, figsize=(16, 7))
    lines = []
    for ax, task in zip(axes.flat, table1.PAPER_TASKS):
        rows = seeds_of(runs, CLIP, task)
        ax.set_title(task)
        ax.axhline(FIGURE3[task], color="black", ls="--", lw=1, label="paper, Figure 3 (about)")
        if rows:
            curves = np.array([[np.nan if v is None else v for v in r["curve"]] for r in rows], float)
            seen = np.isfinite(curves).any(0)  # a window in which no seed ended an episode has no point
            curves, steps = curves[:, seen], window * np.arange(1, len(seen) + 1)[seen]
            ax.plot(steps, np.nanmean(curves, 0), label=f"here, mean of {len(rows)} seeds")
            ax.fill_between(steps, np.nanmin(curves, 0), np.nanmax(curves, 0), alpha=0.25)
            scores = [r["last100"] for r in rows]
            lines.append((task, len(rows), float(np.mean(scores)), float(np.std(scores)), FIGURE3[task]))
        ax.set_xlabel("env steps")
        ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 0))
    axes.flat[0].set_ylabel(f"mean episode return per {window // 1000}k steps")
    axes.flat[0].legend(fontsize="small")
    axes.flat[-1].axis("off")
    fig.suptitle("Figure 3, PPO (clipping, eps = 0.2): Table 1's protocol, 1M steps per run")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return lines


def peak_and_end(runs: dict, setting: str) -> list:
    """Per task with runs of `setting`: (task, seeds, the mean over seeds of each run's best 20k-step window,
    the mean over seeds of its score, the random policy's score or None)."""
    random = {r["env_id"]: r["score"] for r in table1.rows("random")}
    lines = []
    for task in table1.PAPER_TASKS:
        rows = seeds_of(runs, setting, task)
        if rows:
            peaks = [max(v for v in r["curve"] if v is not None) for r in rows]
            lines.append((task, len(rows), float(np.mean(peaks)), float(np.mean([r["last100"] for r in rows])),
                          random.get(task)))
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out-dir", default=RESULTS)
    a = p.parse_args()
    try:
        os.makedirs(a.out_dir, exist_ok=True)
    except OSError as e:
        sys.exit(f"error: cannot write to --out-dir {a.out_dir}: {e}")
    runs = full_runs()
    done = draw_table1(runs, os.path.join(a.out_dir, "table1.png"))
    print(f"wrote {done}" if done else "table1.png: no task has a paper-budget run of every setting yet")
    lines = draw_figure3(runs, os.path.join(a.out_dir, "figure3_ppo.png"))
    print(f"wrote {os.path.join(a.out_dir, 'figure3_ppo.png')}\n\n| task | paper, Figure 3 (about) | here: mean "
          "of the last 100 episodes, mean +- std over seeds | seeds |\n|---|---|---|---|")
    for task, seeds, mean, std, paper in lines:
        print(f"| {task} | {paper} | {mean:.1f} +- {std:.1f} | {seeds} |")
    setting = table1.SETTINGS[0][0]
    print(f"\n{setting}: where its runs peaked and where they ended\n\n| task | random policy | best 20k-step "
          "window, mean over seeds | last 100 episodes, mean over seeds | seeds |\n|---|---|---|---|---|")
    for task, seeds, peak, end, random in peak_and_end(runs, setting):
        print(f"| {task} | {'-' if random is None else f'{random:.1f}'} | {peak:.1f} | {end:.1f} | {seeds} |")


if __name__ == "__main__":
    main()
