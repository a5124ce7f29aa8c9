"""Two settings' scores over the same seeds, from results/learning.jsonl: their means, the gap, its standard
error and the ratio, and whether the gap exceeds two standard errors.

    python benchmarks/seed_gap.py --env-id Hopper-v4 --seeds 4 5 6 --a ppo_clip: --b ppo_clip:--clip-each-network
    python benchmarks/seed_gap.py --env-id Hopper-v4 --seeds 4 5 6 --a ppo_clip: --b ppo_kl_adaptive:

Each side is SCRIPT:EXTRA_FLAGS, as learning.py recorded them; per seed, the newest recorded score. The
standard error of the gap is sqrt(s_a^2 / n + s_b^2 / n), with each side's sample standard deviation over seeds.
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import RESULTS  # noqa: E402


def scores(script: str, extra: str, env_id: str, steps: int, seeds: list) -> list:
    """The newest last-100-episode score of each seed, or exit naming the seeds not recorded yet."""
    newest = {}
    for row in map(json.loads, open(os.path.join(RESULTS, "learning.jsonl"))):
        if (row["script"], row["extra_flags"], row["env_id"], row["total_timesteps"]) == (script, extra, env_id, steps):
            newest.update(zip(row["seeds"], row["last100_per_seed"]))
    missing = [s for s in seeds if s not in newest]
    if missing:
        sys.exit(f"error: {script} {extra!r} on {env_id} has no recorded score for seeds {missing}")
    return [newest[s] for s in seeds]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env-id", default="Hopper-v4")
    p.add_argument("--total-timesteps", type=int, default=1_000_000)
    p.add_argument("--seeds", type=int, nargs="+", default=[4, 5, 6])
    p.add_argument("--a", required=True, help="SCRIPT:EXTRA_FLAGS")
    p.add_argument("--b", required=True, help="SCRIPT:EXTRA_FLAGS")
    a = p.parse_args()
    sides = [(side.split(":", 1)[0], side.split(":", 1)[1]) for side in (a.a, a.b)]
    (sa, sb) = [np.array(scores(script, extra, a.env_id, a.total_timesteps, a.seeds)) for script, extra in sides]
    n = len(a.seeds)
    gap = sb.mean() - sa.mean()
    se = float(np.sqrt(sa.var(ddof=1) / n + sb.var(ddof=1) / n)) if n > 1 else float("nan")
    for (script, extra), s in zip(sides, (sa, sb)):
        print(f"{script} {extra or '(defaults)'}: {s.mean():.1f} +- {s.std():.1f} (per seed {s.tolist()})")
    print(f"gap b - a: {gap:.1f}, standard error {se:.1f}, ratio b / a {sb.mean() / sa.mean():.0%}: "
          + ("more than two standard errors" if abs(gap) > 2 * se else "within two standard errors: inconclusive"))


if __name__ == "__main__":
    main()
