"""Run management shared by ppo_clip.py, ppo_kl_adaptive.py, ppo_continuous.py and ppo_atari.py, so that each
script reads as Algorithm 1: the run folder; atomic checkpoints, read back and checked; --resume with the run's
own settings and RNG states; SIGTERM and Ctrl-C, which stop the run at the end of the iteration with a
checkpoint; the divergence guard; --eval-checkpoint; video numbers across a resume; and --track (W&B).

It holds no algorithm: what a checkpoint holds is each script's own (its `checkpoint`, `restore` and
`agent_from`). A script copied without this file still trains, logs, records video, saves and evaluates."""
import dataclasses
import os
import random
import signal
import sys
import time

import gymnasium as gym
import numpy as np
import torch
import tyro
from torch.utils.tensorboard import SummaryWriter

CHECKPOINT_MINUTES = 5  # the default interval between checkpoints, in wall time
# The flags that leave learning alone, so that a resumed run may take new values of them (a script adds its own):
RESUME_FLAGS = {"resume", "run_dir", "checkpoint_every", "save_model", "eval_episodes", "capture_video", "threads",
                "eval_checkpoint", "track", "wandb_project_name", "wandb_entity"}


# ---- Checkpoints ------------------------------------------------------------------------------
def save_checkpoint(ckpt: dict, path: str) -> None:
    """Write a temporary file, then rename it over the old one: a kill during a save leaves the last one whole."""
    with open(path + ".tmp", "wb") as f:
        torch.save(ckpt, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(path + ".tmp", path)


def load_checkpoint(path: str, Args: type, script: str, removed: dict | None = None) -> dict:
    """A checkpoint of `script`, from its file or its run folder, or one line and exit. A flag this version dropped
    (`removed`: the value of it that behaves as the script does now) is forgotten where saved at that value."""
    path = os.path.join(path, "checkpoint.pt") if os.path.isdir(path) else path
    try:
        ckpt = torch.load(path)
    except Exception as e:  # missing, truncated, or not a checkpoint at all
        sys.exit(f"error: cannot read checkpoint {path}: {(str(e).splitlines() or [type(e).__name__])[0]}")
    if not isinstance(ckpt, dict) or ckpt.get("script") != script or not isinstance(ckpt.get("args"), dict):
        sys.exit(f"error: {path} is not a checkpoint of this {script}.py")
    saved = {k: v for k, v in ckpt["args"].items() if not (k in (removed or {}) and v == removed[k])}
    fields = {f.name for f in dataclasses.fields(Args)}
    if set(saved) != fields:
        differ = [f"--{k.replace('_', '-')} {saved[k]!r} (not in this version)" for k in sorted(set(saved) - fields)]
        differ += [f"--{k.replace('_', '-')} (not in the checkpoint)" for k in sorted(fields - set(saved))]
        sys.exit(f"error: {path} comes from another version of {script}.py: {'; '.join(differ)}")
    return ckpt | {"args": saved, "path": path}


def parse(Args: type, script: str, removed: dict | None = None):
    """The command line. With --resume or --eval-checkpoint, a flag not typed takes the run's saved value, and
    one typed counts even at its default (so that Run can refuse a change)."""
    args = tyro.cli(Args)
    if args.resume or args.eval_checkpoint:
        saved = Args(**load_checkpoint(args.resume or args.eval_checkpoint, Args, script, removed)["args"])
        args = tyro.cli(Args, default=dataclasses.replace(saved, resume=args.resume,
                                                          eval_checkpoint=args.eval_checkpoint))
    return args


def resume_point(ckpt: dict, episodes: str = "episodes") -> tuple[int, int, list, int]:
    """Python's, torch's and numpy's RNG states as the checkpoint saved them (the fourth, the script's own, is
    the script's to restore), and where the run stands: iteration, global step, recent returns, the envs' seed.
    No env can save its state, so they begin new episodes, seeded from the run's seed and the iteration: two
    resumes from one checkpoint are the same run."""
    python, torch_state, (name, key, *rest), _ = ckpt["rng"]
    random.setstate(python)
    torch.set_rng_state(torch_state)
    np.random.set_state((name, np.array(key, np.uint32), *rest))
    print(f"resumed from {ckpt['path']} at step {ckpt['global_step']}; the envs begin new {episodes}", flush=True)
    env_seed = int(np.random.SeedSequence([ckpt["args"]["seed"], ckpt["iteration"]]).generate_state(1)[0])
    return ckpt["iteration"], ckpt["global_step"], list(ckpt["recent_returns"]), env_seed


# ---- Video and W&B ----------------------------------------------------------------------------
def first_video_episode(video_dir: str | None, ckpt: dict | None) -> int:
    """A resumed run numbers env 0's episodes on from its checkpoint, and past any video the stopped run
    recorded after it: no video is overwritten."""
    names = os.listdir(video_dir) if video_dir and os.path.isdir(video_dir) else []
    recorded = [int(n[len("train-episode-"):-len(".mp4")]) for n in names if n.startswith("train-episode-")]
    return max([ckpt["env0_episodes"] + 1 if ckpt else 0] + [n + 1 for n in recorded])


def start_tracking(args, wandb_id: str | None):
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


# ---- The run ----------------------------------------------------------------------------------
class Run:
    """A training run's folder, logs, checkpoints, stop signals and divergence guard, met at four places in
    main(): made at the start, `start` once the envs are made, `end_iteration` and `finish`."""

    def __init__(self, args, script: str, check_args, resume_flags: set = frozenset(), removed: dict | None = None):
        self.script, self.ckpt = script, None
        if args.resume:  # the run's Args: a flag outside the resume flags that differs would break its schedules
            self.ckpt = load_checkpoint(args.resume, type(args), script, removed)
            for name, value in vars(args).items():
                if name not in RESUME_FLAGS | resume_flags and value != self.ckpt["args"][name]:
                    sys.exit(f"error: --{name.replace('_', '-')} cannot change on --resume (the run keeps its "
                             "settings)")
            args = dataclasses.replace(args, run_dir=os.path.dirname(os.path.abspath(self.ckpt["path"])))
        check_args(args)
        env_name = args.env_id.replace("/", "-")  # ALE/Pong-v5
        run_dir = args.run_dir or f"runs/{env_name}__{args.exp_name}__{args.seed}__{int(time.time())}"
        self.args = dataclasses.replace(args, run_dir=run_dir)
        logged = os.path.isdir(run_dir) and any(n.startswith("events.out.tfevents") for n in os.listdir(run_dir))
        if not self.ckpt and (logged or os.path.exists(os.path.join(run_dir, "checkpoint.pt"))):
            sys.exit(f"error: {run_dir} holds a run already: continue it with --resume {run_dir}, "
                     "or choose another --run-dir")
        self.num_iterations = args.total_timesteps // (args.num_envs * args.num_steps)
        if self.ckpt and self.ckpt["iteration"] == self.num_iterations:
            print(f"{run_dir} is complete at step {self.ckpt['global_step']}: nothing to resume")
            sys.exit(0)
        self.video_dir = os.path.join(run_dir, "videos") if args.capture_video else None
        self.first_video_episode = first_video_episode(self.video_dir, self.ckpt)
        self.every, self.path = args.checkpoint_every, os.path.join(run_dir, "checkpoint.pt")
        self.last = (self.ckpt["path"], self.ckpt["iteration"]) if self.ckpt else None  # the last good checkpoint
        self.stop, self.wandb_id = None, self.ckpt["wandb_id"] if self.ckpt else None

    def start(self, envs) -> SummaryWriter:
        """Open the run folder, W&B and TensorBoard, now that the envs are made (a bad env id leaves no folder),
        and catch the stop signals. Returns the TensorBoard writer."""
        args, ckpt = self.args, self.ckpt
        self.envs, self.saved_at = envs, time.time()
        try:
            os.makedirs(args.run_dir, exist_ok=True)
            # W&B first: it mirrors only the SummaryWriters made after it starts.
            self.tracker = start_tracking(args, self.wandb_id) if args.track else None
            self.wandb_id = self.tracker.id if self.tracker else self.wandb_id  # an offline fallback gets a new id
            # purge_step: a resumed run drops what the stopped one logged after its checkpoint
            self.writer = SummaryWriter(args.run_dir, purge_step=ckpt["global_step"] + 1 if ckpt else None)
            if args.save_model:  # the final model's file is tried now, not after the whole run
                test = os.path.join(args.run_dir, f"{args.exp_name}.pt.tmp")
                open(test, "wb").close()
                os.remove(test)
        except OSError as e:
            sys.exit(f"error: cannot write the run folder {args.run_dir}: {e}")
        if not ckpt:
            table = "\n".join(f"|{k}|{v}|" for k, v in vars(args).items())
            self.writer.add_text("hyperparameters", "|param|value|\n|-|-|\n" + table)
        recorder = self.recorder() if self.video_dir else None
        if recorder:  # numbered on past the stopped run's videos (ppo_atari.py's workers number their own)
            recorder.episode_id = self.first_video_episode - 1  # RecordVideo adds one at each reset
        self.videos = os.path.join(args.run_dir, "videos")
        self.logged = set(os.listdir(self.videos)) if os.path.isdir(self.videos) else set()
        for sig in (signal.SIGTERM, signal.SIGINT):  # clusters send SIGTERM before they pre-empt
            signal.signal(sig, lambda signum, frame: setattr(self, "stop", signum))
        return self.writer

    def recorder(self):
        """Env 0's RecordVideo, where it can be reached: in this process (SyncVectorEnv), not in a worker."""
        env = (getattr(self.envs, "envs", None) or [None])[0]
        while isinstance(env, gym.Wrapper) and not isinstance(env, gym.wrappers.RecordVideo):
            env = env.env
        return env if isinstance(env, gym.wrappers.RecordVideo) else None

    def save(self, checkpoint, path: str) -> None:
        """The script's checkpoint, with the run's W&B id and the number of env 0's episode now under way (it
        names that episode's video; without a recorder in reach, the number stays as the checkpoint had it)."""
        recorder = self.recorder() if self.video_dir else None
        env0 = recorder.episode_id if recorder else self.ckpt["env0_episodes"] if self.ckpt else 0
        save_checkpoint(checkpoint() | {"wandb_id": self.wandb_id, "env0_episodes": env0}, path)

    def end_iteration(self, iteration: int, agent: torch.nn.Module, losses: torch.Tensor, grad_norms: torch.Tensor,
                      checkpoint) -> None:
        """The divergence guard; then a checkpoint every `every` iterations (by default every CHECKPOINT_MINUTES),
        at the end and on a stop signal, which then ends the run here, between two iterations."""
        params = torch.cat([p.detach().flatten() for p in agent.parameters()])
        for name, value in [("losses", losses), ("gradient norm", grad_norms), ("parameters", params)]:
            if not value.isfinite().all():
                last = f"the last good checkpoint is {self.last[0]} (iteration {self.last[1]})" if self.last else None
                self.writer.close()  # what was logged up to here, the non-finite values included, is on disk
                self.restore_signals()
                sys.exit(f"error: training diverged at iteration {iteration}: non-finite {name}; "
                         f"{last or 'no checkpoint was saved yet'}")
        last_iteration = iteration == self.num_iterations
        due = last_iteration or (iteration % self.every == 0 if self.every else
                                 time.time() - self.saved_at >= 60 * CHECKPOINT_MINUTES)
        if self.stop or due and self.every != 0:
            self.writer.flush()  # TensorBoard holds every step up to the checkpoint, even if the run is killed
            self.save(checkpoint, self.path)
            self.last, self.saved_at = (self.path, iteration), time.time()
        self.log_videos()
        if self.stop:
            self.restore_signals()
            print(f"stopped by {signal.Signals(self.stop).name} at iteration {iteration}; continue with: "
                  f"python {self.script}.py --resume {os.path.dirname(self.path)}", file=sys.stderr, flush=True)
            sys.exit(128 + self.stop)
        if last_iteration:  # Ctrl-C during the evaluation stops it at once
            self.restore_signals()

    def restore_signals(self) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def log_videos(self) -> None:
        """Send W&B each new video as a wandb.Video: its monitor_gym breaks on gymnasium 1.x (wandb #10339, #11193)."""
        new = sorted(set(os.listdir(self.videos)) - self.logged) if self.tracker and os.path.isdir(self.videos) else []
        for name in (n for n in new if n.endswith(".mp4")):
            video = sys.modules["wandb"].Video(os.path.join(self.videos, name))
            self.tracker.log({f"videos/{name.split('-')[0]}": video})
            self.logged.add(name)

    def finish(self, checkpoint) -> None:
        """With --save-model the final model, in the checkpoint format; then the logs are closed."""
        self.restore_signals()
        if self.args.save_model:
            path = os.path.join(self.args.run_dir, f"{self.args.exp_name}.pt")
            self.save(checkpoint, path)
            print(f"model saved to {path}")
        self.writer.close()  # before W&B finishes, so that it mirrors the last events
        self.log_videos()
        if self.tracker:
            self.tracker.finish()


def replay(args, script: str, check_args, agent_from, evaluate, make_envs, removed: dict | None = None) -> list:
    """--eval-checkpoint: the final evaluation of training, on the agent (and its statistics) the script's
    agent_from rebuilds, logged to <its run folder>/eval; another --env-id must have the spaces it learned on."""
    check_args(args)
    ckpt = load_checkpoint(args.eval_checkpoint, type(args), script, removed)
    agent = agent_from(ckpt)
    if args.eval_episodes < 1:
        sys.exit(f"error: --eval-episodes must be positive with --eval-checkpoint, got {args.eval_episodes}")
    if args.env_id != ckpt["env_id"]:
        envs, saved = make_envs(args.env_id, 1), ckpt["action_space"]  # a Discrete space's n, or a Box's bounds
        obs_shape = tuple(ckpt["obs_rms"][0].shape) if "obs_rms" in ckpt else envs.single_observation_space.shape
        space = gym.spaces.Discrete(saved) if isinstance(saved, int) else gym.spaces.Box(*(b.numpy() for b in saved))
        if envs.single_observation_space.shape != obs_shape or envs.single_action_space != space:
            sys.exit(f"error: {args.env_id}'s spaces differ from those of {ckpt['env_id']}, where the model learned")
        print(f"{args.env_id} has the spaces of {ckpt['env_id']}, where the model learned: evaluating on it")
    folder = os.path.join(os.path.dirname(os.path.abspath(ckpt["path"])), "eval")
    writer = SummaryWriter(folder)
    returns = evaluate(*(agent if isinstance(agent, tuple) else [agent]), args.env_id, args.eval_episodes,
                       args.seed + 10_000, writer, ckpt["global_step"],
                       os.path.join(folder, "videos") if args.capture_video else None)
    writer.close()
    return returns
