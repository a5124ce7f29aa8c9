"""benchmarks/sweep.py on a Ray cluster of two nodes started on this machine: runs spread over both, a run whose
node is lost resumes on the other from its checkpoint, and the same command again runs nothing."""
import fcntl
import glob
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
import ray
from ray.cluster_utils import Cluster

from benchmarks import common, learning, sweep

# A tiny CartPole run of ppo_clip.py: a few seconds, most of them imports.
TINY = "--num-envs 1 --num-steps 64 --num-minibatches 2 --update-epochs 2 --eval-episodes 1"


@pytest.fixture
def cluster():
    """A head and a worker node of one CPU each, so that two runs at once take one node each."""
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    worker = c.add_node(num_cpus=1)
    yield c, worker
    ray.shutdown()
    c.shutdown()


def attempts(folder):
    """(node, pid) of each attempt at a run, from its log."""
    text = open(os.path.join(folder, "log.txt")).read()
    nodes = re.findall(r"^== \S+ \S+ on node (\w+):", text, re.M)
    return list(zip(nodes, map(int, re.findall(r"^== pid (\d+)", text, re.M))))


def test_runs_spread_over_both_nodes_and_the_same_command_again_records_nothing(cluster, tmp_path, monkeypatch,
                                                                                  capsys):
    c, worker = cluster
    monkeypatch.setattr(common, "RESULTS", str(tmp_path / "results"))
    os.makedirs(tmp_path / "results")
    argv = ["learning.py", "--script", "ppo_clip", "--env-id", "CartPole-v1", "--total-timesteps", "128",
            "--seeds", "1", "2", "3", "4", "--extra", TINY, "--address", c.address, "--storage", str(tmp_path / "out")]
    monkeypatch.setattr(sys, "argv", argv)
    learning.main()
    (row,) = [json.loads(line) for line in open(tmp_path / "results" / "learning.jsonl")]
    assert row["seeds"] == [1, 2, 3, 4] and row["failed_seeds"] == [] and row["nodes"] == 2
    done = sweep.finished(str(tmp_path / "out"))
    assert {r["node"] for r in done.values()} == {c.head_node.node_id, worker.node_id}
    if os.geteuid() == 0:  # Ray's workers run at niceness 15; the runs get 0 back where the OS allows it
        assert {r["niceness"] for r in done.values()} == {0}
    for r in done.values():  # the score the driver got is the curve the run logged
        curve = common.logged(os.path.join(tmp_path, "out", "runs", r["name"]), "charts/episodic_return")
        assert r["last100"] == pytest.approx(curve[-100:, 1].mean(), abs=0.01)
        assert len(learning.np.loadtxt(glob.glob(str(tmp_path / "results" / "curves" / f"*seed{r['seed']}.csv"))[0],
                                       delimiter=",", skiprows=1).reshape(-1, 2)) == r["episodes"]

    capsys.readouterr()
    learning.main()  # the same command again
    assert "4 of 4 runs finished already; 0 to run" in capsys.readouterr().out
    assert len(open(tmp_path / "results" / "learning.jsonl").readlines()) == 1
    assert sweep.finished(str(tmp_path / "out")) == done


def test_a_run_that_fails_on_its_own_is_reported_and_not_retried(cluster, tmp_path):
    c, _ = cluster
    bad = sweep.Run("ppo_clip", "CartPole-v1", 128, 1, TINY + " --num-minibatches 3")  # 64 does not divide by 3
    (result,) = sweep.sweep([bad], str(tmp_path), c.address)
    assert result["exit"] == 1 and "does not divide into 3 minibatches" in result["log_tail"]
    assert len(attempts(os.path.join(tmp_path, "runs", bad.name))) == 1
    assert sweep.finished(str(tmp_path)) == {}


