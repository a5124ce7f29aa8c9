"""PPO-Clip: Schulman et al., "Proximal Policy Optimization Algorithms", 2017 (arXiv 1707.06347).

Algorithm 1 with the clipped surrogate of eq. (7), the combined objective of eq. (9) and the
truncated GAE advantages of eq. (11)-(12), for any Gymnasium env with a Discrete or Box action
space. Defaults are the paper's MuJoCo settings (Table 3).

    python ppo_clip.py                        # CartPole-v1, categorical policy
    python ppo_clip.py --env-id Hopper-v4     # MuJoCo, diagonal Gaussian policy
    python ppo_clip.py --help                 # every hyperparameter
    python ppo_clip.py --resume runs/<run>    # continue a stopped run from its last checkpoint
    python ppo_clip.py --eval-checkpoint runs/<run> --capture-video   # watch a trained agent
    tensorboard --logdir runs

Conventions, written once:
- Step t of env i yields `terminated[t, i]` (a true end: the value after it is 0) and `truncated[t, i]`
  (a time limit: the episode could have gone on, so V(final_obs) is bootstrapped into the reward).
  Both set `dones[t, i] = 1`, which stops GAE from flowing from step t+1 back into step t.
- The paper maximises L; torch minimises, so every `*_loss` below returns -L.
"""
import dataclasses
import importlib.util
import math
import os
import random
import signal
import sys
import time
import warnings
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import tyro
from torch.utils.tensorboard import SummaryWriter


@dataclass
class Args:
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """name of this experiment, part of the run directory"""
    env_id: str = "CartPole-v1"
    """Gymnasium env id with a Discrete or Box action space"""
    seed: int = 1
    """seed of python, numpy, torch and the envs"""
    torch_deterministic: bool = True
    """set cudnn.deterministic for GPU runs (CleanRL's flag); a CPU run is deterministic either way"""
    threads: int = 1
    """torch CPU threads; one is fastest for 64-unit networks (not in the paper)"""
    capture_video: bool = False
    """record env 0's episodes on CleanRL's schedule, and every evaluation episode, to <run folder>/videos"""
    track: bool = False
    """log the run to Weights & Biases; without a login or a network it logs offline, to sync later"""
    wandb_project_name: str = "ppo"
    """W&B project"""
    wandb_entity: str | None = None
    """W&B entity (a user or team); by default your own"""
    save_model: bool = False
    """save the final model to <run folder>/<exp_name>.pt, in the checkpoint format"""
    run_dir: str | None = None
    """the run folder: TensorBoard, checkpoints, the final model (default runs/<env>__<exp>__<seed>__<time>)"""
    checkpoint_every: int | None = None
    """save <run folder>/checkpoint.pt every N iterations; 0 never; by default every 5 minutes of wall time"""
    resume: str | None = None
    """continue a stopped run from its checkpoint file or run folder, with its own settings; the envs begin new
    episodes there, so only the rollout in progress is lost"""
    eval_checkpoint: str | None = None
    """no training: play --eval-episodes episodes with a saved model (file or run folder) and print its score"""
    eval_episodes: int = 10
    """episodes with the deterministic policy after training (0 skips; not in the paper)"""
    total_timesteps: int = 1_000_000
    """total env steps; Table 3 uses 1M"""
    num_envs: int = 1
    """N in Algorithm 1, parallel actors; the paper's MuJoCo runs use 1"""
    num_steps: int = 2048
    """T in Algorithm 1, steps per actor per iteration; Table 3 uses 2048"""
    update_epochs: int = 10
    """K in Algorithm 1, epochs over each batch; Table 3 uses 10"""
    num_minibatches: int = 32
    """minibatches per epoch, so M = N*T / 32 = 64 as in Table 3"""
    learning_rate: float = 3e-4
    """Adam stepsize; Table 3 uses 3e-4"""
    anneal_lr: bool = True
    """anneal the stepsize linearly to 0 (Huang et al. 2022; the paper does on Atari, Table 5)"""
    anneal_clip: bool = True
    """anneal epsilon linearly to 0, as the paper's original MuJoCo code did (and Table 5 on Atari)"""
    gamma: float = 0.99
    """discount gamma; Table 3 uses 0.99"""
    gae_lambda: float = 0.95
    """GAE lambda of eq. (11); Table 3 uses 0.95"""
    clip_coef: float = 0.2
    """epsilon of eq. (7); the paper uses 0.2"""
    ent_coef: float = 0.0
    """c2 of eq. (9), the entropy bonus; Table 3 uses none"""
    vf_coef: float = 0.5
    """c1 of eq. (9); with separate networks it only weighs the value loss in the gradient clip"""
    max_grad_norm: float = 0.5
    """global gradient-norm clip (Huang et al. 2022; not in the paper)"""
    clip_each_network: bool = False
    """clip the policy's and the value network's gradient norms each to --max-grad-norm, not their joint norm"""
    norm_adv: bool = True
    """normalise advantages per minibatch (Huang et al. 2022; not in the paper)"""
    init_log_std: float = -0.25
    """the Gaussian's log std at the start, Box actions only: std 0.78 (the paper does not give it; its code
    started at 0, std 1, which scored lower on Hopper-v4: README)"""


