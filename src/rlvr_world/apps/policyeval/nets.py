"""Small convolutional networks that read one 64x64 frame and the task: the policies and the success detector.

Axes: N frames, H×W pixels, D outputs.

`FrameNet` maps a uint8 frame (N, H, W, 3) and a task index (N,) to D
numbers: 4 actions for a policy (tanh, the action range [-1, 1]), 1 logit
for the success detector. The task enters as a learned vector added to the
image features, so one network serves every task.

`fit` trains one by AdamW with a cosine schedule. Two augmentations matter
for what the networks will see inside a world model: random shifts by up to
`shift` pixels, and, with chance one half, the frame as the world model's
frame tokenizer reconstructs it (`alt`: blurrier, with its own artefacts)
instead of the real one. Training is deterministic for a given seed.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from ...progress import advance, bar

_KIND = "rlvr_world.policyeval.frame_net"


class FrameNet(nn.Module):
    """uint8 frames (N, H, W, 3) and task indices (N,) -> (N, out) outputs."""

    def __init__(self, n_tasks: int, out: int, width: int = 32, hidden: int = 256):
        super().__init__()
        self.config = {"n_tasks": n_tasks, "out": out, "width": width, "hidden": hidden}
        w = width
        self.convs = nn.Sequential(
            nn.Conv2d(3, w, 5, stride=2, padding=2), nn.SiLU(),  # (N, w, H/2, W/2)
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), nn.SiLU(),  # (N, 2w, H/4, W/4)
            nn.Conv2d(2 * w, 2 * w, 3, stride=2, padding=1), nn.SiLU(),  # (N, 2w, H/8, W/8)
            nn.Conv2d(2 * w, 4 * w, 3, stride=2, padding=1), nn.SiLU(),  # (N, 4w, H/16, W/16)
            nn.AdaptiveAvgPool2d(4),  # (N, 4w, 4, 4)
        )
        self.features = nn.Linear(4 * w * 16, hidden)
        self.task = nn.Embedding(n_tasks, hidden)
        self.head = nn.Linear(hidden, out)

    def forward(self, frames: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        x = frames.permute(0, 3, 1, 2).float() / 255.0  # (N, 3, H, W) in [0, 1]
        h = self.features(self.convs(x).flatten(1)) + self.task(task)  # (N, hidden)
        return self.head(F.silu(h))  # (N, out)

    def save(self, path: Path, **meta) -> None:
        """Weights (safetensors) and config + `meta` (JSON) beside them, each written whole."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(tmp))
        json_path = path.with_suffix(".json")
        json_path.with_name(json_path.name + ".tmp").write_text(
            json.dumps({"kind": _KIND, **self.config, **meta}, indent=2) + "\n")
        json_path.with_name(json_path.name + ".tmp").replace(json_path)
        tmp.replace(path)  # the weights last: their presence means the pair is complete

    @classmethod
    def load(cls, path: Path) -> tuple[FrameNet, dict]:
        meta = json.loads(path.with_suffix(".json").read_text())
        if meta.get("kind") != _KIND:
            raise ValueError(f"{path} is not a frame network saved by rlvr-world")
        net = cls(**{k: meta[k] for k in ("n_tasks", "out", "width", "hidden")})
        net.load_state_dict(load_file(str(path)))
        return net.eval(), meta


def shifted(frames: torch.Tensor, shift: int, gen: torch.Generator) -> torch.Tensor:
    """Each frame moved by its own random offset of up to `shift` pixels (edges repeated): (N, H, W, 3)."""
    if shift <= 0:
        return frames
    N, H, W, _ = frames.shape
    padded = F.pad(frames.permute(0, 3, 1, 2).float(), (shift,) * 4, mode="replicate")  # (N, 3, H+2s, W+2s)
    dy, dx = torch.randint(0, 2 * shift + 1, (2, N), generator=gen)  # (N,) each
    rows = (dy[:, None] + torch.arange(H))[:, :, None]  # (N, H, 1)
    cols = (dx[:, None] + torch.arange(W))[:, None, :]  # (N, 1, W)
    out = padded[torch.arange(N)[:, None, None], :, rows, cols]  # (N, H, W, 3)
    return out.to(frames.dtype)


def fit(net: FrameNet, frames: np.ndarray, tasks: np.ndarray, targets: np.ndarray, loss: str, *, steps: int,
        batch_size: int = 64, lr: float = 1e-3, seed: int = 0, alt: np.ndarray | None = None, shift: int = 2,
        pos_weight: float = 1.0, description: str = "fit") -> list[float]:
    """Train `net` on frames (N, H, W, 3) uint8, task indices (N,) and targets (N, out) for `steps` steps.

    `loss`: "mse" (policies: targets are actions) or "bce" (the detector: targets 0/1, positives weighted by
    `pos_weight`). `alt`: another rendering of the same frames (N, H, W, 3) used instead with chance 1/2.
    Returns the loss of every step.
    """
    gen = torch.Generator().manual_seed(seed)
    X, Y = torch.as_tensor(frames), torch.as_tensor(targets, dtype=torch.float32)  # (N, H, W, 3), (N, out)
    A = torch.as_tensor(alt) if alt is not None else None
    T = torch.as_tensor(tasks, dtype=torch.long)  # (N,)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    weight = torch.tensor(pos_weight)
    losses = []
    net.train()
    with bar(description, total=steps) as progress:
        for step in range(steps):
            idx = torch.randint(0, len(X), (batch_size,), generator=gen)  # (B,)
            x = X[idx]  # (B, H, W, 3)
            if A is not None:
                use = torch.rand(batch_size, generator=gen) < 0.5  # (B,)
                x = torch.where(use[:, None, None, None], A[idx], x)
            out = net(shifted(x, shift, gen), T[idx])  # (B, out)
            if loss == "mse":
                value = F.mse_loss(torch.tanh(out), Y[idx])
            else:
                value = F.binary_cross_entropy_with_logits(out, Y[idx], pos_weight=weight)
            opt.zero_grad(set_to_none=True)
            value.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            sched.step()
            losses.append(value.item())
            if step % 50 == 49 or step == steps - 1:
                advance(progress, 50 if step % 50 == 49 else (step + 1) % 50, f"loss {np.mean(losses[-50:]):.4f}")
    net.eval()
    return losses


@torch.no_grad()
def predict(net: FrameNet, frames: np.ndarray, tasks: np.ndarray, batch: int = 512) -> np.ndarray:
    """Raw outputs for frames (N, H, W, 3) uint8 and task indices (N,): (N, out)."""
    out = [net(torch.as_tensor(frames[i: i + batch]), torch.as_tensor(tasks[i: i + batch], dtype=torch.long))
           for i in range(0, len(frames), batch)]
    return torch.cat(out).numpy() if out else np.zeros((0, net.config["out"]), dtype=np.float32)
