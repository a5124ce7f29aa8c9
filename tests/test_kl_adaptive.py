"""ppo_kl_adaptive.py: the exact KL, the penalised surrogate of eq. (8) and Section 4's beta rule."""
import dataclasses
import glob
import math

import numpy as np
import pytest
import torch

from tests.conftest import SCRIPTS, load, run_script
from tests.test_runs import scalars

mod = load("ppo_kl_adaptive")


# ---- Section 4: the adaptive beta rule ----
def expected_beta(beta, d, target):
    """The rule as the paper words it: d < d_targ / 1.5 halves beta, d > d_targ * 1.5 doubles it."""
    return beta / 2 if d < target / 1.5 else beta * 2 if d > target * 1.5 else beta


@pytest.mark.parametrize("target", [0.003, 0.01, 0.03])
def test_update_beta_at_and_around_both_thresholds(target):
    low, high = target / 1.5, target * 1.5
    cases = [
        (low, 1.0),  # at a threshold: kept
        (high, 1.0),
        (math.nextafter(low, 1), 1.0),  # just inside
        (math.nextafter(high, 0), 1.0),
        (target, 1.0),
        (math.nextafter(low, 0), 0.5),  # just outside: halved below, doubled above
        (math.nextafter(high, 1), 2.0),
        (0.0, 0.5),
        (10 * target, 2.0),
    ]
    for d, factor in cases:
        assert mod.update_beta(3.0, d, target) == 3.0 * factor, d


def test_update_beta_repeated_calls_halve_or_double_each_time_and_converge():
    # a fixed d outside the band: beta halves (or doubles) exactly at every call
    beta_down, beta_up = 1.0, 1.0
    for k in range(1, 12):
        beta_down, beta_up = mod.update_beta(beta_down, 0.001, 0.01), mod.update_beta(beta_up, 0.5, 0.01)
        assert beta_down == 2.0**-k and beta_up == 2.0**k
    # a toy policy whose KL per update falls as 1 / beta: beta moves one way only, then settles in the band
    for c, start in [(0.64, 1.0), (0.01 / 64, 1.0), (0.01 * 3, 1024.0)]:
        betas = [start]
        for _ in range(30):
            betas.append(mod.update_beta(betas[-1], c / betas[-1], 0.01))
        ratios = {b1 / b0 for b0, b1 in zip(betas, betas[1:])}
        assert ratios <= {1.0, 2.0} or ratios <= {1.0, 0.5}, (c, betas)  # never both
        assert 0.01 / 1.5 <= c / betas[-1] <= 0.01 * 1.5 and betas[-1] == betas[-10]  # converged, and stays
        assert len(ratios) == 2  # it did have to move


# ---- the exact KL[pi_old, pi_new] ----
def test_categorical_kl_closed_form_zero_and_monte_carlo():
    g = np.random.default_rng(0)
    old, new = g.normal(size=(6, 5)), g.normal(scale=2.0, size=(6, 5))
    kl = mod.categorical_kl(torch.tensor(old), torch.tensor(new)).numpy()
    p, q = np.exp(old) / np.exp(old).sum(1, keepdims=True), np.exp(new) / np.exp(new).sum(1, keepdims=True)
    np.testing.assert_allclose(kl, (p * np.log(p / q)).sum(1), rtol=1e-10)  # sum_a p log(p / q), old first
    assert not np.allclose(kl, (q * np.log(q / p)).sum(1))  # the reverse KL differs: the order matters
    # equal distributions, also with logits shifted by a constant (the same softmax)
    np.testing.assert_allclose(mod.categorical_kl(torch.tensor(old), torch.tensor(old + 3.0)).numpy(), 0, atol=1e-12)
    # Monte Carlo: E_{a ~ p}[log p(a) - log q(a)]
    n = 200_000
    for i in range(len(old)):
        a = g.choice(5, size=n, p=p[i])
        mc = np.log(p[i, a] / q[i, a])
        assert abs(mc.mean() - kl[i]) < 4 * mc.std() / np.sqrt(n)


def gaussian_kl_matrix_form(m0, s0, m1, s1):
    """KL of multivariate normals, N0 || N1, with covariance matrices: the textbook formula."""
    S0, S1 = np.diag(s0**2), np.diag(s1**2)
    S1_inv, dm = np.linalg.inv(S1), m1 - m0
    k = len(m0)
    return 0.5 * (np.trace(S1_inv @ S0) + dm @ S1_inv @ dm - k + np.log(np.linalg.det(S1) / np.linalg.det(S0)))


