"""Sweeps as Ray tasks: every run of a sweep is one task that trains a script in a subprocess, on this machine
or on any Ray cluster. learning.py and table1.py hand their runs to `sweep()`; the scripts never import ray.

- Where: `--address ADDR` (or RAY_ADDRESS) sends the runs to a running cluster; without it a local Ray starts
  on this machine and uses its cores. A run asks for `cpus` CPUs (its torch threads) and `gpus` GPUs.
- Storage: run folders (checkpoints, TensorBoard, logs) live under `--storage`, default benchmarks/out/. On a
  cluster it must be a path that every node reads and writes (a shared filesystem), and the repository must
  sit at the driver's path on every node too.
- Identity: script, env, steps, seed and flags. The driver appends each finished run to
  <storage>/finished.jsonl. The same sweep again skips those runs and resumes the others from their
  checkpoints; `fresh=True` ignores finished runs and moves their folders aside.
- Failures: a run whose node or worker dies is retried elsewhere (Ray's task retries) and resumes from its
  checkpoint; one that died before its first checkpoint starts afresh, the files it left moved to
  <folder>.lost-<unix time>. A run that exits non-zero on its own is not retried: it is reported with its
  log's tail.
- No orphans: the subprocess gets SIGTERM when its worker dies (Linux's parent-death signal), which makes the
  script checkpoint and exit, and it holds a lock on its folder, so a retry waits until it is gone.
- Stopping: Ctrl-C or SIGTERM to the driver cancels the queued runs and has each run in flight save a checkpoint
  and exit; the driver then exits 1, and the same command resumes them.
- Priority: Ray starts its workers at niceness 15, which a subprocess inherits (issue 16 reports such runs
  getting 10% of a core next to other work). Runs go back to niceness 0, as a run started by hand, where the
  OS allows it (root, or CAP_SYS_NICE); elsewhere they keep 15 and the result says so.
- Results travel as data: a task returns the run's curve, score, evaluation, exit status, node and commit,
  and only the driver writes results files.
"""
import ctypes
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STORAGE = os.path.join(ROOT, "benchmarks", "out")
RETRIES = 3  # attempts after a node or worker dies


@dataclasses.dataclass(frozen=True)
class Run:
    script: str
    env_id: str
    total_timesteps: int
    seed: int
    flags: str = ""  # more flags for the script, as typed
    cpus: int = 1  # Ray CPUs, and the script's --threads
    gpus: float = 0

    @property
    def identity(self) -> dict:
        return {"script": self.script, "env_id": self.env_id, "total_timesteps": self.total_timesteps,
                "seed": self.seed, "flags": shlex.join(shlex.split(self.flags))}

    @property
    def name(self) -> str:
        """The run's folder: readable, and unique per identity."""
        digest = hashlib.sha1(json.dumps(self.identity, sort_keys=True).encode()).hexdigest()[:8]
        return f"{self.script}__{self.env_id.replace('/', '-')}__{self.total_timesteps}__seed{self.seed}__{digest}"

    def command(self, folder: str) -> list:
        """Train, or continue from the folder's checkpoint: the same flags again, as --resume requires."""
        resume = ["--resume", folder] if os.path.exists(os.path.join(folder, "checkpoint.pt")) else []
        return [sys.executable, os.path.join(ROOT, f"{self.script}.py"), "--env-id", self.env_id, "--seed",
                str(self.seed), "--total-timesteps", str(self.total_timesteps), "--run-dir", folder,
                "--threads", str(self.cpus), *shlex.split(self.flags), *resume]


def _tied_to_its_parent(niceness: int):
    """For the subprocess, before it runs: SIGTERM when the worker dies, and its niceness where allowed."""
    def setup():
        if sys.platform == "linux":
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG
        try:
            os.setpriority(os.PRIO_PROCESS, 0, niceness)
        except PermissionError:
            pass
    return setup


def scalars(run_dir: str, tags: list | None) -> dict:
    """{tag: (step, value) rows} of a run's TensorBoard scalars (every tag with None), read in one pass; a tag never
    logged is absent."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(run_dir, size_guidance={"scalars": 0})
    acc.Reload()
    logged = set(acc.Tags()["scalars"])
    wanted = logged if tags is None else tags
    return {tag: np.array([(e.step, e.value) for e in acc.Scalars(tag)]) for tag in wanted if tag in logged}


def _set_aside_a_lost_start(folder: str) -> str | None:
    """An earlier attempt that died before its first checkpoint left TensorBoard events and nothing to resume
    from, and the scripts refuse to start afresh in a folder that holds a run. Its files go to a sibling folder,
    returned; the caller holds the lock. The lock file stays: renaming the whole folder would take it along, and
    a later attempt would then lock a new file at the old path instead of waiting for this one's subprocess."""
    names = os.listdir(folder)
    if "checkpoint.pt" in names or not any(name.startswith("events.out.tfevents.") for name in names):
        return None
    lost = f"{folder}.lost-{int(time.time())}"
    os.makedirs(lost)
    for name in names:
        if name != ".lock":
            os.rename(os.path.join(folder, name), os.path.join(lost, name))
    return lost


