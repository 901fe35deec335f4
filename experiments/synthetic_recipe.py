"""Does RL keep both strata? The RL recipe against plain GRPO on the synthetic household environment.

    python experiments/synthetic_recipe.py                       # 25 / 50 / 75% changing, seeds 0 and 1
    python experiments/synthetic_recipe.py --shares 0.5 --seeds 0 --recipes decision

For each share of changing transitions and seed, the environment's records are
written (`rlvr_world.domains.jsonl.synthetic`), one MLE model is trained with
`rlvr-world run --domain jsonl` and its defaults, and RL runs from that same
MLE model once per recipe (`--rl.advantage`), so the recipes are compared on
one start and the same test records. Every run resumes (`--resume`): an
interrupted experiment continues where it stopped. Writes
results/recipe-synthetic.json (every run's scores and paired tests, and per
share and recipe the test over seeds of `rlvr-world seeds`), a Markdown table
and a plot beside it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from rlvr_world.domains.jsonl import synthetic  # noqa: E402
from rlvr_world.engine.atomicwrite import save_json  # noqa: E402
from rlvr_world.seeds import summarise  # noqa: E402

RECIPES = {"decision": ["--rl.advantage", "decision", "--rl.balance-strata", "false"],
           "grpo": ["--rl.advantage", "grpo"],
           "balanced": ["--rl.advantage", "decision", "--rl.balance-strata", "true"]}  # name -> options
SHARED = ("tokenizer", "mle", "eval_mle.json", "phases.json", "config.json", "timings.json")  # one MLE, many RLs


def run(share: float, seed: int, recipe: str, first: Path | None, root: Path, data_root: Path,
        extra: list[str]) -> Path:
    """One run directory of the experiment (MLE copied from `first`, a run of the same share and seed)."""
    data = data_root / f"data-{share:g}"
    if not (data / "test.jsonl").is_file():
        synthetic.write(data, share, 3000, 300, seed=0)
    out = root / f"changed{share:g}-seed{seed}-{recipe}"
    if first is not None and not out.exists():
        out.mkdir(parents=True)
        for name in SHARED:
            src = first / name
            (shutil.copytree if src.is_dir() else shutil.copy)(src, out / name)
    if not (out / "results.json").is_file():
        cmd = ["rlvr-world", "run", "--domain", "jsonl", "--data.train-path", str(data / "train.jsonl"),
               "--data.test-path", str(data / "test.jsonl"), "--out", str(out), "--results",
               str(out / "results.json"), "--mle.seed", str(seed), "--rl.seed", str(seed), *RECIPES[recipe],
               *(["--resume"] if out.exists() else []), *extra]
        print("+", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
    return out / "results.json"


def mle_run(root: Path, share: float, seed: int) -> Path:
    """A finished run of an earlier experiment whose MLE model this share and seed start from."""
    for path in sorted(root.glob(f"changed{share:g}-seed{seed}-*")):
        if (path / "eval_mle.json").is_file():
            return path
    raise SystemExit(f"error: no finished MLE for share {share:g}, seed {seed} under {root}")


def row(res: dict) -> dict:
    return {k: res[k] for k in ("command", "mle", "rlvr", "trivial", "significance", "decision") if k in res}


def markdown(out: dict) -> str:
    lines = [f"Written by `{out['command']}`. Exact-match accuracy (%) on 300 test records per share; "
             "mean over seeds of RLVR - MLE, with the t-test over seeds (p) and each seed's paired McNemar p.", "",
             "| changing | recipe | MLE unch. / ch. / overall | RLVR unch. / ch. / overall | trivial overall | "
             "RLVR - MLE unchanged | changed | overall |", "| --- |" + " --- |" * 7]
    for key, cell in out["cells"].items():
        share, recipe = key.split("/")
        runs = cell["runs"]
        mean = lambda model, g: sum(r[model][g] for r in runs) / len(runs)  # noqa: E731
        groups = ("unchanged", "changed", "overall")
        trio = lambda model: " / ".join(f"{mean(model, g):.1f}" for g in groups)  # noqa: E731
        diffs = []
        for g in ("unchanged", "changed", "overall"):
            s = cell["seeds"][g]
            per = ", ".join(f"{r['significance'][g]['p']:.2g}" for r in runs)
            diffs.append(f"{s['mean']:+.1f} (p={s['t_test_p']:.2g}; {per})")
        lines.append(f"| {share} | {recipe} | {trio('mle')} | {trio('rlvr')} | {mean('trivial', 'overall'):.1f} | "
                     + " | ".join(diffs) + " |")
    return "\n".join(lines) + "\n"


def plot(out: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), sharey=True)
    for ax, g in zip(axes, ("unchanged", "changed", "overall")):
        keys = list(out["cells"])
        for i, key in enumerate(keys):
            diffs = [r["rlvr"][g] - r["mle"][g] for r in out["cells"][key]["runs"]]
            color = {"decision": "tab:blue", "grpo": "tab:red"}.get(key.split("/")[1], "tab:green")
            ax.bar(i, sum(diffs) / len(diffs), color=color, alpha=0.6)
            ax.scatter([i] * len(diffs), diffs, color="k", s=10, zorder=3)
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xticks(range(len(keys)), [k.replace("/", "\n") for k in keys], fontsize=7)
        ax.set_title(f"RLVR - MLE, {g} (points)")
    fig.suptitle("synthetic household: the decision split (blue), balanced between strata (green), plain GRPO (red); "
                 "dots: seeds", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shares", type=float, nargs="+", default=[0.25, 0.5, 0.75])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    p.add_argument("--root", default="runs/synthetic", help="where the data and run directories go")
    p.add_argument("--out", default="results/recipe-synthetic.json")
    p.add_argument("--mle-from", help="an earlier experiment's root: start from its MLE models instead of training "
                   "new ones (other RL options, one MLE)")
    a, extra = p.parse_known_args()
    root = Path(a.root)
    command = "python experiments/synthetic_recipe.py " + " ".join(sys.argv[1:])
    out: dict = {"command": command, "extra_options": extra, "cells": {}}
    for share in a.shares:
        results: dict[str, list[Path]] = {r: [] for r in a.recipes}
        for seed in a.seeds:
            first = mle_run(Path(a.mle_from), share, seed) if a.mle_from else None
            for recipe in a.recipes:
                path = run(share, seed, recipe, first, root, Path(a.mle_from or root), extra)
                first = first or path.parent
                results[recipe].append(path)
        for recipe, paths in results.items():
            cell = {"runs": [row(json.loads(q.read_text())) for q in paths]}
            if len(paths) > 1:
                cell["seeds"] = summarise([str(q) for q in paths], command)["tables"]["main"]
            out["cells"][f"{share:g}/{recipe}"] = cell
    path = Path(a.out)
    save_json(path, out)
    if len(a.seeds) > 1:
        path.with_suffix(".md").write_text(markdown(out))
    plot(out, path.with_suffix(".png"))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
