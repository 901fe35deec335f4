"""Balancing changed and unchanged transitions, shared by the domains."""

from __future__ import annotations

import random
from typing import Sequence, TypeVar

T = TypeVar("T")  # anything with a boolean `changed`


def rebalance(transitions: Sequence[T], unchanged_ratio: float, seed: int) -> list[T]:
    """Every changing transition plus a random subset of unchanged ones.

    `unchanged_ratio` unchanged transitions are kept per changing one (as the
    paper did, so RL data is not swamped by transitions that change nothing);
    a negative ratio keeps everything.
    """
    if unchanged_ratio < 0:
        return list(transitions)
    changed = [t for t in transitions if t.changed]
    unchanged = [t for t in transitions if not t.changed]
    rng = random.Random(seed)
    keep = rng.sample(unchanged, min(len(unchanged), int(round(unchanged_ratio * len(changed)))))
    out = changed + keep
    rng.shuffle(out)
    return out
