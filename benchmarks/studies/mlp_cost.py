"""What a 64-unit MLP policy costs per env step on this CPU: why the three MLP scripts take no --cuda.

    python benchmarks/studies/mlp_cost.py         # ppo_clip.py's Agent on Hopper-v4's sizes, Table 3 settings

Times, with one torch thread and nothing else running: acting on one observation as the rollout does
(`Agent.act`, numpy), the same forward pass in torch, and one minibatch update of Table 3 (64 samples:
forward, backward, gradient clip, fused Adam step). From them, the network's share of one env step at
Table 3's settings: one act, plus 10 epochs x 32 minibatches of updates spread over 2048 steps. Each figure is
the median of `--repeats` rounds. Rows go to benchmarks/results/mlp_cost.jsonl.
"""
import argparse
import os
import sys
import time

import gymnasium as gym
import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
import ppo_clip  # noqa: E402
from benchmarks.common import record  # noqa: E402


def median_seconds(fn, calls: int, repeats: int) -> float:
    """Median over `repeats` rounds of the mean time of one call in a round of `calls`."""
    rounds = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        rounds.append((time.perf_counter() - start) / calls)
    return float(np.median(rounds))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--obs-dim", type=int, default=11)  # Hopper-v4
    p.add_argument("--act-dim", type=int, default=3)
    p.add_argument("--repeats", type=int, default=7)
    a = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    args = ppo_clip.Args()
    space = gym.spaces.Box(-1.0, 1.0, (a.act_dim,), np.float32)
    agent = ppo_clip.Agent(a.obs_dim, space)
    optimizer = torch.optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5, fused=True)
    rng = np.random.default_rng(0)
    obs = rng.standard_normal((1, a.obs_dim)).astype(np.float32)
    obs_t = torch.from_numpy(obs)
    batch = args.num_steps // args.num_minibatches
    mb_obs, mb_act = torch.randn(batch, a.obs_dim), torch.randn(batch, a.act_dim)
    mb_adv, mb_ret, mb_old = torch.randn(batch), torch.randn(batch), torch.randn(batch) - 3

    def act_numpy():
        agent.act(obs, rng)

    def act_torch():
        with torch.inference_mode():
            agent.actor(obs_t), agent.critic(obs_t)

    def update():
        new_logprob, entropy = agent.logprob_entropy(mb_obs, mb_act)
        loss = ppo_clip.ppo_loss(ppo_clip.clipped_surrogate_loss(new_logprob, mb_old, mb_adv, args.clip_coef),
                                 ppo_clip.value_loss(agent.value(mb_obs), mb_ret), entropy.mean(), args.vf_coef,
                                 args.ent_coef)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm, foreach=True)
        optimizer.step()

    act_np, act_pt, upd = (median_seconds(act_numpy, 2000, a.repeats), median_seconds(act_torch, 2000, a.repeats),
                           median_seconds(update, 200, a.repeats))
    updates_per_step = args.update_epochs * args.num_minibatches / args.num_steps
    per_step = act_np + upd * updates_per_step
    row = {"obs_dim": a.obs_dim, "act_dim": a.act_dim, "act_numpy_us": round(act_np * 1e6, 1),
           "act_torch_us": round(act_pt * 1e6, 1), "update_ms": round(upd * 1e3, 3),
           "network_us_per_env_step": round(per_step * 1e6, 1), "repeats": a.repeats,
           "date": time.strftime("%Y-%m-%d")}
    print(f"act (numpy) {row['act_numpy_us']} us, the same in torch {row['act_torch_us']} us, one minibatch "
          f"update {row['update_ms']} ms: the network costs {row['network_us_per_env_step']} us per env step")
    record("mlp_cost.jsonl", row)


if __name__ == "__main__":
    main()
