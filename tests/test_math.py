"""The math of each script's pure functions, against independent references."""
import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from tests.conftest import load, scripts_with


def brute_force_gae(r, v, d, last_v, gamma, lam):
    """A_t = sum_l (gamma lam)^l delta_{t+l}, the sum stopping at the first episode end, in float64."""
    T, N = r.shape
    v_next = np.vstack([v[1:], last_v[None]])
    delta = r + gamma * v_next * (1 - d) - v
    adv = np.zeros((T, N))
    for i in range(N):
        for t in range(T):
            for l in range(T - t):
                adv[t, i] += (gamma * lam) ** l * delta[t + l, i]
                if d[t + l, i]:
                    break
    return adv


def random_rollout(T=13, N=3, seed=0, p_done=0.15):
    g = np.random.default_rng(seed)
    r, v, last_v = g.normal(size=(T, N)), g.normal(size=(T, N)), g.normal(size=N)
    d = (g.random((T, N)) < p_done).astype(np.float64)
    d[T // 2, 0] = 1  # at least one episode end inside the horizon
    return r, v, d, last_v


def gae(mod, r, v, d, last_v, gamma, lam):
    t = lambda x: torch.tensor(x, dtype=torch.float32)
    adv, ret = mod.compute_gae(t(r), t(v), t(d), t(last_v), gamma, lam)
    assert adv.shape == ret.shape == r.shape
    return adv.double().numpy(), ret.double().numpy()


@pytest.mark.parametrize("name", scripts_with("compute_gae"))
@pytest.mark.parametrize("gamma,lam", [(0.99, 0.95), (0.9, 0.5), (1.0, 1.0)])
def test_gae_equals_brute_force_sum(name, gamma, lam):
    r, v, d, last_v = random_rollout()
    adv, ret = gae(load(name), r, v, d, last_v, gamma, lam)
    np.testing.assert_allclose(adv, brute_force_gae(r, v, d, last_v, gamma, lam), atol=1e-4)
    np.testing.assert_allclose(ret, adv + v, atol=1e-5)


@pytest.mark.parametrize("name", scripts_with("compute_gae"))
def test_gae_lambda_zero_is_td_error(name):
    r, v, d, last_v = random_rollout(seed=1)
    adv, _ = gae(load(name), r, v, d, last_v, 0.97, 0.0)
    v_next = np.vstack([v[1:], last_v[None]])
    np.testing.assert_allclose(adv, r + 0.97 * v_next * (1 - d) - v, atol=1e-5)  # eq. (12)


@pytest.mark.parametrize("name", scripts_with("compute_gae"))
def test_gae_lambda_one_is_the_T_step_advantage(name):
    """eq. (10): A_t = -V(s_t) + r_t + gamma r_{t+1} + ... + gamma^{T-t-1} r_{T-1} + gamma^{T-t} V(s_T)."""
    r, v, _, last_v = random_rollout(seed=2)
    d = np.zeros_like(r)
    gamma, T = 0.95, r.shape[0]
    adv, _ = gae(load(name), r, v, d, last_v, gamma, 1.0)
    for t in range(T):
        expected = -v[t] + sum(gamma**l * r[t + l] for l in range(T - t)) + gamma ** (T - t) * last_v
        np.testing.assert_allclose(adv[t], expected, atol=1e-4)


@pytest.mark.parametrize("name", scripts_with("compute_gae"))
def test_gae_episode_end_stops_the_sum(name):
    r, v, _, last_v = random_rollout(seed=3)
    d = np.zeros_like(r)
    d[5, 1] = 1
    adv, _ = gae(load(name), r, v, d, last_v, 0.99, 0.95)
    r2, v2, last_v2 = r.copy(), v.copy(), last_v + 5.0
    r2[6:, 1] += 10.0
    v2[6:, 1] -= 3.0
    adv2, _ = gae(load(name), r2, v2, d, last_v2, 0.99, 0.95)
    np.testing.assert_array_equal(adv[:6, 1], adv2[:6, 1])  # nothing after the end reaches steps 0..5
    assert not np.allclose(adv[:6, 0], adv2[:6, 0])  # env 0 has no end, so the change does reach it
    # at the last step of the episode the advantage is r - V: no bootstrap
    np.testing.assert_allclose(adv[5, 1], r[5, 1] - v[5, 1], atol=1e-5)


# ---- eq. (7) ----
RATIOS = [0.5, 1.0, 1.5, 0.9, 1.3, 0.7]
ADVS = [1.0, 2.0, 1.0, -1.0, -1.0, -2.0]
# min(r A, clip(r, 0.8, 1.2) A) by hand: 0.5, 2, 1.2 (clipped), -0.9, -1.3, -1.6 (clipped)
PER_SAMPLE = [0.5, 2.0, 1.2, -0.9, -1.3, -1.6]
IGNORED = [False, False, True, False, False, True]  # ratio above 1+eps with A > 0, below 1-eps with A < 0


def clip_loss(mod, ratios, advs, eps=0.2, requires_grad=False):
    old = torch.zeros(len(ratios), dtype=torch.float64)
    new = torch.log(torch.tensor(ratios, dtype=torch.float64)).requires_grad_(requires_grad)
    return mod.clipped_surrogate_loss(new, old, torch.tensor(advs, dtype=torch.float64), eps), new


@pytest.mark.parametrize("name", scripts_with("clipped_surrogate_loss"))
def test_clipped_loss_hand_computed(name):
    loss, _ = clip_loss(load(name), RATIOS, ADVS)
    assert loss.item() == pytest.approx(-np.mean(PER_SAMPLE), abs=1e-12)  # -L^CLIP, the mean
    for r, a, l in zip(RATIOS, ADVS, PER_SAMPLE):
        assert clip_loss(load(name), [r], [a])[0].item() == pytest.approx(-l, abs=1e-12)


@pytest.mark.parametrize("name", scripts_with("clipped_surrogate_loss"))
def test_clipped_loss_gradient_zero_exactly_where_ignored(name):
    loss, new_logprob = clip_loss(load(name), RATIOS, ADVS, requires_grad=True)
    loss.backward()
    grad = new_logprob.grad.numpy()
    for g, r, a, ignored in zip(grad, RATIOS, ADVS, IGNORED):
        # d(-r A / B) / d log r = -r A / B where the unclipped term is the min
        assert g == (0.0 if ignored else pytest.approx(-r * a / len(RATIOS), abs=1e-12))


@pytest.mark.parametrize("name", scripts_with("clipped_surrogate_loss"))
def test_clipped_loss_is_a_lower_bound_of_cpi(name):
    g = np.random.default_rng(4)
    ratios, advs = np.exp(g.normal(scale=0.5, size=500)), g.normal(size=500)
    mod = load(name)
    for r, a in zip(ratios, advs):  # per sample: L^CLIP_t <= L^CPI_t = r_t A_t (eq. 6)
        assert -clip_loss(mod, [r], [a])[0].item() <= r * a + 1e-12
    loss, _ = clip_loss(mod, list(ratios), list(advs))
    assert loss.item() >= -np.mean(ratios * advs) - 1e-12
    # near r = 1 (inside the clip range) the two are equal
    inside = np.clip(ratios, 0.85, 1.15)
    assert clip_loss(mod, list(inside), list(advs))[0].item() == pytest.approx(-np.mean(inside * advs), abs=1e-12)


@pytest.mark.parametrize("name", scripts_with("value_loss", "ppo_loss"))
def test_value_loss_and_combined_objective(name):
    mod = load(name)
    v, target = torch.tensor([1.0, 2.0, -1.0]), torch.tensor([0.0, 4.0, -1.0])
    assert mod.value_loss(v, target).item() == pytest.approx((1 + 4 + 0) / 3)  # (V - V^targ)^2
    # eq. (9) maximises L^CLIP - c1 L^VF + c2 S; the loss is its negative
    assert mod.ppo_loss(torch.tensor(0.3), torch.tensor(2.0), torch.tensor(1.5), 0.5, 0.01).item() == \
        pytest.approx(0.3 + 0.5 * 2.0 - 0.01 * 1.5)


# ---- distributions ----
@pytest.mark.parametrize("name", scripts_with("gaussian_logprob_entropy"))
def test_gaussian_logprob_entropy_closed_form(name):
    g = np.random.default_rng(5)
    mean, log_std, action = g.normal(size=(7, 3)), g.normal(scale=0.5, size=3), g.normal(size=(7, 3))
    lp, ent = load(name).gaussian_logprob_entropy(torch.tensor(mean), torch.tensor(log_std), torch.tensor(action))
    s = np.exp(log_std)
    expected = np.sum(-0.5 * ((action - mean) / s) ** 2 - np.log(s * np.sqrt(2 * np.pi)), axis=1)
    np.testing.assert_allclose(lp.numpy(), expected, rtol=1e-10)
    np.testing.assert_allclose(ent.numpy(), np.full(7, np.sum(0.5 * np.log(2 * np.pi * np.e * s**2))), rtol=1e-10)
    ref = torch.distributions.Normal(torch.tensor(mean), torch.tensor(s))
    np.testing.assert_allclose(lp.numpy(), ref.log_prob(torch.tensor(action)).sum(-1).numpy(), rtol=1e-10)


@pytest.mark.parametrize("name", scripts_with("categorical_logprob_entropy"))
def test_categorical_logprob_entropy_closed_form(name):
    g = np.random.default_rng(6)
    logits, action = g.normal(size=(9, 4)), g.integers(0, 4, size=9)
    lp, ent = load(name).categorical_logprob_entropy(torch.tensor(logits), torch.tensor(action))
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    np.testing.assert_allclose(lp.numpy(), np.log(p[np.arange(9), action]), rtol=1e-10)
    np.testing.assert_allclose(ent.numpy(), -(p * np.log(p)).sum(1), rtol=1e-10)
    lp_u, ent_u = load(name).categorical_logprob_entropy(torch.zeros(2, 5), torch.tensor([0, 3]))
    np.testing.assert_allclose(ent_u.numpy(), [math.log(5)] * 2, rtol=1e-6)  # uniform: log n
    np.testing.assert_allclose(lp_u.numpy(), [-math.log(5)] * 2, rtol=1e-6)


@pytest.mark.parametrize("name", scripts_with("Agent"))
def test_numpy_acting_matches_the_torch_policy(name):
    """act() runs the policy network in numpy: its mean / likeliest action equals the torch network's, it
    follows parameter updates, and its samples follow the distribution the loss scores."""
    mod = load(name)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(5, 4)).astype(np.float32)
    discrete = [gym.spaces.Discrete(3)] if hasattr(mod, "categorical_logprob_entropy") else []
    for space in [gym.spaces.Box(-1, 1, (2,)), *discrete]:
        agent = mod.Agent(4, space)
        with torch.no_grad():
            for p in agent.parameters():
                p.add_(torch.randn_like(p))  # moved after construction: the numpy views must follow
            out = agent.actor(torch.from_numpy(obs)).numpy()
        if isinstance(space, gym.spaces.Box):
            np.testing.assert_allclose(agent.act(obs, rng, deterministic=True), out, rtol=1e-4, atol=1e-5)
            samples = np.stack([agent.act(obs[:1], rng)[0] for _ in range(20000)])
            std = agent.log_std.exp().detach().numpy()
            np.testing.assert_allclose(samples.mean(0), out[0], atol=4 * std.max() / np.sqrt(20000) * 1.5)
            np.testing.assert_allclose(samples.std(0), std, rtol=0.03)
        else:
            np.testing.assert_array_equal(agent.act(obs, rng, deterministic=True), out.argmax(-1))
            samples = np.array([agent.act(obs[:1], rng)[0] for _ in range(20000)])
            p = torch.softmax(torch.from_numpy(out[0]), -1).numpy()
            np.testing.assert_allclose(np.bincount(samples, minlength=3) / 20000, p, atol=0.015)


