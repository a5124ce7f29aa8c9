"""benchmarks/table1.py: the paper's scoring, its bootstrap standard error, the verdicts, the learning curve a
row keeps, and which recorded rows a sweep skips."""
import json
import sys

import numpy as np
import pytest

from benchmarks import table1


def test_scores_are_normalised_as_the_paper_says():
    """By hand: on task a the random policy scores 10 and the best setting's mean is 30 (setting y: 20 and
    40), so x's seeds 10 and 20 become 0 and 0.5; on task b random is 0, best is x's mean 5 (2, 8), so y's 1
    and 3 become 0.2 and 0.6. A setting's figure averages its four normalised runs."""
    raw = {"x": {"a": [10, 20], "b": [2, 8]}, "y": {"a": [20, 40], "b": [1, 3]}}
    scored = table1.table_scores(raw, {"a": 10.0, "b": 0.0})
    assert scored["x"][0] == pytest.approx((0 + 0.5 + 0.4 + 1.6) / 4)
    assert scored["y"][0] == pytest.approx((0.5 + 1.5 + 0.2 + 0.6) / 4)
    assert scored["x"][1] == pytest.approx({"a": 0.25, "b": 1.0})
    assert scored["y"][1] == pytest.approx({"a": 1.0, "b": 0.4})


def test_bootstrap_error_matches_the_closed_form():
    """When the best setting never varies (every seed scores 50) and the random policy scores 0, the other
    setting's figure is its mean over n seeds / 50, and the bootstrap variance of a mean of n draws with
    replacement is exactly the plug-in variance over n: SE = sqrt(mean((x - mean x)^2) / n) / 50."""
    x = np.array([3.0, 11.0, 25.0])
    draws = table1.bootstrap({"best": {"t": [50.0] * 3}, "other": {"t": list(x)}}, {"t": 0.0}, draws=20000)
    closed = np.sqrt(((x - x.mean()) ** 2).mean() / len(x)) / 50
    assert draws["other"].std() == pytest.approx(closed, rel=0.03)
    assert draws["other"].mean() == pytest.approx(x.mean() / 50, rel=0.01)
    assert np.all(draws["best"] == 1.0)


def _verdicts(figures):
    """The verdicts on replicates centred on the given figures with spread 0.01: narrow intervals, so that each
    verdict is clear-cut."""
    rng = np.random.default_rng(0)
    return table1.verdicts(figures, {s: f + 0.01 * rng.standard_normal(2000) for s, f in figures.items()})


def test_verdicts_hold_fail_or_cannot_tell():
    paper = {s: score for s, _, _, score in table1.SETTINGS}  # the paper's own table: every claim holds
    said = _verdicts(paper)
    assert all("**holds**" in line for line in said), said
    worse = {**paper, "clipping, eps = 0.3": 0.9, "no clipping or penalty": 0.3,
             **{s: 0.5 for s in paper if s.startswith("adaptive")}}
    said = _verdicts(worse)  # eps 0.3 above 0.2, L^CPI above random, adaptive 0.22 below the best fixed beta
    assert all("**fails**" in line for line in said), said
    close = {**paper, "clipping, eps = 0.1": 0.82, "no clipping or penalty": 0.0}
    said = _verdicts(close)  # a tie at the top and L^CPI at random: neither can be told apart
    assert "**cannot be told apart**" in said[0] and "**cannot be told apart**" in said[1], said


def test_wall_time_counts_each_moment_once_and_splits_at_gaps():
    """Two runs side by side over [0, 300] and [60, 400], the next starting 90 s after (within the 120 s a
    minute-resolution date can blur) until 700: one stretch of 700 s. A run an hour later, 200 s long: a second."""
    spans = [(60, 400), (0, 300), (490, 700), (4300, 4500)]
    hours, stretches = table1.busy_hours(spans)
    assert stretches == 2 and hours == pytest.approx((700 + 200) / 3600)
    assert table1.busy_hours([]) == (0, 0)


