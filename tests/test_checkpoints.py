"""Runs that survive: checkpoints, --resume, pre-emption, the divergence guard, and bad input refused in one line."""
import copy
import dataclasses
import glob
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import ppo_run
import tests.envs  # noqa: F401  registers the tiny envs in this process
from tests.conftest import ROOT, SCRIPTS, load, run_script
from tests.test_runs import scalars, tiny_args

NAMES = list(SCRIPTS)
# A kill test needs a run long enough to be killed in the middle: iterations of the tiny settings.
ITERATIONS = {"ppo_atari": 12}


def tiny_flags(name, **overrides):
    """The tiny settings as command-line flags."""
    settings = {**SCRIPTS[name]["tiny"], **overrides}
    return [f for k, v in settings.items() for f in (f"--{k.replace('_', '-')}", str(v))]


def batch(name):
    return SCRIPTS[name]["tiny"]["num_envs"] * SCRIPTS[name]["tiny"]["num_steps"]


def planned_steps(name):
    return batch(name) * ITERATIONS.get(name, 60)


def wait_for_checkpoint(path, proc, iteration, timeout=120):
    """Poll until the run's checkpoint reaches `iteration` (the file is replaced atomically, so always whole)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, "the run ended before it could be stopped"
        if os.path.exists(path) and torch.load(path)["iteration"] >= iteration:
            return
        time.sleep(0.01)
    raise AssertionError("no checkpoint in time")


def start_run(name, run_dir, tmp_path, *flags):
    return subprocess.Popen([sys.executable, os.path.join(ROOT, f"{name}.py"), "--run-dir", str(run_dir),
                             "--checkpoint-every", "1", *tiny_flags(name, total_timesteps=planned_steps(name)), *flags],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def after_its_event_files(run_dir):
    """Wait for the clock's next second after the run's event files were made. TensorBoard reads a folder's event
    files in name order, and a name starts with its second: a resume made in the same second as the stopped run
    can sort first (by process id), and its steps would then come before the stopped run's."""
    made = max(int(os.path.basename(f).split(".")[3]) for f in glob.glob(os.path.join(run_dir, "events.out.*")))
    while int(time.time()) <= made:
        time.sleep(0.05)


def resumed(name, path, **flags):
    """The Args a resume from the command line gets: the run's own, with --resume and any flags typed."""
    ckpt = torch.load(os.path.join(path, "checkpoint.pt") if os.path.isdir(path) else path)
    return dataclasses.replace(load(name).Args(**ckpt["args"]), resume=str(path), **flags)


def resume_in_process(name, path, monkeypatch, seen=None):
    """Resume in this process; when `seen` is a list, record main()'s state as the envs are first reset, after the
    checkpoint was restored and before anything moved: networks, optimizer, statistics, schedule position."""
    mod = load(name)
    if seen is not None:
        real_make_envs = mod.make_envs

        def make_envs(*a, **k):
            envs, real_reset = real_make_envs(*a, **k), None
            real_reset = envs.reset

            def reset(*ra, **rk):
                state = sys._getframe(1).f_locals  # main()'s variables
                if not seen and "optimizer" in state:
                    seen.append({"start_iteration": state["start_iteration"], "global_step": state["global_step"],
                                 "model": {k: v.clone() for k, v in state["agent"].state_dict().items()},
                                 "optimizer": copy.deepcopy(state["optimizer"].state_dict()), "beta": state.get("beta")})
                    for stats in ["obs_rms", "reward_scaler"]:
                        rms = getattr(state.get(stats), "rms", state.get(stats))
                        seen[0][stats] = rms and (rms.mean.copy(), rms.var.copy(), rms.count)
                return real_reset(*ra, **rk)

            envs.reset = reset
            return envs

        monkeypatch.setattr(mod, "make_envs", make_envs)
    return mod.main(resumed(name, path))


