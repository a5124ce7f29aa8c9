"""Shared test setup. Every script joins the suite by adding one entry to SCRIPTS."""
import importlib
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# What the tests need to know of each script: the envs of its short end-to-end runs (the first is the
# default), small settings that keep those runs to seconds, its paper defaults (Table 3 or 5), the
# tiny env of tests/envs.py whose action space it takes, and optionally "tags": TensorBoard tags it
# logs beyond the shared ones.
# Small settings that keep a short run to seconds, shared by the MLP scripts.
TINY = dict(num_envs=2, num_steps=32, num_minibatches=2, update_epochs=2, total_timesteps=128, eval_episodes=0)
SCRIPTS = {
    "ppo_clip": {
        "envs": ["CartPole-v1", "Hopper-v4"],
        "tiny": TINY,
        "table": dict(num_steps=2048, learning_rate=3e-4, update_epochs=10, minibatch_size=64, gamma=0.99,
                      gae_lambda=0.95, clip_coef=0.2, ent_coef=0.0, total_timesteps=1_000_000),
        "constant_env": "Constant-v0",
    },
    "ppo_continuous": {
        "envs": ["Hopper-v4", "Pendulum-v1"],  # Hopper ends by termination and truncation, Pendulum only truncates
        "tiny": TINY,
        "table": dict(num_steps=2048, learning_rate=3e-4, update_epochs=10, minibatch_size=64, gamma=0.99,
                      gae_lambda=0.95, clip_coef=0.2, ent_coef=0.0, total_timesteps=1_000_000),
        "constant_env": "ConstantBox-v0",
    },
    "ppo_atari": {
        "envs": ["BreakoutNoFrameskip-v4"],
        "tiny": dict(num_envs=1, num_steps=64, num_minibatches=2, update_epochs=2, total_timesteps=128,
                     eval_episodes=0),
        "table": dict(num_envs=8, num_steps=128, learning_rate=2.5e-4, update_epochs=3, minibatch_size=256,
                      gamma=0.99, gae_lambda=0.95, clip_coef=0.1, vf_coef=1.0, ent_coef=0.01,
                      total_timesteps=10_000_000),
        # Shared tests that do not apply, and why; tests/test_atari.py has an Atari counterpart of each.
        "not_applicable": {
            "test_policy_and_value_share_no_parameters": "Table 5 shares the CNN trunk between the two heads",
            "test_numpy_acting_matches_the_torch_policy": "the CNN acts in torch",
            "test_truncation_bootstraps_and_termination_does_not": "Constant-v0 is not an Atari game",
            "test_ratio_is_one_on_the_first_minibatch": "pi_old's log-probs come from the acting batch, whose "
                                                        "conv kernels round differently (about 1e-8)",
            "MultiDiscrete action space": "any env that is not an ALE game is refused as such",
        },
    },
    "ppo_kl_adaptive": {
        "envs": ["CartPole-v1", "Hopper-v4"],
        "tiny": TINY,
        # Table 3, and Section 4's d_targ and starting beta
        "table": dict(num_steps=2048, learning_rate=3e-4, update_epochs=10, minibatch_size=64, gamma=0.99,
                      gae_lambda=0.95, ent_coef=0.0, total_timesteps=1_000_000, kl_target=0.01, init_beta=1.0,
                      adaptive_beta=True),
        "tags": ["charts/beta", "losses/kl"],
        "constant_env": "Constant-v0",
    },
}


@pytest.fixture(autouse=True)
def _skip_not_applicable(request):
    """Skip a shared test, or one of its parameter ids, that SCRIPTS marks as not applicable to a script."""
    callspec = getattr(request.node, "callspec", None)
    name = callspec.params.get("name") if callspec else None
    for key, reason in SCRIPTS.get(name, {}).get("not_applicable", {}).items():
        if key == request.node.originalname or key in callspec.id:
            pytest.skip(f"{name}: {reason}")


def load(name):
    return importlib.import_module(name)


def scripts_with(*attrs):
    """The scripts that define all of attrs, as pytest params."""
    return [pytest.param(name, id=name) for name in SCRIPTS if all(hasattr(load(name), a) for a in attrs)]


def run_script(name, *flags, cwd):
    """Run a script as a user would, from its own directory's copy on disk; returns the CompletedProcess."""
    return subprocess.run([sys.executable, os.path.join(ROOT, f"{name}.py"), *flags], cwd=cwd,
                          capture_output=True, text=True, timeout=600)
