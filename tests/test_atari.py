"""ppo_atari.py: the Atari wrappers on a real ALE game, the CNN, the annealing, whole short runs."""
import dataclasses
import glob
import os
import subprocess
import sys

import cv2
import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.conftest import ROOT, SCRIPTS, load, run_script
from tests.test_runs import scalars

mod = load("ppo_atari")
BREAKOUT = "BreakoutNoFrameskip-v4"
# Breakout cut by a time limit of 400 frames (100 agent steps), so truncation happens within a short run.
gym.register("tests/BreakoutShort-v4", entry_point="ale_py.env:AtariEnv",
             kwargs=dict(game="breakout", frameskip=1, repeat_action_probability=0.0, max_num_frames_per_episode=400))


class Recorder(gym.Wrapper):
    """Sits right on the emulator (under AtariPreprocessing) and records every frame's action, screen and
    reward; rewards are multiplied by `scale` so that clipping has something to clip."""

    def __init__(self, env, scale=1.0):
        super().__init__(env)
        self.scale, self.actions, self.screens, self.resets, self.total_reward = scale, [], [], 0, 0.0

    def reset(self, **kwargs):
        self.resets += 1
        obs, info = self.env.reset(**kwargs)
        self.actions, self.screens = [], [obs]
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.actions.append(int(action))
        self.screens.append(obs)
        self.total_reward += reward * self.scale  # over all frames since construction
        return obs, reward * self.scale, terminated, truncated, info


@pytest.fixture
def recorded(monkeypatch):
    """make_env(BREAKOUT) with a Recorder under the wrappers; returns (env, recorder)."""
    real_make, box = gym.make, []

    def make(*args, **kwargs):
        box.append(Recorder(real_make(*args, **kwargs), scale=7.0))
        return box[-1]

    monkeypatch.setattr(gym, "make", make)
    env = mod.make_env(BREAKOUT)
    return env, box[-1]


def test_observations_are_4_stacked_84x84_uint8_frames(recorded):
    env, rec = recorded
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
    assert env.observation_space.shape == (4, 84, 84) and env.observation_space.dtype == np.uint8
    obs2 = env.step(2)[0]
    np.testing.assert_array_equal(obs2[:3], obs[1:])  # the stack shifts by one frame a step


def test_each_frame_is_the_max_of_the_last_two_of_four(recorded):
    env, rec = recorded
    env.reset(seed=1)
    differ = 0
    for t in range(60):
        n = len(rec.actions)
        obs = env.step([1, 2, 3][t % 3])[0]
        assert rec.actions[n:] == [[1, 2, 3][t % 3]] * 4  # one action held for 4 frames
        last, before = rec.screens[-1], rec.screens[-2]
        expected = cv2.resize(np.maximum(last, before), (84, 84), interpolation=cv2.INTER_AREA)
        np.testing.assert_array_equal(obs[-1], expected)
        differ += not np.array_equal(expected, cv2.resize(last, (84, 84), interpolation=cv2.INTER_AREA))
    assert differ > 0  # the max did matter on some steps (the ball moves between frames)


def test_reward_sign_clipping_trains_on_the_sign_and_reports_the_score():
    envs = mod.make_envs(BREAKOUT, 1)
    preprocessing = envs.envs[0].env.env.env.env  # FrameStack > TransformReward > Life > Stats > this
    assert isinstance(preprocessing, gym.wrappers.AtariPreprocessing)
    rec = preprocessing.env = Recorder(preprocessing.env, scale=7.0)  # a brick is worth 7, 28 or 49 now
    envs.reset(seed=2)
    envs.action_space.seed(2)
    score, game = 0.0, []
    while score == 0:  # play until a game scores
        before = rec.total_reward
        _, reward, _, _, info = envs.step(envs.action_space.sample())
        game.append((reward[0], rec.total_reward - before))
        if "final_info" in info and "episode" in info["final_info"]:
            score = info["final_info"]["episode"]["r"][0]
            assert score == sum(raw for _, raw in game)  # the reported game score is unclipped
            game = game if score else []
    assert any(raw > 1 for _, raw in game)
    for reward, raw in game:
        assert reward == np.sign(raw)  # the training signal is its sign


