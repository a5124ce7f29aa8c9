"""The paper's Figures 1 and 2, computed with the scripts' own functions.

    pip install -r benchmarks/requirements.txt
    python benchmarks/figures.py              # both figures into benchmarks/results/figure{1,2}.png
    python benchmarks/figures.py --short      # CI: a 64-step Hopper batch and the checks, drawn to benchmarks/out/

Figure 1: one term of L^CLIP (eq. 7) as a function of the ratio r, for A > 0 and A < 0, from
ppo_clip.clipped_surrogate_loss on single samples; the clip points 1 - eps and 1 + eps are marked.

Figure 2: along theta(t) = theta_old + t (theta - theta_old), L^CPI = E[r A], E[clip(r) A], L^CLIP and the mean
KL[pi_old, pi_theta(t)] over the batch of ppo_clip.py's first update on Hopper-v4 at Table 3's settings (seed 1).
theta_old, the batch and theta come from one real call of ppo_clip.main() for one iteration: the batch and
theta_old are read from main()'s own variables as the first rollout ends (before any update), and theta is the
agent main() returns. The checks below make sure these are what they say: theta_old equals a freshly seeded
Agent (main() seeds torch before it builds one), and the batch's stored log-probs equal theta_old's
log-probs of the stored actions. The KL is ppo_kl_adaptive.gaussian_kl, the exact KL of two diagonal Gaussians.
Advantages are normalised over the whole batch, as the update normalises each minibatch.
"""
import argparse
import dataclasses
import math
import os
import sys

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import ppo_clip  # noqa: E402
import ppo_kl_adaptive  # noqa: E402
from benchmarks.common import record  # noqa: E402

RESULTS = os.path.join(ROOT, "benchmarks", "results")


def figure1(clip_coef: float = 0.2) -> tuple[np.ndarray, dict]:
    """One term of L^CLIP against r, for A = +1 and A = -1."""
    ratios = np.linspace(0.0, 2.0, 201)
    terms = {}
    for adv in (1.0, -1.0):
        # clipped_surrogate_loss takes log-probs and returns -L; one sample with log pi - log pi_old = log r
        terms[adv] = np.array([-ppo_clip.clipped_surrogate_loss(torch.tensor([math.log(max(r, 1e-12))]),
                                                                 torch.zeros(1), torch.tensor([adv]), clip_coef).item()
                               for r in ratios])
    return ratios, terms


def first_update(num_steps: int, seed: int = 1) -> dict:
    """theta_old, the first rollout's batch and theta after the first update, from ppo_clip.main() itself."""
    seen = {}
    real_gae = ppo_clip.compute_gae

    def spy(*a, **k):
        frame = sys._getframe(1).f_locals  # main()'s variables, after the rollout and before any update
        seen.update(obs=frame["b_obs"].clone(), actions=frame["b_actions"].clone(),
                    logprobs=frame["b_logprobs"].clone(),
                    theta_old={k: v.clone() for k, v in frame["agent"].state_dict().items()})
        advantages, returns = real_gae(*a, **k)
        seen["advantages"] = advantages.reshape(-1).clone()
        return advantages, returns

    ppo_clip.compute_gae = spy
    try:
        args = dataclasses.replace(ppo_clip.Args(), env_id="Hopper-v4", seed=seed, num_steps=num_steps,
                                   num_minibatches=num_steps // 64, total_timesteps=num_steps, eval_episodes=0,
                                   checkpoint_every=0, run_dir=os.path.join(ROOT, "benchmarks", "out", "figure2"))
        os.makedirs(args.run_dir, exist_ok=True)
        for leftover in os.listdir(args.run_dir):
            os.remove(os.path.join(args.run_dir, leftover))
        summary = ppo_clip.main(args)
    finally:
        ppo_clip.compute_gae = real_gae
    seen["theta"] = {k: v.clone() for k, v in summary["agent"].state_dict().items()}
    seen["agent"], seen["clip_coef"] = summary["agent"], args.clip_coef
    # The checks: theta_old is the seeded initial Agent, and the batch's log-probs are theta_old's.
    torch.manual_seed(seed)
    fresh = ppo_clip.Agent(seen["obs"].shape[1], summary["agent"].action_space, args.init_log_std)
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in seen["theta_old"].items()), "theta_old"
    with torch.no_grad():
        assert torch.equal(fresh.logprob_entropy(seen["obs"], seen["actions"])[0], seen["logprobs"]), "batch"
    return seen


