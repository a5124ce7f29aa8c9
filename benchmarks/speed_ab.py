"""Did a change slow a script down? The same whole training run in two checkouts, alternating, in the same minutes.

    git worktree add /tmp/before <commit>
    python benchmarks/speed_ab.py --before /tmp/before --script ppo_continuous --env-id Hopper-v4

Each round trains the script once from each checkout (before, then after; the order flips every round, so that
neither side always runs first), in a fresh process on one torch thread, and reads the run's SPS from its last
progress line (steps over the training loop's wall time). Nothing else should run meanwhile. The rows go to
results/speed_ab.jsonl with both checkouts' commits: absolute SPS drifts on these machines from day to day, so
the figure to read is the ratio of the two sides' medians.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from benchmarks.common import record  # noqa: E402


def sps_of_a_run(checkout: str, script: str, env_id: str, steps: int, seed: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, os.path.join(checkout, f"{script}.py"), "--env-id", env_id, "--total-timesteps",
               str(steps), "--seed", str(seed), "--eval-episodes", "0", "--threads", "1", "--checkpoint-every", "0",
               "--run-dir", os.path.join(tmp, "run")]
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp)
    progress = re.findall(r"^step\s+(\d+)\s+SPS\s+(\d+)", done.stdout, flags=re.M)
    if done.returncode or not progress or int(progress[-1][0]) != steps:
        sys.exit(f"error: {' '.join(cmd)} failed: {(done.stderr.strip().splitlines() or ['no output'])[-1]}")
    return float(progress[-1][1])


def commit_of(checkout: str) -> str:
    return subprocess.run(["git", "-C", checkout, "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip() or "unknown"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", required=True, help="a checkout of the code before the change")
    p.add_argument("--after", default=ROOT, help="the checkout after it (default: this one)")
    p.add_argument("--script", default="ppo_continuous")
    p.add_argument("--env-id", default="Hopper-v4")
    p.add_argument("--total-timesteps", type=int, default=102_400, help="50 iterations at Table 3's T")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    sps = {"before": [], "after": []}
    for r in range(a.rounds):
        for side in (["before", "after"] if r % 2 == 0 else ["after", "before"]):
            checkout = a.before if side == "before" else a.after
            sps[side].append(sps_of_a_run(checkout, a.script, a.env_id, a.total_timesteps, a.seed))
            print(f"round {r + 1}, {side}: {sps[side][-1]:.0f} SPS", flush=True)
    ratio = statistics.median(sps["after"]) / statistics.median(sps["before"])
    record("speed_ab.jsonl", {"script": a.script, "env_id": a.env_id, "total_timesteps": a.total_timesteps,
                              "seed": a.seed, "threads": 1, "before_commit": commit_of(a.before),
                              "after_commit": commit_of(a.after), "sps_before": sps["before"],
                              "sps_after": sps["after"], "median_ratio_after_over_before": round(ratio, 3)})
    print(f"{a.script} on {a.env_id}, {a.total_timesteps} steps: before {sps['before']}, after {sps['after']}; "
          f"median after / before = {ratio:.3f}")


if __name__ == "__main__":
    main()