def test_a_lost_life_ends_the_training_episode_but_not_the_game():
    envs = mod.make_envs(BREAKOUT, 1)
    preprocessing = envs.envs[0].env.env.env.env
    rec = preprocessing.env = Recorder(preprocessing.env)
    envs.reset(seed=3)
    envs.action_space.seed(3)
    ends, lives = [], []
    while True:
        _, _, terminated, truncated, info = envs.step(envs.action_space.sample())
        if terminated[0] or truncated[0]:
            ends.append("episode" in info["final_info"])
            lives.append(int(info["final_info"]["lives"][0]))
            if ends[-1]:
                break
    assert lives == [4, 3, 2, 1, 0]  # Breakout: five lives, each loss a training episode end
    assert ends == [False] * 4 + [True]  # ... but one game, reported once
    assert rec.resets == 2  # the emulator reset at the start and after the game, never after a life


class ServeLoses(gym.Env):
    """A two-life game in Breakout's shape (FIRE is action 1), without the emulator: reward 1 a step, the first life
    is lost at step 3, and the serve after it loses the second."""

    observation_space, action_space = gym.spaces.Box(0, 255, (1,), np.uint8), gym.spaces.Discrete(4)

    def __init__(self):
        self.ale = self

    def lives(self):
        return self.left

    def get_action_meanings(self):
        return ["NOOP", "FIRE", "RIGHT", "LEFT"]

    def reset(self, *, seed=None, options=None):
        self.left, self.t = 2, 0
        return np.zeros(1, np.uint8), {}

    def step(self, action):
        self.t += 1
        self.left -= self.t == 3 or (self.t > 3 and action == 1)
        return np.zeros(1, np.uint8), 1.0, self.left == 0, False, {}