def execute(run: Run, storage: str, commit: str, niceness: int = 0) -> dict:
    """One run, start to end, on whichever node Ray chose; what the driver needs comes back as data."""
    folder = os.path.join(storage, "runs", run.name)
    os.makedirs(folder, exist_ok=True)
    node = os.uname().nodename
    try:
        import ray
        node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else node
    except ImportError:
        pass
    start = time.time()
    with open(os.path.join(folder, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # waits for an earlier attempt's subprocess to be gone
        lost = _set_aside_a_lost_start(folder)
        log_path = os.path.join(folder, "log.txt")
        with open(log_path, "a") as log:
            if lost:
                log.write(f"== {time.strftime('%Y-%m-%d %H:%M:%S')}: an earlier attempt died before its first "
                          f"checkpoint; its files are in {lost}, and this one starts afresh\n")
            command = run.command(folder)
            log.write(f"== {time.strftime('%Y-%m-%d %H:%M:%S')} on node {node}: {shlex.join(command)}\n")
            log.flush()
            child = subprocess.Popen(command, cwd=storage, stdout=log, stderr=subprocess.STDOUT,
                                     pass_fds=(lock.fileno(),), preexec_fn=_tied_to_its_parent(niceness))
            log.write(f"== pid {child.pid}\n")
            log.flush()
            priority = os.getpriority(os.PRIO_PROCESS, child.pid)  # set before exec, and not reaped yet
            try:  # polled: ray.cancel's interrupt, as a sweep stops, is raised between bytecodes, not in a wait
                while not (waited := os.wait4(child.pid, os.WNOHANG))[0]:
                    time.sleep(0.2)
            except KeyboardInterrupt:  # the run saves a checkpoint at the end of its iteration, then exits
                child.send_signal(signal.SIGTERM)
                child.wait()
                raise
            _, status, usage = waited
            code = os.waitstatus_to_exitcode(status)
    text = open(log_path).read()
    attempt = text[text.rfind("\n== ") + 1:] if "\n== " in text else text
    resumed = re.search(r"(?:resumed from .* at step|is complete at step) (\d+)", attempt)
    logs = scalars(folder, ["charts/episodic_return", "eval/episodic_return"]) if code == 0 else {}
    curve = [[int(step), round(float(ret), 2)] for step, ret in logs.get("charts/episodic_return", [])]
    evals = [round(float(ret), 2) for _, ret in logs.get("eval/episodic_return", [])]
    last100 = [r for _, r in curve[-100:]]
    return {**run.identity, "name": run.name, "exit": code, "curve": curve,
            "last100": round(sum(last100) / len(last100), 2) if last100 else None,
            "eval": evals[-1] if evals else None, "episodes": len(curve),
            "resumed_at_step": int(resumed.group(1)) if resumed else 0, "node": node, "niceness": priority,
            "wall_s": round(time.time() - start), "peak_rss_mb": round(usage.ru_maxrss / 1024), "commit": commit,
            "log_tail": "" if code == 0 else "\n".join(attempt.strip().splitlines()[-5:])}


def smoke_storage(storage: str) -> str:
    """A --smoke sweep's own folder under the storage, emptied first: its runs are thrown away."""
    path = os.path.join(storage, "smoke")
    shutil.rmtree(path, ignore_errors=True)
    return path


def finished(storage: str) -> dict:
    """Finished runs by name, as the driver recorded them."""
    path = os.path.join(storage, "finished.jsonl")
    return {r["name"]: r for r in map(json.loads, open(path))} if os.path.exists(path) else {}


def _clock(seconds: float) -> str:
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m" if seconds >= 3600 else \
        f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


def connect(address: str | None, jobs: int | None = None) -> None:
    """Join the cluster at address (or RAY_ADDRESS), or start a local Ray of `jobs` CPUs (all cores by default)."""
    import ray
    if ray.is_initialized():
        return
    if jobs and (address or os.environ.get("RAY_ADDRESS")):
        sys.exit("error: --jobs sets the CPUs of a local Ray; a cluster has its own: drop --jobs or --address")
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # started in the background (`cmd &`, nohup): Ray's
        # processes would inherit the ignored SIGINT, which is how ray.cancel interrupts a task, so no run in
        # flight could save its checkpoint when the sweep stops
        signal.signal(signal.SIGINT, signal.default_int_handler)
    settings = dict(address=address, logging_level=logging.WARNING, log_to_driver=False,
                    runtime_env={"env_vars": {"PYTHONPATH": ROOT}})
    if not (address or os.environ.get("RAY_ADDRESS")):  # a Ray of its own on this machine's cores: "local", or
        # ray.init would join a cluster that `ray start` left running here
        settings.update(address="local", num_cpus=jobs, include_dashboard=False, object_store_memory=200 * 2**20)
    try:
        ray.init(**settings)
    except ConnectionError as e:
        sys.exit(f"error: cannot reach the Ray cluster at {address or os.environ['RAY_ADDRESS']} ({e}); one "
                 "started with token authentication, the default of `ray start` since Ray 2.59, also needs "
                 "RAY_AUTH_MODE=token here, and its token in ~/.ray/auth_token or RAY_AUTH_TOKEN")


def add_arguments(parser) -> None:
    """The flags every sweep command takes."""
    parser.add_argument("--address", help="a running Ray cluster (or set RAY_ADDRESS); default: a local Ray")
    parser.add_argument("--jobs", type=int, help="runs at once on a local Ray: its CPUs (default: every core)")
    parser.add_argument("--storage", default=STORAGE, help="run folders; on a cluster, a path every node shares")
    parser.add_argument("--fresh", action="store_true", help="run again the runs that finished already")
    parser.add_argument("--smoke", action="store_true", help="every run for one iteration, recording nothing")


def _stop(pending: dict, signum: int) -> None:
    """Stop a sweep: the queued runs never start, and each run in flight saves a checkpoint before it exits
    (execute() passes ray.cancel's interrupt on to it as SIGTERM), so that the same command resumes it."""
    import ray
    print(f"stopping on {signal.Signals(signum).name}: {len(pending)} runs not finished; those in flight save a "
          "checkpoint first", flush=True)
    for ref in pending:
        ray.cancel(ref)
    for ref in pending:
        try:
            ray.get(ref)
        except ray.exceptions.RayError:  # cancelled, as asked
            pass
    sys.exit(f"stopped by {signal.Signals(signum).name}: the same command resumes the runs from their checkpoints")


def sweep_from_args(runs: list, a, commit: str, on_result) -> list:
    """sweep() as add_arguments' flags ask; a --smoke sweep in its own folder, emptied first."""
    return sweep(runs, smoke_storage(a.storage) if a.smoke else a.storage, a.address, a.fresh, commit, on_result,
                 a.jobs)


def sweep(runs: list, storage: str = STORAGE, address: str | None = None, fresh: bool = False,
          commit: str = "unknown", on_result=None, jobs: int | None = None) -> list:
    """Run every run not finished yet (all of them with fresh), as Ray tasks; return a result per run, in the
    order given: recorded ones with "skipped": True. on_result(result) is called as each run finishes."""
    try:
        import ray
    except ImportError:
        sys.exit("error: sweeps run on Ray: pip install -r benchmarks/requirements.txt")
    storage = os.path.abspath(storage)
    os.makedirs(os.path.join(storage, "runs"), exist_ok=True)
    done = {} if fresh else finished(storage)
    todo = [r for r in runs if r.name not in done]
    if fresh:
        for r in todo:
            folder = os.path.join(storage, "runs", r.name)
            if os.path.exists(folder):
                shutil.move(folder, f"{folder}.old-{int(time.time())}")
    print(f"{len(runs) - len(todo)} of {len(runs)} runs finished already; {len(todo)} to run", flush=True)
    results = {r.name: {**done[r.name], "skipped": True} for r in runs if r.name in done}
    if todo:
        connect(address, jobs)
        task = ray.remote(execute)
        pending = {task.options(num_cpus=r.cpus, num_gpus=r.gpus, max_retries=RETRIES, retry_exceptions=False)
                   .remote(r, storage, commit): r for r in todo}
        total_steps, steps_done, start = sum(r.total_timesteps for r in todo), 0, time.time()
        stop, main_thread = [], threading.current_thread() is threading.main_thread()
        if main_thread:  # SIGTERM stops a sweep as Ctrl-C does
            previous = signal.signal(signal.SIGTERM, lambda signum, frame: stop.append(signum))
        while pending:
            try:
                ready, _ = ray.wait(list(pending), timeout=1.0)
            except KeyboardInterrupt:
                stop.append(signal.SIGINT)
            if stop:
                _stop(pending, stop[0])
            if not ready:
                continue
            ref = ready[0]
            run = pending.pop(ref)
            try:
                result = ray.get(ref)
            except ray.exceptions.RayError as e:  # retries used up: the nodes kept dying
                result = {**run.identity, "name": run.name, "exit": None, "curve": [], "last100": None,
                          "eval": None, "log_tail": str(e).splitlines()[0]}
            results[run.name] = result
            steps_done += run.total_timesteps
            if result["exit"] == 0:
                with open(os.path.join(storage, "finished.jsonl"), "a") as f:
                    f.write(json.dumps({k: v for k, v in result.items() if k != "curve"}) + "\n")
                print(f"done  {run.script} {run.env_id} seed {run.seed} {run.flags}: last 100 episodes "
                      f"{result['last100']}, eval {result['eval']}, {_clock(result['wall_s'])}"
                      + (f" (resumed at step {result['resumed_at_step']})" if result["resumed_at_step"] else ""),
                      flush=True)
            else:
                print(f"FAILED {run.script} {run.env_id} seed {run.seed} {run.flags} (exit {result['exit']}):\n"
                      + result["log_tail"], flush=True)
            if on_result:
                on_result(result)
            elapsed, share = time.time() - start, steps_done / total_steps
            bar = "#" * int(30 * share) + "-" * (30 - int(30 * share))
            print(f"[{bar}] {steps_done:,} of {total_steps:,} env steps, {_clock(elapsed)} gone, "
                  f"{_clock(elapsed / share * (1 - share))} left", flush=True)
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
    return [results[r.name] for r in runs]
