"""Frames and actions as one token vocabulary, and the sequences a world model reads and writes.

Axes: F frames, L tokens per frame (the frame tokenizer's H×W grid), A action
dimensions, T steps of an episode.

Vocabulary (one id space for the causal LM):

    [0, K)                      visual codes of the frame tokenizer (K = its codebook)
    [K, K + A*bins)             action tokens: dimension d, bin b -> K + d*bins + b
    K + A*bins, +1, +2          <bos>, <eos>, <pad>

Actions are cut per dimension into `bins` equal bins over [-1, 1] (values
outside are clipped); a bin decodes to its centre, so the round trip is
exact up to half a bin.

A sequence interleaves frames and the action taken after each one:

    prompt = <bos> f[s] a[s] ... f[s+C-1] a[s+C-1]          (C context frames)
    target = f[s+C] a[s+C] f[s+C+1] ... a[s+C+H-2] f[s+C+H-1] <eos>   (H predicted frames)

In the target the actions are real, given by the data, and so is the final
<eos> (a prediction always has H frames): their loss-mask entry is 0, so the
sampler writes them in and no loss is spent on them. With every non-visual id
suppressed at the free positions (`VideoDomain.suppressed_ids`), a sampled
response is H whole frames of visual codes by construction. H = 1 is the
single-step setting, H > 1 the multi-step one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .frames import FrameTokenizer

_CONFIG = "video_tokenizer.json"
_FRAMES = "frame_tokenizer"


class VideoTokenizer:
    """The frame tokenizer plus action bins and special ids; saved beside a model like a text tokenizer."""

    def __init__(self, frames: FrameTokenizer, action_dims: int = 4, bins: int = 32):
        self.frames = frames
        self.action_dims = action_dims
        self.bins = bins
        self.codebook = frames.codebook_size  # K
        self.tokens_per_frame = frames.tokens_per_frame  # L
        self.action_base = self.codebook
        self.bos_token_id = self.codebook + action_dims * bins
        self.eos_token_id = self.bos_token_id + 1
        self.pad_token_id = self.bos_token_id + 2

    def __len__(self) -> int:
        return self.pad_token_id + 1

    @property
    def non_visual_ids(self) -> list[int]:
        """Every id that is not a frame code: action bins and the special ids."""
        return list(range(self.codebook, len(self)))

    # ---- actions -------------------------------------------------------------
    def action_ids(self, actions: np.ndarray) -> np.ndarray:
        """(T, A) floats in [-1, 1] -> (T, A) token ids."""
        a = np.clip(np.asarray(actions, dtype=np.float64), -1.0, 1.0)  # (T, A)
        if a.shape[-1] != self.action_dims:
            raise ValueError(f"actions have {a.shape[-1]} dimensions, the tokenizer {self.action_dims}")
        b = np.minimum(np.floor((a + 1.0) / 2.0 * self.bins), self.bins - 1).astype(np.int64)  # (T, A)
        return self.action_base + np.arange(self.action_dims) * self.bins + b

    def actions(self, ids: np.ndarray) -> np.ndarray:
        """(T, A) token ids -> (T, A) bin centres."""
        b = (np.asarray(ids) - self.action_base - np.arange(self.action_dims) * self.bins).astype(np.float64)
        return -1.0 + (b + 0.5) * 2.0 / self.bins

    # ---- frames --------------------------------------------------------------
    def frame_codes(self, frames: np.ndarray, batch: int = 256) -> np.ndarray:
        """(..., H, W, 3) uint8 -> (..., L) visual codes."""
        flat = torch.as_tensor(np.ascontiguousarray(frames)).reshape(-1, *frames.shape[-3:])  # (N, H, W, 3)
        codes = torch.cat([self.frames.encode(flat[i: i + batch]) for i in range(0, len(flat), batch)])  # (N, L)
        return codes.numpy().reshape(*frames.shape[:-3], self.tokens_per_frame)

    def decode_frames(self, codes: np.ndarray | torch.Tensor) -> np.ndarray:
        """(F, L) codes (out-of-codebook ids are clamped) -> (F, H, W, 3) floats in [0, 1]."""
        return self.frames.decode(torch.as_tensor(np.asarray(codes), dtype=torch.long)).numpy()

    # ---- sequences -----------------------------------------------------------
    def sequence(self, codes: np.ndarray, action_ids: np.ndarray, start: int, context: int, horizon: int
                 ) -> tuple[list[int], list[int], list[int]]:
        """(prompt ids, target ids, target loss mask) for frames start .. start+context+horizon-1 of an episode.

        `codes` is (T+1, L), `action_ids` (T, A).
        """
        prompt = [self.bos_token_id]
        for t in range(start, start + context):
            prompt += codes[t].tolist() + action_ids[t].tolist()
        target: list[int] = []
        mask: list[int] = []
        for k in range(horizon):
            t = start + context + k
            target += codes[t].tolist()
            mask += [1] * self.tokens_per_frame
            if k < horizon - 1:
                target += action_ids[t].tolist()
                mask += [0] * self.action_dims
        return prompt, target + [self.eos_token_id], mask + [0]

    def split_response(self, response: Sequence[int], horizon: int) -> tuple[np.ndarray, bool]:
        """Response ids -> (horizon, L) frame codes, and whether they were all valid.

        Invalid: a frame position holding a non-visual id, or a response that
        ended early (its missing codes are filled with 0). Never raises.
        """
        L, A = self.tokens_per_frame, self.action_dims
        out = np.zeros((horizon, L), dtype=np.int64)
        valid = True
        for k in range(horizon):
            chunk = list(response[k * (L + A): k * (L + A) + L])
            if len(chunk) < L:
                valid = False
                chunk += [0] * (L - len(chunk))
            arr = np.asarray(chunk, dtype=np.int64)
            if ((arr < 0) | (arr >= self.codebook)).any():
                valid = False
            out[k] = np.clip(arr, 0, self.codebook - 1)
        return out, valid

    # ---- files ---------------------------------------------------------------
    def save_pretrained(self, path: str | Path) -> None:
        p = Path(path)
        p.mkdir(parents=True, exist_ok=True)
        self.frames.save(p / _FRAMES)
        (p / _CONFIG).write_text(json.dumps({"action_dims": self.action_dims, "bins": self.bins}) + "\n")

    @classmethod
    def from_pretrained(cls, path: str | Path) -> VideoTokenizer:
        p = Path(path)
        if not (p / _CONFIG).is_file():
            raise FileNotFoundError(f"no {_CONFIG} in {p}")
        cfg = json.loads((p / _CONFIG).read_text())
        return cls(FrameTokenizer.load(p / _FRAMES), cfg["action_dims"], cfg["bins"])
