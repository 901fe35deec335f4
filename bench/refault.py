"""What a `malloc_trim` costs the step after it: writing memory glibc kept against writing fresh pages.

    python bench/refault.py [--gb 4] [--rounds 3]   # seconds -> results/bench-refault.json

Allocates `--gb` GB as 4 MB tensors (served from glibc's heap, as a training
step's are once glibc's mmap threshold has risen), writes them, frees them,
then times allocating and writing them again, alternately into the memory
glibc kept and after `malloc_trim(0)` gave it back. The difference is what
the engine's `device.MemoryTrimmer` costs the step after each trim (so it
trims against the working set a step really needs, not at every step).
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

from rlvr_world.device import cpu_signature, resident_bytes
from rlvr_world.engine.atomicwrite import save_json

BLOCK = 1_000_000  # floats: 4 MB


def write_blocks(n: int) -> list[torch.Tensor]:
    blocks = [torch.empty(BLOCK) for _ in range(n)]
    for b in blocks:
        b.fill_(1.0)
    return blocks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gb", type=float, default=4.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default="results/bench-refault.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    n = int(args.gb * 1e9 / (4 * BLOCK))
    big = torch.empty(8 * BLOCK)
    del big  # one freed large block raises glibc's mmap threshold above 4 MB, as in training
    blocks = write_blocks(n)
    del blocks
    times: dict[str, list[float]] = {"kept": [], "trimmed": []}
    trim_s = []
    for _ in range(args.rounds):
        for kind in ("kept", "trimmed"):
            if kind == "trimmed":
                t0 = time.perf_counter()
                trim(0)
                trim_s.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            blocks = write_blocks(n)
            times[kind].append(time.perf_counter() - t0)
            del blocks
    kept, trimmed = statistics.median(times["kept"]), statistics.median(times["trimmed"])
    result = {"command": "python " + " ".join(shlex.quote(a) for a in sys.argv), "cpu": cpu_signature(),
              "gb": round(n * 4 * BLOCK / 1e9, 2), "rss_gb": round(resident_bytes() / 1e9, 2),
              "write_kept_s": [round(t, 3) for t in times["kept"]],
              "write_after_trim_s": [round(t, 3) for t in times["trimmed"]],
              "malloc_trim_s": [round(t, 3) for t in trim_s],
              "extra_s_per_gb_after_trim": round((trimmed - kept) / (n * 4 * BLOCK / 1e9), 3)}
    save_json(Path(args.out), result)
    print(f"writing {result['gb']} GB: {kept:.2f} s into kept memory, {trimmed:.2f} s after malloc_trim "
          f"(+{result['extra_s_per_gb_after_trim']} s per GB); malloc_trim {statistics.median(trim_s):.2f} s")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
