"""ppo_continuous.py's own parts: reward scaling, observation clipping, value clipping, checkpoints."""
import dataclasses
import glob
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from tests.conftest import ROOT, SCRIPTS, load, run_script

mod = load("ppo_continuous")


def test_observation_statistics_pool_all_envs():
    """One set of statistics for N envs: fed (N, obs_dim) per step, they equal numpy's over every row."""
    g = np.random.default_rng(0)
    rms = mod.RunningMeanStd(2)
    steps = [g.normal(loc=[3, -1], scale=[2, 0.1], size=(4, 2)) for _ in range(50)]  # 4 envs, 50 steps
    for batch in steps:
        rms.update(batch)
    data = np.concatenate(steps)
    np.testing.assert_allclose(rms.mean, data.mean(0), rtol=1e-6)
    np.testing.assert_allclose(rms.var, data.var(0), atol=1e-5)  # the start (count 1e-4, var 1) weighs ~1e-6
    assert mod.Args().obs_clip == 10.0
    std = np.sqrt(rms.var)
    z = rms.normalize((rms.mean + np.array([25, -3]) * std)[None])  # 25 and 3 standard deviations out
    np.testing.assert_allclose(z, [[10.0, -3.0]], rtol=1e-4)


def brute_force_discounted_returns(rewards, dones, gamma):
    """G_t = r_t + gamma G_{t-1} within an episode, G restarting after each end; env by env, step by step."""
    T, N = rewards.shape
    out = np.zeros((T, N))
    for i in range(N):
        g = 0.0
        for t in range(T):
            g = rewards[t, i] + gamma * g
            out[t, i] = g
            if dones[t, i]:
                g = 0.0
    return out


def test_reward_scaler_divides_by_the_std_of_the_discounted_return():
    g = np.random.default_rng(1)
    T, N, gamma = 20, 3, 0.9
    scaler = mod.RewardScaler(N, gamma)
    rollouts = [(g.normal(1.0, 2.0, (T, N)), (g.random((T, N)) < 0.1).astype(np.float32)) for _ in range(2)]
    rollouts[0][1][T - 1, 0] = 0  # env 0's episode runs on into the second rollout
    for rewards, dones in rollouts:
        scaled = scaler(rewards, dones)
    # the running return is carried across rollouts: treat the two as one stream
    stream_r, stream_d = np.concatenate([r for r, _ in rollouts]), np.concatenate([d for _, d in rollouts])
    returns = brute_force_discounted_returns(stream_r, stream_d, gamma)
    np.testing.assert_allclose(scaler.rms.var, returns.var(), rtol=1e-5)
    np.testing.assert_allclose(scaled, rollouts[1][0] / returns.std(), rtol=1e-4)  # divided, not centred


def test_reward_scaler_restarts_the_return_at_episode_ends():
    scaler = mod.RewardScaler(1, gamma=0.5)
    rewards = np.array([[4.0], [4.0], [4.0], [4.0]])
    scaler(rewards, np.array([[0.0], [1.0], [0.0], [0.0]]))
    # G = 4, 6 | 4, 6 (restarted after step 1), against 4, 6, 7, 7.5 without the end
    # var 1 against 1.98 without the restart; the statistics' start (count 1e-4) adds about 6e-4
    np.testing.assert_allclose(scaler.rms.var, np.var([4, 6, 4, 6]), rtol=2e-3)


def test_scaled_rewards_are_clipped():
    scaler = mod.RewardScaler(1, gamma=0.0, clip=10.0)  # gamma 0: G_t = r_t
    rewards = np.zeros((400, 1))
    rewards[50], rewards[60], rewards[70] = 1e4, -1e4, 1.0  # std(G) = 1e4 sqrt(2 / 400): the spikes are 14 stds
    scaled = scaler(rewards, np.zeros((400, 1)))
    assert scaled.dtype == np.float32 and scaled[50, 0] == 10.0 and scaled[60, 0] == -10.0
    assert scaled[70, 0] == pytest.approx(1 / (1e4 * np.sqrt(2 / 400)), rel=1e-3)


@pytest.mark.parametrize("name", ["ppo_continuous", "ppo_atari"])
def test_clipped_value_loss_hand_computed(name):
    mod = load(name)
    old = torch.tensor([0.0, 0.0, 0.0, 1.0])
    new = torch.tensor([0.5, 0.1, -0.5, 1.1])
    target = torch.tensor([1.0, 1.0, 1.0, 0.0])
    # clipped V = old + clip(new - old, -0.2, 0.2) = 0.2, 0.1, -0.2, 1.1
    # max of (new - t)^2 and (clipped - t)^2: max(0.25, 0.64), max(0.81, 0.81), max(2.25, 1.44), max(1.21, 1.21)
    loss = mod.clipped_value_loss(new, old, target, 0.2)
    assert loss.item() == pytest.approx((0.64 + 0.81 + 2.25 + 1.21) / 4)
    # within the clip range it is the plain value loss
    assert mod.clipped_value_loss(new, new.detach() + 0.05, target, 0.2).item() == \
        pytest.approx(mod.value_loss(new, target).item())


def test_checkpoint_acts_identically_in_a_fresh_process(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = dataclasses.replace(mod.Args(), **{**SCRIPTS["ppo_continuous"]["tiny"], "env_id": "Pendulum-v1",
                                              "num_steps": 128, "total_timesteps": 512, "save_model": True})
    summary = mod.main(args)
    agent, obs_rms = summary["agent"], summary["obs_rms"]
    assert obs_rms.count > 500  # the statistics moved away from their start
    (path,) = glob.glob("runs/*/ppo_continuous.pt")
    raw = np.random.default_rng(2).normal(scale=3.0, size=(6, 3))  # Pendulum observations, unnormalised
    np.save("raw.npy", raw)
    code = ("import json, sys, numpy as np; sys.path.insert(0, sys.argv[1]); import ppo_continuous as m; "
            "import torch; agent, rms = m.agent_from(torch.load(sys.argv[2])); raw = np.load('raw.npy'); "
            "print(json.dumps({'mean': agent.act(rms.normalize(raw), None, deterministic=True).tolist(), "
            "'sample': agent.act(rms.normalize(raw), np.random.default_rng(5)).tolist(), "
            "'obs_mean': rms.mean.tolist(), 'obs_var': rms.var.tolist(), 'clip': rms.clip}))")
    out = subprocess.run([sys.executable, "-c", code, ROOT, path], capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout)
    np.testing.assert_array_equal(loaded["mean"], agent.act(obs_rms.normalize(raw), None, deterministic=True))
    np.testing.assert_array_equal(loaded["sample"], agent.act(obs_rms.normalize(raw), np.random.default_rng(5)))
    np.testing.assert_array_equal(loaded["obs_mean"], obs_rms.mean)
    np.testing.assert_array_equal(loaded["obs_var"], obs_rms.var)
    assert loaded["clip"] == args.obs_clip


def test_discrete_action_space_points_to_ppo_clip(tmp_path):
    result = run_script("ppo_continuous", "--env-id", "CartPole-v1", cwd=tmp_path)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("error:") and "use ppo_clip.py" in result.stderr
