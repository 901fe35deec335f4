"""The policies evaluated: image-based behaviour cloning of the Meta-World experts, in variants whose true success
rates spread, and a random policy.

Axes: N frames (one per episode acting), H×W pixels.

A policy sees what a world model can show it: the latest frame (64x64 RGB)
and which task it is doing, never the simulator's state. `Policy.act` takes
a batch of frames, one per episode, and each episode's own random generator,
so an episode's actions do not depend on which other episodes share its
batch.

The set (`SPECS`), made to spread from near the expert's rate down to
chance: behaviour cloning on every training episode, on a tenth of them, or
stopped after a tenth of the steps; the first with Gaussian noise of
standard deviation 0.5 and 1.0 added to its actions; and uniformly random
actions.
"""

from __future__ import annotations

import numpy as np
import torch

from .nets import FrameNet
from .options import PolicySpec


class Policy:
    """A frame-based policy: a cloned network plus optional noise, or random actions."""

    def __init__(self, spec: PolicySpec, net: FrameNet | None = None):
        if net is None and not spec.random:
            raise ValueError(f"policy {spec.name} needs a trained network")
        self.spec, self.net = spec, net

    @torch.no_grad()
    def act(self, frames: np.ndarray, tasks: np.ndarray, rngs: list[np.random.Generator]) -> np.ndarray:
        """frames (N, H, W, 3) uint8, task indices (N,), one generator per episode -> actions (N, 4) in [-1, 1]."""
        if self.spec.random:
            return np.stack([rng.uniform(-1.0, 1.0, 4) for rng in rngs]).astype(np.float32)
        out = torch.tanh(self.net(torch.as_tensor(np.ascontiguousarray(frames)),
                                  torch.as_tensor(tasks, dtype=torch.long))).numpy()  # (N, 4)
        if self.spec.noise > 0:
            out = out + np.stack([rng.normal(0.0, self.spec.noise, 4) for rng in rngs])
        return np.clip(out, -1.0, 1.0).astype(np.float32)
