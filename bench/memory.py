"""Does a training process's resident memory stay flat? RSS over the MLE steps of a preset, per allocator setting.

    python bench/memory.py [--preset default] [--steps 60] [--threads 2]
                           [--variants default,no-trim,onednn-cache-16,malloc-arenas-2,malloc-mmap,jemalloc,fp32,
                                       avx2-emulated]
                           [--out results/bench-memory.json]

Each variant runs `rlvr-world run --preset P --threads T` in a fresh
process (its own run directory under a temporary folder) with the
environment the variant names, reads the process's resident set
(`/proc/PID/status`, VmRSS) twice a second and the finished MLE steps from
`mle/metrics.jsonl`, and stops it with Ctrl-C after `--steps` steps. Per
variant it reports RSS after the first 10 steps ("warm"), at the end, the
peak, the growth per 100 steps after warm-up (a least-squares slope) and the
median step time (variants that slow the steps down are no fix).

Variants (environment of the process):
- `default`: as a user runs it (the engine's `MemoryTrimmer` hands freed
  memory back with glibc's `malloc_trim` once the resident set is 10% above
  its size after warm-up);
- `no-trim`: RLVR_WORLD_MALLOC_TRIM=0, glibc as it is (the engine before the
  trimmer);
- with the trimmer off, the other remedies tried: `onednn-cache-16`
  (ONEDNN_PRIMITIVE_CACHE_CAPACITY=16; oneDNN keeps up to 1,024 compiled
  primitives, one per input shape, by default), `malloc-arenas-2`
  (MALLOC_ARENA_MAX=2: glibc's per-thread arenas), `malloc-mmap` (large
  blocks from mmap, returned at once: MALLOC_MMAP_THRESHOLD_=1048576,
  MALLOC_TRIM_THRESHOLD_=0), `jemalloc` (LD_PRELOAD of Debian's
  libjemalloc2, when installed).
- for speed rather than memory: `fp32` (`--dtype fp32`, where `auto` would
  take bf16 autocast) and `avx2-emulated` (`--dtype fp32` with PyTorch,
  oneDNN and MKL limited to AVX2 instructions: ATEN_CPU_CAPABILITY,
  ONEDNN_MAX_CPU_ISA, MKL_ENABLE_INSTRUCTIONS), side by side with `default`.

Writes the JSON and a plot of RSS against step beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rlvr_world.engine.atomicwrite import save_json

JEMALLOC = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"
OFF = {"RLVR_WORLD_MALLOC_TRIM": "0"}
VARIANTS = {
    "default": {},
    "no-trim": OFF,
    "onednn-cache-16": {**OFF, "ONEDNN_PRIMITIVE_CACHE_CAPACITY": "16"},
    "malloc-arenas-2": {**OFF, "MALLOC_ARENA_MAX": "2"},
    "malloc-mmap": {**OFF, "MALLOC_TRIM_THRESHOLD_": "0", "MALLOC_MMAP_THRESHOLD_": "1048576"},
    "jemalloc": {**OFF, "LD_PRELOAD": JEMALLOC},
    # speed rather than memory: fp32 instead of bf16 autocast, and fp32 with PyTorch, oneDNN and MKL told to use AVX2
    # at most (an AVX2-only CPU emulated on a larger one: its instructions, not its clock, caches or memory)
    "fp32": {},
    "avx2-emulated": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
}
ARGS = {"fp32": ["--dtype", "fp32"], "avx2-emulated": ["--dtype", "fp32"]}  # the run's options beyond the preset's


def rss_gb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        return None
    return None


def steps_done(metrics: Path) -> list[dict]:
    if not metrics.is_file():
        return []
    rows = []
    for line in metrics.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line being written
            pass
    return [r for r in rows if "loss" in r]  # training steps (not evaluations)


def run_variant(name: str, preset: str, steps: int, threads: int) -> dict:
    env = {**os.environ, **VARIANTS[name]}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        cmd = ["rlvr-world", "run", "--preset", preset, "--threads", str(threads), "--out", str(out),
               "--results", str(out / "results.json"), *ARGS.get(name, [])]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        samples: list[tuple[float, int, float]] = []  # (seconds, steps done, RSS GB)
        start = time.time()
        try:
            while proc.poll() is None:
                rows = steps_done(out / "mle" / "metrics.jsonl")
                rss = rss_gb(proc.pid)
                if rss is not None:
                    samples.append((time.time() - start, len(rows), rss))
                if len(rows) >= steps:
                    break
                time.sleep(0.5)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(120)
                except subprocess.TimeoutExpired:
                    proc.kill()
        rows = steps_done(out / "mle" / "metrics.jsonl")
        if len(rows) < min(steps, 20):
            err = (proc.stderr.read() if proc.stderr else "").strip().splitlines()
            raise SystemExit(f"{name}: the run stopped after {len(rows)} steps: {err[-1] if err else 'no message'}")
    times = [r["step_s"] for r in rows if "step_s" in r]
    by_step: dict[int, float] = {}
    for _, step, rss in samples:
        by_step[step] = max(by_step.get(step, 0.0), rss)
    after = [(s, r) for s, r in sorted(by_step.items()) if s >= 10]
    slope = None
    if len(after) >= 3:
        xs, ys = [s for s, _ in after], [r for _, r in after]
        mx, my = statistics.fmean(xs), statistics.fmean(ys)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return {
        "env": VARIANTS[name], "args": ARGS.get(name, []), "steps": len(rows),
        "rss_warm_gb": round(by_step.get(10, after[0][1] if after else 0.0), 3),
        "rss_end_gb": round(samples[-1][2], 3) if samples else None,
        "rss_peak_gb": round(max(r for _, _, r in samples), 3) if samples else None,
        "growth_gb_per_100_steps": round(100 * slope, 3) if slope is not None else None,
        "median_step_s": round(statistics.median(times), 3) if times else None,
        "rss_by_step": {str(s): round(r, 3) for s, r in sorted(by_step.items())},
    }


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, v in result["variants"].items():
        pts = sorted((int(s), r) for s, r in v["rss_by_step"].items())
        ax.plot([s for s, _ in pts], [r for _, r in pts], label=f"{name} ({v['median_step_s']} s/step)")
    ax.set_xlabel("MLE steps done")
    ax.set_ylabel("resident set (GB)")
    ax.set_title(f"RSS during MLE, preset {result['preset']}, {result['threads']} threads")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="default")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--out", default="results/bench-memory.json")
    args = ap.parse_args()
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    if "jemalloc" in names and not Path(JEMALLOC).is_file():
        print(f"jemalloc left out: {JEMALLOC} is not installed (apt-get install libjemalloc2)", file=sys.stderr)
        names.remove("jemalloc")
    from rlvr_world.device import cpu_signature

    result = {"command": "python " + " ".join(shlex.quote(a) for a in sys.argv), "preset": args.preset,
              "threads": args.threads, "steps": args.steps, "cpu": cpu_signature(), "variants": {}}
    for name in names:
        print(f"{name} ...", file=sys.stderr, flush=True)
        result["variants"][name] = run_variant(name, args.preset, args.steps, args.threads)
        v = result["variants"][name]
        print(f"{name}: warm {v['rss_warm_gb']} GB, end {v['rss_end_gb']} GB, "
              f"+{v['growth_gb_per_100_steps']} GB/100 steps, {v['median_step_s']} s/step", file=sys.stderr)
    out = Path(args.out)
    save_json(out, result)
    plot(result, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
