"""Device, dtype, threads and seeding: the one place that knows about hardware.

Algorithm code asks this module for a device and an autocast context; it never
names "cuda" or "cpu" itself.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
import random

import numpy as np
import torch


def pick_device(name: str = "auto") -> torch.device:
    """`auto` picks CUDA when present, else CPU; `cpu`, `cuda` and `cuda:N` are checked against this machine."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N")
    if device.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise ValueError(f"--device {name}: this machine has no CUDA GPU that torch can use")
        if device.index is not None and device.index >= n:
            raise ValueError(f"--device {name}: this machine has {n} CUDA GPU(s) (cuda:0 to cuda:{n - 1})")
    return device


def set_threads(threads: int) -> None:
    """Intra-op threads for CPU work; 0 keeps torch's default (one per core)."""
    if threads > 0:
        torch.set_num_threads(threads)


def cpu_signature() -> dict:
    """The CPU's model name and the instruction-set flags that decide which kernel is faster."""
    name, flags = "unknown", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and name == "unknown":
                    name = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16")
    return {"model": name, "flags": [f for f in wanted if f in flags]}


# what PyTorch, oneDNN and MKL read to use fewer instructions than the CPU has (e.g. AVX2 on an AVX-512 machine)
ISA_LIMITS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")


def isa_limits() -> dict[str, str]:
    """The instruction-set limits set in this process's environment (empty: the libraries use all the CPU has)."""
    return {k: os.environ[k] for k in ISA_LIMITS if os.environ.get(k)}


def cpu_supports_bf16() -> bool:
    """True when the CPU has native bfloat16 dot products (AVX512-BF16 or AMX)."""
    flags = cpu_signature()["flags"]
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_dtype(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `name` ("auto", "bf16", "fp32"); None means full fp32.

    `auto` uses bf16 autocast where the hardware multiplies bf16 natively, fp32 elsewhere.
    """
    if name == "fp32":
        return None
    if name == "bf16":
        return torch.bfloat16
    if name != "auto":
        raise ValueError(f"unknown dtype {name!r}: use auto, bf16 or fp32")
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return torch.bfloat16 if cpu_supports_bf16() else None


def autocast(device: torch.device, dtype: torch.dtype | None):
    """Mixed-precision context for forward passes; a no-op for fp32."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def amp(device: torch.device, name: str = "auto"):
    """A factory of mixed-precision contexts for `device` and a dtype name (see `resolve_dtype`)."""
    return functools.partial(autocast, device, resolve_dtype(name, device))


def resident_bytes() -> int:
    """This process's resident set in bytes (0 where /proc is not there)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _malloc_trim():
    """glibc's `malloc_trim`, or None (another C library, or turned off with RLVR_WORLD_MALLOC_TRIM=0)."""
    if os.environ.get("RLVR_WORLD_MALLOC_TRIM", "1") == "0":
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


class MemoryTrimmer:
    """Hands the memory that glibc keeps after PyTorch frees it back to the system, when the resident set has grown.

    Training on the CPU frees and allocates gigabytes a step in tensors of
    changing shapes; glibc keeps freed blocks in its heaps and the resident set
    grows step after step (a LoRA SFT of SmolLM2: 10.5 GB at the start, 12.9 GB
    45 steps later, 6.7 GB right after `malloc_trim(0)`; earlier runs reached
    19 GB on a 24 GB machine). Called once a training step, it runs
    `malloc_trim(0)` when the resident set is above `growth` times the working
    set: the largest resident set of the first `warmup` calls, raised to the
    resident set of any step that follows a trim (a step that starts from
    freshly returned memory holds no more than it needs). A trim costs the next
    step its whole working set in fresh pages (`bench/refault.py`: +0.28 s per
    GB written), so a working set larger than the warm-up showed must not make
    it trim at every step. A no-op where glibc is not the allocator.
    """

    def __init__(self, growth: float = 1.1, warmup: int = 10):
        self.trim, self.growth, self.warmup = _malloc_trim(), growth, warmup
        self.calls, self.baseline, self.trims, self.trimmed_last = 0, 0, 0, False

    def __call__(self) -> None:
        if self.trim is None:
            return
        self.calls += 1
        rss = resident_bytes()
        if self.calls <= self.warmup or self.trimmed_last:
            self.baseline = max(self.baseline, rss)
            self.trimmed_last = False
        elif rss > self.growth * self.baseline:
            self.trim(0)
            self.trims += 1
            self.trimmed_last = True


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """An explicit random generator: every random draw in the engine takes one."""
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g


def quiet_hf() -> None:
    """Silence Hugging Face's advisory warnings and never let it reach the network."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
