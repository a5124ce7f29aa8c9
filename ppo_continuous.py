"""PPO-Clip for continuous control: Schulman et al., "Proximal Policy Optimization Algorithms", 2017
(arXiv 1707.06347), with the details that practice added for MuJoCo.

What differs from ppo_clip.py (the paper alone): Box action spaces only; observations normalised by running
statistics clipped to [-10, 10] instead of [-5, 5]; rewards divided by the running std of the discounted
return (Engstrom et al. 2020; OpenAI baselines' VecNormalize) and clipped to [-10, 10]; optional value
clipping; checkpoints that carry the reward scaler's statistics too. Everything else, Algorithm 1 with
eq. (7), (9), (11)-(12) and Table 3's settings, is as in ppo_clip.py.

    python ppo_continuous.py                             # Hopper-v4
    python ppo_continuous.py --env-id HalfCheetah-v4
    python ppo_continuous.py --help                      # every hyperparameter
    python ppo_continuous.py --resume runs/<run>         # continue a stopped run from its last checkpoint
    python ppo_continuous.py --eval-checkpoint runs/<run> --capture-video   # watch a trained agent
    tensorboard --logdir runs

Run management (checkpoints, resume, stop signals, the divergence guard, replay, W&B) is ppo_run.py's, shared
by the four scripts; copied without it, this file still trains, logs, records video, saves and evaluates.

A saved model acts as trained in another process:
    agent, obs_rms = agent_from(torch.load("runs/<run>/ppo_continuous.pt"))
    evaluate(agent, obs_rms, "Hopper-v4", episodes=10, seed=0)

Conventions, written once:
- Step t of env i yields `terminated[t, i]` (a true end: the value after it is 0) and `truncated[t, i]`
  (a time limit: the episode could have gone on, so V(final_obs) is bootstrapped into the reward).
  Both set `dones[t, i] = 1`, so that neither V(s_{t+1}) nor A_{t+1} reaches step t in GAE.
- The paper maximises L; torch minimises, so every `*_loss` below returns -L.
"""
import dataclasses
import importlib.util
import math
import os
import random
import sys
import time
import warnings

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import tyro
from torch.utils.tensorboard import SummaryWriter

try:
    import ppo_run
except ModuleNotFoundError:  # this file copied alone: RunAlone, at the end, stands in
    ppo_run = None


@dataclasses.dataclass
class Args:
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """name of this experiment, part of the run directory"""
    env_id: str = "Hopper-v4"
    """Gymnasium env id with a Box action space"""
    seed: int = 1
    """seed of python, numpy, torch and the envs"""
    torch_deterministic: bool = True
    """set cudnn.deterministic for GPU runs (CleanRL's flag); a CPU run is deterministic either way"""
    threads: int = 1
    """torch CPU threads; one is fastest for 64-unit networks (not in the paper)"""
    capture_video: bool = False
    """record env 0's episodes on CleanRL's schedule, and every evaluation episode, to <run folder>/videos"""
    track: bool = False
    """log the run to Weights & Biases; without a login or a network it logs offline, to sync later (ppo_run.py)"""
    wandb_project_name: str = "ppo"
    """W&B project"""
    wandb_entity: str | None = None
    """W&B entity (a user or team); by default your own"""
    save_model: bool = False
    """save the final model to <run folder>/<exp_name>.pt, in the checkpoint format (see agent_from)"""
    run_dir: str | None = None
    """the run folder: TensorBoard, checkpoints, the final model (default runs/<env>__<exp>__<seed>__<time>)"""
    checkpoint_every: int | None = None
    """save <run folder>/checkpoint.pt every N iterations; 0 never; by default every 5 minutes (ppo_run.py)"""
    resume: str | None = None
    """continue a stopped run from its checkpoint (file or run folder), with its own settings (ppo_run.py)"""
    eval_checkpoint: str | None = None
    """no training: play --eval-episodes episodes with a saved model (file or run folder) (ppo_run.py)"""
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
    clip_vloss: bool = False
    """clip the value update like the policy's (baselines' ppo2, CleanRL's default); off, since Andrychowicz
    et al. 2021 and Huang et al. 2022 found it no help or harmful (not in the paper)"""
    obs_clip: float = 10.0
    """clip normalised observations to [-obs_clip, obs_clip] (baselines' VecNormalize; not in the paper)"""
    reward_clip: float = 10.0
    """clip scaled rewards to [-reward_clip, reward_clip] (baselines' VecNormalize; not in the paper)"""
    max_grad_norm: float = 0.5
    """global gradient-norm clip (Huang et al. 2022; not in the paper)"""
    norm_adv: bool = True
    """normalise advantages per minibatch (Huang et al. 2022; not in the paper)"""
    init_log_std: float = -0.25
    """the Gaussian's log std at the start, std 0.78 (the paper's code: 0, std 1); -0.25 beat 0 on Hopper-v4
    and matched it on Walker2d-v4 and HalfCheetah-v4 (README; not in the paper)"""


