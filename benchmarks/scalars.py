"""The health of a run in a few figures, from its TensorBoard log: what docs/walkthrough.md quotes.

    python benchmarks/scalars.py runs/<run> [runs/<another run> ...]

For each run: the mean of losses/approx_kl, losses/clipfrac (where logged) and losses/explained_variance over
the first and the last tenth of its iterations, approx_kl's median and largest value over the run, and the
mean return of its last 100 episodes.
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import logged  # noqa: E402

TAGS = ["losses/approx_kl", "losses/clipfrac", "losses/explained_variance"]


def summary(run_dir: str) -> dict:
    """{tag: (first tenth's mean, last tenth's mean)} and the last 100 episodes' mean return."""
    out = {}
    for tag in TAGS:
        try:
            values = logged(run_dir, tag)[:, 1]
        except KeyError:
            continue  # ppo_kl_adaptive.py logs no clipfrac
        tenth = max(1, len(values) // 10)
        out[tag] = (float(values[:tenth].mean()), float(values[-tenth:].mean()))
    kl = logged(run_dir, "losses/approx_kl")[:, 1]
    out["approx_kl_median"], out["approx_kl_max"] = float(np.median(kl)), float(kl.max())
    out["return"] = float(logged(run_dir, "charts/episodic_return")[-100:, 1].mean())
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dirs", nargs="+")
    for run_dir in p.parse_args().run_dirs:
        s = summary(run_dir)
        cells = [f"{tag.split('/')[1]} {s[tag][0]:.4f} -> {s[tag][1]:.4f}" for tag in TAGS if tag in s]
        print(f"{run_dir}: " + ", ".join(cells) + f"; approx_kl median {s['approx_kl_median']:.4f}, "
              f"largest {s['approx_kl_max']:.4f}; last 100 episodes {s['return']:.1f}")


if __name__ == "__main__":
    main()
