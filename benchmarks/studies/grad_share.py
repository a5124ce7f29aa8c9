"""How much of ppo_clip.py's clipped gradient is the policy's: one training run, with every minibatch's
gradient measured just before the clip.

    python benchmarks/studies/grad_share.py --env-id Hopper-v4 --seed 4 --total-timesteps 1000000
    python benchmarks/studies/grad_share.py --env-id Hopper-v4 --seed 4 --total-timesteps 1000000 --clip-each-network

Per tenth of training, the medians over its minibatches of: the value network's gradient norm over the
policy's (the log std counts as the policy's), the policy's share of the joint norm, how often the clip
binds, and the root mean square of one policy gradient element after the clip, which Adam divides by
sqrt(v) + eps with eps = 1e-5. The rows go to benchmarks/results/grad_share.jsonl.

ppo_clip.py clips one norm over both networks. --clip-each-network clips the policy's gradient and the value
network's each to --max-grad-norm instead, done here in the clip this file puts in place of torch's, so the
script needs no flag for it.
"""
import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
import ppo_clip  # noqa: E402
from benchmarks.common import file_safe, record  # noqa: E402


def clip_each_network(params: list, max_norm: float, critic: set, clip, *rest, **kw) -> torch.Tensor:
    """Clip the policy's gradient (every parameter whose id is not in `critic`, the log std included) and the
    value network's each to max_norm on its own, with `clip` (torch's clip_grad_norm_). Returns what the joint
    clip returns, and ppo_clip.py logs: the norm over both networks before clipping."""
    networks = [[p for p in params if id(p) not in critic], [p for p in params if id(p) in critic]]
    return torch.stack([clip(net, max_norm, *rest, **kw) for net in networks]).norm()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env-id", default="Hopper-v4")
    p.add_argument("--seed", type=int, default=4)
    p.add_argument("--total-timesteps", type=int, default=1_000_000)
    p.add_argument("--clip-each-network", action="store_true")
    a = p.parse_args()

    critic, pending, rows = set(), [0.0, 0.0, 0], []  # pending: the policy's and value's squared norms, size
    agent_init, clip, step = ppo_clip.Agent.__init__, torch.nn.utils.clip_grad_norm_, torch.optim.Adam.step

    def agent_noting_its_critic(self, *rest, **kw):
        agent_init(self, *rest, **kw)
        critic.update(id(p) for p in self.critic.parameters())

    def measuring_clip(params, max_norm, *rest, **kw):  # ppo_clip calls it once per minibatch, on every parameter
        params = list(params)
        for p in params:
            pending[id(p) in critic] += p.grad.pow(2).sum().item()
            pending[2] += 0 if id(p) in critic else p.numel()
        if a.clip_each_network:
            return clip_each_network(params, max_norm, critic, clip, *rest, **kw)
        return clip(params, max_norm, *rest, **kw)

    def stepping(self, *rest, **kw):
        rows.append((np.sqrt(pending[0]), np.sqrt(pending[1]), pending[2]))
        pending[:] = [0.0, 0.0, 0]
        return step(self, *rest, **kw)

    ppo_clip.Agent.__init__, torch.nn.utils.clip_grad_norm_, torch.optim.Adam.step = (
        agent_noting_its_critic, measuring_clip, stepping)
    args = ppo_clip.Args(env_id=a.env_id, seed=a.seed, total_timesteps=a.total_timesteps,
                         run_dir=os.path.join("benchmarks", "out", "grad_share",
                                              f"{file_safe(a.env_id)}_{a.seed}_{int(a.clip_each_network)}_{int(time.time())}"))
    summary = ppo_clip.main(args)

    policy, value, n = (np.array(x, dtype=float) for x in zip(*rows))
    joint = np.hypot(policy, value)
    max_norm = args.max_grad_norm
    policy_after = policy * (np.minimum(1, max_norm / policy) if a.clip_each_network
                             else np.minimum(1, max_norm / joint))
    tenths = []
    for part in np.array_split(np.arange(len(rows)), 10):
        tenths.append({"value_over_policy": round(float(np.median(value[part] / policy[part])), 1),
                       "policy_share": round(float(np.median(policy[part] / joint[part])), 4),
                       "clip_binds": round(float(np.mean(joint[part] > max_norm)), 3),
                       "policy_element_rms_after_clip": float(f"{np.median(policy_after[part] / np.sqrt(n[part])):.3g}")})
    row = {"script": "ppo_clip", "env_id": a.env_id, "seed": a.seed, "total_timesteps": a.total_timesteps,
           "clip_each_network": a.clip_each_network, "max_grad_norm": max_norm, "updates": len(rows),
           "per_tenth": tenths, "last100": round(float(np.mean(summary["episode_returns"][-100:])), 1)}
    record("grad_share.jsonl", row)
    for i, t in enumerate(tenths):
        print(f"tenth {i + 1}: value/policy norm {t['value_over_policy']}, policy share {t['policy_share']}, "
              f"clip binds {t['clip_binds']:.0%}, policy element rms after clip {t['policy_element_rms_after_clip']}")


if __name__ == "__main__":
    main()
