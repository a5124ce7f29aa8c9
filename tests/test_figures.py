"""benchmarks/figures.py: the paper's Figures 1 and 2 from the scripts' own functions."""
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import figures  # noqa: E402


def test_figure1_is_eq7_for_one_sample():
    """Hand-computed with eps = 0.2: A = +1 gives min(r, clip(r)) = r below 1.2 and 1.2 above; A = -1 gives
    min(-r, -clip(r)) = -0.8 below 0.8 and -r above."""
    ratios, terms = figures.figure1(0.2)
    for r, pos, neg in [(0.5, 0.5, -0.8), (1.0, 1.0, -1.0), (1.1, 1.1, -1.1), (1.5, 1.2, -1.5), (2.0, 1.2, -2.0)]:
        i = int(np.argmin(abs(ratios - r)))
        assert terms[1.0][i] == pytest.approx(pos, abs=1e-6) and terms[-1.0][i] == pytest.approx(neg, abs=1e-6), r


def test_figure2_curves_on_a_short_first_update(tmp_path, monkeypatch):
    """On a 64-step batch (first_update asserts that theta_old is the seeded initial Agent and that the batch's
    log-probs are its own): every curve starts at 0, L^CLIP is a lower bound of both L^CPI and E[clip(r) A],
    the KL is never negative and grows, and at t = 1 the policy has moved."""
    batch = figures.first_update(64)
    ts = np.linspace(0.0, 2.0, 21)
    curves = figures.figure2(batch, ts)
    for values in curves.values():
        assert values[0] == pytest.approx(0.0, abs=1e-6)
    assert np.all(curves["L^CLIP"] <= curves["L^CPI"] + 1e-7)
    assert np.all(curves["L^CLIP"] <= curves["E[clip(r) A]"] + 1e-7)
    assert np.all(curves["KL"] >= 0) and np.all(np.diff(curves["KL"]) > 0)
    assert curves["L^CPI"][10] > 0 and curves["KL"][10] > 0


def test_figures_short_mode_runs():
    result = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "figures.py"), "--short"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-500:]
    assert "L^CLIP peaks at t =" in result.stdout
