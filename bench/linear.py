"""fp32 linear maps on this CPU: PyTorch's own (MKL) against oneDNN on a packed weight, side by side.

    python bench/linear.py          # ~1 min on 2 CPU cores -> results/bench-linear.json

The shapes are those of the benchmark model (hidden 256, MLP 704, vocabulary
4,096): a decode step's 16 rows, and a training step's 12,288 tokens (forward,
input gradient, weight gradient). GFLOP/s is the best of several runs. The
engine makes the same comparison on its own, once per machine, for the uses it
can send to oneDNN (`engine.kernels.choice`, kept in the cache); this table
shows it map by map, with the weight gradient, which always stays with MKL.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from rlvr_world import device as dev
from rlvr_world.engine.kernels import pack, packed_linear

SHAPES = {"qkv": (768, 256), "out": (256, 256), "gate_up": (1408, 256), "down": (256, 704), "head": (4096, 256)}


def gflops(fn, flops: float, repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return flops / best / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--out", default="results/bench-linear.json")
    args = ap.parse_args()
    dev.set_threads(args.threads)
    torch.manual_seed(0)
    rows = []
    for name, (n_out, n_in) in SHAPES.items():
        w = torch.randn(n_out, n_in)
        for m, reps in ((16, args.repeats * 10), (12288, args.repeats)):
            x, g = torch.randn(m, n_in), torch.randn(m, n_out)
            flops = 2 * m * n_out * n_in
            packed, packed_t = pack(w, m), pack(w.t().contiguous(), m)
            cases = {  # (MKL, oneDNN); oneDNN's weight gradient pays its reorders, as it would in training
                "forward": (lambda: F.linear(x, w), lambda: packed_linear(x, packed, None)),
                "input_grad": (lambda: g @ w, lambda: packed_linear(g, packed_t, None)),
                "weight_grad": (lambda: g.t() @ x,
                                lambda: packed_linear(g.t().contiguous(), pack(x.t().contiguous(), n_out), None)),
            }
            for op, (mkl, onednn) in cases.items():
                if m == 16 and op != "forward":
                    continue  # decoding has no gradients
                a, b = gflops(mkl, flops, reps), gflops(onednn, flops, reps)
                rows.append({"map": name, "out": n_out, "in": n_in, "rows": m, "op": op, "mkl_gflops": round(a, 1),
                             "onednn_gflops": round(b, 1), "onednn_over_mkl": round(b / a, 2)})
                print(f"{name:8s} rows {m:6d} {op:12s} MKL {a:6.1f}  oneDNN {b:6.1f} GFLOP/s  {b / a:.2f}x", flush=True)
    result = {"command": "python " + " ".join(shlex.quote(a) for a in sys.argv), "threads": args.threads,
              "cpu": dev.cpu_signature(), "torch": torch.__version__, "results": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