def test_gaussian_kl_closed_form_zero_and_monte_carlo():
    g = np.random.default_rng(1)
    B, A = 5, 3
    m0, m1 = g.normal(size=(B, A)), g.normal(size=(B, A))
    ls0, ls1 = g.normal(scale=0.5, size=(B, A)), g.normal(scale=0.5, size=(B, A))
    t = torch.tensor
    kl = mod.gaussian_kl(t(m0), t(ls0), t(m1), t(ls1)).numpy()
    for i in range(B):
        assert kl[i] == pytest.approx(gaussian_kl_matrix_form(m0[i], np.exp(ls0[i]), m1[i], np.exp(ls1[i])), rel=1e-10)
        assert kl[i] != pytest.approx(gaussian_kl_matrix_form(m1[i], np.exp(ls1[i]), m0[i], np.exp(ls0[i])), rel=1e-3)
    # the script's shapes: state-independent log stds (A,), broadcast over the batch
    kl_shared = mod.gaussian_kl(t(m0), t(ls0[0]), t(m1), t(ls1[0])).numpy()
    for i in range(B):
        assert kl_shared[i] == pytest.approx(gaussian_kl_matrix_form(m0[i], np.exp(ls0[0]), m1[i], np.exp(ls1[0])),
                                             rel=1e-10)
    np.testing.assert_allclose(mod.gaussian_kl(t(m0), t(ls0), t(m0), t(ls0)).numpy(), 0, atol=1e-12)
    # Monte Carlo: E_{x ~ N0}[log N0(x) - log N1(x)]
    n = 200_000
    for i in range(B):
        x = m0[i] + np.exp(ls0[i]) * g.standard_normal((n, A))
        logpdf = lambda m, ls: (-0.5 * ((x - m) / np.exp(ls)) ** 2 - ls - 0.5 * np.log(2 * np.pi)).sum(1)
        mc = logpdf(m0[i], ls0[i]) - logpdf(m1[i], ls1[i])
        assert abs(mc.mean() - kl[i]) < 4 * mc.std() / np.sqrt(n)


@pytest.mark.parametrize("continuous", [True, False])
def test_agent_kl_is_zero_for_its_own_parameters_and_exact_after_a_step(continuous):
    import gymnasium as gym
    torch.manual_seed(0)
    space = gym.spaces.Box(-1, 1, (2,)) if continuous else gym.spaces.Discrete(3)
    agent = mod.Agent(4, space)
    obs = torch.randn(7, 4)
    action = torch.randn(7, 2) if continuous else torch.randint(0, 3, (7,))
    old = agent.dist_params(obs).detach()
    logprob, _, kl = agent.logprob_entropy_kl(obs, action, old)
    assert torch.equal(kl, torch.zeros(7)) if not continuous else torch.allclose(kl, torch.zeros(7), atol=1e-7)
    with torch.no_grad():
        for p in agent.parameters():
            p.add_(0.3 * torch.randn_like(p))
    kl = agent.logprob_entropy_kl(obs, action, old)[2].detach()
    out = agent.actor(obs).detach()
    if continuous:
        mean, log_std = old.chunk(2, -1)
        ref = torch.distributions.kl_divergence(torch.distributions.Normal(mean, log_std.exp()),
                                                torch.distributions.Normal(out, agent.log_std.detach().exp())).sum(-1)
    else:
        ref = torch.distributions.kl_divergence(torch.distributions.Categorical(logits=old),
                                                torch.distributions.Categorical(logits=out))
    assert (kl > 0).all()
    torch.testing.assert_close(kl, ref, rtol=1e-5, atol=1e-7)


# ---- eq. (8) ----
def test_kl_penalty_loss_hand_computed():
    new = torch.log(torch.tensor([0.5, 1.0, 1.5, 2.0], dtype=torch.float64))
    old = torch.zeros(4, dtype=torch.float64)
    adv = torch.tensor([1.0, 2.0, -1.0, 0.5], dtype=torch.float64)
    kl = torch.tensor([0.1, 0.0, 0.2, 0.05], dtype=torch.float64)
    # r A - beta KL at beta 2: 0.5 - 0.2, 2 - 0, -1.5 - 0.4, 1 - 0.1
    assert mod.kl_penalty_loss(new, old, adv, kl, 2.0).item() == pytest.approx(-(0.3 + 2.0 - 1.9 + 0.9) / 4, abs=1e-12)
    assert mod.kl_penalty_loss(new, old, adv, kl, 0.0).item() == pytest.approx(-(0.5 + 2.0 - 1.5 + 1.0) / 4, abs=1e-12)
    # the ratio is exp(new - old): shifting both log-probs changes nothing
    assert mod.kl_penalty_loss(new - 3, old - 3, adv, kl, 2.0).item() == pytest.approx(-1.3 / 4, abs=1e-12)


