"""PPO-Clip on Atari: Schulman et al., "Proximal Policy Optimization Algorithms", 2017 (arXiv 1707.06347).

Algorithm 1 with the clipped surrogate of eq. (7), the combined objective of eq. (9) and the truncated GAE advantages of
eq. (11)-(12), with the paper's Atari settings (Table 5): 8 actors, T = 128, K = 3, minibatch 256, stepsize 2.5e-4 *
alpha and eps = 0.1 * alpha with alpha annealed from 1 to 0, and the Nature CNN shared by the policy and value heads.

    python ppo_atari.py                                   # BreakoutNoFrameskip-v4, 10M steps
    python ppo_atari.py --env-id ALE/Pong-v5 --total-timesteps 1000000   # any ALE game; other envs: ppo_clip.py
    python ppo_atari.py --help                            # every hyperparameter
    python ppo_atari.py --resume runs/<run>               # continue a stopped run from its last checkpoint
    python ppo_atari.py --eval-checkpoint runs/<run> --capture-video   # watch a trained agent
    tensorboard --logdir runs

Run management (checkpoints, resume, stop signals, the divergence guard, replay, W&B) is ppo_run.py's, shared
by the four scripts; copied without it, this file still trains, logs, records video, saves and evaluates.

What differs from ppo_clip.py: the Atari wrappers, the CNN, uint8 observation storage, acting in torch,
and pi_old's log-probs and values kept from the acting forward pass instead of recomputed.

Conventions, written once:
- Step t of env i yields `terminated[t, i]` (a true end: the value after it is 0) and `truncated[t, i]` (a time limit:
  V(final_obs) is bootstrapped into the reward). A lost life counts as `terminated` for training (episodic life),
  although the game goes on. Both set `dones[t, i] = 1`, so that neither V(s_{t+1}) nor A_{t+1} reaches step t in GAE.
- The reported episodic return is the game's score: all lives, rewards unclipped.
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

import ale_py
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

gym.register_envs(ale_py)


@dataclasses.dataclass
class Args:
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """name of this experiment, part of the run directory"""
    env_id: str = "BreakoutNoFrameskip-v4"
    """an ALE game: `<Game>NoFrameskip-v4` as in the paper, or `ALE/<Game>-v5` (sticky actions)"""
    seed: int = 1
    """seed of python, numpy, torch and the envs"""
    cuda: bool = True
    """train on the GPU when torch sees one (CleanRL's flag); the CPU otherwise"""
    torch_deterministic: bool = True
    """set cudnn.deterministic for GPU runs (CleanRL's flag); a CPU run is deterministic either way"""
    threads: int = 2
    """torch CPU threads (not in the paper); 2 ran 282 SPS against 204 for 1 on this idle 2-core machine"""
    bf16: bool = False
    """run the CNN trunk in bfloat16 (autocast), heads and loss in float32: on this AMX CPU 3% to 50% faster,
    as the machine's state went; off: it changes the arithmetic, checked on one seed (README; not in the paper)"""
    async_envs: bool = False
    """step the N games in subprocesses (AsyncVectorEnv). Off: on this idle 2-core machine it trained at 280 against
    263 SPS (README), within the machine's noise, and sync is one process"""
    capture_video: bool = False
    """record env 0's games (the real screen) on CleanRL's schedule, and each evaluation game, to <run folder>/videos"""
    track: bool = False
    """log the run to Weights & Biases; without a login or a network it logs offline, to sync later (ppo_run.py)"""
    wandb_project_name: str = "ppo"
    """W&B project"""
    wandb_entity: str | None = None
    """W&B entity (a user or team); by default your own"""
    save_model: bool = False
    """save the final model to <run folder>/<exp_name>.pt, in the checkpoint format"""
    run_dir: str | None = None
    """the run folder: TensorBoard, checkpoints, the final model (default runs/<env>__<exp>__<seed>__<time>)"""
    checkpoint_every: int | None = None
    """save <run folder>/checkpoint.pt every N iterations; 0 never; by default every 5 minutes (ppo_run.py)"""
    resume: str | None = None
    """continue a stopped run from its checkpoint (file or run folder), with its own settings (ppo_run.py)"""
    eval_checkpoint: str | None = None
    """no training: play --eval-episodes games with a saved model (file or run folder) (ppo_run.py)"""
    eval_episodes: int = 10
    """whole games played by the trained policy after training (0 skips; not in the paper)"""
    total_timesteps: int = 10_000_000
    """total env steps (each 4 frames); Table 5 uses 10M = 40M frames"""
    num_envs: int = 8
    """N in Algorithm 1, parallel actors; Table 5 uses 8"""
    num_steps: int = 128
    """T in Algorithm 1, steps per actor per iteration; Table 5 uses 128"""
    update_epochs: int = 3
    """K in Algorithm 1, epochs over each batch; Table 5 uses 3"""
    num_minibatches: int = 4
    """minibatches per epoch, so M = N*T / 4 = 256 as in Table 5 (32 * 8)"""
    learning_rate: float = 2.5e-4
    """Adam stepsize at alpha = 1; Table 5 uses 2.5e-4 * alpha"""
    anneal_lr: bool = True
    """anneal the stepsize with alpha, linearly from 1 to 0 (Table 5)"""
    anneal_clip: bool = True
    """anneal epsilon with alpha, linearly from 1 to 0 (Table 5)"""
    gamma: float = 0.99
    """discount gamma; Table 5 uses 0.99"""
    gae_lambda: float = 0.95
    """GAE lambda of eq. (11); Table 5 uses 0.95"""
    clip_coef: float = 0.1
    """epsilon of eq. (7) at alpha = 1; Table 5 uses 0.1 * alpha"""
    ent_coef: float = 0.01
    """c2 of eq. (9), the entropy bonus; Table 5 uses 0.01"""
    vf_coef: float = 1.0
    """c1 of eq. (9), the value loss weight; Table 5 uses 1. CleanRL's loss weighs the squared error 0.25,
    which scored higher on one Breakout seed at 1M steps (README)"""
    clip_vloss: bool = False
    """clip the value update like the policy's (baselines' ppo2, CleanRL's default; not in the paper). CleanRL's
    settings: --update-epochs 4 --no-anneal-clip --vf-coef 0.25 --clip-vloss"""
    max_grad_norm: float = 0.5
    """global gradient-norm clip (Huang et al. 2022; not in the paper)"""
    norm_adv: bool = True
    """normalise advantages per minibatch (Huang et al. 2022; not in the paper)"""


def check_args(args: Args) -> None:
    """Refuse bad input before any training, in one line."""
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
    for name in ["resume", "eval_checkpoint", "track", "checkpoint_every"]:
        if getattr(args, name) not in (None, False) and not ppo_run:
            sys.exit(f"error: --{name.replace('_', '-')} needs ppo_run.py beside {__file__}: copy it from this project")


# ---- Environments -----------------------------------------------------------------------------
class EpisodicLifeFireReset(gym.Wrapper):
    """The two Atari details gymnasium has no wrapper for (Mnih et al. 2015; Huang et al. 2022).

    Episodic life: a lost life returns terminated=True, so no value flows back across it, but reset() goes on with the
    same game instead of a new one (AtariPreprocessing's terminal_on_life_loss would end the game). Fire on reset: games
    that wait for FIRE to serve get it after every reset and lost life, so no policy stalls before its first move."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        meanings = env.unwrapped.get_action_meanings()
        self.fire = len(meanings) >= 3 and meanings[1] == "FIRE"
        self.lives, self.game_over = 0, True

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.game_over = terminated or truncated
        lives = self.env.unwrapped.ale.lives()
        life_lost = 0 < lives < self.lives
        self.lives = lives
        return obs, reward, terminated or life_lost, truncated, info

    def reset(self, *, seed=None, options=None):
        if self.game_over or seed is not None:
            obs, info = self.env.reset(seed=seed, options=options)  # a new game, with AtariPreprocessing's no-ops
        if self.fire or not self.game_over:  # serve, or after a lost life without FIRE a no-op to move on
            obs, _, terminated, truncated, info = self.env.step(1 if self.fire else 0)
            if terminated or truncated:  # the serve lost the last life: a new game, and the ended one's score
                ended = info  # ... goes out with this reset's info (RecordEpisodeStatistics' "episode")
                obs, info = self.env.reset(options=options)
                info = info | {key: ended[key] for key in ["episode"] if key in ended}
        self.lives, self.game_over = self.env.unwrapped.ale.lives(), False
        return obs, info


def games_ended(info: dict):
    """(env, score, length) of each whole game that ended in a vector step: in the step itself (final_info),
    or in the serve that followed a lost life, inside the step's autoreset (the reset's info)."""
    for source in [info.get("final_info", {}), info]:
        for i in np.flatnonzero(source.get("_episode", [])):
            yield i, source["episode"]["r"][i], source["episode"]["l"][i]


def make_env(env_id: str, video_dir: str | None = None, first_episode: int = 0, eval_episodes: int = 0) -> gym.Env:
    """One game, wrapped as in the paper (Mnih et al. 2015's preprocessing): observations (4, 84, 84) uint8."""
    # frameskip=1: AtariPreprocessing skips. obs_type="grayscale": a third of the bytes of the RGB frame,
    # which AtariPreprocessing never reads (it asks the emulator for its screen itself).
    env = gym.make(env_id, frameskip=1, obs_type="grayscale", render_mode="rgb_array" if video_dir else None)
    if video_dir:  # the real screen, every frame of whole games
        with warnings.catch_warnings(action="ignore"):  # "overwriting": a resumed run numbers videos on
            env = gym.wrappers.RecordVideo(env, video_dir, (lambda e: e < eval_episodes) if eval_episodes else None,
                                           name_prefix="eval" if eval_episodes else "train")
        env.episode_id = first_episode - 1
    # No-op reset (1 to 30), frame skip 4 with the max over the last two frames, 84x84 grayscale.
    env = gym.wrappers.AtariPreprocessing(env, noop_max=30, frame_skip=4, screen_size=84)
    env = gym.wrappers.RecordEpisodeStatistics(env)  # inside the life wrapper: whole games, unclipped rewards
    env = EpisodicLifeFireReset(env)
    env = gym.wrappers.TransformReward(env, np.sign)  # reward sign clipping, the training signal only
    return gym.wrappers.FrameStackObservation(env, 4)


def make_envs(env_id: str, num_envs: int, video_dir: str | None = None, first_episode: int = 0,
              async_envs: bool = False, eval_episodes: int = 0) -> gym.vector.VectorEnv:
    """N games. SAME_STEP autoreset returns an ended episode's final observation in info["final_obs"] and the next one's
    first at once, so no fake transition across the reset enters the batch. video_dir records env 0's games: in training
    on CleanRL's schedule (0, 1, 8, 27, ..., 729, 1000, 2000, ...), or the evaluation's."""
    try:
        probe = gym.make(env_id, disable_env_checker=True)
    except Exception as e:  # an unknown id, a module that will not import (`mod:Env-v0`), a malformed id
        sys.exit(f"error: cannot make env {env_id!r}: {(str(e).splitlines() or [type(e).__name__])[0]}")
    is_atari = isinstance(probe.unwrapped, ale_py.AtariEnv)
    probe.close()
    if not is_atari:
        sys.exit(f"error: {env_id} is not an Atari (ALE) game; ppo_atari.py trains only those, "
                 "use ppo_clip.py for other envs")

    def make(i: int) -> gym.Env:
        if async_envs:  # in a worker: a terminal's Ctrl-C reaches every process; the main process handles it
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        return make_env(env_id, video_dir, first_episode, eval_episodes) if i == 0 else make_env(env_id)
    vector = gym.vector.AsyncVectorEnv if async_envs else gym.vector.SyncVectorEnv
    try:
        return vector([lambda i=i: make(i) for i in range(num_envs)], autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    except gym.error.DependencyNotInstalled as e:
        sys.exit(f"error: {env_id} needs a missing dependency: {str(e).splitlines()[0]}")


def pick_device(cuda: bool) -> torch.device:
    """The GPU if asked for and torch sees one, else the CPU; one line says which."""
    device = torch.device("cuda" if cuda and torch.cuda.is_available() else "cpu")
    note = " (--cuda, but torch sees no GPU)" if cuda and device.type == "cpu" else ""
    print(f"device: {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}{note}", flush=True)
    return device


def to_device(frames: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 frames to the device: on CUDA from pinned memory, not blocking (pin_memory fails on a CPU-only build)."""
    frames = torch.from_numpy(frames)
    return frames.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else frames


# ---- Network ----------------------------------------------------------------------------------
def layer(module: nn.Module, gain: float) -> nn.Module:
    """Orthogonal weights and zero biases (Huang et al. 2022; not in the paper)."""
    nn.init.orthogonal_(module.weight, gain)
    nn.init.zeros_(module.bias)
    return module


def space_to_depth(x: torch.Tensor, k: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, C*k*k, H/k, W/k): each k x k block of pixels becomes k*k channels."""
    b, c, h, w = x.shape
    return x.reshape(b, c, h // k, k, w // k, k).permute(0, 1, 3, 5, 2, 4).reshape(b, c * k * k, h // k, w // k)


class Agent(nn.Module):
    """The Nature CNN (Mnih et al. 2015) as a trunk shared by the policy and value heads (Table 5)."""

    def __init__(self, num_actions: int, bf16: bool = False):
        super().__init__()
        self.bf16, g = bf16, math.sqrt(2)
        self.conv1 = layer(nn.Conv2d(4, 32, 8, stride=4), g)  # (B, 32, 20, 20); applied in forward()
        self.trunk = nn.Sequential(
            nn.ReLU(), layer(nn.Conv2d(32, 64, 4, stride=2), g),   # (B, 64, 9, 9)
            nn.ReLU(), layer(nn.Conv2d(64, 64, 3, stride=1), g),   # (B, 64, 7, 7)
            nn.ReLU(), nn.Flatten(), layer(nn.Linear(64 * 7 * 7, 512), g), nn.ReLU())  # (B, 512)
        self.actor = layer(nn.Linear(512, num_actions), 0.01)  # near-zero head: a near-uniform first policy
        self.critic = layer(nn.Linear(512, 1), 1.0)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """obs (B, 4, 84, 84) uint8 pixels -> policy logits (B, num_actions), values (B,)."""
        # Speed: conv1 (8x8 kernel, stride 4) computed as the same sum over a 2x2 kernel, stride 1, on
        # 4x4 pixel blocks turned into channels. The weights are conv1's, rearranged; the output is
        # conv1(obs / 255) up to float rounding, and its forward and backward take half the time on CPU.
        x = space_to_depth(obs, 4).float().div_(255.0)  # (B, 64, 21, 21); pixels to [0, 1] here, and only here
        w = space_to_depth(self.conv1.weight, 4)  # (32, 4, 8, 8) -> (32, 64, 2, 2)
        with torch.autocast(obs.device.type, torch.bfloat16, enabled=self.bf16):
            hidden = self.trunk(nn.functional.conv2d(x, w, self.conv1.bias)).float()
        return self.actor(hidden), self.critic(hidden).squeeze(-1)

    def act(self, obs: torch.Tensor, deterministic: bool = False, generator: torch.Generator | None = None):
        """Sample actions (or take the likeliest) for (B, 4, 84, 84) observations; returns
        (actions, log pi_old(a|s), V(s)), each (B,), so the update needs no second pass over the batch."""
        logits, value = self(obs)
        logp = torch.log_softmax(logits, -1)
        action = logp.argmax(-1) if deterministic else torch.multinomial(logp.exp(), 1, generator=generator).squeeze(-1)
        return action, logp.gather(-1, action.unsqueeze(-1)).squeeze(-1), value


# ---- The math ---------------------------------------------------------------------------------
def categorical_logprob_entropy(logits, action):
    """Categorical: logits (B, n), action (B,) integer -> log pi(a), entropy -sum p log p, each (B,)."""
    logp = torch.log_softmax(logits, -1)
    logprob = logp.gather(-1, action.long().unsqueeze(-1)).squeeze(-1)
    entropy = -(logp.exp() * logp).sum(-1)
    return logprob, entropy


def compute_gae(rewards, values, dones, last_value, gamma, gae_lambda):
    """Truncated GAE, eq. (11)-(12), over a rollout of T steps in N envs.

    rewards, values, dones (the conventions above): (T, N); last_value: (N,) = V of the observation after step T-1.
    Returns (advantages, returns), both (T, N), with returns = advantages + values (the value targets)."""
    # numpy: a T-step loop of tiny ops is faster there, on the CPU, than in torch, even on a GPU
    r, v, d = rewards.cpu().numpy(), values.cpu().numpy(), dones.cpu().numpy()
    adv = np.zeros_like(r)
    next_value, next_adv = last_value.cpu().numpy(), np.zeros_like(r[0])
    for t in reversed(range(r.shape[0])):
        alive = 1.0 - d[t]
        delta = r[t] + gamma * next_value * alive - v[t]  # eq. (12)
        next_adv = adv[t] = delta + gamma * gae_lambda * alive * next_adv  # eq. (11), summed backwards
        next_value = v[t]
    advantages = torch.from_numpy(adv).to(values.device)
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


def annealed(args: Args, alpha: float) -> tuple[float, float]:
    """Table 5: Adam stepsize 2.5e-4 * alpha and eps 0.1 * alpha; a flag can hold either fixed."""
    return (args.learning_rate * (alpha if args.anneal_lr else 1), args.clip_coef * (alpha if args.anneal_clip else 1))


# ---- Training ---------------------------------------------------------------------------------
def main(args: Args) -> dict:
    """Train, as Algorithm 1; return a summary (SPS, episode returns, evaluation) for benchmarks/."""
    run = ppo_run.Run(args, "ppo_atari", check_args, RESUME_FLAGS) if ppo_run else RunAlone(args)
    args = run.args  # with --resume, the stopped run's
    batch_size = args.num_envs * args.num_steps
    minibatch_size = batch_size // args.num_minibatches
    num_iterations = args.total_timesteps // batch_size

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)  # also the policy's sampling noise
    torch.backends.cudnn.deterministic = args.torch_deterministic
    torch.set_num_threads(args.threads)
    device = pick_device(args.cuda)

    envs = make_envs(args.env_id, args.num_envs, run.video_dir, run.first_video_episode, args.async_envs)
    writer = run.start(envs)
    agent = Agent(envs.single_action_space.n, args.bf16).to(device)
    # Adam eps 1e-5 (Huang et al. 2022); fused: one kernel for all parameters, same update.
    optimizer = torch.optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5, fused=True)
    start_iteration, global_step, recent_returns, env_seed = (restore(run.ckpt, agent, optimizer) if run.ckpt
                                                              else (0, 0, [], args.seed))

    def state() -> dict:  # a checkpoint when one is due: the loop's variables as they are then
        return checkpoint(args, agent, optimizer, iteration, global_step, recent_returns)

    # Rollout storage, (T, N, ...). Frames stay uint8 (a quarter of float32's memory); the network scales them.
    obs_shape = envs.single_observation_space.shape  # (4, 84, 84)
    # The network, this storage and the update live on the device; only rewards and ends stay on the CPU.
    obs = torch.zeros((args.num_steps, args.num_envs, *obs_shape), dtype=torch.uint8, device=device)
    actions = torch.zeros((args.num_steps, args.num_envs), dtype=torch.long, device=device)
    logprobs = torch.zeros((args.num_steps, args.num_envs), device=device)
    values = torch.zeros((args.num_steps, args.num_envs), device=device)
    rewards = np.zeros((args.num_steps, args.num_envs), dtype=np.float32)
    dones = np.zeros((args.num_steps, args.num_envs), dtype=np.float32)

    start_step, start_time = global_step, time.time()
    next_obs, _ = envs.reset(seed=env_seed)
    for iteration in range(start_iteration + 1, num_iterations + 1):
        alpha = 1 - (iteration - 1) / num_iterations  # Table 5: alpha anneals linearly from 1 to 0
        lr, clip_coef = annealed(args, alpha)
        optimizer.param_groups[0]["lr"] = lr

        # ---- Algorithm 1: run pi_old in N actors for T timesteps ----
        trunc_steps, trunc_obs = [], []  # (t, i) of time-limit ends, and their final observations
        for t in range(args.num_steps):
            obs[t] = to_device(next_obs, device)
            with torch.inference_mode():
                # pi_old's log-probs and values are kept from this pass; a second pass over the batch
                # would cost more. They differ from a minibatch's by float rounding only (about 1e-8).
                actions[t], logprobs[t], values[t] = agent.act(obs[t])
            next_obs, rewards[t], terminated, truncated, info = envs.step(actions[t].cpu().numpy())
            global_step += args.num_envs
            dones[t] = terminated | truncated
            for i in np.flatnonzero(truncated & ~terminated):
                trunc_steps.append((t, i))
                trunc_obs.append(info["final_obs"][i])
            for i, score, length in games_ended(info):
                writer.add_scalar("charts/episodic_return", score, global_step)
                writer.add_scalar("charts/episodic_length", length, global_step)
                recent_returns.append(float(score))

        with torch.inference_mode():
            last_value = agent(to_device(next_obs, device))[1]
            if trunc_steps:
                # A time limit (108k frames) is not a true end: bootstrap r_t + gamma * V(final_obs).
                t_idx, i_idx = map(list, zip(*trunc_steps))
                rewards[t_idx, i_idx] += args.gamma * agent(to_device(np.stack(trunc_obs), device))[1].cpu().numpy()

            # ---- Algorithm 1: compute advantage estimates A_1 ... A_T ----
            advantages, returns = compute_gae(torch.from_numpy(rewards), values, torch.from_numpy(dones),
                                              last_value, args.gamma, args.gae_lambda)
        b_obs = obs.reshape(batch_size, *obs_shape)  # (T*N, 4, 84, 84)
        b_actions, b_logprobs, b_values = actions.reshape(-1), logprobs.reshape(-1), values.reshape(-1)
        b_advantages, b_returns = advantages.reshape(-1), returns.reshape(-1)

        # ---- Algorithm 1: optimise the surrogate for K epochs of minibatches of size M ----
        # Sums over minibatches, read once per iteration: policy loss, value loss, entropy, approx KL, clip fraction
        stats, grad_norms = torch.zeros(5, device=device), torch.zeros((), device=device)
        for epoch in range(args.update_epochs):
            perm = torch.randperm(batch_size, device=device)
            for start in range(0, batch_size, minibatch_size):
                mb = perm[start:start + minibatch_size]
                logits, new_value = agent(b_obs[mb])  # one pass through the shared trunk for both heads
                new_logprob, entropy = categorical_logprob_entropy(logits, b_actions[mb])
                mb_adv = b_advantages[mb]
                if args.norm_adv:
                    mb_adv = (mb_adv - mb_adv.mean()) / (mb_adv.std() + 1e-8)
                pg_loss = clipped_surrogate_loss(new_logprob, b_logprobs[mb], mb_adv, clip_coef)
                if args.clip_vloss:
                    v_loss = clipped_value_loss(new_value, b_values[mb], b_returns[mb], clip_coef)
                else:
                    v_loss = value_loss(new_value, b_returns[mb])
                entropy_mean = entropy.mean()
                loss = ppo_loss(pg_loss, v_loss, entropy_mean, args.vf_coef, args.ent_coef)

                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                grad_norms += nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm, foreach=True)
                optimizer.step()

                with torch.no_grad():
                    log_ratio = new_logprob - b_logprobs[mb]
                    approx_kl = (log_ratio.exp() - 1 - log_ratio).mean()  # unbiased KL[pi_old, pi] estimate
                    clipfrac = ((log_ratio.exp() - 1).abs() > clip_coef).float().mean()
                    stats += torch.stack([pg_loss, v_loss, entropy_mean, approx_kl, clipfrac])
        # theta_old <- theta happens implicitly: the next rollout samples from the updated network.
        # ---- Logging: means over the iteration's K * num_minibatches updates ----
        sps = int((global_step - start_step) / (time.time() - start_time))
        log_iteration(writer, global_step, stats / (args.update_epochs * args.num_minibatches), b_returns, b_values,
                      {"learning_rate": lr, "clip_coef": clip_coef, "SPS": sps})
        if iteration % max(1, num_iterations // 20) == 0 or iteration == num_iterations:
            recent = f"{np.mean(recent_returns[-100:]):.1f}" if recent_returns else "n/a"
            print(f"step {global_step:>8}  SPS {sps:>5}  mean game score (last 100 games) {recent}", flush=True)
        # Run management: the divergence guard, a checkpoint when due, and a stop signal's exit (ppo_run.py)
        run.end_iteration(iteration, agent, stats, grad_norms, state)
    train_time = time.time() - start_time
    envs.close()
    eval_returns = evaluate(agent, args.env_id, args.eval_episodes, args.seed + 10_000, writer, global_step,
                            run.video_dir)
    run.finish(state)  # with --save-model, the final model in the checkpoint format
    return {"sps": (global_step - start_step) / train_time, "global_step": global_step,
            "episode_returns": recent_returns, "eval_returns": eval_returns, "run_dir": args.run_dir, "agent": agent}


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


def evaluate(agent: Agent, env_id: str, episodes: int, seed: int, writer=None, global_step: int = 0,
             video_dir: str | None = None) -> list:
    """Scores of whole games (all lives, unclipped) with the policy sampled as in training. Not the likeliest action, as
    ppo_clip.py does: a deterministic Atari policy can repeat itself forever. A game still going after EVAL_STEP_CAP
    steps counts with its score so far. (The ALE ends the v4 and v5 ids' games at 108,000 frames itself; an id's
    max_episode_steps, unlike ppo_clip.py's, counts frames here.) The mean is printed and logged. The actions are
    sampled from a generator seeded by `seed`, so a replayed checkpoint scores what its run's final evaluation did."""
    if episodes == 0:
        return []
    env = make_envs(env_id, 1, video_dir, eval_episodes=episodes)
    game = env.envs[0].get_wrapper_attr  # RecordEpisodeStatistics' running score (unclipped) and length
    device = next(agent.parameters()).device
    returns, generator = [], torch.Generator(device).manual_seed(seed)
    obs, _ = env.reset(seed=seed)
    while len(returns) < episodes:
        with torch.inference_mode():
            action = agent.act(to_device(obs, device), generator=generator)[0]
        obs, _, _, _, info = env.step(action.cpu().numpy())
        scores = [float(score) for _, score, _ in games_ended(info)]
        returns += scores
        if not scores and game("episode_lengths") >= EVAL_STEP_CAP:
            print(f"evaluation: episode {len(returns) + 1} ended by the cap of {EVAL_STEP_CAP} steps", flush=True)
            returns.append(float(game("episode_returns")))
            obs, _ = env.reset(seed=seed + len(returns))  # a seed starts a new game, not the next life
    env.close()
    print(f"eval: {np.mean(returns):.1f} +- {np.std(returns):.1f} over {len(returns)} games", flush=True)
    if writer:
        writer.add_scalar("eval/episodic_return", np.mean(returns), global_step)
    return returns


# ---- Saving and restoring: what PPO needs to act and to continue ---------------------------------------
RESUME_FLAGS = {"async_envs", "cuda"}  # beside ppo_run.py's, flags a resumed run may change: they leave learning alone


def checkpoint(args, agent, optimizer, iteration, global_step, recent_returns) -> dict:
    """All a run needs to act and to continue, as CPU tensors and plain Python values: plain torch.load reads it.
    ppo_run.py fills in the run's W&B id and video counter."""
    np_rng = np.random.get_state()  # its key array goes in as a list
    return {"script": "ppo_atari", "env_id": args.env_id, "args": vars(args), "model": on_cpu(agent.state_dict()),
            "action_space": int(agent.actor.out_features), "optimizer": on_cpu(optimizer.state_dict()),
            "iteration": iteration, "global_step": global_step, "recent_returns": recent_returns[-100:],
            "env0_episodes": 0, "wandb_id": None,
            "rng": [random.getstate(), torch.get_rng_state(), (np_rng[0], np_rng[1].tolist(), *np_rng[2:]),
                    torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []]}


def on_cpu(state):
    """A state dict with every tensor on the CPU, so that a GPU run's checkpoint loads anywhere."""
    if isinstance(state, dict):
        return {k: on_cpu(v) for k, v in state.items()}
    if isinstance(state, list):
        return [on_cpu(v) for v in state]
    return state.cpu() if torch.is_tensor(state) else state


def restore(ckpt: dict, agent: Agent, optimizer) -> tuple[int, int, list, int]:
    """--resume: the network, optimiser and RNG states (CUDA's too, on a GPU) as the checkpoint holds them, in
    place; returns the iteration, global step, recent returns and the envs' seed."""
    agent.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    if ckpt["rng"][3] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(ckpt["rng"][3][:torch.cuda.device_count()])
    return ppo_run.resume_point(ckpt, "games")


def agent_from(ckpt: dict) -> Agent:
    """The trained agent, from a checkpoint alone."""
    agent = Agent(ckpt["action_space"], ckpt["args"]["bf16"])
    agent.load_state_dict(ckpt["model"])
    return agent


class RunAlone:
    """Run management without ppo_run.py: the run folder, TensorBoard's log, videos and --save-model's final model."""
    ckpt = None  # nothing to resume
    first_video_episode = 0

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
    args = ppo_run.parse(Args, "ppo_atari") if ppo_run else tyro.cli(Args)
    if args.eval_checkpoint and ppo_run:
        ppo_run.replay(args, "ppo_atari", check_args, lambda ckpt: agent_from(ckpt).to(pick_device(args.cuda)),
                       evaluate, make_envs)
    else:
        main(args)  # check_args refuses --eval-checkpoint without ppo_run.py
