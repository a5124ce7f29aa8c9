"""Tiny envs for the tests, made by id as `tests.envs:Name-v0` (gymnasium imports this module)."""
import gymnasium as gym
import numpy as np


class ConstantEnv(gym.Env):
    """The observation is always [1]; reward 1 per step. Episodes alternate: one is cut by the time limit
    (registered as 3 steps), the next terminates by itself after 2 steps."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float64)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, render_mode=None):
        self.episode, self.render_mode = -1, render_mode

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.episode, self.t = self.episode + 1, 0
        return np.ones(1), {}

    def step(self, action):
        self.t += 1
        return np.ones(1), 1.0, self.episode % 2 == 1 and self.t == 2, False, {}


class ConstantBoxEnv(ConstantEnv):
    """ConstantEnv with a Box action space in [-0.1, 0.1]; it keeps every action it is given in `received`."""

    action_space = gym.spaces.Box(-0.1, 0.1, (1,), np.float32)
    received = []

    def step(self, action):
        ConstantBoxEnv.received.append(np.array(action))
        return super().step(action)


class MultiDiscreteEnv(ConstantEnv):
    action_space = gym.spaces.MultiDiscrete([2, 2])


class EndlessEnv(ConstantEnv):
    """ConstantEnv that never ends an episode, registered with no time limit (like CliffWalking-v1)."""

    def step(self, action):
        return np.ones(1), 1.0, False, False, {}


class EndlessBoxEnv(EndlessEnv):
    action_space = gym.spaces.Box(-1, 1, (1,), np.float32)


class DiscreteStartEnv(ConstantEnv):
    action_space = gym.spaces.Discrete(2, start=1)


gym.register("Constant-v0", entry_point=ConstantEnv, max_episode_steps=3)
gym.register("ConstantBox-v0", entry_point=ConstantBoxEnv, max_episode_steps=3)
gym.register("MultiDiscrete-v0", entry_point=MultiDiscreteEnv, max_episode_steps=3)
gym.register("Endless-v0", entry_point=EndlessEnv)
gym.register("EndlessBox-v0", entry_point=EndlessBoxEnv)
gym.register("DiscreteStart-v0", entry_point=DiscreteStartEnv, max_episode_steps=3)
