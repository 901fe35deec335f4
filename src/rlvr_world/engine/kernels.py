"""fp32 linear maps on the CPU through oneDNN instead of MKL.

PyTorch sends an fp32 matrix product on the CPU to MKL. On this project's
machines (AMD EPYC, AVX-512, 2 threads) MKL reached 183-221 GFLOP/s on a
2048² product in three runs of `bench/speed.py`, where oneDNN's kernel on a
weight packed into its blocked layout reached 435-490; on the skinny products
of a small transformer oneDNN is 1.3-2.8x faster (`bench/linear.py`,
results/bench-linear.json). Two users of that kernel:

* `PackedLinear`: a weight packed once and used for many products, as in a
  decode step (the sampler packs the model's weights once per `sample` call);
* `accelerate(model)`: every `nn.Linear` of a model computes its forward pass
  and its input gradient with oneDNN (the packed weight is cached until the
  weight changes: `packed_weight`); the weight gradient stays with MKL, which
  is the faster of the two for that reduction over all tokens.

Off the CPU, for tensors that are not fp32, under autocast, or in a PyTorch
built without oneDNN, everything falls back to `F.linear`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _has_onednn() -> bool:
    try:
        return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    except (AttributeError, RuntimeError):
        return False


ONEDNN = _has_onednn()


def applies(*tensors: torch.Tensor) -> bool:
    """True when oneDNN can compute with these tensors exactly as F.linear would: fp32 on the CPU, no autocast."""
    return ONEDNN and not torch.is_autocast_enabled("cpu") and all(
        t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)


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
        self.packed = pack(weight, rows) if pack_weight and applies(weight) else None

    @classmethod
    def of(cls, *modules, rows: int, pack_weight: bool = True) -> "PackedLinear":
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
    """y = x Wᵀ + b: forward and input gradient with oneDNN, weight and bias gradients with torch."""

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
            dx = packed_linear(grad, packed_weight(ctx.layer, transposed=True), None)  # (..., in)
        if ctx.needs_input_grad[1]:
            dw = g.t() @ x.reshape(-1, x.size(-1))  # (out, in)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            db = g.sum(0)
        return dx, dw, db, None


class OneDNNLinear(torch.nn.Linear):
    """An `nn.Linear` (same parameters, same state dict) whose products go through oneDNN where it applies."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if applies(x, self.weight):
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
