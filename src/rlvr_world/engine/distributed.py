"""Data parallelism on `torch.distributed`: the few collective operations the training loops need.

Launched with `torchrun --nproc-per-node N -m rlvr_world ...`, every process
runs the same loop on its share of each step's batch: MLE examples, or whole
RL prompt groups (a group never spans processes, so advantages stay local).
The loss is normalised by the token count of the *global* batch and the
gradients are summed across processes, so N processes take the step one
process would take on the same global batch. Process 0 alone writes logs,
checkpoints and results. With one process (no `torchrun`) every function here
is the identity or a no-op, and nothing is initialised.

Gradients are summed in one flat buffer after the backward passes of a step
(not bucketed during backward, as `DistributedDataParallel` does): a step here
accumulates several micro-batches and trains only what requires a gradient
(a LoRA adapter), and one all-reduce per step keeps it exact and simple.
`sum_gradients` returns the seconds it took, so its share of a step is measured
(`bench/distributed.py`).
"""

from __future__ import annotations

import contextlib
import datetime
import os
import time
from typing import Any, Sequence, TypeVar

import torch
import torch.distributed as dist

from ..progress import console

T = TypeVar("T")


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def world() -> int:
    return dist.get_world_size() if active() else 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def is_main() -> bool:
    return rank() == 0


def launched() -> bool:
    """Whether this process was started by `torchrun` (or anything that sets its variables) with more than one."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device: str) -> str:
    """Join the process group `torchrun` describes; returns the device this process uses.

    gloo on the CPU, NCCL on CUDA (each process on its `LOCAL_RANK`'s GPU).
    """
    if not launched() or active():
        return device
    on_gpu = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if on_gpu:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    dist.init_process_group("nccl" if on_gpu else "gloo", timeout=datetime.timedelta(minutes=30))
    console.quiet = not is_main()  # one process speaks
    return device


def teardown() -> None:
    if active():
        dist.destroy_process_group()


def share(items: Sequence[T]) -> list[T]:
    """This process's share of a batch: every world()-th item from its rank on."""
    return list(items[rank()::world()])


def total(x: torch.Tensor) -> torch.Tensor:
    """The sum of `x` over all processes (a new tensor; `x` itself in one process)."""
    if not active():
        return x
    y = x.detach().clone()
    if dist.get_backend() == "nccl" and not y.is_cuda:  # NCCL reduces GPU tensors only
        y = y.cuda()
    dist.all_reduce(y)
    return y.to(x.device)


def total_float(value: float) -> float:
    return float(total(torch.tensor(float(value), dtype=torch.float64)))


def any_rank(flag: bool) -> bool:
    """True when any process says so (e.g. a stop signal that reached only some)."""
    return total_float(float(flag)) > 0


def sum_gradients(params: Sequence[torch.nn.Parameter]) -> float:
    """Sum the gradients of `params` over all processes in one flat buffer; returns the seconds it took.

    A parameter without a gradient (it saw no data in this process) counts as zeros.
    """
    if not active():
        return 0.0
    t0 = time.perf_counter()
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    offset = 0
    for p, g in zip(params, grads):
        n = g.numel()
        p.grad = flat[offset: offset + n].view_as(g).clone()
        offset += n
    return time.perf_counter() - t0


def gather(obj: Any) -> list[Any]:
    """Every process's `obj`, in rank order (a one-item list in one process)."""
    if not active():
        return [obj]
    out: list[Any] = [None] * world()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if active():
        dist.barrier()


@contextlib.contextmanager
def by_main():
    """Work process 0 alone does (the body gets True there) and every process waits for before going on.

        with dist.by_main() as main:
            if main:
                tokenizer.save_pretrained(path)
        tokenizer = load(path)  # every process
    """
    try:
        yield is_main()
    finally:
        barrier()


def summed(metrics: dict[str, float]) -> dict[str, float]:
    """Each metric summed over all processes (one that some processes lack counts as 0 there)."""
    if not active():
        return dict(metrics)
    out: dict[str, float] = {}
    for share in gather(dict(metrics)):
        for k, v in share.items():
            out[k] = out.get(k, 0.0) + v
    return out
