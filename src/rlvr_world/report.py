"""Results of a pipeline run: JSON, a Markdown table and a plot, plus the paired significance test.

Significance: MLE and RLVR are scored on the same test examples, so their
difference is tested per example. For a 0/1 metric we use McNemar's exact test
(a binomial test on the examples where exactly one model is right) and a
paired bootstrap 95% interval of the difference in points.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from scipy.stats import binomtest

from .engine.checkpoint import MetricLog, save_json

# Facts from the RLVR-World paper (Table: text game, 1.5B model, task-specific reward) and its GPT-4 baseline.
PAPER = {
    "paper_1.5B_mle": {"unchanged": 38.9, "changed": 24.2, "overall": 32.9},
    "paper_1.5B_rlvr": {"unchanged": 83.7, "changed": 33.8, "overall": 63.2},
    "gpt4_overall": 64.8,
}


def paired_test(mle: dict, rlvr: dict, group: str | None = None, seed: int = 0) -> dict:
    """McNemar exact p-value and a paired bootstrap interval for rlvr - mle, in points."""
    a = {r["index"]: r["value"] for r in mle["records"] if group in (None, r["group"])}
    b = {r["index"]: r["value"] for r in rlvr["records"] if group in (None, r["group"])}
    keys = sorted(a.keys() & b.keys())
    x = np.array([a[k] for k in keys], dtype=float)
    y = np.array([b[k] for k in keys], dtype=float)
    if not len(keys):
        return {}
    gained, lost = int(((y > x)).sum()), int(((y < x)).sum())
    p = binomtest(gained, gained + lost, 0.5).pvalue if gained + lost else 1.0
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(keys), size=(2000, len(keys)))
    diffs = 100.0 * (y[idx] - x[idx]).mean(axis=1)
    return {"delta": round(100.0 * float((y - x).mean()), 2), "gained": gained, "lost": lost,
            "mcnemar_p": float(p), "ci95": [round(float(np.percentile(diffs, 2.5)), 2),
                                             round(float(np.percentile(diffs, 97.5)), 2)]}


def accuracies(summary: dict) -> dict:
    return {k: summary[k] for k in ("unchanged", "changed", "overall") if k in summary}


def build(cfg, *, command: str, timings: dict[str, float], params: int, mle: dict, rlvr: dict, out: Path,
          n_train: int, n_rl: int, n_test_split: int) -> dict:
    curve = [r for r in MetricLog(out / "rl" / "metrics.jsonl").rows()]
    return {
        "command": command,
        "wall_s": round(sum(timings.values()), 1),  # all phases, summed over resumed invocations
        "phase_s": timings,
        "domain": cfg.domain,
        "games": cfg.data.games or "all",
        "n_test": mle["n"],
        "n_test_split": n_test_split,  # transitions in the whole test split (n_test is a subset when smaller)
        "n_test_groups": mle["counts"],
        "n_train_mle": n_train,
        "n_train_rl": n_rl,
        "reward": cfg.rl.reward,
        "params": params,
        "mle": accuracies(mle),
        "rlvr": accuracies(rlvr),
        "significance": {g: paired_test(mle, rlvr, None if g == "overall" else g)
                         for g in ("unchanged", "changed", "overall")},
        "reference": PAPER,
        "rl_curve": [{k: v for k, v in r.items() if k == "step" or k.startswith(("test/", "reward/mean"))}
                     for r in curve],
        "config": dataclasses.asdict(cfg),
    }


def markdown(res: dict) -> str:
    rows = ["| model | unchanged | changed | overall |", "| --- | --- | --- | --- |"]
    for name, key in (("MLE", "mle"), (f"RLVR ({res['reward']} reward)", "rlvr")):
        a = res[key]
        rows.append(f"| {name} | {a.get('unchanged', '-')} | {a.get('changed', '-')} | {a.get('overall', '-')} |")
    sig = res["significance"]
    rows.append("| RLVR - MLE (points) | " + " | ".join(
        f"{sig[g].get('delta', '-')} (p={sig[g].get('mcnemar_p', 1):.2g})" for g in ("unchanged", "changed", "overall")) + " |")
    ref = res["reference"]
    for name, key in (("paper 1.5B MLE", "paper_1.5B_mle"), ("paper 1.5B RLVR", "paper_1.5B_rlvr")):
        a = ref[key]
        rows.append(f"| {name} | {a['unchanged']} | {a['changed']} | {a['overall']} |")
    rows.append(f"| GPT-4 (benchmark paper) | | | {ref['gpt4_overall']} |")
    subset = (f"a fixed random subset of the {res['n_test_split']}-transition test split"
              if res["n_test"] < res["n_test_split"] else "the whole test split")
    head = (f"Exact-state accuracy (%) on {res['n_test']} test transitions ({subset}; {res['n_test_groups']}); "
            f"games: {res['games'] if isinstance(res['games'], str) else ', '.join(res['games'])}; "
            f"{res['params'] / 1e6:.2f}M-parameter model trained from scratch; wall time {res['wall_s'] / 60:.1f} min.\n\n"
            f"Written by `{res['command']}`. p: McNemar's exact test on the same test transitions.\n\n")
    return head + "\n".join(rows) + "\n"


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = res["rl_curve"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    steps = [r["step"] for r in curve if "reward/mean" in r]
    rewards = np.array([r["reward/mean"] for r in curve if "reward/mean" in r])
    ax1.plot(steps, rewards, alpha=0.35, label="per step")
    if len(rewards) >= 5:
        k = 5
        smooth = np.convolve(rewards, np.ones(k) / k, mode="valid")
        ax1.plot(steps[k - 1:], smooth, label=f"{k}-step mean")
    ax1.set(xlabel="RL step", ylabel=f"mean reward ({res['reward']})", title="RLVR training reward")
    ax1.legend()
    for g in ("overall", "changed", "unchanged"):
        pts = [(r["step"], r[f"test/{g}"]) for r in curve if f"test/{g}" in r]
        if pts:
            ax2.plot(*zip(*pts), marker="o", label=g)
    ax2.set(xlabel="RL step", ylabel="exact-state accuracy (%)", title="Test-subset accuracy during RLVR")
    ax2.legend()
    fig.suptitle(f"{res['domain']}: {res['command']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(path: Path, res: dict, run_dir: Path) -> None:
    save_json(path, res)
    path.with_suffix(".md").write_text(markdown(res))
    plot(res, path.with_suffix(".png"))
    save_json(run_dir / "results.json", res)