def assert_state_equal(a, b):
    """Nested dicts, lists and tensors, compared exactly."""
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            assert_state_equal(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_state_equal(x, y)
    elif torch.is_tensor(a):
        assert torch.equal(a, b)
    else:
        assert a == b


@pytest.mark.parametrize("name", NAMES)
def test_killed_run_resumes_where_its_checkpoint_left_it(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_dir = tmp_path / "run"
    proc = start_run(name, run_dir, tmp_path, "--save-model")
    wait_for_checkpoint(run_dir / "checkpoint.pt", proc, 2)
    proc.kill()  # SIGKILL: no handler runs
    proc.wait()
    assert not os.path.exists(run_dir / f"{name}.pt.tmp")  # the final model's write test left nothing behind
    ckpt = torch.load(run_dir / "checkpoint.pt")
    assert ckpt["iteration"] >= 2 and ckpt["global_step"] == ckpt["iteration"] * batch(name)

    seen = []
    after_its_event_files(run_dir)
    summary = resume_in_process(name, run_dir, monkeypatch, seen)
    state = seen[0]
    assert (state["start_iteration"], state["global_step"]) == (ckpt["iteration"], ckpt["global_step"])
    assert_state_equal(state["model"], ckpt["model"])
    assert_state_equal(state["optimizer"], ckpt["optimizer"])
    for stats in ["obs_rms", "reward_rms"]:  # the saved running statistics, where the script keeps them
        if stats in ckpt:
            mean, var, count = state["obs_rms" if stats == "obs_rms" else "reward_scaler"]
            np.testing.assert_array_equal(mean, ckpt[stats][0].numpy())
            np.testing.assert_array_equal(var, ckpt[stats][1].numpy())
            assert count == ckpt[stats][2]
    if "beta" in ckpt:
        assert state["beta"] == ckpt["beta"]
    num_iterations = planned_steps(name) // batch(name)
    logged = scalars(str(run_dir))
    lr = dict(logged["charts/learning_rate"])[ckpt["global_step"] + batch(name)]  # the first resumed iteration's
    assert lr == pytest.approx(ckpt["args"]["learning_rate"] * (1 - ckpt["iteration"] / num_iterations))

    assert summary["global_step"] == planned_steps(name)
    steps = [step for step, _ in logged["losses/policy_loss"]]
    assert steps == [batch(name) * k for k in range(1, num_iterations + 1)]  # each iteration once, none missing
    assert torch.load(run_dir / "checkpoint.pt")["iteration"] == num_iterations


@pytest.mark.parametrize("name", NAMES)
def test_two_resumes_from_one_checkpoint_are_the_same_run(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    mod = load(name)
    mod.main(tiny_args(name, run_dir="first", total_timesteps=2 * batch(name), checkpoint_every=1))
    first = torch.load("first/checkpoint.pt")
    assert first["iteration"] == 2
    first["args"]["total_timesteps"] = 4 * batch(name)  # so that the resumed runs have iterations left
    runs = []
    for folder in ["a", "b"]:
        os.makedirs(folder)
        torch.save(first, f"{folder}/checkpoint.pt")
        mod.main(resumed(name, folder))
        runs.append({k: v for k, v in scalars(folder).items() if k != "charts/SPS"})
    assert runs[0] == runs[1]
    assert [s for s, _ in runs[0]["losses/policy_loss"]] == [3 * batch(name), 4 * batch(name)]


@pytest.mark.parametrize("name", NAMES)
def test_a_kill_during_a_save_leaves_the_previous_checkpoint(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    mod, calls = load(name), []
    real_replace = os.replace

    def replace(src, dst):
        calls.append(dst)
        if len(calls) == 3:  # the process dies here, between writing the new file and renaming it
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(mod.os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        mod.main(tiny_args(name, run_dir="run", total_timesteps=4 * batch(name), checkpoint_every=1))
    monkeypatch.setattr(mod.os, "replace", real_replace)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    ckpt = torch.load("run/checkpoint.pt")
    assert ckpt["iteration"] == 2
    mod.main(resumed(name, "run"))
    assert torch.load("run/checkpoint.pt")["iteration"] == 4


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_leaves_a_checkpoint_that_resumes(name, sig, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_dir = tmp_path / "run"
    proc = start_run(name, run_dir, tmp_path, "--checkpoint-every", "0")  # periodic checkpoints off
    while not proc.stdout.readline().startswith("step"):  # the first progress line: the run is under way
        assert proc.poll() is None, proc.communicate()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig
    assert f"--resume {run_dir}" in err and "Traceback" not in err
    ckpt = torch.load(run_dir / "checkpoint.pt")
    assert 0 < ckpt["iteration"] < planned_steps(name) // batch(name)
    summary = load(name).main(resumed(name, run_dir))
    assert summary["global_step"] == planned_steps(name)


@pytest.mark.parametrize("name", NAMES)
def test_a_stop_signal_during_the_update_lets_the_iteration_finish_and_no_update_is_lost(name, tmp_path,
                                                                                        monkeypatch):
    """SIGTERM in the middle of the second iteration's K epochs: the update runs to its end, the checkpoint
    records two whole iterations, and the resumed run makes every update of every iteration, so that Adam's
    step count is iterations x epochs x minibatches."""
    monkeypatch.chdir(tmp_path)
    mod, steps = load(name), []
    per_iteration = SCRIPTS[name]["tiny"]["update_epochs"] * SCRIPTS[name]["tiny"]["num_minibatches"]
    real_step = torch.optim.Adam.step

    def step(self, *a, **k):
        steps.append(1)
        if len(steps) == per_iteration + 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return real_step(self, *a, **k)

    monkeypatch.setattr(torch.optim.Adam, "step", step)
    with pytest.raises(SystemExit) as e:
        mod.main(tiny_args(name, run_dir="run", total_timesteps=4 * batch(name), checkpoint_every=0))
    assert e.value.code == 128 + signal.SIGTERM
    assert torch.load("run/checkpoint.pt")["iteration"] == 2 and len(steps) == 2 * per_iteration
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the run gave the signals back as it stopped
    mod.main(resumed(name, "run", checkpoint_every=1))
    final = torch.load("run/checkpoint.pt")
    assert final["iteration"] == 4 and len(steps) == 4 * per_iteration
    assert {float(s["step"]) for s in final["optimizer"]["state"].values()} == {4.0 * per_iteration}


@pytest.mark.parametrize("name", NAMES)
def test_divergence_stops_the_run_and_the_last_checkpoint_loads(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    mod, calls = load(name), []
    real = mod.value_loss
    per_iteration = SCRIPTS[name]["tiny"]["update_epochs"] * SCRIPTS[name]["tiny"]["num_minibatches"]

    def poisoned(*a):
        calls.append(1)
        loss = real(*a)
        return loss * math.nan if len(calls) > 2 * per_iteration else loss  # the third iteration diverges

    monkeypatch.setattr(mod, "value_loss", poisoned)
    with pytest.raises(SystemExit) as e:
        mod.main(tiny_args(name, run_dir="run", total_timesteps=5 * batch(name), checkpoint_every=1))
    message = str(e.value.code)
    assert message.startswith("error: training diverged at iteration 3") and "\n" not in message
    assert "run/checkpoint.pt (iteration 2)" in message
    ckpt = torch.load("run/checkpoint.pt")
    assert ckpt["iteration"] == 2 and all(v.isfinite().all() for v in ckpt["model"].values())


@pytest.mark.parametrize("name", NAMES)
def test_non_finite_parameters_stop_the_run_before_any_checkpoint(name, tmp_path, monkeypatch):
    """A stepsize of 1e39 takes the weights past float32's range in the first and only step of the first
    update, while that update's loss and gradient, computed before the step, are finite."""
    monkeypatch.chdir(tmp_path)
    mod = load(name)
    with pytest.raises(SystemExit) as e:
        mod.main(tiny_args(name, run_dir="run", learning_rate=1e39, anneal_lr=False, checkpoint_every=1,
                           total_timesteps=3 * batch(name), update_epochs=1, num_minibatches=1))  # one step
    assert str(e.value.code) == ("error: training diverged at iteration 1: non-finite parameters; "
                                 "no checkpoint was saved yet")
    assert not os.path.exists("run/checkpoint.pt")


@pytest.mark.parametrize("name", NAMES)
def test_default_interval_saves_by_wall_time_and_at_the_end(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    mod, saved = load(name), []
    real = ppo_run.save_checkpoint
    monkeypatch.setattr(ppo_run, "save_checkpoint", lambda ckpt, path: (saved.append(ckpt["iteration"]),
                                                                        real(ckpt, path)))
    for minutes, expected in [(0, [1, 2, 3]), (60, [3])]:  # every boundary once a 0-minute interval has passed
        saved.clear()
        monkeypatch.setattr(ppo_run, "CHECKPOINT_MINUTES", minutes)
        mod.main(tiny_args(name, run_dir=f"run{minutes}", total_timesteps=3 * batch(name)))
        assert saved == expected


def test_resume_from_the_command_line_sees_every_flag_typed(tmp_path):
    """A flag typed with --resume counts even at its default value: a learning flag is refused, and a flag
    that leaves learning alone is taken. A bare file name continues in the folder it lies in."""
    run = tmp_path / "run"
    load("ppo_clip").main(tiny_args("ppo_clip", run_dir=str(run), total_timesteps=2 * batch("ppo_clip"),
                                    checkpoint_every=1))
    ckpt = torch.load(run / "checkpoint.pt")
    ckpt["args"]["total_timesteps"] = 4 * batch("ppo_clip")
    torch.save(ckpt, run / "checkpoint.pt")
    for flags, message in [(["--num-steps", "2048"], "--num-steps cannot change"),  # 2048 is the default
                           (["--env-id", "Hopper-v4"], "--env-id cannot change")]:
        result = run_script("ppo_clip", "--resume", str(run), *flags, cwd=tmp_path)
        assert result.returncode != 0 and result.stderr.strip() == f"error: {message} on --resume (the run keeps its settings)"
    result = run_script("ppo_clip", "--resume", "checkpoint.pt", "--eval-episodes", "10", cwd=run)  # 0 when saved
    assert result.returncode == 0 and "over 10 episodes" in result.stdout, result.stderr[-500:]
    assert torch.load(run / "checkpoint.pt")["iteration"] == 4 and not os.path.exists(run / "runs")
    result = run_script("ppo_clip", "--resume", str(run), cwd=tmp_path)
    assert result.returncode == 0 and "nothing to resume" in result.stdout


@pytest.mark.parametrize("name", NAMES)
def test_final_model_and_checkpoint_load_with_plain_torch_load_and_act_as_trained(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    mod = load(name)
    summary = mod.main(tiny_args(name, run_dir="run", save_model=True, checkpoint_every=1))
    agent, obs_rms = summary["agent"], summary.get("obs_rms")
    if name == "ppo_atari":
        obs = torch.from_numpy(np.random.default_rng(2).integers(0, 256, (5, 4, 84, 84), dtype=np.uint8))
        torch.save(obs, "obs.pt")
        with torch.inference_mode():
            expected = [t.tolist() for t in agent(obs)]
        probe = ("agent = m.agent_from(ckpt); obs = torch.load('obs.pt')\n"
                 "with torch.inference_mode(): out = [t.tolist() for t in agent(obs)]")
    else:
        raw = np.random.default_rng(2).normal(scale=3.0, size=(6, len(obs_rms.mean)))
        np.save("raw.npy", raw)
        expected = [agent.act(obs_rms.normalize(raw), None, deterministic=True).tolist(),
                    agent.act(obs_rms.normalize(raw), np.random.default_rng(5)).tolist()]
        probe = ("agent, rms = m.agent_from(ckpt); raw = np.load('raw.npy'); obs = rms.normalize(raw)\n"
                 "out = [agent.act(obs, None, deterministic=True).tolist(), "
                 "agent.act(obs, np.random.default_rng(5)).tolist()]")
    for path in [f"run/{mod.Args().exp_name}.pt", "run/checkpoint.pt"]:
        code = (f"import sys, json, numpy as np, torch; sys.path.insert(0, {ROOT!r}); import {name} as m\n"
                f"ckpt = torch.load({path!r})\n{probe}\nprint(json.dumps(out))")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert json.loads(out.stdout) == expected, path
        ckpt = torch.load(path)
        assert ckpt["script"] == name and ckpt["env_id"] == SCRIPTS[name]["envs"][0]


@pytest.mark.parametrize("name", NAMES)
def test_evaluation_caps_an_episode_that_never_ends(name, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    mod = load(name)
    monkeypatch.setattr(mod, "EVAL_STEP_CAP", 50)
    if name == "ppo_atari":
        returns = mod.evaluate(mod.Agent(4), SCRIPTS[name]["envs"][0], 2, seed=1)
        assert len(returns) == 2  # Breakout's games with a near-uniform policy outlast 50 steps
    else:
        env_id = "tests.envs:EndlessBox-v0" if name == "ppo_continuous" else "tests.envs:Endless-v0"
        space = tests.envs.EndlessBoxEnv.action_space if name == "ppo_continuous" else tests.envs.EndlessEnv.action_space
        returns = mod.evaluate(mod.Agent(1, space), mod.RunningMeanStd(1), env_id, 2, seed=1)
        assert returns == [50.0, 50.0]  # reward 1 per step, cut by the cap
    assert capsys.readouterr().out.count("ended by the cap of 50 steps") == 2


# Bad input, refused in one line before any training. check_args cases run in this process.
def bad_args(name):
    mod, cases = load(name), []
    for field in dataclasses.fields(mod.Args):
        if isinstance(getattr(mod.Args(), field.name), float):
            cases += [({field.name: math.inf}, "must be a finite number"), ({field.name: math.nan}, "finite number")]
    cases += [({"seed": -1}, "--seed"), ({"seed": 2**32}, "--seed"), ({"checkpoint_every": -1}, "--checkpoint-every"),
              ({"exp_name": "a/b", "save_model": True}, "--exp-name"),
              ({"num_envs": 1, "num_steps": 64, "num_minibatches": 64}, "minibatches of one sample")]
    if name == "ppo_kl_adaptive":
        cases.append(({"init_beta": 0.0}, "--init-beta"))
    return [pytest.param(name, *case, id=f"{name}-{'-'.join(f'{k}={v}' for k, v in case[0].items())}")
            for case in cases]


@pytest.mark.parametrize("name,overrides,message", [c for n in NAMES for c in bad_args(n)])
def test_check_args_refuses_in_one_line(name, overrides, message):
    mod = load(name)
    with pytest.raises(SystemExit) as e:
        mod.check_args(dataclasses.replace(mod.Args(), **overrides))
    assert str(e.value.code).startswith("error: ") and message in str(e.value.code)
    assert "\n" not in str(e.value.code)


def bad_commands(name, tmp_path):
    open(tmp_path / "not_a_dir", "w").close()
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.pt")
    cases = [(["--env-id", "nosuchmod:Env-v0"], "nosuchmod"), (["--env-id", "a:b:c"], "'a:b:c'"),
             (["--run-dir", str(tmp_path / "not_a_dir" / "run")], "cannot write the run folder"),
             (["--resume", str(tmp_path / "missing.pt")], "cannot read checkpoint"),
             (["--resume", str(tmp_path / "not_a_dir")], "cannot read checkpoint"),
             (["--resume", str(tmp_path / "foreign.pt")], "is not a checkpoint of this"),
             (["--resume", str(tmp_path / "other_script.pt")], "is not a checkpoint of this"),
             (["--resume", str(tmp_path / "own.pt"), "--learning-rate", "0.1"], "--learning-rate cannot change"),
             (["--run-dir", str(tmp_path / "taken")], "holds a run already"),
             (["--run-dir", str(tmp_path / "logged")], "holds a run already"),  # TensorBoard's events alone
             (["--resume", str(tmp_path / "other_version.pt")], f"comes from another version of {name}.py: "
                                                                "--no-such-flag 3 (not in this version)"),
             (["--eval-checkpoint", str(tmp_path / "other_version.pt")], "another version")]
    cases.append((["--run-dir", str(tmp_path / "long"), "--exp-name", "x" * 300, "--save-model"], "File name too long"))
    if name != "ppo_atari":
        cases += [(["--env-id", "ALE/Pong-v5"], "ppo_atari.py"), (["--env-id", "Breakout-v4"], "ppo_atari.py")]
    cases.append((["--resume", str(tmp_path / "own.pt"), "--env-id",
                   "ALE/Pong-v5" if name == "ppo_atari" else "Pendulum-v1"], "--env-id cannot change"))
    if name in ["ppo_clip", "ppo_kl_adaptive"]:
        cases.append((["--env-id", "tests.envs:DiscreteStart-v0"], "Discrete actions start at 1"))
    own, other_env = str(tmp_path / "own.pt"), {"ppo_atari": "PongNoFrameskip-v4", "ppo_continuous": "Pendulum-v1"}
    cases += [(["--eval-checkpoint", str(tmp_path / "missing.pt")], "cannot read checkpoint"),
              (["--eval-checkpoint", str(tmp_path / "foreign.pt")], "is not a checkpoint of this"),
              (["--eval-checkpoint", str(tmp_path / "other_script.pt")], "is not a checkpoint of this"),
              (["--eval-checkpoint", own, "--eval-episodes", "1", "--env-id", other_env.get(name, "Acrobot-v1")],
               "differ from those of"),
              (["--eval-checkpoint", own], "--eval-episodes must be positive"),  # the tiny run's 0
              (["--eval-checkpoint", own, "--resume", own], "give one of them")]
    return cases


@pytest.fixture(scope="module")
def checkpoint_of(tmp_path_factory):
    """A real checkpoint of a script, made once per script."""
    folder, paths = tmp_path_factory.mktemp("ckpts"), {}

    def make(name):
        if name not in paths:
            load(name).main(tiny_args(name, run_dir=str(folder / name), checkpoint_every=1))
            paths[name] = folder / name / "checkpoint.pt"
        return paths[name]
    return make


@pytest.mark.parametrize("name", NAMES)
def test_bad_commands_are_refused_in_one_line(name, tmp_path, checkpoint_of):
    other = "ppo_kl_adaptive" if name == "ppo_clip" else "ppo_clip"
    shutil.copy(checkpoint_of(other), tmp_path / "other_script.pt")
    shutil.copy(checkpoint_of(name), tmp_path / "own.pt")
    os.makedirs(tmp_path / "taken")
    shutil.copy(checkpoint_of(name), tmp_path / "taken" / "checkpoint.pt")
    os.makedirs(tmp_path / "logged")
    open(tmp_path / "logged" / "events.out.tfevents.1.host", "wb").close()
    other_version = torch.load(checkpoint_of(name))
    other_version["args"]["no_such_flag"] = 3
    torch.save(other_version, tmp_path / "other_version.pt")
    cases = bad_commands(name, tmp_path)
    procs = [subprocess.Popen([sys.executable, os.path.join(ROOT, f"{name}.py"), *flags], cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for flags, _ in cases]
    for (flags, message), proc in zip(cases, procs):
        out, err = proc.communicate(timeout=300)
        assert proc.returncode != 0, flags
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and message in errors[0], (flags, err[-500:])
        assert "Traceback" not in err + out, flags
    assert not glob.glob(f"{tmp_path}/runs/*") and os.listdir(tmp_path / "taken") == ["checkpoint.pt"]
    assert os.listdir(tmp_path / "logged") == ["events.out.tfevents.1.host"]


@pytest.mark.parametrize("name", ["ppo_clip", "ppo_kl_adaptive", "ppo_continuous"])
def test_a_checkpoint_written_before_ppo_run_replays_and_resumes(name, tmp_path):
    """tests/data holds checkpoints that each script wrote at commit 3d75e64, before run management moved into
    ppo_run.py (two iterations of 32 steps; ppo_clip's still has --clip-each-network, saved off). ppo_atari's, 21 MB,
    is not kept here."""
    old = torch.load(os.path.join(ROOT, "tests", "data", f"{name}_3d75e64.pt"))
    old["args"]["total_timesteps"] = 4 * 32  # two iterations left to run
    os.makedirs(tmp_path / "run")
    torch.save(old, tmp_path / "run" / "checkpoint.pt")
    replayed = run_script(name, "--eval-checkpoint", "run", "--eval-episodes", "1", cwd=tmp_path)
    assert replayed.returncode == 0 and "eval: " in replayed.stdout, replayed.stderr[-500:]
    resumed = run_script(name, "--resume", "run", cwd=tmp_path)
    assert resumed.returncode == 0 and "resumed from" in resumed.stdout, resumed.stderr[-500:]
    final = torch.load(tmp_path / "run" / "checkpoint.pt")
    assert (final["iteration"], final["global_step"]) == (4, 128) and final.keys() == old.keys()


def test_a_checkpoint_of_the_version_with_clip_each_network_still_resumes_and_replays(tmp_path, checkpoint_of):
    """ppo_clip.py dropped --clip-each-network: an older checkpoint that saved it off (the behaviour that stayed)
    loads as if it never had it; one that saved it on learned otherwise, and is refused by name."""
    for value in [False, True]:
        ckpt = torch.load(checkpoint_of("ppo_clip"))
        ckpt["args"] = {**ckpt["args"], "clip_each_network": value, "total_timesteps": 2 * batch("ppo_clip")}
        os.makedirs(tmp_path / str(value))
        torch.save(ckpt, tmp_path / str(value) / "checkpoint.pt")
        for flags in [["--resume", str(tmp_path / str(value))], ["--eval-checkpoint", str(tmp_path / str(value)),
                                                                 "--eval-episodes", "1"]]:
            result = run_script("ppo_clip", *flags, cwd=tmp_path)
            if value:
                assert result.returncode != 0 and result.stderr.strip().endswith(
                    "--clip-each-network True (not in this version)"), result.stderr[-500:]
            else:
                assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-500:]
    assert torch.load(tmp_path / "False" / "checkpoint.pt")["iteration"] == 2


@pytest.mark.parametrize("name", NAMES)
def test_a_script_copied_alone_trains_saves_and_evaluates_and_refuses_what_needs_ppo_run(name, tmp_path,
                                                                                        checkpoint_of):
    alone = tmp_path / "alone"
    os.makedirs(alone)
    shutil.copy(os.path.join(ROOT, f"{name}.py"), alone)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    video = ["--capture-video"] if name == "ppo_clip" else []

    def run(*flags):
        return subprocess.run([sys.executable, str(alone / f"{name}.py"), *flags], cwd=alone, env=env,
                              capture_output=True, text=True, timeout=300)
    result = run("--run-dir", "run", "--save-model", *video, *tiny_flags(name, eval_episodes=1))
    assert result.returncode == 0, result.stderr[-2000:]
    assert any(line.startswith("eval: ") for line in result.stdout.splitlines())
    assert glob.glob(str(alone / "run" / "events.out.tfevents.*"))
    assert not os.path.exists(alone / "run" / "checkpoint.pt")
    if video:
        assert "train-episode-0.mp4" in os.listdir(alone / "run" / "videos")
    saved, made = torch.load(alone / "run" / f"{name}.pt"), torch.load(checkpoint_of(name))
    assert saved.keys() == made.keys() and saved["args"].keys() == made["args"].keys()  # the same format
    agent = load(name).agent_from(saved)
    agent = agent[0] if isinstance(agent, tuple) else agent
    assert all(torch.equal(v, saved["model"][k]) for k, v in agent.state_dict().items())
    refused = [["--resume", "run"], ["--eval-checkpoint", f"run/{name}.pt"], ["--track"], ["--checkpoint-every", "1"]]
    procs = [subprocess.Popen([sys.executable, str(alone / f"{name}.py"), *flags, *tiny_flags(name)], cwd=alone,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for flags in refused]
    for flags, proc in zip(refused, procs):
        _, err = proc.communicate(timeout=300)
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert proc.returncode != 0 and "Traceback" not in err, (flags, err[-500:])
        assert len(errors) == 1 and f"needs ppo_run.py beside {alone / name}.py: copy it" in errors[0], flags