def test_a_game_that_ends_in_the_serve_after_a_lost_life_keeps_its_score():
    game = lambda: mod.EpisodicLifeFireReset(gym.wrappers.RecordEpisodeStatistics(ServeLoses()))  # noqa: E731
    envs = gym.vector.SyncVectorEnv([game], autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    envs.reset(seed=0)  # the reset serves: step 1
    for _ in range(2):
        _, _, terminated, _, info = envs.step(np.array([0]))
    assert terminated[0] and "episode" not in info["final_info"]  # step 3 lost a life; the serve, step 4, the game
    assert [(i, float(r), int(n)) for i, r, n in mod.games_ended(info)] == [(0, 4.0, 4)]
    _, _, terminated, _, info = envs.step(np.array([0]))
    assert not terminated[0] and list(mod.games_ended(info)) == []  # a new game is under way


def test_reset_takes_1_to_30_noops_then_fires(recorded):
    env, rec = recorded
    counts = []
    for seed in range(15):
        env.reset(seed=seed)
        noops = len(rec.actions) - 4
        counts.append(noops)
        assert rec.actions == [0] * noops + [1] * 4  # no-ops, then FIRE held for one step of 4 frames
    assert min(counts) >= 1 and max(counts) <= 30 and len(set(counts)) > 5
    # and after a lost life: FIRE again, without a reset of the emulator
    lives = env.unwrapped.ale.lives()
    while not env.step(3)[2]:
        pass
    assert env.unwrapped.ale.lives() == lives - 1
    rec.actions.clear()
    env.reset()
    assert rec.actions == [1] * 4 and rec.resets == 15


def test_cnn_shapes_and_pixels_scaled_once():
    torch.manual_seed(0)
    agent = mod.Agent(6)
    obs = torch.randint(0, 256, (5, 4, 84, 84), dtype=torch.uint8)
    logits, value = agent(obs)
    assert logits.shape == (5, 6) and value.shape == (5,)
    # the reference: the Nature CNN as written in Mnih et al. (2015), on pixels / 255
    c2, c3, fc = agent.trunk[1], agent.trunk[3], agent.trunk[6]
    h = F.relu(F.conv2d(obs.double() / 255, agent.conv1.weight.double(), agent.conv1.bias.double(), stride=4))
    assert h.shape == (5, 32, 20, 20)
    h = F.relu(F.conv2d(h, c2.weight.double(), c2.bias.double(), stride=2))
    assert h.shape == (5, 64, 9, 9)
    h = F.relu(F.conv2d(h, c3.weight.double(), c3.bias.double()))
    assert h.shape == (5, 64, 7, 7)
    h = F.relu(F.linear(h.flatten(1), fc.weight.double(), fc.bias.double()))
    torch.testing.assert_close(logits.double(), F.linear(h, agent.actor.weight.double(), agent.actor.bias.double()),
                               rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(value.double(), F.linear(h, agent.critic.weight.double(),
                                                        agent.critic.bias.double()).squeeze(-1), rtol=1e-5, atol=1e-6)
    # one trunk for both heads (Table 5): each head's loss reaches the first convolution
    for head in range(2):
        agent.zero_grad()
        agent(obs)[head].sum().backward()
        assert agent.conv1.weight.grad.abs().sum() > 0
    # act() returns pi's log-prob of the action it took and V, as the loss would compute them
    with torch.no_grad():
        action, logprob, v = agent.act(obs)
        ref_logprob, _ = mod.categorical_logprob_entropy(agent(obs)[0], action)
    torch.testing.assert_close(logprob, ref_logprob)
    torch.testing.assert_close(v, value.detach())
    ortho = agent.conv1.weight.flatten(1)  # orthogonal init: rows orthogonal, of norm sqrt(2)
    torch.testing.assert_close(ortho @ ortho.T, 2 * torch.eye(32), atol=1e-5, rtol=0)


def test_bf16_trunk_stays_close_to_float32():
    torch.manual_seed(1)
    agent = mod.Agent(4)
    obs = torch.randint(0, 256, (8, 4, 84, 84), dtype=torch.uint8)
    logits, value = agent(obs)
    agent.bf16 = True
    logits16, value16 = agent(obs)
    assert logits16.dtype == value16.dtype == torch.float32  # heads and loss stay in float32
    assert not torch.equal(value16, value)  # the trunk did run in bfloat16
    torch.testing.assert_close(value16, value, rtol=0.03, atol=0.03)
    torch.testing.assert_close(logits16, logits, rtol=0.03, atol=1e-3)


def test_stepsize_and_epsilon_both_follow_alpha(tmp_path, monkeypatch):
    args = mod.Args()
    for alpha in [1.0, 0.75, 0.1]:
        assert mod.annealed(args, alpha) == pytest.approx((2.5e-4 * alpha, 0.1 * alpha))
    fixed = dataclasses.replace(args, anneal_lr=False, anneal_clip=False)
    assert mod.annealed(fixed, 0.3) == pytest.approx((2.5e-4, 0.1))
    # in a run of 4 iterations, alpha = 1, 3/4, 1/2, 1/4
    monkeypatch.chdir(tmp_path)
    mod.main(dataclasses.replace(args, **{**SCRIPTS["ppo_atari"]["tiny"], "total_timesteps": 256}))
    logged = scalars(glob.glob("runs/*")[0])
    alphas = [1, 0.75, 0.5, 0.25]
    assert [v for _, v in logged["charts/learning_rate"]] == pytest.approx([2.5e-4 * a for a in alphas])
    assert [v for _, v in logged["charts/clip_coef"]] == pytest.approx([0.1 * a for a in alphas])


def test_truncation_bootstraps_and_a_lost_life_does_not(tmp_path, monkeypatch):
    """On Breakout cut at 400 frames: at a time-limit step GAE sees r_t + gamma V(final_obs); at a lost
    life (terminated) it sees the clipped reward alone, and both end the episode for GAE."""
    monkeypatch.chdir(tmp_path)
    steps, agents, kinds = [], [], set()
    real_gae, real_make_envs, real_agent = mod.compute_gae, mod.make_envs, mod.Agent

    class Spy(gym.vector.VectorWrapper):
        def step(self, actions):
            out = self.env.step(actions)
            steps.append(out)
            return out

    def spy_gae(rewards, values, dones, last_value, gamma, gae_lambda):
        # called before the update, so the agent is still pi_old, whose V the bootstrap used
        for t, (_, reward, terminated, truncated, info) in enumerate(steps):
            for i in range(2):
                assert dones[t, i] == (terminated[i] or truncated[i])
                if truncated[i] and not terminated[i]:
                    with torch.inference_mode():
                        v = agents[0](torch.from_numpy(info["final_obs"][i][None]))[1].item()
                    assert abs(v) > 1e-4
                    assert rewards[t, i].item() == pytest.approx(reward[i] + gamma * v, abs=1e-5)
                    kinds.add("truncated")
                else:
                    assert rewards[t, i].item() == reward[i] and reward[i] in (0.0, 1.0)
                    kinds.add("terminated" if terminated[i] else "running")
        return real_gae(rewards, values, dones, last_value, gamma, gae_lambda)

    monkeypatch.setattr(mod, "compute_gae", spy_gae)
    monkeypatch.setattr(mod, "make_envs", lambda *a, **k: Spy(real_make_envs(*a, **k)))
    monkeypatch.setattr(mod, "Agent", lambda *a: agents.append(real_agent(*a)) or agents[-1])
    mod.main(dataclasses.replace(mod.Args(), env_id="tests/BreakoutShort-v4", num_envs=2, num_steps=256,
                                 num_minibatches=2, update_epochs=1, total_timesteps=512, eval_episodes=0,
                                 gamma=0.9))
    assert kinds == {"truncated", "terminated", "running"}


def test_ratio_is_one_up_to_rounding_on_the_first_minibatch(tmp_path, monkeypatch):
    """r_t(theta_old) = 1 (eq. 6). pi_old's log-probs come from the acting batch, whose conv kernels round
    differently from a minibatch's, so the ratio is 1 within float rounding rather than exactly."""
    monkeypatch.chdir(tmp_path)
    calls, real_loss = [], mod.clipped_surrogate_loss

    def spy(new_logprob, old_logprob, advantages, clip_coef):
        calls.append(torch.exp(new_logprob - old_logprob).detach().clone())
        return real_loss(new_logprob, old_logprob, advantages, clip_coef)

    monkeypatch.setattr(mod, "clipped_surrogate_loss", spy)
    mod.main(dataclasses.replace(mod.Args(), **{**SCRIPTS["ppo_atari"]["tiny"], "num_envs": 2}))
    torch.testing.assert_close(calls[0], torch.ones_like(calls[0]), rtol=0, atol=1e-5)
    assert (calls[1] - 1).abs().max() > 1e-4  # and the first update did move the policy


def test_clip_vloss_clips_against_the_rollouts_values_at_the_current_epsilon(tmp_path, monkeypatch):
    """CleanRL's settings as flags: the value loss is clipped around pi_old's values (from acting) with the
    policy's epsilon, here held at 0.1 by --no-anneal-clip."""
    monkeypatch.chdir(tmp_path)
    calls, real_loss = [], mod.clipped_value_loss

    def spy(new_value, old_value, returns, clip_coef):
        calls.append((old_value.clone(), clip_coef))
        return real_loss(new_value, old_value, returns, clip_coef)

    def spy_gae(rewards, values, dones, last_value, gamma, gae_lambda):
        rollout_values.append(values.reshape(-1).clone())
        return real_gae(rewards, values, dones, last_value, gamma, gae_lambda)

    rollout_values, real_gae = [], mod.compute_gae
    monkeypatch.setattr(mod, "clipped_value_loss", spy)
    monkeypatch.setattr(mod, "compute_gae", spy_gae)
    tiny = SCRIPTS["ppo_atari"]["tiny"]
    mod.main(dataclasses.replace(mod.Args(), **tiny, clip_vloss=True, anneal_clip=False))
    updates = tiny["total_timesteps"] // tiny["num_steps"] * tiny["update_epochs"] * tiny["num_minibatches"]
    assert len(calls) == updates and {c for _, c in calls} == {0.1}
    old = torch.cat([v for v, _ in calls[:tiny["num_minibatches"]]])  # the first epoch: each sample once
    assert sorted(old.tolist()) == pytest.approx(sorted(rollout_values[0].tolist()))


def test_short_breakout_run_end_to_end(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = dataclasses.replace(mod.Args(), num_envs=2, num_steps=128, num_minibatches=2, update_epochs=1,
                               total_timesteps=512, eval_episodes=1, save_model=True)
    summary = mod.main(args)
    assert summary["global_step"] == 512 and summary["sps"] > 0
    assert summary["episode_returns"] and all(r >= 0 and r == int(r) for r in summary["episode_returns"])
    assert len(summary["eval_returns"]) == 1
    path = f"{summary['run_dir']}/{mod.Args().exp_name}.pt"
    agent = mod.Agent(4)
    agent.load_state_dict(torch.load(path)["model"])


def test_async_envs_run_the_same_games_as_one_process(tmp_path, monkeypatch):
    """--async-envs steps the games in worker processes; with the same seed the run is the one SyncVectorEnv makes."""
    monkeypatch.chdir(tmp_path)
    runs = []
    for async_envs in [False, True]:
        mod.main(dataclasses.replace(mod.Args(), num_envs=2, num_steps=64, num_minibatches=2, update_epochs=1,
                                     total_timesteps=256, eval_episodes=0, async_envs=async_envs,
                                     run_dir=f"run{int(async_envs)}"))
        runs.append({k: v for k, v in scalars(f"run{int(async_envs)}").items() if k != "charts/SPS"})
    assert runs[0] == runs[1] and len(runs[0]["losses/policy_loss"]) == 2


def test_non_atari_env_is_refused_pointing_to_ppo_clip(tmp_path):
    result = run_script("ppo_atari", "--env-id", "CartPole-v1", cwd=tmp_path)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert "not an Atari" in line and "ppo_clip.py" in line
    assert not glob.glob(f"{tmp_path}/runs/*")


# ---- The device path: every test here runs on the CPU; those marked CUDA run where torch sees a GPU ----
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA: torch sees no GPU here")


def all_tensors(state):
    """Every tensor in a nested checkpoint."""
    if torch.is_tensor(state):
        return [state]
    values = state.values() if isinstance(state, dict) else state if isinstance(state, (list, tuple)) else []
    return [t for v in values for t in all_tensors(v)]


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here, so --cuda does not fall back")
def test_cuda_without_a_gpu_falls_back_to_the_cpu_with_its_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert mod.Args().cuda  # on by default, as CleanRL's
    # Each run names its folder: two default names made in the same second are the same folder.
    mod.main(dataclasses.replace(mod.Args(), **SCRIPTS["ppo_atari"]["tiny"], run_dir="on"))
    assert "device: cpu (--cuda, but torch sees no GPU)" in capsys.readouterr().out.splitlines()
    mod.main(dataclasses.replace(mod.Args(), **SCRIPTS["ppo_atari"]["tiny"], cuda=False, run_dir="off"))
    assert "device: cpu" in capsys.readouterr().out.splitlines()


def device_run(device, tmp_path, monkeypatch, **flags):
    """A short run with the device forced to `device`; returns its summary and its saved model's path."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(mod, "pick_device", lambda cuda: torch.device(device))
    args = dataclasses.replace(mod.Args(), **{**SCRIPTS["ppo_atari"]["tiny"], "num_envs": 2, "save_model": True,
                                              "eval_episodes": 1, **flags})
    summary = mod.main(args)
    return summary, f"{summary['run_dir']}/{args.exp_name}.pt"


def assert_loads_on_a_cpu_only_machine(path, summary, tmp_path):
    """Plain torch.load in a fresh process that sees no GPU: every tensor of the model and the periodic
    checkpoint on the CPU, and the model the run ended with."""
    for saved in [path, f"{summary['run_dir']}/checkpoint.pt"]:
        code = ("import sys, torch; sys.path.insert(0, sys.argv[1]); ckpt = torch.load(sys.argv[2]); "
                "from tests.test_atari import all_tensors; "
                "print(sorted({str(t.device) for t in all_tensors(ckpt)}), ckpt['model']['actor.weight'].sum().item())")
        out = subprocess.run([sys.executable, "-c", code, ROOT, saved], capture_output=True, text=True, cwd=tmp_path,
                             env={**os.environ, "CUDA_VISIBLE_DEVICES": ""}, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        devices, actor_sum = out.stdout.split("]")
        assert devices + "]" == "['cpu']"
        assert float(actor_sum) == pytest.approx(summary["agent"].actor.weight.sum().item(), abs=1e-6)


def test_device_path_on_an_explicit_cpu_device_saves_cpu_checkpoints(tmp_path, monkeypatch):
    summary, path = device_run("cpu", tmp_path, monkeypatch)
    assert {p.device.type for p in summary["agent"].parameters()} == {"cpu"}
    assert_loads_on_a_cpu_only_machine(path, summary, tmp_path)


@CUDA
@pytest.mark.parametrize("bf16", [False, True], ids=["float32", "bf16"])
def test_cuda_run_keeps_storage_on_the_gpu_and_checkpoints_on_the_cpu(bf16, tmp_path, monkeypatch):
    summary, path = device_run("cuda", tmp_path, monkeypatch, bf16=bf16)
    assert {p.device.type for p in summary["agent"].parameters()} == {"cuda"}
    assert summary["global_step"] == SCRIPTS["ppo_atari"]["tiny"]["total_timesteps"]
    assert_loads_on_a_cpu_only_machine(path, summary, tmp_path)


@CUDA
def test_gae_on_cuda_values_matches_the_cpu():
    rng = np.random.default_rng(0)
    rewards, dones = torch.tensor(rng.normal(size=(16, 3)), dtype=torch.float32), torch.zeros(16, 3)
    dones[5, 1] = dones[11, 0] = 1
    values, last = torch.tensor(rng.normal(size=(16, 3)), dtype=torch.float32), torch.tensor([0.5, -0.2, 1.0])
    cpu = mod.compute_gae(rewards, values, dones, last, 0.99, 0.95)
    gpu = mod.compute_gae(rewards, values.cuda(), dones, last.cuda(), 0.99, 0.95)
    assert gpu[0].device.type == "cuda"
    torch.testing.assert_close(gpu[0].cpu(), cpu[0])
    torch.testing.assert_close(gpu[1].cpu(), cpu[1])


@CUDA
def test_eval_checkpoint_on_the_gpu_prints_the_runs_eval_line(tmp_path):
    flags = ["--num-envs", "2", "--num-steps", "64", "--num-minibatches", "2", "--update-epochs", "2",
             "--total-timesteps", "128", "--eval-episodes", "2", "--run-dir", "run"]
    trained = run_script("ppo_atari", *flags, cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr[-2000:]
    replayed = run_script("ppo_atari", "--eval-checkpoint", "run", cwd=tmp_path)
    line = [x for x in trained.stdout.splitlines() if x.startswith("eval:")]
    assert line and line == [x for x in replayed.stdout.splitlines() if x.startswith("eval:")]
    assert "device: cpu" not in trained.stdout