def test_the_runs_of_a_lost_node_resume_on_the_other_from_their_checkpoints(cluster, tmp_path):
    c, worker = cluster
    storage, lost = str(tmp_path), []

    def remove_the_worker_once_a_run_there_has_a_checkpoint():
        while not lost:
            for folder in glob.glob(os.path.join(storage, "runs", "*")):
                if os.path.exists(os.path.join(folder, "checkpoint.pt")) and worker.node_id in open(
                        os.path.join(folder, "log.txt")).read():
                    c.remove_node(worker)
                    lost.append(folder)
                    break
            time.sleep(0.1)
    threading.Thread(target=remove_the_worker_once_a_run_there_has_a_checkpoint, daemon=True).start()
    long = "--num-envs 1 --num-steps 256 --num-minibatches 4 --update-epochs 4 --checkpoint-every 1 --eval-episodes 1"
    runs = [sweep.Run("ppo_clip", "CartPole-v1", 256 * 40, seed, long) for seed in (1, 2)]
    results = sweep.sweep(runs, storage, c.address)

    assert lost and all(r["exit"] == 0 for r in results)
    (moved,) = [r for r in results if os.path.join(storage, "runs", r["name"]) == lost[0]]
    (first_node, first_pid), (second_node, _) = attempts(lost[0])
    assert first_node == worker.node_id and second_node == moved["node"] == c.head_node.node_id
    assert moved["resumed_at_step"] >= 256  # from its checkpoint, not from the start
    with pytest.raises(ProcessLookupError):  # the lost attempt's subprocess died with its worker
        os.kill(first_pid, 0)
    assert len(sweep.finished(storage)) == 2


def test_an_attempt_waits_for_the_lock_of_the_one_before(tmp_path):
    """Two attempts never train in one folder at once: the second starts once the first's lock is free."""
    run = sweep.Run("ppo_clip", "CartPole-v1", 64, 1, TINY)
    folder = tmp_path / "runs" / run.name
    os.makedirs(folder)
    with open(folder / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        second = threading.Thread(target=lambda: results.append(sweep.execute(run, str(tmp_path), "test")))
        results = []
        second.start()
        time.sleep(2)
        assert not os.path.exists(folder / "log.txt")  # it has not begun
    second.join(timeout=120)
    assert results[0]["exit"] == 0 and len(attempts(folder)) == 1


def test_a_runs_subprocess_ends_when_its_parent_is_killed(tmp_path):
    """The parent-death signal alone, without Ray (whose own cleanup of a dead worker's children is not
    something every version and setting does)."""
    code = ("import subprocess; from benchmarks.sweep import _tied_to_its_parent; "
            "c = subprocess.Popen(['sleep', '60'], preexec_fn=_tied_to_its_parent(0)); "
            "print(c.pid, flush=True); c.wait()")
    parent = subprocess.Popen([sys.executable, "-c", code], cwd=sweep.ROOT, stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    parent.kill()
    parent.wait()
    for _ in range(50):
        try:
            state = open(f"/proc/{child}/stat").read().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            state = "gone"
        if state in ("gone", "Z"):  # a zombie has died; init reaps it when it gets to it
            break
        time.sleep(0.1)
    assert state in ("gone", "Z")


def test_jobs_is_for_a_local_ray_only():
    with pytest.raises(SystemExit, match="--jobs sets the CPUs of a local Ray; a cluster has its own"):
        sweep.connect("127.0.0.1:1", jobs=2)


def test_a_stopped_sweep_lets_its_run_in_flight_save_a_checkpoint(tmp_path):
    """SIGTERM to a sweep's driver started in the background (SIGINT ignored, as `cmd &` and nohup leave it, which
    Ray's processes would inherit, and ray.cancel interrupts a task with SIGINT): the run in flight saves a
    checkpoint and exits, the queued runs never start, nothing is recorded as finished, and the driver ends."""
    code = ("import sys; from benchmarks import sweep; "
            "sweep.sweep([sweep.Run('ppo_clip', 'CartPole-v1', 100_000, s, '--eval-episodes 0') for s in (1, 2, 3)],"
            " sys.argv[1], jobs=1)")
    driver = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], cwd=sweep.ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    first = sweep.Run("ppo_clip", "CartPole-v1", 100_000, 1, "--eval-episodes 0")
    log = os.path.join(tmp_path, "runs", first.name, "log.txt")
    for _ in range(240):  # until the run has trained a few iterations
        time.sleep(0.5)
        if os.path.exists(log) and re.search(r"^step ", open(log).read(), re.M):
            break
    driver.send_signal(signal.SIGTERM)
    _, err = driver.communicate(timeout=60)
    assert driver.returncode == 1 and "stopped by SIGTERM: the same command resumes" in err
    assert re.search(r"^stopped by SIGTERM at iteration \d+; continue with", open(log).read(), re.M)
    assert os.path.exists(os.path.join(tmp_path, "runs", first.name, "checkpoint.pt"))
    assert os.listdir(os.path.join(tmp_path, "runs")) == [first.name] and sweep.finished(str(tmp_path)) == {}
