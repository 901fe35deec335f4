"""fp32 linear maps on the CPU through oneDNN instead of MKL, where this machine measures it faster.

PyTorch sends an fp32 matrix product on the CPU to MKL. On an AMD EPYC with
AVX-512 (2 threads) MKL reached 183-221 GFLOP/s on a 2048² product in three
runs of `bench/speed.py`, where oneDNN's kernel on a weight packed into its
blocked layout reached 435-490, and oneDNN was 1.3-2.8x faster on the skinny
products of a small transformer (`bench/linear.py`). On an AVX2-only machine
the same comparison gave 0.53-1.48x: which is faster depends on the machine.
So each machine decides by measurement (`choice`): once per CPU, PyTorch
version and thread count, each use below is timed both ways on the default
model's and SmolLM2's shapes (a few seconds), and the result is kept in
`~/.cache/rlvr-world/kernels/` (or `$RLVR_WORLD_CACHE`). `RLVR_WORLD_KERNELS=onednn`
or `=torch` decides without measuring.

The uses:

* `decode`: `PackedLinear`, a weight packed once and used for many products
  with a few rows each, as in a decode step (the sampler packs the model's
  weights once per `sample` call);
* `forward` and `input_grad`: `accelerate(model)` turns every `nn.Linear` of a
  model into a `OneDNNLinear`, whose training forward pass and input gradient
  can each go through oneDNN (the packed weight is cached until the weight
  changes: `packed_weight`); the weight gradient stays with MKL, the faster of
  the two for that reduction over all tokens on every machine measured.

Off the CPU, for tensors that are not fp32, under autocast, or in a PyTorch
built without oneDNN, everything falls back to `F.linear`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import time

import torch
import torch.nn.functional as F

from ..cache import cache_root
from ..device import cpu_signature, isa_limits


def _has_onednn() -> bool:
    try:
        return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    except (AttributeError, RuntimeError):
        return False


ONEDNN = _has_onednn()


USES = ("decode", "forward", "input_grad")
# (out, in) of the maps measured: the default model's (hidden 256) and SmolLM2-135M's (hidden 576)
MEASURED_SHAPES = ((768, 256), (1408, 256), (256, 704), (960, 576), (1536, 576), (576, 1536))
MEASURED_ROWS = {"decode": 16, "forward": 2048, "input_grad": 2048}
MARGIN = 1.1  # oneDNN must be this much faster: training also repacks each weight once a step


def applies(*tensors: torch.Tensor, use: str = "forward") -> bool:
    """True when oneDNN can compute with these tensors exactly as F.linear would (fp32 on the CPU, no autocast) and
    this machine measured it faster for `use`."""
    return ONEDNN and not torch.is_autocast_enabled("cpu") and all(
        t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors) and choice()[use]


def choice() -> dict[str, bool]:
    """For each use, whether oneDNN serves it on this machine at the current thread count (see the module doc)."""
    forced = os.environ.get("RLVR_WORLD_KERNELS", "")
    if forced in ("onednn", "torch"):
        return {use: forced == "onednn" for use in USES}
    if forced:
        raise ValueError(f"RLVR_WORLD_KERNELS={forced!r}: use onednn, torch, or leave it unset to measure")
    return _measured_choice(torch.get_num_threads())


@functools.cache
def _measured_choice(threads: int) -> dict[str, bool]:
    machine = {"cpu": cpu_signature(), "torch": torch.__version__, "threads": threads}
    limits = isa_limits()
    if limits:  # the same CPU told to use fewer instructions is another machine
        machine["isa_limits"] = limits
    key = hashlib.sha1(json.dumps(machine, sort_keys=True).encode()).hexdigest()[:12]
    path = cache_root() / "kernels" / f"{key}.json"
    try:
        return {use: bool(json.loads(path.read_text())["use_onednn"][use]) for use in USES}
    except (OSError, ValueError, KeyError, TypeError):
        pass
    speedup = measure_speedup()
    use = {u: speedup[u] >= MARGIN for u in USES}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({**machine, "onednn_speedup": speedup, "margin": MARGIN, "use_onednn": use}, indent=2))
    os.replace(tmp, path)
    return use


def measure_speedup(repeats: int = 5) -> dict[str, float]:
    """For each use, oneDNN's speed over torch's own path here: the geometric mean over `MEASURED_SHAPES` of the
    best-of-`repeats` time ratio, the two paths timed in alternation so that other work on the machine slows
    both alike."""
    g = torch.Generator().manual_seed(0)
    out = {}
    for use in USES:
        logs = []
        for n_out, n_in in MEASURED_SHAPES:
            rows = MEASURED_ROWS[use]
            w = torch.randn(n_out, n_in, generator=g)
            if use == "input_grad":  # dx = g W: (rows, out) x (out, in)
                x = torch.randn(rows, n_out, generator=g)
                packed = pack(w.t().contiguous(), rows)
                paths = (lambda: x @ w, lambda: packed_linear(x, packed, None))
            else:
                x = torch.randn(rows, n_in, generator=g)
                packed = pack(w, rows)
                paths = (lambda: F.linear(x, w), lambda: packed_linear(x, packed, None))
            best = [math.inf, math.inf]
            for i in range(2 * repeats + 2):  # the first round of each warms up
                t0 = time.perf_counter()
                paths[i % 2]()
                if i >= 2:
                    best[i % 2] = min(best[i % 2], time.perf_counter() - t0)
            logs.append(math.log(best[0] / best[1]))
        out[use] = round(math.exp(sum(logs) / len(logs)), 3)
    return out


def pack(weight: torch.Tensor, rows: int) -> torch.Tensor:
    """An (out, in) weight reordered for oneDNN, tuned for products with about `rows` input rows."""
    return torch.ops.mkldnn._reorder_linear_weight(weight.detach(), batch_size=max(1, rows))


def packed_linear(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """x Wᵀ + b for (..., in) x and a `pack`ed W."""
    return torch.ops.mkldnn._linear_pointwise(x.contiguous(), packed, bias, "none", [], "")


class PackedLinear:
    """x -> x Wᵀ + b with W packed once, for inference; `F.linear` where oneDNN does not apply."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, rows: int, pack_weight: bool = True):
        self.weight, self.bias = weight, bias
        self.packed = pack(weight, rows) if pack_weight and applies(weight, use="decode") else None

    @classmethod
    def of(cls, *modules, rows: int, pack_weight: bool = True) -> PackedLinear:
        """One linear map computing several `nn.Linear`s (or LoRA-wrapped ones) that share their input, side by side."""
        maps = [effective_linear(m) for m in modules]
        bias = None if maps[0][1] is None else torch.cat([b for _, b in maps])
        weight = maps[0][0] if len(maps) == 1 else torch.cat([w for w, _ in maps])
        return cls(weight, bias, rows, pack_weight)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.packed is None:
            return F.linear(x, self.weight, self.bias)
        return packed_linear(x, self.packed, self.bias)


