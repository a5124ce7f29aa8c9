"""Run management shared by ppo_clip.py, ppo_kl_adaptive.py, ppo_continuous.py and ppo_atari.py: all that a
run needs beside the algorithm, so that each script reads as Algorithm 1.

- The run folder, refused when it holds another run.
- Checkpoints: written atomically every few minutes, at the end and on a stop signal; read back and checked.
- --resume: the run's own settings (a flag that would change learning is refused) and its RNG states.
- SIGTERM and Ctrl-C: the run stops at the end of the iteration in progress, with a checkpoint.
- The divergence guard: a non-finite loss, gradient norm or parameter stops the run before a checkpoint holds it.
- --eval-checkpoint: the final evaluation again, on a saved agent.
- Video numbers that go on across a resume, and --track: Weights & Biases, offline when it is unreachable.

It holds no algorithm. What a checkpoint holds is each script's own (its `checkpoint`, `restore` and
`agent_from`); this module adds the run's W&B id and video counter. A script copied without this file still
trains, logs, records video, saves with --save-model and evaluates; it refuses the flags that need it.
"""
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


def first_line(e: BaseException) -> str:
    return (str(e).splitlines() or [type(e).__name__])[0]


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


# ---- Checkpoints ------------------------------------------------------------------------------
def save_checkpoint(ckpt: dict, path: str) -> None:
    """Write a temporary file, then rename it over the old one: a kill during a save leaves the last one whole."""
    with open(path + ".tmp", "wb") as f:
        torch.save(ckpt, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(path + ".tmp", path)


def load_checkpoint(path: str, Args: type, script: str, removed: dict | None = None) -> dict:
    """A checkpoint of `script`, from its file or its run folder, or one line and exit. A flag that this version
    of the script no longer has (`removed`, with the value that behaves as the script does now) is dropped when
    the checkpoint saved it at that value."""
    path = os.path.join(path, "checkpoint.pt") if os.path.isdir(path) else path
    try:
        ckpt = torch.load(path)
    except Exception as e:  # missing, truncated, or not a checkpoint at all
        sys.exit(f"error: cannot read checkpoint {path}: {first_line(e)}")
    if not isinstance(ckpt, dict) or ckpt.get("script") != script or not isinstance(ckpt.get("args"), dict):
        sys.exit(f"error: {path} is not a checkpoint of this {script}.py")
    saved = {k: v for k, v in ckpt["args"].items() if not (k in (removed or {}) and v == removed[k])}
    fields = {f.name for f in dataclasses.fields(Args)}
    if set(saved) != fields:
        there = [f"{flag(k)} {saved[k]!r}" for k in sorted(set(saved) - fields)]
        here = [flag(k) for k in sorted(fields - set(saved))]
        sys.exit(f"error: {path} comes from another version of {script}.py: "
                 + "; ".join([f"its flags not in this one: {', '.join(there)}"] * bool(there)
                             + [f"this one's flags not in it: {', '.join(here)}"] * bool(here)))
    return ckpt | {"args": saved, "path": path}


def parse(Args: type, script: str, removed: dict | None = None):
    """The command line. With --resume or --eval-checkpoint, a flag not typed takes the run's saved value, and
    one typed counts even at its default (so that Run can refuse a change)."""
    args = tyro.cli(Args)
    if args.resume and args.eval_checkpoint:
        sys.exit("error: --resume continues training and --eval-checkpoint replays a model: give one of them")
    if args.resume or args.eval_checkpoint:
        saved = Args(**load_checkpoint(args.resume or args.eval_checkpoint, Args, script, removed)["args"])
        args = tyro.cli(Args, default=dataclasses.replace(saved, resume=args.resume,
                                                          eval_checkpoint=args.eval_checkpoint))
    return args


def restore_rng(ckpt: dict):
    """Python's, torch's and numpy's global RNG states as the checkpoint saved them; returns the script's own
    fourth state (its sampling generator's, or CUDA's)."""
    python, torch_state, (name, key, *rest), own = ckpt["rng"]
    random.setstate(python)
    torch.set_rng_state(torch_state)
    np.random.set_state((name, np.array(key, np.uint32), *rest))
    return own


def position(ckpt: dict, episodes: str = "episodes") -> tuple[int, int, list, int]:
    """Where a resumed run stands: iteration, global step, recent returns, and the envs' seed. No env can save
    its state, so they begin new episodes, seeded from the run's seed and the iteration: two resumes from one
    checkpoint are the same run."""
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
        print(f"W&B is unreachable ({first_line(e)}): logging offline; upload later with: "
              f"wandb sync {args.run_dir}/wandb/offline-run-*", flush=True)
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
                    sys.exit(f"error: {flag(name)} cannot change on --resume (the run keeps its settings)")
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
        self.complete = None  # a summary for main() to return, when a resumed run has nothing left to do
        if self.ckpt and self.ckpt["iteration"] == self.num_iterations:
            print(f"{run_dir} is complete at step {self.ckpt['global_step']}: nothing to resume")
            self.complete = {"global_step": self.ckpt["global_step"], "run_dir": run_dir}
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


def replay(args, script: str, check_args, evaluate_saved, removed: dict | None = None) -> list:
    """--eval-checkpoint: the final evaluation of training, on a saved agent, logged to <its run folder>/eval.
    `evaluate_saved(args, ckpt, writer, video_dir)` is the script's: it rebuilds the agent and evaluates it."""
    check_args(args)
    ckpt = load_checkpoint(args.eval_checkpoint, type(args), script, removed)
    if args.eval_episodes < 1:
        sys.exit(f"error: --eval-episodes must be positive with --eval-checkpoint, got {args.eval_episodes}")
    folder = os.path.join(os.path.dirname(os.path.abspath(ckpt["path"])), "eval")
    writer = SummaryWriter(folder)
    returns = evaluate_saved(args, ckpt, writer, os.path.join(folder, "videos") if args.capture_video else None)
    writer.close()
    return returns