def test_kl_penalty_gradient_at_beta_zero_is_that_of_cpi_and_the_penalty_adds_beta_grad_kl():
    import gymnasium as gym
    torch.manual_seed(1)
    agent = mod.Agent(4, gym.spaces.Box(-1, 1, (2,)))
    obs, action, adv = torch.randn(16, 4), torch.randn(16, 2), torch.randn(16)
    old = agent.dist_params(obs).detach()
    old_logprob = agent.logprob_entropy_kl(obs, action, old)[0].detach()
    with torch.no_grad():
        for p in agent.parameters():
            p.add_(0.1 * torch.randn_like(p))  # away from theta_old, where the KL's gradient is not zero

    def grads(loss):
        agent.zero_grad()
        loss.backward()
        return [p.grad.clone() for p in agent.parameters() if p.grad is not None]

    def fresh():
        return agent.logprob_entropy_kl(obs, action, old)

    new_logprob, _, kl = fresh()
    g_pen0 = grads(mod.kl_penalty_loss(new_logprob, old_logprob, adv, kl, 0.0))
    # -L^CPI of eq. (6), written out here: -mean(pi / pi_old * A), the ratio from the Gaussian densities
    mean = agent.actor(obs)
    std = agent.log_std.exp()
    new_density = torch.exp(-0.5 * ((action - mean) / std) ** 2).div(std * math.sqrt(2 * math.pi)).prod(-1)
    g_cpi = grads(-(new_density / old_logprob.exp() * adv).mean())
    for a, b in zip(g_pen0, g_cpi):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    # and with beta > 0 the gradient is CPI's plus beta times that of the mean KL
    new_logprob, _, kl = fresh()
    g_pen = grads(mod.kl_penalty_loss(new_logprob, old_logprob, adv, kl, 3.0))
    g_kl = grads(fresh()[2].mean())
    assert any(k.abs().max() > 1e-4 for k in g_kl)
    for a, b, k in zip(g_pen, g_cpi, g_kl):
        torch.testing.assert_close(a, b + 3.0 * k, rtol=1e-4, atol=1e-6)


# ---- whole runs ----
def tiny(**overrides):
    return dataclasses.replace(mod.Args(), **{**SCRIPTS["ppo_kl_adaptive"]["tiny"], **overrides})


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Hopper-v4"])
def test_beta_follows_the_rule_given_the_logged_d(env_id, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    target = 0.002
    mod.main(tiny(env_id=env_id, num_steps=64, total_timesteps=128 * 12, kl_target=target, init_beta=1.0))
    (run_dir,) = glob.glob("runs/*")
    logged = scalars(run_dir)
    betas = [v for _, v in logged["charts/beta"]]
    ds = [v for _, v in logged["losses/kl"]]
    assert len(betas) == len(ds) == 12 and betas[0] == 1.0
    for i in range(11):
        assert betas[i + 1] == pytest.approx(expected_beta(betas[i], ds[i], target), rel=1e-6), (i, betas, ds)
    assert len(set(betas)) > 1 and all(d > 0 for d in ds)


def test_fixed_beta_stays_fixed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    mod.main(tiny(total_timesteps=64 * 4, init_beta=3.0, adaptive_beta=False, kl_target=1e-9))
    (run_dir,) = glob.glob("runs/*")
    assert [v for _, v in scalars(run_dir)["charts/beta"]] == [3.0] * 4


def test_ratio_one_and_kl_zero_on_the_first_minibatch(tmp_path, monkeypatch):
    """theta = theta_old before the first step: r_t = 1 and KL[pi_old, pi] = 0 exactly (eq. 6, eq. 8)."""
    monkeypatch.chdir(tmp_path)
    calls, real = [], mod.kl_penalty_loss

    def spy(new_logprob, old_logprob, advantages, kl, beta):
        calls.append((torch.exp(new_logprob - old_logprob).detach().clone(), kl.detach().clone(), beta))
        return real(new_logprob, old_logprob, advantages, kl, beta)

    monkeypatch.setattr(mod, "kl_penalty_loss", spy)
    for env_id in SCRIPTS["ppo_kl_adaptive"]["envs"]:
        calls.clear()
        mod.main(tiny(env_id=env_id, num_steps=64, total_timesteps=128, init_beta=0.7))
        (ratio, kl, beta), (ratio2, kl2, _) = calls[0], calls[1]
        assert torch.equal(ratio, torch.ones_like(ratio)) and beta == 0.7, env_id
        torch.testing.assert_close(kl, torch.zeros_like(kl), rtol=0, atol=1e-7)
        assert not torch.equal(ratio2, torch.ones_like(ratio2)) and kl2.sum() > 0  # the update moved pi


@pytest.mark.parametrize("flags,message", [(["--kl-target", "0"], "--kl-target must be positive"),
                                           (["--init-beta", "-1"], "--init-beta must not be negative")])
def test_bad_beta_settings_are_refused_in_one_line(flags, message, tmp_path):
    result = run_script("ppo_kl_adaptive", *flags, cwd=tmp_path)
    assert result.returncode != 0 and message in result.stderr
    assert "Traceback" not in result.stderr and not glob.glob(f"{tmp_path}/runs/*")