def check_args(args: Args) -> None:
    """Refuse bad input before any training, in one line."""
    def refuse(name, rule):
        sys.exit(f"error: --{name.replace('_', '-')} must {rule}, got {getattr(args, name)}")
    for name, value in vars(args).items():
        if isinstance(value, float) and not math.isfinite(value):
            refuse(name, "be a finite number")
    for name in ["total_timesteps", "num_envs", "num_steps", "update_epochs", "num_minibatches", "learning_rate",
                 "clip_coef", "max_grad_norm", "threads", "obs_clip", "reward_clip"]:
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
    for name in ["resume", "eval_checkpoint", "track", "checkpoint_every"]:
        if getattr(args, name) not in (None, False) and not ppo_run:
            sys.exit(f"error: --{name.replace('_', '-')} needs ppo_run.py beside {__file__}: copy it from this project")


# ---- Environments -----------------------------------------------------------------------------
def make_envs(env_id: str, num_envs: int, video_dir: str | None = None, eval_episodes: int = 0) -> gym.vector.VectorEnv:
    """N actors in one process. SAME_STEP autoreset returns an ended episode's final observation in info["final_obs"]
    and the next one's first at once, so no fake transition across the reset enters the batch. video_dir records env
    0's episodes: in training on CleanRL's schedule (0, 1, 8, 27, ..., 729, 1000, 2000, ...), or the evaluation's."""
    if video_dir and sys.platform == "linux" and not os.environ.get("DISPLAY"):  # headless:
        os.environ.setdefault("MUJOCO_GL", "egl")  # MuJoCo reads it once, when it is first imported
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # pygame draws classic control without a window

    def make(i: int) -> gym.Env:
        video = video_dir and i == 0
        env = gym.make(env_id, render_mode="rgb_array" if video else None, disable_env_checker=True)
        if video:  # a frame now: a renderer that fails is one line below, not a traceback mid-run
            env.reset(seed=0)
            env.render()
            with warnings.catch_warnings(action="ignore"):  # "overwriting": a resumed run numbers videos on
                env = gym.wrappers.RecordVideo(env, video_dir, (lambda e: e < eval_episodes) if eval_episodes
                                               else None, name_prefix="eval" if eval_episodes else "train")
        if not (isinstance(env.observation_space, gym.spaces.Box) and len(env.observation_space.shape) == 1):
            env = gym.wrappers.FlattenObservation(env)  # e.g. a Discrete observation becomes one-hot
        return env
    try:
        envs = gym.vector.SyncVectorEnv([lambda i=i: make(i) for i in range(num_envs)],
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
    if isinstance(space, gym.spaces.Discrete):
        sys.exit(f"error: {env_id} has a Discrete action space; this script is for Box actions, use ppo_clip.py")
    if not (isinstance(space, gym.spaces.Box) and len(space.shape) == 1):
        sys.exit(f"error: {env_id} has a {type(space).__name__} action space of shape {space.shape}; "
                 "ppo_continuous.py handles one-dimensional Box")
    return envs


class RunningMeanStd:
    """Running mean and variance, merged batch by batch (Chan et al., 1979). One instance serves all N envs:
    a batch holds every env's samples, so the statistics are those of the pooled stream."""

    def __init__(self, shape, clip: float = 10.0):
        self.mean, self.var, self.count, self.clip = np.zeros(shape), np.ones(shape), 1e-4, clip

    def update(self, batch: np.ndarray) -> None:
        b_mean, b_var, b_count = batch.mean(0), batch.var(0), batch.shape[0]
        delta, total = b_mean - self.mean, self.count + b_count
        self.mean = self.mean + delta * b_count / total
        self.var = (self.var * self.count + b_var * b_count + delta**2 * self.count * b_count / total) / total
        self.count = total

    def normalize(self, x: np.ndarray) -> np.ndarray:
        return np.clip((x - self.mean) / np.sqrt(self.var + 1e-8), -self.clip, self.clip).astype(np.float32)


class RewardScaler:
    """Reward scaling (Engstrom et al. 2020; baselines' VecNormalize): divide rewards by the running std of
    the discounted return G_t = gamma G_{t-1} + r_t, which restarts at 0 after each episode end, and clip.
    Dividing without centring keeps the problem the same: every reward of a rollout shrinks by one factor.

    Departure from VecNormalize, which scales each reward by the statistics of the steps before it: here a
    whole rollout is scaled once, after its returns joined the statistics, so its value targets share one scale.
    """

    def __init__(self, num_envs: int, gamma: float, clip: float = 10.0):
        self.gamma, self.clip = gamma, clip
        self.ret = np.zeros(num_envs)  # G of each env's running episode, carried across rollouts
        self.rms = RunningMeanStd(())

    def __call__(self, rewards: np.ndarray, dones: np.ndarray) -> np.ndarray:
        """rewards, dones: (T, N) of one rollout -> the scaled, clipped rewards, (T, N) float32."""
        returns = np.zeros(rewards.shape)
        for t in range(len(rewards)):
            self.ret = self.gamma * self.ret + rewards[t]
            returns[t] = self.ret
            self.ret = self.ret * (1 - dones[t])
        self.rms.update(returns.reshape(-1))
        return np.clip(rewards / np.sqrt(self.rms.var + 1e-8), -self.clip, self.clip).astype(np.float32)


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
    """Separate policy and value networks (Table 3: no shared parameters). The policy is a diagonal Gaussian
    whose mean the policy network gives and whose log std is a free parameter, independent of the state."""

    def __init__(self, obs_dim: int, action_space: gym.spaces.Box, init_log_std: float = Args.init_log_std):
        super().__init__()
        action_dim, self.action_space = int(np.prod(action_space.shape)), action_space
        self.actor = mlp(obs_dim, action_dim, head_gain=0.01)  # near-zero head: the first means are near 0
        self.critic = mlp(obs_dim, 1, head_gain=1.0)
        self.log_std = nn.Parameter(torch.full((action_dim,), init_log_std))
        self._numpy_layers = [(m.weight.detach().numpy(), m.bias.detach().numpy())
                              for m in self.actor if isinstance(m, nn.Linear)]
        self._numpy_log_std = self.log_std.detach().numpy()

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.critic(obs).squeeze(-1)

    def act(self, obs: np.ndarray, rng: np.random.Generator, deterministic: bool = False) -> np.ndarray:
        """Sample actions for (N, obs_dim) observations, or take the mean action.

        Speed: acting runs the policy network in numpy. On one observation a torch call costs several times more in
        dispatch than in arithmetic; numpy's overhead is far smaller. The arrays, views of the torch parameters, follow
        every optimiser step; the loss's log-probs are computed in torch, for the whole batch, after the rollout."""
        h = obs
        for i, (w, b) in enumerate(self._numpy_layers):
            h = h @ w.T + b
            if i < len(self._numpy_layers) - 1:
                h = np.tanh(h)
        return h if deterministic else h + np.exp(self._numpy_log_std) * rng.standard_normal(h.shape, np.float32)

    def env_action(self, action: np.ndarray) -> np.ndarray:
        """The action the env gets: clipped to its bounds. The batch keeps the unclipped sample, whose log-prob is the
        one the Gaussian assigns (Huang et al. 2022)."""
        return np.clip(action, self.action_space.low, self.action_space.high)

    def logprob_entropy(self, obs: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return gaussian_logprob_entropy(self.actor(obs), self.log_std, action)


# ---- The math ---------------------------------------------------------------------------------
def gaussian_logprob_entropy(mean, log_std, action):
    """Diagonal Gaussian, summed over action dimensions: mean, action (B, A), log_std (A,) -> (B,), (B,).
    log N(a; mu, s) = -(a - mu)^2 / (2 s^2) - log s - log(2 pi) / 2;  entropy = log s + (1 + log(2 pi)) / 2."""
    z = (action - mean) * torch.exp(-log_std)
    logprob = (-0.5 * z.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
    entropy = (log_std + 0.5 * (1 + math.log(2 * math.pi))).sum(-1).expand_as(logprob)
    return logprob, entropy


def compute_gae(rewards, values, dones, last_value, gamma, gae_lambda):
    """Truncated GAE, eq. (11)-(12), over a rollout of T steps in N envs.

    rewards, values, dones (the conventions above): (T, N); last_value: (N,) = V of the observation after step T-1.
    Returns (advantages, returns), both (T, N), with returns = advantages + values (the value targets)."""
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


def clipped_value_loss(new_value, old_value, returns, clip_coef):
    """L^VF with the value update clipped like the policy's (baselines' ppo2; not in the paper):
    max((V - V^targ)^2, (V_old + clip(V - V_old, -eps, eps) - V^targ)^2), the mean over the batch."""
    clipped = old_value + torch.clamp(new_value - old_value, -clip_coef, clip_coef)
    return torch.max((new_value - returns).pow(2), (clipped - returns).pow(2)).mean()


def ppo_loss(pg_loss, v_loss, entropy, vf_coef, ent_coef):
    """-L^{CLIP+VF+S}, eq. (9): -(L^CLIP - c1 L^VF + c2 S), given pg_loss = -L^CLIP and S's batch mean."""
    return pg_loss + vf_coef * v_loss - ent_coef * entropy


# ---- Training ---------------------------------------------------------------------------------
def main(args: Args) -> dict:
    """Train, as Algorithm 1; return a summary (SPS, episode returns, evaluation) for benchmarks/."""
    run = ppo_run.Run(args, "ppo_continuous", check_args) if ppo_run else RunAlone(args)
    args = run.args  # with --resume, the stopped run's
    batch_size = args.num_envs * args.num_steps
    minibatch_size = batch_size // args.num_minibatches
    num_iterations = args.total_timesteps // batch_size

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)  # the policy's sampling noise
    torch.backends.cudnn.deterministic = args.torch_deterministic
    torch.set_num_threads(args.threads)

    envs = make_envs(args.env_id, args.num_envs, run.video_dir)
    writer = run.start(envs)
    obs_dim = envs.single_observation_space.shape[0]
    agent = Agent(obs_dim, envs.single_action_space, args.init_log_std)
    obs_rms = RunningMeanStd(obs_dim, clip=args.obs_clip)
    # Adam eps 1e-5 (Huang et al. 2022); fused: one kernel for all parameters, same update.
    optimizer = torch.optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5, fused=True)
    reward_scaler = RewardScaler(args.num_envs, args.gamma, clip=args.reward_clip)
    start_iteration, global_step, recent_returns, env_seed = (
        restore(run.ckpt, agent, optimizer, obs_rms, reward_scaler, rng) if run.ckpt else (0, 0, [], args.seed))
    action_dim = envs.single_action_space.shape[0]

    def state() -> dict:  # a checkpoint when one is due: the loop's variables as they are then
        return checkpoint(args, agent, optimizer, obs_rms, reward_scaler, rng, iteration, global_step, recent_returns)

    # Rollout storage, (T, N, ...): what the policy saw and did. numpy, since per-step writes into
    # torch tensors cost several times more; the batch becomes torch once the rollout is done.
    raw_obs = np.zeros((args.num_steps, args.num_envs, obs_dim))
    obs = np.zeros((args.num_steps, args.num_envs, obs_dim), dtype=np.float32)
    actions = np.zeros((args.num_steps, args.num_envs, action_dim), dtype=np.float32)  # unclipped samples
    rewards = np.zeros((args.num_steps, args.num_envs), dtype=np.float32)
    dones = np.zeros((args.num_steps, args.num_envs), dtype=np.float32)

    ep_return, ep_length = np.zeros(args.num_envs), np.zeros(args.num_envs, dtype=int)
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
            next_raw_obs, rewards[t], terminated, truncated, info = envs.step(agent.env_action(actions[t]))
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

        with torch.inference_mode():
            # pi_old is fixed in the rollout: its log-probs and values are computed here once per batch, not per step.
            b_obs = torch.from_numpy(obs).reshape(batch_size, obs_dim)  # (T*N, obs_dim)
            b_actions = torch.from_numpy(actions).reshape(batch_size, action_dim)
            b_logprobs = agent.logprob_entropy(b_obs, b_actions)[0]
            values = agent.value(b_obs).reshape(args.num_steps, args.num_envs)
            last_value = agent.value(torch.from_numpy(obs_rms.normalize(next_raw_obs)))
            scaled_rewards = reward_scaler(rewards, dones)  # the values V learns are in these units
            if trunc_steps:
                # A time limit is not a true end: bootstrap r_t + gamma * V(final_obs), final_obs normalised
                # with the statistics its rollout used.
                t_idx, i_idx = map(list, zip(*trunc_steps))
                scaled_rewards[t_idx, i_idx] += args.gamma * agent.value(torch.from_numpy(np.stack(trunc_obs))).numpy()

            # ---- Algorithm 1: compute advantage estimates A_1 ... A_T ----
            advantages, returns = compute_gae(torch.from_numpy(scaled_rewards), values, torch.from_numpy(dones),
                                              last_value, args.gamma, args.gae_lambda)
        obs_rms.update(raw_obs.reshape(-1, obs_dim))  # statistics move between rollouts, never inside one
        b_advantages, b_returns, b_values = advantages.reshape(-1), returns.reshape(-1), values.reshape(-1)

        # ---- Algorithm 1: optimise the surrogate for K epochs of minibatches of size M ----
        stats = torch.zeros(5)  # sums over minibatches: policy loss, value loss, entropy, approx KL, clip fraction
        grad_norms = torch.zeros(())
        for epoch in range(args.update_epochs):
            perm = torch.randperm(batch_size)
            # One gather per epoch; the minibatches are then contiguous slices of the shuffled batch.
            s_obs, s_actions, s_logprobs, s_adv, s_returns, s_values = (
                x[perm] for x in (b_obs, b_actions, b_logprobs, b_advantages, b_returns, b_values))
            for start in range(0, batch_size, minibatch_size):
                mb = slice(start, start + minibatch_size)
                new_logprob, entropy = agent.logprob_entropy(s_obs[mb], s_actions[mb])
                new_value = agent.value(s_obs[mb])
                mb_adv = s_adv[mb]
                if args.norm_adv:
                    mb_adv = (mb_adv - mb_adv.mean()) / (mb_adv.std() + 1e-8)
                pg_loss = clipped_surrogate_loss(new_logprob, s_logprobs[mb], mb_adv, clip_coef)
                if args.clip_vloss:
                    v_loss = clipped_value_loss(new_value, s_values[mb], s_returns[mb], clip_coef)
                else:
                    v_loss = value_loss(new_value, s_returns[mb])
                entropy_mean = entropy.mean()
                loss = ppo_loss(pg_loss, v_loss, entropy_mean, args.vf_coef, args.ent_coef)

                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                grad_norms += nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm, foreach=True)
                optimizer.step()

                with torch.no_grad():
                    log_ratio = new_logprob - s_logprobs[mb]
                    approx_kl = (log_ratio.exp() - 1 - log_ratio).mean()  # unbiased KL[pi_old, pi] estimate
                    clipfrac = ((log_ratio.exp() - 1).abs() > clip_coef).float().mean()
                    stats += torch.stack([pg_loss, v_loss, entropy_mean, approx_kl, clipfrac])
        # theta_old <- theta happens implicitly: the next rollout samples from the updated networks.
        # ---- Logging: means over the iteration's K * num_minibatches updates ----
        sps = int((global_step - start_step) / (time.time() - start_time))
        log_iteration(writer, global_step, stats / (args.update_epochs * args.num_minibatches), b_returns, b_values,
                      {"learning_rate": optimizer.param_groups[0]["lr"], "clip_coef": clip_coef, "SPS": sps})
        if iteration % max(1, num_iterations // 20) == 0 or iteration == num_iterations:
            recent = f"{np.mean(recent_returns[-100:]):.1f}" if recent_returns else "n/a"
            print(f"step {global_step:>8}  SPS {sps:>5}  mean return (last 100 episodes) {recent}", flush=True)
        # Run management: the divergence guard, a checkpoint when due, and a stop signal's exit (ppo_run.py)
        run.end_iteration(iteration, agent, stats, grad_norms, state)
    train_time = time.time() - start_time
    envs.close()
    eval_returns = evaluate(agent, obs_rms, args.env_id, args.eval_episodes, args.seed + 10_000, writer,
                            global_step, run.video_dir)
    run.finish(state)  # with --save-model, the final model in the checkpoint format
    return {"sps": (global_step - start_step) / train_time, "global_step": global_step, "eval_returns": eval_returns,
            "episode_returns": recent_returns, "run_dir": args.run_dir, "agent": agent, "obs_rms": obs_rms}


# ---- Logging -----------------------------------------------------------------------------------
def log_iteration(writer, step: int, means: torch.Tensor, returns: torch.Tensor, values: torch.Tensor,
                  charts: dict) -> None:
    """An iteration's TensorBoard scalars, under CleanRL's tags: the losses' means over its updates, the
    explained variance 1 - Var[V_targ - V] / Var[V_targ] of pi_old's values, and `charts` (schedules, speed)."""
    for tag, value in zip(["policy_loss", "value_loss", "entropy", "approx_kl", "clipfrac"], means.tolist()):
        writer.add_scalar(f"losses/{tag}", value, step)
    var_returns = returns.var().item()
    explained_var = float("nan") if var_returns == 0 else 1 - (returns - values).var().item() / var_returns
    writer.add_scalar("losses/explained_variance", explained_var, step)
    for tag, value in charts.items():
        writer.add_scalar(f"charts/{tag}", value, step)


# ---- Evaluation ---------------------------------------------------------------------------------
EVAL_STEP_CAP = 27_000  # Atari's 108,000 frames


def evaluate(agent: Agent, obs_rms: RunningMeanStd, env_id: str, episodes: int, seed: int, writer=None,
             global_step: int = 0, video_dir: str | None = None) -> list:
    """Returns of whole episodes with the deterministic policy (the Gaussian mean) and the observation
    statistics frozen as training left them; their mean is printed and logged. An env without a time limit
    gets one of EVAL_STEP_CAP steps, or a policy that never ends an episode would never return."""
    if episodes == 0:
        return []
    env = make_envs(env_id, 1, video_dir, eval_episodes=episodes)
    cap = env.envs[0].spec.max_episode_steps or EVAL_STEP_CAP
    returns = []
    obs, _ = env.reset(seed=seed)
    ep_return, ep_length = 0.0, 0
    while len(returns) < episodes:
        action = agent.act(obs_rms.normalize(obs), None, deterministic=True)
        obs, reward, terminated, truncated, _ = env.step(agent.env_action(action))
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


# ---- Saving and restoring: what PPO needs to act and to continue ---------------------------------------
def checkpoint(args, agent, optimizer, obs_rms, reward_scaler, rng, iteration, global_step, recent_returns) -> dict:
    """All a run needs to act and to continue, as CPU tensors and plain Python values: plain torch.load reads it.
    Without the observation statistics a saved policy would see other inputs and act badly. ppo_run.py fills in
    the run's W&B id and video counter."""
    space, np_rng = agent.action_space, np.random.get_state()
    return {"script": "ppo_continuous", "env_id": args.env_id, "args": vars(args), "model": agent.state_dict(),
            "obs_rms": rms_state(obs_rms), "reward_rms": rms_state(reward_scaler.rms),
            "action_space": [torch.from_numpy(space.low), torch.from_numpy(space.high)],
            "optimizer": optimizer.state_dict(), "iteration": iteration, "global_step": global_step,
            "recent_returns": recent_returns[-100:], "env0_episodes": 0, "wandb_id": None,
            "rng": [random.getstate(), torch.get_rng_state(), (np_rng[0], np_rng[1].tolist(), *np_rng[2:]),
                    rng.bit_generator.state]}


def rms_state(rms: RunningMeanStd) -> list:
    return [torch.as_tensor(np.asarray(rms.mean)), torch.as_tensor(np.asarray(rms.var)), float(rms.count)]


def load_rms(rms: RunningMeanStd, state: list) -> RunningMeanStd:
    rms.mean, rms.var, rms.count = state[0].numpy(), state[1].numpy(), state[2]
    return rms


def restore(ckpt: dict, agent: Agent, optimizer, obs_rms: RunningMeanStd, reward_scaler: RewardScaler,
            rng) -> tuple[int, int, list, int]:
    """--resume: the networks, optimiser, both statistics and the RNG states as the checkpoint holds them, in
    place; returns the iteration, global step, recent returns and the envs' seed. The reward scaler's running
    returns restart at zero, with the envs' new episodes."""
    agent.load_state_dict(ckpt["model"])  # in place, so act()'s numpy views stay valid
    optimizer.load_state_dict(ckpt["optimizer"])
    load_rms(obs_rms, ckpt["obs_rms"])
    load_rms(reward_scaler.rms, ckpt["reward_rms"])
    rng.bit_generator.state = ckpt["rng"][3]
    return ppo_run.resume_point(ckpt)


def agent_from(ckpt: dict) -> tuple[Agent, RunningMeanStd]:
    """The trained agent and its frozen observation statistics, from a checkpoint alone."""
    obs_rms = load_rms(RunningMeanStd(len(ckpt["obs_rms"][0]), ckpt["args"]["obs_clip"]), ckpt["obs_rms"])
    agent = Agent(len(obs_rms.mean), gym.spaces.Box(*(bound.numpy() for bound in ckpt["action_space"])))
    agent.load_state_dict(ckpt["model"])
    return agent, obs_rms


class RunAlone:
    """Run management without ppo_run.py: the run folder, TensorBoard's log, videos and --save-model's final model."""
    ckpt = None  # nothing to resume

    def __init__(self, args: Args):
        check_args(args)
        name = f"runs/{args.env_id.replace('/', '-')}__{args.exp_name}__{args.seed}__{int(time.time())}"
        self.args = dataclasses.replace(args, run_dir=args.run_dir or name)
        self.video_dir = os.path.join(self.args.run_dir, "videos") if args.capture_video else None

    def start(self, envs) -> SummaryWriter:
        self.writer = SummaryWriter(self.args.run_dir)
        return self.writer

    def end_iteration(self, *_) -> None:
        pass

    def finish(self, checkpoint) -> None:
        if self.args.save_model:
            torch.save(checkpoint(), os.path.join(self.args.run_dir, f"{self.args.exp_name}.pt"))
        self.writer.close()


if __name__ == "__main__":
    args = ppo_run.parse(Args, "ppo_continuous") if ppo_run else tyro.cli(Args)
    if args.eval_checkpoint and ppo_run:
        ppo_run.replay(args, "ppo_continuous", check_args, agent_from, evaluate, make_envs)
    else:
        main(args)  # check_args refuses --eval-checkpoint without ppo_run.py
