"""Whole runs of each script: defaults, logging, determinism, the truncation bootstrap, bad input, learning."""
import dataclasses
import glob

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import tests.envs  # noqa: F401  registers the tiny envs in this process
from tests.conftest import SCRIPTS, load, run_script, scripts_with

NAMES = list(SCRIPTS)
TAGS = ["charts/episodic_return", "charts/episodic_length", "charts/SPS", "charts/learning_rate",
        "losses/policy_loss", "losses/value_loss", "losses/entropy", "losses/approx_kl",
        "losses/explained_variance"]
CLIP_TAGS = ["losses/clipfrac"]  # scripts that clip (define clipped_surrogate_loss)


def tiny_args(name, **overrides):
    mod = load(name)
    return dataclasses.replace(mod.Args(), **{**SCRIPTS[name]["tiny"], **overrides})


def scalars(run_dir):
    acc = EventAccumulator(run_dir, size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


@pytest.mark.parametrize("name", NAMES)
def test_defaults_are_the_paper_table(name):
    args, table = load(name).Args(), SCRIPTS[name]["table"]
    for field, value in table.items():
        if field == "minibatch_size":
            assert args.num_envs * args.num_steps // args.num_minibatches == value
        else:
            assert getattr(args, field) == value, field


@pytest.mark.parametrize("name", NAMES)
def test_policy_and_value_share_no_parameters(name):
    mod = load(name)
    agent = mod.Agent(4, __import__("gymnasium").spaces.Box(-1, 1, (2,)))
    actor, critic = set(map(id, agent.actor.parameters())), set(map(id, agent.critic.parameters()))
    assert actor and critic and not actor & critic


@pytest.mark.parametrize("name,env_id", [(n, e) for n in NAMES for e in SCRIPTS[n]["envs"]])
def test_short_run_logs_every_tag(name, env_id, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # long enough for episodes to end in CartPole and Hopper
    load(name).main(tiny_args(name, env_id=env_id, num_steps=128, total_timesteps=512, save_model=True))
    (run_dir,) = glob.glob("runs/*")
    logged = scalars(run_dir)
    clips = hasattr(load(name), "clipped_surrogate_loss")
    for tag in TAGS + (CLIP_TAGS if clips else []) + SCRIPTS[name].get("tags", []):
        assert logged.get(tag), f"{tag} not logged"
    assert glob.glob(f"{run_dir}/*.pt")


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_run(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runs = []
    for exp in ["a", "b"]:
        load(name).main(tiny_args(name, exp_name=exp, total_timesteps=256, eval_episodes=2))
        (run_dir,) = glob.glob(f"runs/*__{exp}__*")
        runs.append({k: v for k, v in scalars(run_dir).items() if k != "charts/SPS"})
    assert runs[0] == runs[1]
    assert len(runs[0]["losses/policy_loss"]) == 4


@pytest.mark.parametrize("name", NAMES)
def test_truncation_bootstraps_and_termination_does_not(name, tmp_path, monkeypatch):
    """On Constant-v0 (reward 1 per step, the observation never changes) episodes alternate: cut by the
    3-step time limit at steps 2, 7, 12, ...; terminated at steps 4, 9, 14, .... The reward seen by GAE
    at a truncated step is r + gamma V(final_obs), and V(final_obs) is the V of every step. r is 1, or for a
    script that scales rewards, one scaled value shared by the whole rollout."""
    monkeypatch.chdir(tmp_path)
    mod, seen = load(name), []
    real_gae = mod.compute_gae

    def spy(rewards, values, dones, last_value, gamma, gae_lambda):
        seen.append((rewards.clone(), values.clone(), dones.clone(), gamma))
        return real_gae(rewards, values, dones, last_value, gamma, gae_lambda)

    monkeypatch.setattr(mod, "compute_gae", spy)
    mod.main(tiny_args(name, env_id=SCRIPTS[name]["constant_env"], num_envs=1, num_steps=15, num_minibatches=1,
                       total_timesteps=15, gamma=0.9))
    rewards, values, dones, gamma = seen[0]
    r = rewards[0, 0].item()
    assert r == 1.0 if not hasattr(mod, "RewardScaler") else r > 0
    v = values[0, 0].item()
    assert abs(v) > 1e-3 and torch.allclose(values, torch.full_like(values, v), atol=1e-6)
    truncated, terminated = [2, 7, 12], [4, 9, 14]
    assert torch.nonzero(dones[:, 0]).flatten().tolist() == sorted(truncated + terminated)
    for t in range(15):
        expected = r + gamma * v if t in truncated else r
        assert rewards[t, 0].item() == pytest.approx(expected, abs=1e-6), t


@pytest.mark.parametrize("name", scripts_with("clipped_surrogate_loss"))
def test_ratio_is_one_on_the_first_minibatch(name, tmp_path, monkeypatch):
    """theta = theta_old before the first step, so r_t(theta_old) = 1 exactly (eq. 6)."""
    monkeypatch.chdir(tmp_path)
    mod, calls = load(name), []
    real_loss = mod.clipped_surrogate_loss

    def spy(new_logprob, old_logprob, advantages, clip_coef):
        calls.append(torch.exp(new_logprob - old_logprob).detach().clone())
        return real_loss(new_logprob, old_logprob, advantages, clip_coef)

    monkeypatch.setattr(mod, "clipped_surrogate_loss", spy)
    for env_id in SCRIPTS[name]["envs"]:
        calls.clear()
        mod.main(tiny_args(name, env_id=env_id, num_steps=64, total_timesteps=128))
        assert torch.equal(calls[0], torch.ones_like(calls[0])), env_id
        assert not torch.equal(calls[1], torch.ones_like(calls[1]))  # and the update did move the policy


@pytest.mark.parametrize("name", scripts_with("gaussian_logprob_entropy"))
def test_env_gets_the_clipped_action_and_the_batch_keeps_the_sample(name, tmp_path, monkeypatch):
    """ConstantBox-v0 accepts actions in [-0.1, 0.1] and the first Gaussian has std 1: nearly every sample
    lies outside, the env must see it clipped, and the log-prob must score the unclipped sample."""
    monkeypatch.chdir(tmp_path)
    mod, scored = load(name), []
    real = mod.gaussian_logprob_entropy

    def spy(mean, log_std, action):
        scored.append(action.detach().clone())
        return real(mean, log_std, action)

    monkeypatch.setattr(mod, "gaussian_logprob_entropy", spy)
    tests.envs.ConstantBoxEnv.received.clear()
    mod.main(tiny_args(name, env_id="ConstantBox-v0", num_envs=1, num_steps=64, num_minibatches=1,
                       total_timesteps=64, update_epochs=1))
    sampled = scored[0].numpy()[:, 0]  # pi_old's log-probs of the whole batch, in step order
    received = np.array(tests.envs.ConstantBoxEnv.received)[:64, 0]
    assert len(sampled) == 64 and np.mean(np.abs(sampled) > 0.1) > 0.8
    np.testing.assert_array_equal(received, np.clip(sampled, -0.1, 0.1))


BAD_INPUT = [
    (["--env-id", "NoSuchEnv-v0"], "cannot make env 'NoSuchEnv-v0'"),
    (["--env-id", "tests.envs:MultiDiscrete-v0"], "MultiDiscrete action space"),
    (["--num-minibatches", "7"], "does not divide"),
    (["--total-timesteps", "0"], "--total-timesteps must be positive"),
    (["--learning-rate", "-1e-3"], "--learning-rate must be positive"),
    (["--num-envs", "0"], "--num-envs must be positive"),
    (["--update-epochs", "0"], "--update-epochs must be positive"),
    (["--gamma", "1.5"], "--gamma must lie in [0, 1]"),
]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("flags,message", BAD_INPUT, ids=[m for _, m in BAD_INPUT])
def test_bad_input_is_refused_in_one_line(name, flags, message, tmp_path):
    result = run_script(name, *flags, cwd=tmp_path)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    assert len([line for line in result.stderr.splitlines() if line.startswith("error:")]) == 1
    assert not glob.glob(f"{tmp_path}/runs/*")  # refused before any training


@pytest.mark.parametrize("name", ["ppo_clip"])
def test_cartpole_learns(name, tmp_path, monkeypatch):
    """A quality check, not a timing test: seeded, so it either always passes or always fails."""
    monkeypatch.chdir(tmp_path)
    mod = load(name)
    summary = mod.main(dataclasses.replace(mod.Args(), env_id="CartPole-v1", total_timesteps=100_352,
                                           eval_episodes=0, seed=1))
    assert np.mean(summary["episode_returns"][-10:]) >= 400


def test_benchmark_file_names_hold_no_folder_separator():
    """ALE ids hold a '/': benchmarks/learning.py's curve and log names must not turn it into a folder."""
    from benchmarks.common import curve_name, file_safe
    assert "/" not in curve_name("ppo_atari", "ALE/Pong-v5", "--threads 1", 1)
    assert file_safe("ALE/Pong-v5") == "ALE-Pong-v5" and file_safe("Hopper-v4") == "Hopper-v4"



def test_gradient_clip_scales_the_joint_norm(tmp_path, monkeypatch):
    """The gradients Adam steps with, against the unclipped ones scaled by hand: by max / (joint norm) over
    both networks."""
    monkeypatch.chdir(tmp_path)
    mod, max_norm, raw, updates = load("ppo_clip"), 0.5, {}, []
    clip, step = torch.nn.utils.clip_grad_norm_, torch.optim.Adam.step

    def spy_clip(params, *a, **k):
        params = list(params)
        raw.update({id(p): p.grad.clone() for p in params})
        return clip(params, *a, **k)

    def spy_step(self, *a, **k):
        updates.append((dict(raw), {id(p): p.grad.clone() for g in self.param_groups for p in g["params"]}))
        raw.clear()
        return step(self, *a, **k)
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy_clip)
    monkeypatch.setattr(torch.optim.Adam, "step", spy_step)
    # Pendulum's returns are in the hundreds, so the value gradient's norm is far above max.
    agent = mod.main(tiny_args("ppo_clip", env_id="Pendulum-v1", max_grad_norm=max_norm))["agent"]
    critic = {id(p) for p in agent.critic.parameters()}
    networks = [[id(p) for p in agent.parameters() if id(p) not in critic], list(critic)]
    norm = lambda grads, ids: torch.cat([grads[i].flatten() for i in ids]).norm()  # noqa: E731
    assert len(updates) == 2 * 2 * 2  # iterations x epochs x minibatches
    for before, after in updates:
        joint = norm(before, networks[0] + networks[1])
        for ids in networks:
            scale = min(1.0, max_norm / joint)
            for i in ids:
                torch.testing.assert_close(after[i], before[i] * scale, rtol=1e-5, atol=1e-9)
    # The case that tells a joint clip from one per network happened: a joint norm over max, a policy norm under it.
    assert any(norm(b, networks[0]) < max_norm < norm(b, networks[0] + networks[1]) for b, _ in updates)


def test_grad_share_clips_each_network_by_its_own_norm():
    """benchmarks/studies/grad_share.py's --clip-each-network: each network's gradient scaled by max / (own norm)."""
    from benchmarks.studies.grad_share import clip_each_network
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.zeros(n)) for n in (3, 4, 5)]
    for p, scale in zip(params, (0.1, 5.0, 7.0)):
        p.grad = torch.randn(p.shape) * scale
    before = [p.grad.clone() for p in params]
    critic = {id(params[1]), id(params[2])}
    returned = clip_each_network(params, 1.0, critic, torch.nn.utils.clip_grad_norm_)
    assert returned.item() == pytest.approx(torch.cat([g for g in before]).norm().item(), rel=1e-6)
    policy_norm, critic_norm = before[0].norm(), torch.cat(before[1:]).norm()
    torch.testing.assert_close(params[0].grad, before[0] * min(1.0, 1 / policy_norm.item()))
    for p, g in zip(params[1:], before[1:]):
        torch.testing.assert_close(p.grad, g / critic_norm, rtol=1e-5, atol=1e-7)
    assert policy_norm < 1 < critic_norm  # one network clipped, the other left alone