def figure2(batch: dict, ts: np.ndarray) -> dict:
    """The four curves of Figure 2 at each interpolation factor t."""
    agent, old, new = batch["agent"], batch["theta_old"], batch["theta"]
    adv = batch["advantages"]
    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    eps = batch["clip_coef"]
    with torch.no_grad():
        agent.load_state_dict(old)
        old_mean, old_log_std = agent.actor(batch["obs"]), agent.log_std.clone()
        curves = {"L^CPI": [], "E[clip(r) A]": [], "L^CLIP": [], "KL": []}
        for t in ts:
            agent.load_state_dict({k: old[k] + t * (new[k] - old[k]) for k in old})
            logprob = agent.logprob_entropy(batch["obs"], batch["actions"])[0]
            ratio = torch.exp(logprob - batch["logprobs"])
            curves["L^CPI"].append((ratio * adv).mean().item())
            curves["E[clip(r) A]"].append((torch.clamp(ratio, 1 - eps, 1 + eps) * adv).mean().item())
            curves["L^CLIP"].append(-ppo_clip.clipped_surrogate_loss(logprob, batch["logprobs"], adv, eps).item())
            kl = ppo_kl_adaptive.gaussian_kl(old_mean, old_log_std, agent.actor(batch["obs"]), agent.log_std)
            curves["KL"].append(kl.mean().item())
        agent.load_state_dict(new)
    return {k: np.array(v) for k, v in curves.items()}


def draw(ratios, terms, ts, curves, peak, out: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    for ax, adv in zip(axes, (1.0, -1.0)):
        ax.plot(ratios, terms[adv], color="C0")
        ax.axvline(1 - 0.2, color="grey", ls=":")
        ax.axvline(1 + 0.2, color="grey", ls=":")
        ax.plot([1], [adv], "o", color="C3")
        ax.set_xlabel("r")
        ax.set_title(f"A {'>' if adv > 0 else '<'} 0 (clip points 1 -+ eps, eps = 0.2)")
    axes[0].set_ylabel("L^CLIP, one term")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "figure1.png"), dpi=120)
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, values in curves.items():
        ax.plot(ts, values, label=name if name != "KL" else "E[KL[pi_old, pi]]")
    ax.axvline(ts[peak], color="grey", ls=":")
    ax.set_xlabel("linear interpolation factor t")
    ax.legend()
    ax.set_title("Hopper-v4, ppo_clip.py's first update (seed 1)")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "figure2.png"), dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--short", action="store_true", help="a 64-step batch; draw only if matplotlib is there")
    a = p.parse_args()
    torch.set_num_threads(1)
    ratios, terms = figure1()
    batch = first_update(64 if a.short else ppo_clip.Args().num_steps)
    ts = np.linspace(0.0, 2.0, 41)
    curves = figure2(batch, ts)
    peak = int(np.argmax(curves["L^CLIP"]))
    print(f"Figure 2: L^CLIP peaks at t = {ts[peak]:.2f}, where the mean KL[pi_old, pi] is {curves['KL'][peak]:.4f};"
          f" at t = 1 (the updated policy) the KL is {curves['KL'][np.argmin(abs(ts - 1))]:.4f}")
    for t, row in zip(ts[::5], zip(*(v[::5] for v in curves.values()))):
        print(f"t {t:.2f}  " + "  ".join(f"{k} {v:+.4f}" for k, v in zip(curves, row)))
    if not a.short:
        at_one = int(np.argmin(abs(ts - 1)))
        record("figures.jsonl", {"figure": 2, "env_id": "Hopper-v4", "seed": 1, "num_steps": ppo_clip.Args().num_steps,
                                 "peak_t": float(ts[peak]), "kl_at_peak": round(float(curves["KL"][peak]), 5),
                                 "l_clip_at_peak": round(float(curves["L^CLIP"][peak]), 5),
                                 "kl_at_t1": round(float(curves["KL"][at_one]), 5),
                                 "l_cpi_at_t1": round(float(curves["L^CPI"][at_one]), 5)})
    out = os.path.join(ROOT, "benchmarks", "out") if a.short else RESULTS  # the short mode keeps the real ones
    try:
        draw(ratios, terms, ts, curves, peak, out)
        print(f"wrote {out}/figure1.png and figure2.png")
    except ImportError:
        if not a.short:
            raise
        print("matplotlib is not installed: no figures drawn (pip install -r benchmarks/requirements.txt)")


if __name__ == "__main__":
    main()