def test_the_curve_is_the_mean_return_per_window():
    """Episodes ending at steps 5,000 and 15,000 fall in the first 20k window; one at 40,000 closes the second
    (a window holds its right end); none ends in the third."""
    curve = [[5000, 1.0], [15000, 3.0], [40000, 10.0]]
    assert table1.binned_curve(curve, 60000) == [2.0, 10.0, None]


def test_a_sweep_skips_only_runs_of_its_budget_flags_and_protocol(tmp_path, monkeypatch):
    monkeypatch.setattr(table1, "RESULTS", str(tmp_path))
    flags = table1.run_flags(table1.PAPER_FLAGS)["clipping, eps = 0.2"]
    row = dict(kind="run", setting="clipping, eps = 0.2", env_id="Hopper-v4", seed=1, total_timesteps=1_000_000,
               flags=flags, protocol=table1.PROTOCOL, last100=1.0)
    others = [dict(row, protocol=None), dict(row, total_timesteps=200_000), dict(row, flags=flags + " --seed 2"),
              dict(row, seed=2, last100=2.0), dict(row, last100=3.0)]  # the newest row of a run wins
    (tmp_path / "table1.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [row, *others]))
    got = table1.recorded(1_000_000, table1.PAPER_FLAGS, table1.PROTOCOL)
    assert {k: r["last100"] for k, r in got.items()} == {("clipping, eps = 0.2", "Hopper-v4", 1): 3.0,
                                                         ("clipping, eps = 0.2", "Hopper-v4", 2): 2.0}


def test_the_table_gives_each_setting_its_error_and_the_verdicts_by_task(tmp_path, monkeypatch):
    """Two tasks, two seeds a setting, every run on task a scoring the paper's figure x 100 and on task b the
    paper's figure x 10, plus or minus 1% of the scale between seeds; random 0. eps = 0.2 is then best on both
    tasks, 6 points of 82 (0.07) above eps = 0.1, the next best."""
    monkeypatch.setattr(table1, "RESULTS", str(tmp_path))
    flags_of = table1.run_flags(table1.PAPER_FLAGS)
    rows = [dict(kind="random", env_id=t, score=0.0) for t in ["a-v0", "b-v0"]]
    for setting, _, _, paper in table1.SETTINGS:
        for task, scale in [("a-v0", 100), ("b-v0", 10)]:
            for seed, noise in [(1, -scale / 100), (2, scale / 100)]:
                rows.append(dict(kind="run", setting=setting, env_id=task, seed=seed, total_timesteps=1000,
                                 flags=flags_of[setting], protocol=table1.PROTOCOL, last100=paper * scale + noise))
    (tmp_path / "table1.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = table1.table(["a-v0", "b-v0"], [1, 2], 1000, table1.PAPER_FLAGS, table1.PROTOCOL)
    # eps 0.1 on task a: (76 -+ 1) / 82, on b: (7.6 -+ 0.1) / 8.2, both 0.927 on average
    assert "| clipping, eps = 0.1 | 0.76 | 0.93 |" in text
    claims = text.split("claims")[1].splitlines()
    assert "**holds**" in claims[1] and "By task: a +0.07, b +0.07 (eps = 0.2 minus clipping, eps = 0.1)" in claims[2]


def test_the_figures_draw_from_the_recorded_rows(tmp_path, monkeypatch):
    """Figure 3's table gives, per task, the mean and the (population) std over seeds of the eps = 0.2 runs'
    scores: here 10 and 20 on Hopper, so 15.0 +- 5.0; both PNGs are written once every setting has a run."""
    from benchmarks import table1_figures
    monkeypatch.setattr(table1, "RESULTS", str(tmp_path))
    flags_of = table1.run_flags(table1.PAPER_FLAGS)
    rows = [dict(kind="random", env_id="Hopper-v4", score=0.0)]
    for setting, *_ in table1.SETTINGS:
        for seed, score in [(1, 10.0), (2, 20.0)]:
            rows.append(dict(kind="run", setting=setting, env_id="Hopper-v4", seed=seed, total_timesteps=1_000_000,
                             flags=flags_of[setting], protocol=table1.PROTOCOL, last100=score,
                             curve=[None] + [score] * 49))
    (tmp_path / "table1.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    runs = table1_figures.full_runs()
    assert table1_figures.draw_table1(runs, str(tmp_path / "t.png")) == str(tmp_path / "t.png")
    assert table1_figures.draw_figure3(runs, str(tmp_path / "f.png")) == [("Hopper-v4", 2, 15.0, 5.0, 2250)]
    assert (tmp_path / "t.png").stat().st_size > 10_000 and (tmp_path / "f.png").stat().st_size > 10_000


def test_the_peak_is_the_best_window_and_the_end_the_score_each_averaged_over_seeds(tmp_path, monkeypatch):
    """Two seeds that rise and fall: peaks 30 and 50 (mean 40), scores 5 and 15 (mean 10); empty windows skipped."""
    from benchmarks import table1_figures
    monkeypatch.setattr(table1, "RESULTS", str(tmp_path))
    (tmp_path / "table1.jsonl").write_text(json.dumps(dict(kind="random", env_id="Hopper-v4", score=2.5)) + "\n")
    setting = table1.SETTINGS[0][0]
    runs = {(setting, "Hopper-v4", 1): dict(curve=[None, 10.0, 30.0, 4.0], last100=5.0),
            (setting, "Hopper-v4", 3): dict(curve=[50.0, None, 20.0, 15.0], last100=15.0),
            (setting, "Reacher-v4", 2): dict(curve=[-40.0, -9.0, -30.0], last100=-35.0)}
    assert table1_figures.peak_and_end(runs, setting) == [("Hopper-v4", 2, 40.0, 10.0, 2.5),
                                                          ("Reacher-v4", 1, -9.0, -35.0, None)]


def test_a_run_finished_in_the_storage_but_missing_from_the_results_is_recorded_from_its_folder(tmp_path, monkeypatch):
    """A fresh work tree lost a row whose run the storage kept: the same command records it from the storage's
    finished.jsonl and the run's own TensorBoard curve, and hands the sweep the rest."""
    from torch.utils.tensorboard import SummaryWriter
    from benchmarks import common, sweep
    monkeypatch.setattr(table1, "RESULTS", str(tmp_path))
    monkeypatch.setattr(common, "RESULTS", str(tmp_path))  # where record() writes
    (tmp_path / "table1.jsonl").write_text(json.dumps(dict(kind="random", env_id="Hopper-v4", score=0.0)) + "\n")
    flags = table1.run_flags(table1.PAPER_FLAGS)["clipping, eps = 0.2"]
    run = sweep.Run("ppo_clip", "Hopper-v4", 40_000, 1, flags + " --eval-episodes 0")
    writer = SummaryWriter(str(tmp_path / "store" / "runs" / run.name))
    for step, ret in [(5000, 1.0), (15000, 3.0), (30000, 7.0)]:
        writer.add_scalar("charts/episodic_return", ret, step)
    writer.close()
    row = {**run.identity, "name": run.name, "exit": 0, "last100": 3.67, "episodes": 3, "wall_s": 60}
    (tmp_path / "store" / "finished.jsonl").write_text(json.dumps(row) + "\n")
    handed = []
    monkeypatch.setattr(sweep, "sweep_from_args", lambda runs, *_: handed.extend(runs) or [])
    monkeypatch.setattr(sys, "argv", ["table1.py", "--tasks", "Hopper-v4", "--total-timesteps", "40000",
                                      "--storage", str(tmp_path / "store")])
    table1.main()
    (got,) = table1.recorded(40_000, table1.PAPER_FLAGS, table1.PROTOCOL).values()
    assert got["setting"] == "clipping, eps = 0.2" and got["last100"] == 3.67 and got["curve"] == [2.0, 7.0]
    assert len(handed) == 11 and run in handed  # the sweep itself skips it, as its storage has it
