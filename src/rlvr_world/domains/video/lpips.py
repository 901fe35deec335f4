"""LPIPS (Zhang et al. 2018, AlexNet variant) in plain torch, for weights from a local file.

Axes: N frames, C feature channels, h×w feature positions.

    d(x, y) = sum over the 5 ReLU outputs l of AlexNet's `features`:
              mean over (h, w) of  lin_l( (f_l(x)/|f_l(x)| - f_l(y)/|f_l(y)|)^2 )

where |.| is the norm over channels at each position and lin_l a 1×1 conv
with one output (no bias). Inputs are frames in [0, 1]; like the lpips
package they are mapped to [-1, 1] and then shifted and scaled per channel.

The pretrained weights cannot be downloaded here, so nothing loads them by
default. `load_lpips(path)` reads one state-dict file (.safetensors, or a
torch.save'd dict of tensors, loaded with weights_only=True) holding

    features.{0,3,6,8,10}.weight / .bias   torchvision's alexnet (the `features` part; other keys are ignored)
    lin{0..4}.model.1.weight               the lpips package's weights/v0.1/alex.pth, shapes (1, C, 1, 1)

A state dict of the lpips package's own `LPIPS(net="alex")` module
(`net.slice{k}.{i}.weight`, i = torchvision's index) is accepted too.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

_CHANNELS = (64, 192, 384, 256, 256)
_TAPS = (1, 4, 7, 9, 11)  # indices of the ReLUs whose outputs are compared


class _Lin(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.model = nn.Sequential(nn.Identity(), nn.Conv2d(c, 1, 1, bias=False))  # index 0 was dropout


class LPIPS(nn.Module):
    """Perceptual distance between frames (N, 3, H, W) in [0, 1] -> (N,). Random weights until loaded."""

    def __init__(self):
        super().__init__()
        c = _CHANNELS
        self.features = nn.Sequential(  # torchvision alexnet().features, same indices
            nn.Conv2d(3, c[0], 11, stride=4, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(c[0], c[1], 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(c[1], c[2], 3, padding=1), nn.ReLU(),
            nn.Conv2d(c[2], c[3], 3, padding=1), nn.ReLU(),
            nn.Conv2d(c[3], c[4], 3, padding=1), nn.ReLU(),
        )
        for i, ch in enumerate(c):
            lin = _Lin(ch)
            nn.init.uniform_(lin.model[1].weight, 0.0, 1.0 / ch)  # non-negative, like trained LPIPS weights
            self.add_module(f"lin{i}", lin)
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1), persistent=False)
        self.eval()

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = ((x * 2 - 1) - self.shift) / self.scale  # (N, 3, H, W)
        out = []
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in _TAPS:
                out.append(h / (h.pow(2).sum(1, keepdim=True).sqrt() + 1e-10))  # (N, C, h, w), unit norm per position
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape != y.shape or x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"LPIPS needs two (N, 3, H, W) batches, got {tuple(x.shape)} and {tuple(y.shape)}")
        d = torch.zeros(len(x), device=x.device)
        for k, (a, b) in enumerate(zip(self._taps(x), self._taps(y))):
            d = d + getattr(self, f"lin{k}").model((a - b) ** 2).mean((1, 2, 3))  # (N,)
        return d


def _read(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    sd = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(sd, dict):
        raise ValueError("not a state dict")
    return sd


def load_lpips(path: str | Path) -> LPIPS:
    """An LPIPS network with the weights of a local state-dict file (see the module docstring)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"LPIPS weights not found: {p}")
    try:
        raw = _read(p)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same one-line error
        raise ValueError(f"cannot read LPIPS weights {p}: not a state-dict file ({type(e).__name__})") from None
    rename = re.compile(r"^net\.slice\d+\.(\d+)\.")  # the lpips package's keys -> torchvision's
    sd = {rename.sub(r"features.\1.", k): v for k, v in raw.items() if isinstance(v, torch.Tensor)}
    model = LPIPS()
    want = model.state_dict()
    missing = [k for k in want if k not in sd]
    wrong = [k for k in want if k in sd and sd[k].shape != want[k].shape]
    if missing or wrong:
        what = f"missing {', '.join(missing[:3])}" if missing else f"wrong shape for {', '.join(wrong[:3])}"
        raise ValueError(f"not LPIPS AlexNet weights (features.* + lin*.model.1.weight): {p}: {what}"
                         f"{' ...' if len(missing or wrong) > 3 else ''}")
    model.load_state_dict({k: sd[k].float() for k in want})
    return model.eval()