def check_args(args: Args) -> int:
    """Refuse bad input before any training, in one line; return the minibatch size M."""
    def refuse(name, rule):
        sys.exit(f"error: --{name.replace('_', '-')} must {rule}, got {getattr(args, name)}")
    for name, value in vars(args).items():
        if isinstance(value, float) and not math.isfinite(value):
            refuse(name, "be a finite number")
    for name in ["total_timesteps", "num_envs", "num_steps", "update_epochs", "num_minibatches", "learning_rate",
                 "clip_coef", "max_grad_norm", "threads"]:
        if not getattr(args, name) > 0:
            refuse(name, "be positive")
    for name in ["ent_coef", "vf_coef", "eval_episodes", "seed", "checkpoint_every"]:
        if (getattr(args, name) or 0) < 0:  # checkpoint_every None: every few minutes
            refuse(name, "not be negative")
    for name in ["gamma", "gae_lambda"]:
        if not 0 <= getattr(args, name) <= 1:
            refuse(name, "lie in [0, 1]")
    if args.seed >= 2**32:
        refuse("seed", "be less than 2**32")
    if "/" in args.exp_name:
        refuse("exp_name", "not hold '/', as it names files")
    batch_size = args.num_envs * args.num_steps
    if batch_size % args.num_minibatches:
        sys.exit(f"error: the batch N*T = {batch_size} does not divide into {args.num_minibatches} minibatches")
    if args.total_timesteps < batch_size:
        sys.exit(f"error: --total-timesteps {args.total_timesteps} is less than one batch N*T = {batch_size}")
    if batch_size == args.num_minibatches and args.norm_adv:
        sys.exit("error: minibatches of one sample cannot normalise advantages: use fewer --num-minibatches")
    if args.resume and args.eval_checkpoint:
        sys.exit("error: --resume continues training and --eval-checkpoint replays a model: give one of them")
    for flag, wanted, module in [("capture-video", args.capture_video, "moviepy"), ("track", args.track, "wandb")]:
        if wanted and importlib.util.find_spec(module) is None:
            sys.exit(f"error: --{flag} needs {module}: pip install {module}")
    return batch_size // args.num_minibatches


