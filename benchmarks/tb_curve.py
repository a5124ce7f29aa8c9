"""Save another program's learning curve, read from its TensorBoard run directory, as a curve file of
benchmarks/results/curves/ that benchmarks/plot.py can draw beside ours (CleanRL logs the same tag).

    python benchmarks/tb_curve.py /tmp/cleanrl_out/runs/<run> --script cleanrl_ppo_atari \
        --env-id BreakoutNoFrameskip-v4 --seed 1
    python benchmarks/plot.py --runs "ppo_atari:BreakoutNoFrameskip-v4:--threads 1" \
        cleanrl_ppo_atari:BreakoutNoFrameskip-v4 --out benchmarks/results/ppo_atari.png
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import logged, save_curve  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir")
    p.add_argument("--script", required=True, help="the name plot.py will know the curve by")
    p.add_argument("--env-id", required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--tag", default="charts/episodic_return")
    a = p.parse_args()
    curve = logged(a.run_dir, a.tag)
    out = save_curve(curve, a.script, a.env_id, "", a.seed)
    last = curve[-100:, 1].mean()
    print(f"wrote {out}: {len(curve)} episodes to step {int(curve[-1, 0])}, mean of the last 100 {last:.1f}")


if __name__ == "__main__":
    main()
