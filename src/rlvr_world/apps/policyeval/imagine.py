"""Policies acting inside a video world model: closed-loop rollouts as long as an episode.

Axes: E episodes (one batch), C context frames, T actions per episode (T+1
frames), L tokens per frame, H×W pixels.

An imagined episode starts from the real episode's first C frames and the
policy's actions on them (taken from the simulator rollout with the same
seed, so both start alike). Then, for each later step t, the world model
reads the last C frames and actions as its prompt

    <bos> f[t-C] a[t-C] ... f[t-1] a[t-1]

(the same layout it was trained on, `VideoTokenizer.sequence`), generates
frame t's L codes (non-visual ids suppressed, so the response is one whole
frame by construction), the codes are decoded into pixels, and the policy
acts on that frame. The context slides, so a rollout is as long as the
episode whatever the model's context. Frames the model made are fed back as
codes, exactly as generated; the policy sees their decoded pixels.

`hold_last` is the "no dynamics" baseline: the last real frame repeated.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ...domains.video.layout import VideoTokenizer
from ...engine.sampler import sample
from .policies import Policy


@dataclass
class Imagined:
    """Imagined episodes (arrays over E episodes)."""

    frames: np.ndarray  # (E, T+1, H, W, 3) uint8: C real frames, then decoded predictions
    actions: np.ndarray  # (E, T, 4) float32, the policy's actions
    codes: np.ndarray  # (E, T+1, L) int64, the frames' codes (real frames: as the tokenizer encodes them)


def to_uint8(frames: np.ndarray) -> np.ndarray:
    """Decoded frames in [0, 1] -> uint8."""
    return np.clip(np.round(frames * 255.0), 0, 255).astype(np.uint8)


def prompt_ids(tok: VideoTokenizer, codes: np.ndarray, action_ids: np.ndarray) -> list[int]:
    """The prompt for the next frame from the last C frames' codes (C, L) and their actions' ids (C, A)."""
    ids = [tok.bos_token_id]
    for c, a in zip(codes, action_ids):
        ids += c.tolist() + a.tolist()
    return ids


@torch.no_grad()
def imagine(model: torch.nn.Module, tok: VideoTokenizer, policy: Policy, context_frames: np.ndarray,
            context_actions: np.ndarray, tasks: np.ndarray, seeds: np.ndarray, steps: int, *,
            temperature: float = 0.0, generator: torch.Generator | None = None) -> Imagined:
    """Roll `policy` out inside `model` from real context frames (E, C, H, W, 3) and actions (E, C, 4) until
    frame `steps` (the episode then has `steps` actions). `seeds` (E,) seed each episode's action noise."""
    E, C = context_frames.shape[:2]
    if steps < C:
        raise ValueError(f"an episode of {steps} steps is shorter than the world model's {C} context frames")
    L = tok.tokens_per_frame
    rngs = [np.random.default_rng([int(s), 1]) for s in seeds]
    frames = np.zeros((E, steps + 1, *context_frames.shape[2:]), dtype=np.uint8)  # (E, T+1, H, W, 3)
    codes = np.zeros((E, steps + 1, L), dtype=np.int64)  # (E, T+1, L)
    actions = np.zeros((E, steps, 4), dtype=np.float32)  # (E, T, 4)
    frames[:, :C], actions[:, :C] = context_frames, context_actions
    codes[:, :C] = tok.frame_codes(context_frames)  # (E, C, L)
    for t in range(C, steps + 1):
        act_ids = tok.action_ids(actions[:, t - C: t].reshape(-1, 4)).reshape(E, C, -1)  # (E, C, A)
        prompts = [prompt_ids(tok, codes[e, t - C: t], act_ids[e]) for e in range(E)]
        out = sample(model, prompts, eos_id=tok.eos_token_id, pad_id=tok.pad_token_id, max_new_tokens=L,
                     temperature=temperature, suppress=tok.non_visual_ids, generator=generator)
        codes[:, t] = out.tokens[:, :L].numpy()  # (E, L): every position a frame code (non-visual ids suppressed)
        frames[:, t] = to_uint8(tok.decode_frames(codes[:, t]))  # (E, H, W, 3)
        if t < steps:
            actions[:, t] = policy.act(frames[:, t], tasks, rngs)
    return Imagined(frames, actions, codes)


def hold_last(context_frames: np.ndarray, context_actions: np.ndarray, steps: int) -> Imagined:
    """The "no dynamics" baseline: after the C real frames, the last one again until frame `steps`."""
    E, C = context_frames.shape[:2]
    frames = np.concatenate([context_frames, np.repeat(context_frames[:, -1:], steps + 1 - C, axis=1)], axis=1)
    actions = np.concatenate([context_actions, np.zeros((E, steps - C, 4), dtype=np.float32)], axis=1)
    return Imagined(frames, actions, np.zeros((E, steps + 1, 0), dtype=np.int64))