# ---- Environments -----------------------------------------------------------------------------
def make_envs(env_id: str, num_envs: int, video_dir: str | None = None, first_episode: int = 0,
              eval_episodes: int = 0) -> gym.vector.VectorEnv:
    """N actors in one process. SAME_STEP autoreset returns the final observation of an ended episode
    in info["final_obs"] and the next episode's first observation at once, so no fake transition
    across the reset enters the batch. With video_dir, env 0's episodes are recorded there: in training
    on CleanRL's schedule (episodes 0, 1, 8, 27, ..., 729, 1000, 2000, ...), or the evaluation's episodes."""
    if video_dir and sys.platform == "linux" and not os.environ.get("DISPLAY"):  # headless:
        os.environ.setdefault("MUJOCO_GL", "egl")  # MuJoCo reads it once, when it is first imported
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # pygame draws classic control without a window

    def thunk(i):
        def make():
            video = video_dir and i == 0
            env = gym.make(env_id, render_mode="rgb_array" if video else None, disable_env_checker=True)
            if video:  # a frame now: a renderer that fails is one line below, not a traceback mid-run
                env.reset(seed=0)
                env.render()
                with warnings.catch_warnings(action="ignore"):  # "overwriting": a resumed run numbers videos on
                    env = gym.wrappers.RecordVideo(env, video_dir, (lambda e: e < eval_episodes) if eval_episodes
                                                   else None, name_prefix="eval" if eval_episodes else "train")
                env.episode_id = first_episode - 1
            if not (isinstance(env.observation_space, gym.spaces.Box) and len(env.observation_space.shape) == 1):
                env = gym.wrappers.FlattenObservation(env)  # e.g. a Discrete observation becomes one-hot
            return env
        return make
    try:
        envs = gym.vector.SyncVectorEnv([thunk(i) for i in range(num_envs)],
                                        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    except gym.error.DependencyNotInstalled as e:
        sys.exit(f"error: {env_id} needs a missing dependency: {str(e).splitlines()[0]}")
    except Exception as e:  # an unknown id, a module that will not import (`mod:Env-v0`), a malformed id, no renderer
        ale = importlib.util.find_spec("ale_py") and importlib.import_module("ale_py")  # registers the ALE ids
        if ale and str(getattr(gym.registry.get(env_id), "entry_point", "")).startswith("ale_py"):
            sys.exit(f"error: {env_id} is an Atari game: train it with ppo_atari.py")
        hint = ("; headless MuJoCo renders with EGL (apt install libegl1 libgl1-mesa-dri) or OSMesa (apt install "
                "libosmesa6, and MUJOCO_GL=osmesa)") if video_dir else ""
        sys.exit(f"error: cannot make env {env_id!r}{' to record' if video_dir else ''}: "
                 f"{(str(e).splitlines() or [type(e).__name__])[0]}{hint}")
    space = envs.single_action_space
    if isinstance(space, gym.spaces.Discrete) and space.start != 0:
        sys.exit(f"error: {env_id}'s Discrete actions start at {space.start}; ppo_clip.py needs 0")
    if not (isinstance(space, gym.spaces.Discrete) or isinstance(space, gym.spaces.Box) and len(space.shape) == 1):
        sys.exit(f"error: {env_id} has a {type(space).__name__} action space of shape {space.shape}; "
                 "ppo_clip.py handles Discrete and one-dimensional Box")
    return envs


class RunningMeanStd:
    """Running mean and variance of observations, merged batch by batch (Chan et al., 1979).
    The paper's original code normalised observations this way and clipped them to [-5, 5]."""

    def __init__(self, shape, clip: float = 5.0):
        self.mean, self.var, self.count, self.clip = np.zeros(shape), np.ones(shape), 1e-4, clip

    def update(self, batch: np.ndarray) -> None:
        b_mean, b_var, b_count = batch.mean(0), batch.var(0), batch.shape[0]
        delta, total = b_mean - self.mean, self.count + b_count
        self.mean = self.mean + delta * b_count / total
        self.var = (self.var * self.count + b_var * b_count + delta**2 * self.count * b_count / total) / total
        self.count = total

    def normalize(self, x: np.ndarray) -> np.ndarray:
        return np.clip((x - self.mean) / np.sqrt(self.var + 1e-8), -self.clip, self.clip).astype(np.float32)


# ---- Networks ---------------------------------------------------------------------------------
def layer(n_in: int, n_out: int, gain: float) -> nn.Linear:
    """Orthogonal weights and zero biases (Huang et al. 2022; not in the paper)."""
    linear = nn.Linear(n_in, n_out)
    nn.init.orthogonal_(linear.weight, gain)
    nn.init.zeros_(linear.bias)
    return linear


def mlp(n_in: int, n_out: int, head_gain: float) -> nn.Sequential:
    """Table 3's network: two hidden layers of 64 tanh units."""
    return nn.Sequential(layer(n_in, 64, math.sqrt(2)), nn.Tanh(), layer(64, 64, math.sqrt(2)), nn.Tanh(),
                         layer(64, n_out, head_gain))


class Agent(nn.Module):
    """Separate policy and value networks (Table 3: no shared parameters). A Box action space gets a
    diagonal Gaussian whose mean the policy network gives and whose log std is a free parameter."""

    def __init__(self, obs_dim: int, action_space: gym.Space, init_log_std: float = Args.init_log_std):
        super().__init__()
        self.continuous, self.action_space = isinstance(action_space, gym.spaces.Box), action_space
        n_out = int(np.prod(action_space.shape)) if self.continuous else int(action_space.n)
        self.actor = mlp(obs_dim, n_out, head_gain=0.01)  # near-zero head: a near-uniform first policy
        self.critic = mlp(obs_dim, 1, head_gain=1.0)
        self.log_std = nn.Parameter(torch.full((n_out,), init_log_std)) if self.continuous else None
        self._numpy_layers = [(m.weight.detach().numpy(), m.bias.detach().numpy())
                              for m in self.actor if isinstance(m, nn.Linear)]
        self._numpy_log_std = self.log_std.detach().numpy() if self.continuous else None

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.critic(obs).squeeze(-1)

    def act(self, obs: np.ndarray, rng: np.random.Generator, deterministic: bool = False) -> np.ndarray:
        """Sample actions for (N, obs_dim) observations, or take the mean / likeliest action.

        Speed: acting runs the policy network in numpy. On one observation a torch call costs several
        times more in dispatch than in arithmetic, and numpy's overhead is far smaller. The arrays are
        views of the torch parameters, so they follow every optimiser step; the log-probs the loss needs
        are computed in torch, for the whole batch, after the rollout."""
        h = obs
        for i, (w, b) in enumerate(self._numpy_layers):
            h = h @ w.T + b
            if i < len(self._numpy_layers) - 1:
                h = np.tanh(h)
        if self.continuous:
            return h if deterministic else h + np.exp(self._numpy_log_std) * rng.standard_normal(h.shape, np.float32)
        # Gumbel-max: argmax(logits + Gumbel noise) is a sample of the softmax distribution.
        return h.argmax(-1) if deterministic else (h + rng.gumbel(size=h.shape)).argmax(-1)

    def logprob_entropy(self, obs: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.actor(obs)
        if self.continuous:
            return gaussian_logprob_entropy(out, self.log_std, action)
        return categorical_logprob_entropy(out, action)


# ---- The math ---------------------------------------------------------------------------------
def gaussian_logprob_entropy(mean, log_std, action):
    """Diagonal Gaussian, summed over action dimensions: mean, action (B, A), log_std (A,) -> (B,), (B,).
    log N(a; mu, s) = -(a - mu)^2 / (2 s^2) - log s - log(2 pi) / 2;  entropy = log s + (1 + log(2 pi)) / 2."""
    z = (action - mean) * torch.exp(-log_std)
    logprob = (-0.5 * z.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
    entropy = (log_std + 0.5 * (1 + math.log(2 * math.pi))).sum(-1).expand_as(logprob)
    return logprob, entropy


def categorical_logprob_entropy(logits, action):
    """Categorical: logits (B, n), action (B,) integer -> log pi(a), entropy -sum p log p, each (B,)."""
    logp = torch.log_softmax(logits, -1)
    logprob = logp.gather(-1, action.long().unsqueeze(-1)).squeeze(-1)
    entropy = -(logp.exp() * logp).sum(-1)
    return logprob, entropy


def compute_gae(rewards, values, dones, last_value, gamma, gae_lambda):
    """Truncated GAE, eq. (11)-(12), over a rollout of T steps in N envs.

    rewards, values, dones: (T, N); last_value: (N,) = V of the observation after step T-1.
    dones[t, i] = 1 when env i's episode ended at step t, so neither V(s_{t+1}) nor A_{t+1} reaches step t.
    Returns (advantages, returns), both (T, N), with returns = advantages + values (the value targets).
    """
    r, v, d = rewards.numpy(), values.numpy(), dones.numpy()  # numpy: a T-step loop of tiny ops is faster there
    adv = np.zeros_like(r)
    next_value, next_adv = last_value.numpy(), np.zeros_like(r[0])
    for t in reversed(range(r.shape[0])):
        alive = 1.0 - d[t]
        delta = r[t] + gamma * next_value * alive - v[t]  # eq. (12)
        next_adv = adv[t] = delta + gamma * gae_lambda * alive * next_adv  # eq. (11), summed backwards
        next_value = v[t]
    advantages = torch.from_numpy(adv)
    return advantages, advantages + values


def clipped_surrogate_loss(new_logprob, old_logprob, advantages, clip_coef):
    """-L^CLIP, eq. (7): -E_t[min(r_t A_t, clip(r_t, 1 - eps, 1 + eps) A_t)], r_t = pi(a_t|s_t) / pi_old(a_t|s_t).
    All arguments (B,); returns the mean over the batch."""
    ratio = torch.exp(new_logprob - old_logprob)  # eq. (6)
    clipped = torch.clamp(ratio, 1 - clip_coef, 1 + clip_coef)
    return -torch.min(ratio * advantages, clipped * advantages).mean()


def value_loss(new_value, returns):
    """L^VF of eq. (9): (V(s_t) - V^targ_t)^2, the mean over the batch."""
    return (new_value - returns).pow(2).mean()


def ppo_loss(pg_loss, v_loss, entropy, vf_coef, ent_coef):
    """-L^{CLIP+VF+S}, eq. (9): -(L^CLIP - c1 L^VF + c2 S), given pg_loss = -L^CLIP and S's batch mean."""
    return pg_loss + vf_coef * v_loss - ent_coef * entropy


# ---- Training ---------------------------------------------------------------------------------
def main(args: Args) -> dict:
    """Train; return a summary (SPS, episode returns, evaluation) for benchmarks/."""
    if args.eval_checkpoint:
        check_args(args)
        return {"eval_returns": replay(args)}
    args, ckpt = resume_args(args) if args.resume else (args, None)
    minibatch_size = check_args(args)
    batch_size = args.num_envs * args.num_steps
    num_iterations = args.total_timesteps // batch_size
    env_name = args.env_id.replace("/", "-")  # ALE/Pong-v5
    run_dir = args.run_dir or f"runs/{env_name}__{args.exp_name}__{args.seed}__{int(time.time())}"
    args = dataclasses.replace(args, run_dir=run_dir)
    if not ckpt and os.path.exists(os.path.join(run_dir, "checkpoint.pt")):
        sys.exit(f"error: {run_dir} holds a run already: continue it with --resume {run_dir}, "
                 "or choose another --run-dir")
    if ckpt and ckpt["iteration"] == num_iterations:
        print(f"{run_dir} is complete at step {ckpt['global_step']}: nothing to resume")
        return {"global_step": ckpt["global_step"], "run_dir": run_dir}

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)  # the policy's sampling noise
    torch.backends.cudnn.deterministic = args.torch_deterministic
    torch.set_num_threads(args.threads)

    video_dir = os.path.join(run_dir, "videos") if args.capture_video else None
    envs = make_envs(args.env_id, args.num_envs, video_dir, first_video_episode(video_dir, ckpt))
    run = RunState(args, ckpt)
    writer = run.writer

    obs_dim = envs.single_observation_space.shape[0]
    agent, obs_rms = agent_from(ckpt) if ckpt else (Agent(obs_dim, envs.single_action_space, args.init_log_std),
                                                    RunningMeanStd(obs_dim))
    # Adam eps 1e-5 (Huang et al. 2022); fused: one kernel for all parameters, same update.
    optimizer = torch.optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5, fused=True)
    action_shape = envs.single_action_space.shape
    # One norm over both networks (CleanRL's and SB3's), or one per network; neither is in the paper. With returns
    # in the hundreds the value gradient dominates the joint norm, and its clip shrinks the policy's gradient too;
    # yet on Hopper-v4 the two scored alike (benchmarks/README.md), so the joint one, the common one, stays.
    policy_params = [p for name, p in agent.named_parameters() if not name.startswith("critic.")]
    clip_groups = ([policy_params, list(agent.critic.parameters())] if args.clip_each_network
                   else [list(agent.parameters())])
    low, high = (envs.single_action_space.low, envs.single_action_space.high) if agent.continuous else (None, None)

    # Rollout storage, (T, N, ...): what the policy saw and did. numpy, since per-step writes into
    # torch tensors cost several times more; the batch becomes torch once the rollout is done.
    raw_obs = np.zeros((args.num_steps, args.num_envs, obs_dim))
    obs = np.zeros((args.num_steps, args.num_envs, obs_dim), dtype=np.float32)
    actions = np.zeros((args.num_steps, args.num_envs, *action_shape), dtype=np.float32 if agent.continuous else np.int64)
    rewards = np.zeros((args.num_steps, args.num_envs), dtype=np.float32)
    dones = np.zeros((args.num_steps, args.num_envs), dtype=np.float32)

    ep_return, ep_length = np.zeros(args.num_envs), np.zeros(args.num_envs, dtype=int)
    start_iteration, global_step, recent_returns, env_seed = (restore(ckpt, optimizer, rng) if ckpt
                                                              else (0, 0, [], args.seed))
    env0_episodes = ckpt["env0_episodes"] if ckpt else 0  # numbers env 0's videos
    start_step, start_time = global_step, time.time()
    next_raw_obs, _ = envs.reset(seed=env_seed)
    for iteration in range(start_iteration + 1, num_iterations + 1):
        # Linear annealing from 1 to 0 over training (alpha in Table 5). The paper's original MuJoCo code
        # (OpenAI baselines' ppo1, schedule="linear") annealed both the stepsize and epsilon this way.
        alpha = 1 - (iteration - 1) / num_iterations
        optimizer.param_groups[0]["lr"] = args.learning_rate * (alpha if args.anneal_lr else 1)
        clip_coef = args.clip_coef * (alpha if args.anneal_clip else 1)

        # ---- Algorithm 1: run pi_old in N actors for T timesteps ----
        trunc_steps, trunc_obs = [], []  # (t, i) of time-limit ends, and their normalised final obs
        for t in range(args.num_steps):
            raw_obs[t] = next_raw_obs
            obs[t] = obs_rms.normalize(next_raw_obs)
            actions[t] = agent.act(obs[t], rng)
            # The env gets the action clipped to its bounds; the batch keeps the unclipped sample,
            # whose log-prob is the one the Gaussian assigns (Huang et al. 2022).
            next_raw_obs, rewards[t], terminated, truncated, info = envs.step(
                np.clip(actions[t], low, high) if agent.continuous else actions[t])
            global_step += args.num_envs
            dones[t] = terminated | truncated
            for i in np.flatnonzero(truncated & ~terminated):
                trunc_steps.append((t, i))
                trunc_obs.append(obs_rms.normalize(info["final_obs"][i]))
            ep_return += rewards[t]
            ep_length += 1
            for i in np.flatnonzero(terminated | truncated):
                writer.add_scalar("charts/episodic_return", ep_return[i], global_step)
                writer.add_scalar("charts/episodic_length", ep_length[i], global_step)
                recent_returns.append(float(ep_return[i]))
                ep_return[i], ep_length[i] = 0, 0
            env0_episodes += int(dones[t, 0])

        with torch.inference_mode():
            # The network is fixed during the rollout, so pi_old's log-probs and values are computed once
            # for the whole batch here rather than once per step.
            b_obs = torch.from_numpy(obs).reshape(batch_size, obs_dim)  # (T*N, obs_dim)
            b_actions = torch.from_numpy(actions).reshape(batch_size, *action_shape)
            b_logprobs = agent.logprob_entropy(b_obs, b_actions)[0]
            values = agent.value(b_obs).reshape(args.num_steps, args.num_envs)
            last_value = agent.value(torch.from_numpy(obs_rms.normalize(next_raw_obs)))
            if trunc_steps:
                # A time limit is not a true end: bootstrap r_t + gamma * V(final_obs).
                t_idx, i_idx = map(list, zip(*trunc_steps))
                rewards[t_idx, i_idx] += args.gamma * agent.value(torch.from_numpy(np.stack(trunc_obs))).numpy()

            # ---- Algorithm 1: compute advantage estimates A_1 ... A_T ----
            advantages, returns = compute_gae(torch.from_numpy(rewards), values, torch.from_numpy(dones),
                                              last_value, args.gamma, args.gae_lambda)
        obs_rms.update(raw_obs.reshape(-1, obs_dim))  # statistics move between rollouts, never inside one
        b_advantages, b_returns, b_values = advantages.reshape(-1), returns.reshape(-1), values.reshape(-1)

        # ---- Algorithm 1: optimise the surrogate for K epochs of minibatches of size M ----
        stats = torch.zeros(5)  # sums over minibatches: policy loss, value loss, entropy, approx KL, clip fraction
        grad_norms, updates = torch.zeros(()), 0
        for epoch in range(args.update_epochs):
            perm = torch.randperm(batch_size)
            # One gather per epoch; the minibatches are then contiguous slices of the shuffled batch.
            s_obs, s_actions, s_logprobs, s_adv, s_returns = (
                x[perm] for x in (b_obs, b_actions, b_logprobs, b_advantages, b_returns))
            for start in range(0, batch_size, minibatch_size):
                mb = slice(start, start + minibatch_size)
                new_logprob, entropy = agent.logprob_entropy(s_obs[mb], s_actions[mb])
                new_value = agent.value(s_obs[mb])
                mb_adv = s_adv[mb]
                if args.norm_adv:
                    mb_adv = (mb_adv - mb_adv.mean()) / (mb_adv.std() + 1e-8)
                pg_loss = clipped_surrogate_loss(new_logprob, s_logprobs[mb], mb_adv, clip_coef)
                v_loss = value_loss(new_value, s_returns[mb])
                entropy_mean = entropy.mean()
                loss = ppo_loss(pg_loss, v_loss, entropy_mean, args.vf_coef, args.ent_coef)

                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                norms = [nn.utils.clip_grad_norm_(group, args.max_grad_norm, foreach=True) for group in clip_groups]
                grad_norms += torch.stack(norms).norm()  # the joint norm before clipping, either way
                optimizer.step()

                with torch.no_grad():
                    log_ratio = new_logprob - s_logprobs[mb]
                    approx_kl = (log_ratio.exp() - 1 - log_ratio).mean()  # unbiased KL[pi_old, pi] estimate
                    clipfrac = ((log_ratio.exp() - 1).abs() > clip_coef).float().mean()
                    stats += torch.stack([pg_loss, v_loss, entropy_mean, approx_kl, clipfrac])
                updates += 1
                if run.stop:  # SIGTERM or Ctrl-C: end the update here, checkpoint below and exit
                    break
            if run.stop:
                break
        # theta_old <- theta happens implicitly: the next rollout samples from the updated networks.
        run.guard(iteration, {"losses": stats, "gradient norm": grad_norms,
                              "parameters": torch.cat([p.detach().flatten() for p in agent.parameters()])})

        # ---- Logging: means over the iteration's K * num_minibatches updates ----
        stats = (stats / updates).tolist()
        var_returns = b_returns.var().item()
        explained_var = float("nan") if var_returns == 0 else 1 - (b_returns - b_values).var().item() / var_returns
        sps = int((global_step - start_step) / (time.time() - start_time))
        for tag, value in zip(["policy_loss", "value_loss", "entropy", "approx_kl", "clipfrac"], stats):
            writer.add_scalar(f"losses/{tag}", value, global_step)
        writer.add_scalar("losses/explained_variance", explained_var, global_step)
        writer.add_scalar("charts/learning_rate", optimizer.param_groups[0]["lr"], global_step)
        writer.add_scalar("charts/clip_coef", clip_coef, global_step)
        writer.add_scalar("charts/SPS", sps, global_step)
        if iteration % max(1, num_iterations // 20) == 0 or iteration == num_iterations:
            recent = f"{np.mean(recent_returns[-100:]):.1f}" if recent_returns else "n/a"
            print(f"step {global_step:>8}  SPS {sps:>5}  mean return (last 100 episodes) {recent}", flush=True)
        run.save_if_due(iteration, num_iterations, lambda: checkpoint(
            args, agent, optimizer, obs_rms, rng, iteration, global_step, recent_returns, env0_episodes, run))
    train_time = time.time() - start_time
    run.close()
    envs.close()

    if args.save_model:
        path = os.path.join(run_dir, f"{args.exp_name}.pt")
        save_checkpoint(checkpoint(args, agent, optimizer, obs_rms, rng, num_iterations, global_step,
                                   recent_returns, env0_episodes, run), path)
        print(f"model saved to {path}")
    eval_returns = evaluate(agent, obs_rms, args.env_id, args.eval_episodes, args.seed + 10_000, writer,
                            global_step, video_dir)
    run.finish()
    return {"sps": (global_step - start_step) / train_time, "global_step": global_step,
            "episode_returns": recent_returns, "eval_returns": eval_returns, "run_dir": run_dir,
            "agent": agent, "obs_rms": obs_rms}


# ---- Evaluation ---------------------------------------------------------------------------------
EVAL_STEP_CAP = 27_000  # Atari's 108,000 frames


def evaluate(agent: Agent, obs_rms: RunningMeanStd, env_id: str, episodes: int, seed: int, writer=None,
             global_step: int = 0, video_dir: str | None = None) -> list:
    """Returns of whole episodes with the deterministic policy (the Gaussian mean or the likeliest action)
    and the observation statistics frozen as training left them; their mean is printed and logged. An env
    without a time limit gets one of EVAL_STEP_CAP steps, or a policy that never ends an episode would never
    return."""
    if episodes == 0:
        return []
    env = make_envs(env_id, 1, video_dir, eval_episodes=episodes)
    cap = env.envs[0].spec.max_episode_steps or EVAL_STEP_CAP
    returns = []
    obs, _ = env.reset(seed=seed)
    ep_return, ep_length = 0.0, 0
    while len(returns) < episodes:
        action = agent.act(obs_rms.normalize(obs), None, deterministic=True)
        if agent.continuous:
            action = np.clip(action, env.single_action_space.low, env.single_action_space.high)
        obs, reward, terminated, truncated, _ = env.step(action)
        ep_return, ep_length = ep_return + reward[0], ep_length + 1
        if terminated[0] or truncated[0] or ep_length == cap:
            if not (terminated[0] or truncated[0]):
                print(f"evaluation: episode {len(returns) + 1} ended by the cap of {cap} steps", flush=True)
                obs, _ = env.reset()
            returns.append(float(ep_return))
            ep_return, ep_length = 0.0, 0
    env.close()
    print(f"eval: {np.mean(returns):.1f} +- {np.std(returns):.1f} over {len(returns)} episodes", flush=True)
    if writer:
        writer.add_scalar("eval/episodic_return", np.mean(returns), global_step)
    return returns


# ---- Run management: checkpoints, resume, pre-emption, the divergence guard, replay, video, tracking ---------
CHECKPOINT_MINUTES = 5  # the default interval between checkpoints, in wall time
# The flags that leave learning alone, so that a resumed run may take new values of them:
RESUME_FLAGS = {"resume", "run_dir", "checkpoint_every", "save_model", "eval_episodes", "capture_video", "threads",
                "eval_checkpoint", "track", "wandb_project_name", "wandb_entity"}


def checkpoint(args, agent, optimizer, obs_rms, rng, iteration, global_step, recent_returns, env0_episodes,
               run) -> dict:
    """All a run needs to act and to continue, as CPU tensors and plain Python values: plain torch.load reads it."""
    space, np_rng = agent.action_space, np.random.get_state()
    return {"script": "ppo_clip", "env_id": args.env_id, "args": vars(args), "model": agent.state_dict(),
            "obs_rms": [torch.from_numpy(obs_rms.mean), torch.from_numpy(obs_rms.var), float(obs_rms.count)],
            "action_space": ([torch.from_numpy(space.low), torch.from_numpy(space.high)] if agent.continuous
                             else int(space.n)),
            "optimizer": optimizer.state_dict(), "iteration": iteration, "global_step": global_step,
            "recent_returns": recent_returns[-100:], "env0_episodes": env0_episodes,
            "wandb_id": run.wandb_id,
            "rng": [random.getstate(), torch.get_rng_state(), (np_rng[0], np_rng[1].tolist(), *np_rng[2:]),
                    rng.bit_generator.state]}


def save_checkpoint(ckpt: dict, path: str) -> None:
    """Write a temporary file, then rename it over the old one: a kill during a save leaves the last one whole."""
    with open(path + ".tmp", "wb") as f:
        torch.save(ckpt, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(path + ".tmp", path)


def load_checkpoint(path: str) -> dict:
    """A checkpoint of this script, from its file or its run folder, or one line and exit."""
    path = os.path.join(path, "checkpoint.pt") if os.path.isdir(path) else path
    try:
        ckpt = torch.load(path)
    except Exception as e:  # missing, truncated, or not a checkpoint at all
        sys.exit(f"error: cannot read checkpoint {path}: {(str(e).splitlines() or [type(e).__name__])[0]}")
    if not isinstance(ckpt, dict) or ckpt.get("script") != "ppo_clip" or set(ckpt["args"]) != set(vars(Args())):
        sys.exit(f"error: {path} is not a checkpoint of this ppo_clip.py")
    return ckpt | {"path": path}


def resume_args(args: Args) -> tuple[Args, dict]:
    """The run's Args, in its checkpoint's folder: a flag outside RESUME_FLAGS that differs from the saved one
    would break the schedules and is refused. (From the command line, a flag not typed takes the saved value.)"""
    ckpt = load_checkpoint(args.resume)
    for name, value in vars(args).items():
        if name not in RESUME_FLAGS and value != ckpt["args"][name]:
            sys.exit(f"error: --{name.replace('_', '-')} cannot change on --resume (the run keeps its settings)")
    return dataclasses.replace(args, run_dir=os.path.dirname(os.path.abspath(ckpt["path"]))), ckpt


def agent_from(ckpt: dict) -> tuple[Agent, RunningMeanStd]:
    """The trained agent and its frozen observation statistics, from a checkpoint alone."""
    obs_rms = RunningMeanStd(len(ckpt["obs_rms"][0]))
    (mean, var, obs_rms.count), space = ckpt["obs_rms"], ckpt["action_space"]
    obs_rms.mean, obs_rms.var = mean.numpy(), var.numpy()
    agent = Agent(len(obs_rms.mean), gym.spaces.Box(space[0].numpy(), space[1].numpy()) if isinstance(space, list)
                  else gym.spaces.Discrete(space))
    agent.load_state_dict(ckpt["model"])  # in place, so act()'s numpy views stay valid
    return agent, obs_rms


def restore(ckpt: dict, optimizer, rng: np.random.Generator) -> tuple[int, int, list, int]:
    """Load the optimizer and RNG states in place; return the iteration, global step, recent returns and the
    envs' seed. No generic env can save its state, so they begin new episodes, seeded from the run's seed and
    the iteration: two resumes from one checkpoint are the same run."""
    optimizer.load_state_dict(ckpt["optimizer"])
    python, torch_state, (name, key, *rest), rng.bit_generator.state = ckpt["rng"]
    random.setstate(python)
    torch.set_rng_state(torch_state)
    np.random.set_state((name, np.array(key, np.uint32), *rest))
    print(f"resumed from {ckpt['path']} at step {ckpt['global_step']}; the envs begin new episodes", flush=True)
    env_seed = int(np.random.SeedSequence([ckpt["args"]["seed"], ckpt["iteration"]]).generate_state(1)[0])
    return ckpt["iteration"], ckpt["global_step"], ckpt["recent_returns"], env_seed


def first_video_episode(video_dir: str | None, ckpt: dict | None) -> int:
    """A resumed run numbers env 0's episodes on from its checkpoint, and past any video the stopped run
    recorded after it: no video is overwritten."""
    names = os.listdir(video_dir) if video_dir and os.path.isdir(video_dir) else []
    recorded = [int(n[len("train-episode-"):-len(".mp4")]) for n in names if n.startswith("train-episode-")]
    return max([ckpt["env0_episodes"] + 1 if ckpt else 0] + [n + 1 for n in recorded])


def replay(args: Args) -> list:
    """--eval-checkpoint: the final evaluation of training, on a saved agent, logged to <its run folder>/eval."""
    ckpt = load_checkpoint(args.eval_checkpoint)
    agent, obs_rms = agent_from(ckpt)
    if args.eval_episodes < 1:
        sys.exit(f"error: --eval-episodes must be positive with --eval-checkpoint, got {args.eval_episodes}")
    if args.env_id != ckpt["env_id"]:
        envs = make_envs(args.env_id, 1)
        if envs.single_observation_space.shape != obs_rms.mean.shape or envs.single_action_space != agent.action_space:
            sys.exit(f"error: {args.env_id}'s spaces differ from those of {ckpt['env_id']}, where the model learned")
        print(f"{args.env_id} has the spaces of {ckpt['env_id']}, where the model learned: evaluating on it")
    folder = os.path.join(os.path.dirname(os.path.abspath(ckpt["path"])), "eval")
    writer = SummaryWriter(folder)
    returns = evaluate(agent, obs_rms, args.env_id, args.eval_episodes, args.seed + 10_000, writer,
                       ckpt["global_step"], os.path.join(folder, "videos") if args.capture_video else None)
    writer.close()
    return returns


def start_tracking(args: Args, wandb_id: str | None):
    """--track: a W&B run that mirrors TensorBoard, continued by a resumed run. Without a login or a network,
    it logs offline rather than fail or wait past wandb's init_timeout (90 s; WANDB_INIT_TIMEOUT sets it)."""
    import wandb  # only with --track
    # TensorBoard's events become W&B's history; save=False: no copy of the event files, which would nest
    # W&B's folder in itself, as it lies in the run folder.
    wandb.tensorboard.patch(root_logdir=args.run_dir, save=False)
    settings = dict(project=args.wandb_project_name, entity=args.wandb_entity, name=os.path.basename(args.run_dir),
                    config=vars(args), dir=args.run_dir, id=wandb_id, resume="allow")
    try:
        return wandb.init(**settings)
    except Exception as e:  # no login (UsageError) or no network (CommError)
        wandb.teardown()
        print(f"W&B is unreachable ({(str(e).splitlines() or [type(e).__name__])[0]}): logging offline; upload "
              f"later with: wandb sync {args.run_dir}/wandb/offline-run-*", flush=True)
        return wandb.init(**settings, mode="offline")


class RunState:
    """A run's folder, TensorBoard and W&B logs, periodic checkpoints, stop signals (SIGTERM, Ctrl-C) and
    divergence guard."""

    def __init__(self, args: Args, ckpt: dict | None):
        self.every, self.path = args.checkpoint_every, os.path.join(args.run_dir, "checkpoint.pt")
        self.last = (ckpt["path"], ckpt["iteration"]) if ckpt else None  # the last good checkpoint
        self.saved_at, self.stop, self.wandb_id = time.time(), None, ckpt["wandb_id"] if ckpt else None
        try:
            os.makedirs(args.run_dir, exist_ok=True)
            # W&B first: it mirrors only the SummaryWriters made after it starts.
            self.tracker = start_tracking(args, self.wandb_id) if args.track else None
            self.wandb_id = self.tracker.id if self.tracker else self.wandb_id  # an offline fallback gets a new id
            # purge_step: a resumed run drops what the stopped one logged after its checkpoint
            self.writer = SummaryWriter(args.run_dir, purge_step=ckpt["global_step"] + 1 if ckpt else None)
            if args.save_model:  # the final model's file is tried now, not after the whole run
                open(os.path.join(args.run_dir, f"{args.exp_name}.pt.tmp"), "wb").close()
        except OSError as e:
            sys.exit(f"error: cannot write the run folder {args.run_dir}: {e}")
        if not ckpt:
            table = "\n".join(f"|{k}|{v}|" for k, v in vars(args).items())
            self.writer.add_text("hyperparameters", "|param|value|\n|-|-|\n" + table)
        self.videos = os.path.join(args.run_dir, "videos")
        self.logged = set(os.listdir(self.videos)) if os.path.isdir(self.videos) else set()
        for sig in (signal.SIGTERM, signal.SIGINT):  # clusters send SIGTERM before they pre-empt
            signal.signal(sig, lambda signum, frame: setattr(self, "stop", signum))

    def guard(self, iteration: int, quantities: dict[str, torch.Tensor]) -> None:
        """Stop on a non-finite loss, gradient norm or parameter, before a checkpoint can hold it."""
        for name, value in quantities.items():
            if not value.isfinite().all():
                last = f"the last good checkpoint is {self.last[0]} (iteration {self.last[1]})" if self.last else None
                sys.exit(f"error: training diverged at iteration {iteration}: non-finite {name}; "
                         f"{last or 'no checkpoint was saved yet'}")

    def save_if_due(self, iteration: int, last_iteration: int, make_checkpoint) -> None:
        """Save every `every` iterations (by default every CHECKPOINT_MINUTES), at the end and on a stop signal."""
        due = iteration == last_iteration or (iteration % self.every == 0 if self.every else
                                              time.time() - self.saved_at >= 60 * CHECKPOINT_MINUTES)
        if self.stop or due and self.every != 0:
            self.writer.flush()  # TensorBoard holds every step up to the checkpoint, even if the run is killed
            save_checkpoint(make_checkpoint(), self.path)
            self.last, self.saved_at = (self.path, iteration), time.time()
        self.log_videos()
        if self.stop:
            print(f"stopped by {signal.Signals(self.stop).name} at iteration {iteration}; continue with: "
                  f"python ppo_clip.py --resume {os.path.dirname(self.path)}", file=sys.stderr, flush=True)
            sys.exit(128 + self.stop)

    def log_videos(self) -> None:
        """Send W&B each new video as a wandb.Video: its monitor_gym breaks on gymnasium 1.x (wandb #10339, #11193)."""
        new = sorted(set(os.listdir(self.videos)) - self.logged) if self.tracker and os.path.isdir(self.videos) else []
        for name in (n for n in new if n.endswith(".mp4")):
            video = sys.modules["wandb"].Video(os.path.join(self.videos, name))
            self.tracker.log({f"videos/{name.split('-')[0]}": video})
            self.logged.add(name)

    def close(self) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def finish(self) -> None:
        self.writer.close()  # before W&B finishes, so that it mirrors the last events
        self.log_videos()
        if self.tracker:
            self.tracker.finish()


if __name__ == "__main__":
    args = tyro.cli(Args)
    if args.resume or args.eval_checkpoint:  # a flag not typed takes the run's value (resume_args sees all typed)
        saved = Args(**load_checkpoint(args.resume or args.eval_checkpoint)["args"])
        args = tyro.cli(Args, default=dataclasses.replace(saved, resume=args.resume,
                                                          eval_checkpoint=args.eval_checkpoint))
    main(args)