def effective_linear(module: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(weight, bias) of the map a linear layer computes: for a peft LoRA layer, W + scale * B A of its active
    adapters (none while they are disabled or already merged)."""
    base = getattr(module, "base_layer", None)
    if base is None:
        return module.weight, module.bias
    weight = base.weight
    if not module.disable_adapters and not module.merged:
        for name in module.active_adapters:
            if name in module.lora_A:
                weight = weight + module.scaling[name] * (module.lora_B[name].weight @ module.lora_A[name].weight)
    return weight, base.bias


def forget_packed(model: torch.nn.Module) -> None:
    """Drop every cached packed weight of `model` (after its weights changed behind autograd's back, e.g. a merge)."""
    for module in model.modules():
        module.__dict__.pop("_onednn_packed", None)


def packed_weight(layer: torch.nn.Linear, transposed: bool = False) -> torch.Tensor:
    """`layer`'s weight (or its transpose), packed, from a cache kept until the weight changes.

    Any in-place change (an optimizer step, `load_state_dict`) bumps the
    weight's version counter, and a replaced tensor has a new address; either
    repacks. So inference packs once, training once per step.
    """
    w = layer.weight
    key = (w._version, w.data_ptr(), transposed)
    cache = layer.__dict__.setdefault("_onednn_packed", {})
    if cache.get("key", {}).get(transposed) != key:
        cache.setdefault("key", {})[transposed] = key
        cache[transposed] = pack(w.t().contiguous() if transposed else w, 64)
    return cache[transposed]


class _OneDNNLinear(torch.autograd.Function):
    """y = x Wᵀ + b: forward with oneDNN, input gradient with oneDNN where it is faster here, weight and bias
    gradients with torch."""

    @staticmethod
    def forward(ctx, x, weight, bias, layer):
        ctx.save_for_backward(x, weight)
        ctx.has_bias, ctx.layer = bias is not None, layer
        return packed_linear(x, packed_weight(layer), bias)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        g = grad.reshape(-1, grad.size(-1))  # (rows, out)
        dx = dw = db = None
        if ctx.needs_input_grad[0]:
            dx = (packed_linear(grad, packed_weight(ctx.layer, transposed=True), None) if choice()["input_grad"]
                  else grad @ weight)  # (..., in)
        if ctx.needs_input_grad[1]:
            dw = g.t() @ x.reshape(-1, x.size(-1))  # (out, in)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            db = g.sum(0)
        return dx, dw, db, None


class OneDNNLinear(torch.nn.Linear):
    """An `nn.Linear` (same parameters, same state dict) whose products go through oneDNN where it applies."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if applies(x, self.weight, use="forward"):
            return _OneDNNLinear.apply(x, self.weight, self.bias, self)
        return super().forward(x)

    def __getstate__(self):  # copies and pickles leave the packed-weight cache behind
        state = super().__getstate__()
        state.pop("_onednn_packed", None)
        return state


def accelerate(model: torch.nn.Module) -> torch.nn.Module:
    """Turn every plain `nn.Linear` of `model` into a `OneDNNLinear`, in place; parameters are untouched."""
    for module in model.modules():
        if type(module) is torch.nn.Linear:
            module.__class__ = OneDNNLinear  # adds no state: only `forward` differs
    return model
