"""The success detector: Meta-World's success flag read from frames, since a world model shows nothing else.

Axes: E episodes, T+1 frames per episode, H×W pixels.

A `FrameNet` with one logit, trained on labelled simulator frames (each
frame's flag is `info["success"]` in the state it shows), half the time as
the world model's frame tokenizer reconstructs them, with positives weighted
by how rare they are. An episode counts as a success where `run` consecutive
frames look successful (probability at least one half): one frame alone
would let a single misread frame out of 21 decide an episode.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .nets import FrameNet, predict


@dataclass
class Detector:
    net: FrameNet
    run: int = 2  # consecutive successful-looking frames that make an episode a success

    def frame_probs(self, frames: np.ndarray, tasks: np.ndarray) -> np.ndarray:
        """frames (E, T+1, H, W, 3) uint8, task indices (E,) -> (E, T+1) success probabilities."""
        E, F = frames.shape[:2]
        logits = predict(self.net, frames.reshape(E * F, *frames.shape[2:]), np.repeat(tasks, F))[:, 0]  # (E*F,)
        return 1.0 / (1.0 + np.exp(-logits.reshape(E, F)))

    def episodes(self, frames: np.ndarray, tasks: np.ndarray) -> np.ndarray:
        """(E,) bool: whether each episode shows `run` consecutive successful-looking frames."""
        return runs_of(self.frame_probs(frames, tasks) >= 0.5, self.run)


def runs_of(flags: np.ndarray, run: int) -> np.ndarray:
    """(E, F) bool -> (E,) bool: some `run` consecutive entries are all true."""
    if run <= 1:
        return flags.any(axis=1)
    F = flags.shape[1]
    if F < run:
        return np.zeros(len(flags), dtype=bool)
    window = np.ones_like(flags[:, : F - run + 1])  # (E, F-run+1)
    for k in range(run):
        window &= flags[:, k: F - run + 1 + k]
    return window.any(axis=1)


def accuracy(pred: np.ndarray, truth: np.ndarray) -> dict:
    """Accuracy with its parts, for 0/1 predictions against 0/1 truth (any shape), in percent."""
    pred, truth = pred.astype(bool).ravel(), truth.astype(bool).ravel()
    pos, neg = truth.sum(), (~truth).sum()
    tpr = float((pred & truth).sum() / pos) if pos else float("nan")
    tnr = float((~pred & ~truth).sum() / neg) if neg else float("nan")
    return {"accuracy": round(100 * float((pred == truth).mean()), 2), "n": int(truth.size),
            "positives": int(pos), "recall": round(100 * tpr, 2), "specificity": round(100 * tnr, 2),
            "balanced_accuracy": round(100 * float(np.nanmean([tpr, tnr])), 2)}