@pytest.mark.parametrize("name", scripts_with("gaussian_logprob_entropy"))
def test_init_log_std_is_the_first_policy_spread(name):
    """--init-log-std sets the untrained Gaussian: samples spread by exp(init_log_std) in every action
    dimension, and the entropy the loss sees is the closed form for that std, 3 * (s + (1 + log 2 pi) / 2)."""
    mod = load(name)
    s = -0.7
    assert hasattr(mod.Args(), "init_log_std")  # the CLI flag that main() hands to Agent
    agent = mod.Agent(4, gym.spaces.Box(-1, 1, (3,)), s)
    obs = np.zeros((20000, 4), np.float32)
    samples = agent.act(obs, np.random.default_rng(1))
    np.testing.assert_allclose(samples.std(0), [math.exp(s)] * 3, rtol=0.03)
    with torch.no_grad():
        _, entropy = mod.gaussian_logprob_entropy(agent.actor(torch.from_numpy(obs[:2])), agent.log_std,
                                                  torch.from_numpy(samples[:2]))
    np.testing.assert_allclose(entropy.numpy(), [3 * (s + 0.5 * (1 + math.log(2 * math.pi)))] * 2,
                               rtol=1e-6)


@pytest.mark.parametrize("name", scripts_with("RunningMeanStd"))
def test_running_mean_std_equals_numpy(name):
    g = np.random.default_rng(7)
    rms = load(name).RunningMeanStd(3)
    stream = [g.normal(loc=[1, -2, 5], scale=[0.5, 2, 10], size=(n, 3)) for n in [1, 7, 64, 2, 300]]
    for batch in stream:
        rms.update(batch)
    data = np.concatenate(stream)
    np.testing.assert_allclose(rms.mean, data.mean(0), rtol=1e-5)
    np.testing.assert_allclose(rms.var, data.var(0), rtol=1e-5)
    z = rms.normalize(np.array([[1e6, -1e6, 5.0]]))
    assert z.dtype == np.float32 and z[0, 0] == rms.clip and z[0, 1] == -rms.clip
