"""Watching and tracking an agent: --capture-video headless, --eval-checkpoint, and --track on W&B."""
import glob
import hashlib
import json
import os
import re
import struct
import subprocess
import sys
import time

import imageio
import numpy as np
import pytest
import torch

from tests.conftest import ROOT, SCRIPTS, load
from tests.test_checkpoints import planned_steps, tiny_flags, wait_for_checkpoint
from tests.test_runs import scalars

NAMES = list(SCRIPTS)
# Script, env, frame shape, evaluation episodes (a deterministic Hopper may stand for 1,000 slowly drawn steps).
VIDEO_ENVS = [("ppo_clip", "CartPole-v1", (400, 600, 3), 2), ("ppo_kl_adaptive", "CartPole-v1", (400, 600, 3), 0),
              ("ppo_continuous", "Hopper-v4", (480, 480, 3), 0), ("ppo_atari", "BreakoutNoFrameskip-v4", (210, 160, 3), 1)]


def headless_env(**extra):
    """This process's environment with no display and MUJOCO_GL unset, as on a fresh server; W&B offline."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "MUJOCO_GL")}
    return {**env, "WANDB_MODE": "offline", "WANDB_SILENT": "true", **extra}


def run(name, *flags, cwd, env=None, timeout=300):
    return subprocess.run([sys.executable, os.path.join(ROOT, f"{name}.py"), *flags], cwd=cwd, env=env or headless_env(),
                          capture_output=True, text=True, timeout=timeout)


def frames(path):
    """The decoded frames of a video, (n, height, width, 3)."""
    with imageio.v2.get_reader(path, "ffmpeg") as reader:
        return np.stack([frame for frame in reader])


def eval_line(stdout):
    lines = [line for line in stdout.splitlines() if line.startswith("eval: ")]
    assert len(lines) == 1, stdout[-2000:]
    return lines[0]


@pytest.mark.parametrize("name,env_id,shape,episodes", VIDEO_ENVS, ids=[f"{n}-{e}" for n, e, *_ in VIDEO_ENVS])
def test_capture_video_records_the_screen_headless(name, env_id, shape, episodes, tmp_path):
    result = run(name, "--env-id", env_id, "--capture-video", "--run-dir", "run",
                 *tiny_flags(name, eval_episodes=episodes), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    videos = sorted(os.listdir(tmp_path / "run" / "videos"))
    assert "train-episode-0.mp4" in videos
    assert [v for v in videos if v.startswith("eval")] == [f"eval-episode-{i}.mp4" for i in range(episodes)]
    for video in ["train-episode-0.mp4"] + ["eval-episode-0.mp4"] * (episodes > 0):
        clip = frames(tmp_path / "run" / "videos" / video)
        assert clip.shape[1:] == shape and len(clip) > 5
        assert np.ptp(clip) > 0 and np.abs(np.diff(clip.astype(int), axis=0)).sum() > 0  # a picture, and it moves


@pytest.mark.parametrize("name", NAMES)
def test_eval_checkpoint_prints_the_runs_own_eval_line(name, tmp_path):
    episodes = 2 if name == "ppo_atari" else 3
    trained = run(name, "--run-dir", "run", "--save-model", *tiny_flags(name, eval_episodes=episodes), cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr[-2000:]
    for saved in ["run", f"run/{name}.pt"]:  # the run folder (its checkpoint) and the final model
        replayed = run(name, "--eval-checkpoint", saved, cwd=tmp_path)
        assert replayed.returncode == 0, replayed.stderr[-2000:]
        assert eval_line(replayed.stdout) == eval_line(trained.stdout)
    mean = float(re.match(r"eval: (\S+)", eval_line(trained.stdout)).group(1))
    logged = scalars(str(tmp_path / "run" / "eval"))["eval/episodic_return"]
    assert logged[0] == (SCRIPTS[name]["tiny"]["total_timesteps"], pytest.approx(mean, abs=0.05))  # the final step
    assert not os.path.exists(tmp_path / "run" / "eval" / "videos")


@pytest.mark.parametrize("name", NAMES)
def test_eval_checkpoint_on_another_env_with_the_same_spaces_says_so(name, tmp_path):
    other = {"ppo_atari": "BreakoutNoFrameskip-v0", "ppo_continuous": "Hopper-v5"}.get(name, "CartPole-v0")
    trained = run(name, "--run-dir", "run", *tiny_flags(name), cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr[-2000:]
    replayed = run(name, "--eval-checkpoint", "run", "--env-id", other, "--eval-episodes", "1", cwd=tmp_path)
    assert replayed.returncode == 0, replayed.stderr[-2000:]
    assert f"{other} has the" in replayed.stdout and eval_line(replayed.stdout)


def test_a_failed_render_names_the_packages_in_one_line(tmp_path):
    """OSMesa is not installed here, so MUJOCO_GL=osmesa stands for a machine where headless rendering fails."""
    result = run("ppo_continuous", "--env-id", "Hopper-v4", "--capture-video", *tiny_flags("ppo_continuous"),
                 cwd=tmp_path, env=headless_env(MUJOCO_GL="osmesa"))
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert len(errors) == 1 and "cannot make env 'Hopper-v4' to record" in errors[0]
    assert "apt install libosmesa6" in errors[0]


def test_wandb_is_imported_only_with_track(tmp_path):
    code = ("import sys, dataclasses; sys.path.insert(0, sys.argv[1]); import ppo_clip as m; "
            "from tests.conftest import SCRIPTS; "
            "m.main(dataclasses.replace(m.Args(), **SCRIPTS['ppo_clip']['tiny'])); print('wandb' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code, ROOT], cwd=tmp_path, env=headless_env(PYTHONPATH=ROOT),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines()[-1] == "False"


def wandb_records(run_dir):
    """The records of the one offline W&B run in a run folder. A .wandb file is a 7-byte header, then
    LevelDB's log format: 32 KiB blocks of chunks (crc 4 bytes, length 2, type 1: full, first, middle, last),
    each record a protobuf."""
    from wandb.proto import wandb_internal_pb2
    (path,) = glob.glob(f"{run_dir}/wandb/offline-run-*/run-*.wandb")
    data, records, pending, pos, block = open(path, "rb").read(), [], b"", 7, 32768
    while pos + 7 <= len(data):
        length, kind = struct.unpack("<HB", data[pos + 4:pos + 7])
        if block - pos % block < 7 or (length, kind) == (0, 0):  # the padding at a block's end
            pos += block - pos % block
            continue
        pending, pos = pending + data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind in (1, 4):
            records.append(wandb_internal_pb2.Record.FromString(pending))
            pending = b""
    return records


def history(records, key):
    return [json.loads(item.value_json) for r in records if r.WhichOneof("record_type") == "history"
            for item in r.history.item if list(item.nested_key) == [key] or item.key == key]


def test_track_offline_holds_the_run_in_its_folder(tmp_path):
    result = run("ppo_clip", "--track", "--capture-video", "--run-dir", "run", *tiny_flags("ppo_clip", eval_episodes=1),
                 cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    records = wandb_records(tmp_path / "run")
    returns = [value for _, value in scalars(str(tmp_path / "run"))["charts/episodic_return"]]
    assert history(records, "charts/episodic_return") == pytest.approx(returns)
    assert history(records, "eval/episodic_return")
    videos = [json.loads(item.value_json) for r in records if r.WhichOneof("record_type") == "history"
              for item in r.history.item if item.nested_key[-1:] == ["_type"]]
    assert videos and set(videos) == {"video-file"}
    (config,) = [r.run.config for r in records if r.WhichOneof("record_type") == "run"]
    settings = {item.key: json.loads(item.value_json) for item in config.update}
    assert settings["env_id"] == "CartPole-v1" and settings["num_envs"] == 2


@pytest.mark.parametrize("case", ["no login", "no network"])
def test_track_without_wandb_continues_offline_in_bounded_time(case, tmp_path):
    env = {k: v for k, v in headless_env(HOME=str(tmp_path)).items() if not k.startswith("WANDB_")}
    if case == "no network":  # a port nothing listens on; wandb retries until its init_timeout
        env.update(WANDB_API_KEY="0" * 40, WANDB_BASE_URL="http://127.0.0.1:9", WANDB_INIT_TIMEOUT="5")
    start = time.time()
    result = run("ppo_clip", "--track", "--run-dir", "run", *tiny_flags("ppo_clip"), cwd=tmp_path, env=env, timeout=120)
    assert result.returncode == 0 and "Traceback" not in result.stdout + result.stderr, result.stderr[-2000:]
    assert "W&B is unreachable" in result.stdout and "logging offline" in result.stdout
    assert time.time() - start < 60
    assert history(wandb_records(tmp_path / "run"), "charts/episodic_return")


def test_a_resumed_run_keeps_its_videos_and_its_wandb_run(tmp_path):
    name, run_dir = "ppo_clip", tmp_path / "run"
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, f"{name}.py"), "--run-dir", str(run_dir),
                             "--checkpoint-every", "1", "--capture-video", "--track",
                             *tiny_flags(name, total_timesteps=planned_steps(name))],
                            cwd=tmp_path, env=headless_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_checkpoint(run_dir / "checkpoint.pt", proc, iteration=3)
    proc.terminate()
    proc.communicate(timeout=120)
    ckpt = torch.load(run_dir / "checkpoint.pt")
    before = {v: hashlib.sha256(open(run_dir / "videos" / v, "rb").read()).hexdigest()
              for v in os.listdir(run_dir / "videos")}
    assert "train-episode-1.mp4" in before and ckpt["env0_episodes"] >= 2
    result = run(name, "--resume", str(run_dir), "--eval-episodes", "0", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    after = {v: hashlib.sha256(open(run_dir / "videos" / v, "rb").read()).hexdigest()
             for v in os.listdir(run_dir / "videos")}
    assert {v: after[v] for v in before} == before  # none overwritten
    numbers = [int(v[len("train-episode-"):-4]) for v in set(after) - set(before)]
    assert numbers and min(numbers) > max(ckpt["env0_episodes"], *(int(v[14:-4]) for v in before))
    ids = {path.rsplit("-", 1)[1] for path in glob.glob(f"{run_dir}/wandb/offline-run-*")}
    assert len(glob.glob(f"{run_dir}/wandb/offline-run-*")) == 2 and ids == {ckpt["wandb_id"]}


def test_video_numbers_go_on_past_the_checkpoint_and_past_every_video(tmp_path):
    from ppo_run import first_video_episode as first
    assert first(None, None) == 0 and first(str(tmp_path / "none"), None) == 0
    for video in ["train-episode-0.mp4", "train-episode-1.mp4", "train-episode-8.mp4", "eval-episode-30.mp4"]:
        open(tmp_path / video, "wb").close()
    assert first(str(tmp_path), {"env0_episodes": 5}) == 9  # a video recorded after a checkpoint, then a kill
    assert first(str(tmp_path), {"env0_episodes": 20}) == 21  # the episode in progress at the checkpoint is lost


@pytest.mark.parametrize("name", NAMES)
def test_a_missing_tracker_or_video_package_names_its_pip_install(name, monkeypatch):
    mod = load(name)
    real = mod.importlib.util.find_spec
    for flag, module in [("capture_video", "moviepy"), ("track", "wandb")]:
        monkeypatch.setattr(mod.importlib.util, "find_spec", lambda m: None if m == module else real(m))
        with pytest.raises(SystemExit) as e:
            mod.check_args(mod.Args(**{flag: True}))
        assert str(e.value.code) == f"error: --{flag.replace('_', '-')} needs {module}: pip install {module}"
