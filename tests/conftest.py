"""Shared test setup. Every script joins the suite by adding one entry to SCRIPTS."""
import importlib
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# What the tests need to know of each script: the envs of its short end-to-end runs (the first is the
# default), small settings that keep those runs to seconds, its paper defaults (Table 3 or 5), and
# optionally "tags": TensorBoard tags it logs beyond the shared ones.
SCRIPTS = {
    "ppo_clip": {
        "envs": ["CartPole-v1", "Hopper-v4"],
        "tiny": dict(num_envs=2, num_steps=32, num_minibatches=2, update_epochs=2, total_timesteps=128,
                     eval_episodes=0),
        "table": dict(num_steps=2048, learning_rate=3e-4, update_epochs=10, minibatch_size=64, gamma=0.99,
                      gae_lambda=0.95, clip_coef=0.2, ent_coef=0.0, total_timesteps=1_000_000),
    },
    "ppo_kl_adaptive": {
        "envs": ["CartPole-v1", "Hopper-v4"],
        "tiny": dict(num_envs=2, num_steps=32, num_minibatches=2, update_epochs=2, total_timesteps=128,
                     eval_episodes=0),
        # Table 3, and Section 4's d_targ and starting beta
        "table": dict(num_steps=2048, learning_rate=3e-4, update_epochs=10, minibatch_size=64, gamma=0.99,
                      gae_lambda=0.95, ent_coef=0.0, total_timesteps=1_000_000, kl_target=0.01, init_beta=1.0,
                      adaptive_beta=True),
        "tags": ["charts/beta", "losses/kl"],
    },
}


def load(name):
    return importlib.import_module(name)


def scripts_with(*attrs):
    """The scripts that define all of attrs, as pytest params."""
    return [pytest.param(name, id=name) for name in SCRIPTS if all(hasattr(load(name), a) for a in attrs)]


def run_script(name, *flags, cwd):
    """Run a script as a user would, from its own directory's copy on disk; returns the CompletedProcess."""
    return subprocess.run([sys.executable, os.path.join(ROOT, f"{name}.py"), *flags], cwd=cwd,
                          capture_output=True, text=True, timeout=600)
