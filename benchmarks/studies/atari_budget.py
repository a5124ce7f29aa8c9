"""Where ppo_atari.py's time goes: each part of one iteration timed on its own, and the SPS they allow.

    python benchmarks/studies/atari_budget.py         # Table 5: N 8, T 128, K 3, 4 minibatches of 256

One iteration is N*T env steps, T acting passes over N observations and K * minibatches updates. Each
part is timed here in rounds that alternate (the machine's speed drifts) and the medians are added up, for
three networks: float32, --bf16, and fp32_plain_conv1 (float32 with the first layer a plain convolution, to
show what the script's space-to-depth form saves). `projected_sps` is what the parts allow together,
`update_cap_sps` what the update alone allows with free envs and acting. The emulator row is ALE's own frame
rate (4 frames an env step), which no wrapper can go below. Nothing else should run meanwhile. Appends to
benchmarks/results/atari_budget.jsonl.
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
import ppo_atari  # noqa: E402
from benchmarks.common import record  # noqa: E402


class PlainConv1(ppo_atari.Agent):
    """The same network with conv1 run as the plain 8x8, stride 4 convolution, to time what the script's
    space-to-depth form of it saves."""

    def forward(self, obs):
        hidden = self.trunk(self.conv1(obs.float() / 255.0))
        return self.actor(hidden), self.critic(hidden).squeeze(-1)


def timed(fn, repeats: int) -> float:
    """Seconds per call of fn, over `repeats` calls."""
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env-id", default="BreakoutNoFrameskip-v4")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    args = ppo_atari.Args(env_id=a.env_id, threads=a.threads)
    n, t, k, mbs = args.num_envs, args.num_steps, args.update_epochs, args.num_minibatches
    minibatch = n * t // mbs
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)

    envs = ppo_atari.make_envs(a.env_id, n)
    envs.reset(seed=0)
    envs.action_space.seed(0)
    ale = envs.envs[0].unwrapped.ale  # one game's emulator, stepped without any wrapper
    obs = torch.from_numpy(np.stack([envs.step(envs.action_space.sample())[0] for _ in range(minibatch // n)]))
    obs = obs.reshape(minibatch, *obs.shape[2:])  # (M, 4, 84, 84) real frames
    actions = torch.randint(0, envs.single_action_space.n, (minibatch,))
    old_logprobs, advantages, returns = torch.full((minibatch,), -1.0), torch.randn(minibatch), torch.randn(minibatch)

    fire = ale.getMinimalActionSet()[1]

    def emulate():
        ale.act(fire)
        if ale.game_over():
            ale.reset_game()

    def update(agent, optimizer):
        logits, value = agent(obs)
        logprob, entropy = ppo_atari.categorical_logprob_entropy(logits, actions)
        loss = ppo_atari.ppo_loss(ppo_atari.clipped_surrogate_loss(logprob, old_logprobs, advantages, 0.1),
                                  ppo_atari.value_loss(value, returns), entropy.mean(), 1.0, 0.01)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(agent.parameters(), 0.5, foreach=True)
        optimizer.step()

    parts = {"emulator_frame": [], "env_step": []}
    agents = {}
    for name, agent in [("fp32", ppo_atari.Agent(envs.single_action_space.n)),
                        ("bf16", ppo_atari.Agent(envs.single_action_space.n, bf16=True)),
                        ("fp32_plain_conv1", PlainConv1(envs.single_action_space.n))]:
        agents[name] = agent, torch.optim.Adam(agent.parameters(), lr=1e-4, eps=1e-5, fused=True)
        parts[f"act_{name}"], parts[f"update_{name}"] = [], []
    for r in range(a.rounds):
        parts["emulator_frame"].append(timed(emulate, 4000))
        parts["env_step"].append(timed(lambda: envs.step(envs.action_space.sample()), 100) / n)
        names = list(agents)[r % len(agents):] + list(agents)[:r % len(agents)]  # each network goes first in turn
        for name in names:
            agent, optimizer = agents[name]
            with torch.inference_mode():
                parts[f"act_{name}"].append(timed(lambda: agent.act(obs[:n]), 50))
            parts[f"update_{name}"].append(timed(lambda: update(agent, optimizer), 3))
    envs.close()

    ms = {part: round(statistics.median(v) * 1e3, 4) for part, v in parts.items()}
    print(f"medians over {a.rounds} rounds, ms: " + ", ".join(f"{part} {v}" for part, v in ms.items()))
    result = {"env_id": a.env_id, "threads": a.threads, "rounds": a.rounds, "ms": ms}
    for name in agents:
        env_s, act_s, update_s = n * t * ms["env_step"], t * ms[f"act_{name}"], k * mbs * ms[f"update_{name}"]
        result[f"projected_sps_{name}"] = round(n * t / (env_s + act_s + update_s) * 1e3)
        result[f"update_cap_sps_{name}"] = round(n * t / update_s * 1e3)
        print(f"{name}: one iteration = envs {env_s / 1e3:.2f} s + acting {act_s / 1e3:.2f} s + update {update_s / 1e3:.2f} s"
              f" -> {result[f'projected_sps_{name}']} SPS (the update alone caps it at {result[f'update_cap_sps_{name}']})")
    emulator_s = n * t * 4 * ms["emulator_frame"]
    print(f"the emulator alone: {emulator_s / 1e3:.2f} s of the envs' {n * t * ms['env_step'] / 1e3:.2f} s")
    result["date"] = time.strftime("%Y-%m-%d %H:%M")
    record("atari_budget.jsonl", result)


if __name__ == "__main__":
    main()
