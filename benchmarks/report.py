"""Print the markdown tables of benchmarks/README.md's "Results in full" from benchmarks/results/*.jsonl (the
newest entry per script and env), so that every figure there traces to the command that measured it.

    python benchmarks/report.py
"""
import argparse
import json
import os

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def newest(path: str, key) -> list:
    if not os.path.exists(path):
        return []
    rows = {}
    for line in open(path):
        row = json.loads(line)
        rows[key(row)] = row  # later lines replace earlier ones
    return list(rows.values())


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()  # no options: --help prints no tables
    learning = newest(os.path.join(RESULTS, "learning.jsonl"),
                      lambda r: (r["script"], r["env_id"], r["total_timesteps"], r["extra_flags"]))
    print("| script | flags | env | steps | seeds | mean return of the last 100 training episodes, mean +- std over "
          "seeds | per seed | deterministic policy, per seed | command |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in learning:
        print(f"| {r['script']} | {r['extra_flags'] or 'defaults'} | {r['env_id']} | {r['total_timesteps']:,} "
              f"| {', '.join(map(str, r['seeds']))} | {r['mean']} +- {r['std']} "
              f"| {', '.join(map(str, r['last100_per_seed']))} | {', '.join(map(str, r.get('eval_mean_per_seed', [])))} "
              f"| `{r['command']}` |")
    speed = newest(os.path.join(RESULTS, "speed.jsonl"), lambda r: (r["script"], r["env_id"], r.get("extra_flags", "")))
    print()
    print("| script | env | flags | N x T, minibatches x epochs | training SPS | raw random-action steps/s | ratio | command |")
    print("|---|---|---|---|---|---|---|---|")
    for r in speed:
        raw = (r["raw_sps_before"] + r["raw_sps_after"]) / 2
        print(f"| {r['script']} | {r['env_id']} | {r.get('extra_flags') or 'defaults'} | {r['num_envs']} x {r['num_steps']}, {r['num_minibatches']} x "
              f"{r['update_epochs']} | {r['train_sps']} | {raw:.0f} | {r['ratio']} | `{r['command']}` |")
    rows = learning + speed
    if rows:
        r = rows[-1]
        print(f"\nMachine: {r['machine']}; Python {r['python']}, torch {r['torch']}, gymnasium {r['gymnasium']}, "
              f"mujoco {r['mujoco']}, numpy {r['numpy']}; dates {', '.join(sorted({x['date'][:10] for x in rows}))}.")


if __name__ == "__main__":
    main()
