"""Is an RLVR gain larger than the spread between RL seeds?

`rlvr-world seeds A.json B.json ...` reads the results of several runs that
differ only in their seed and tests, for every column of every results table
(the text domains' one table; video's single-step and multi-step ones), whether
the mean RLVR - MLE difference over the runs is non-zero: a one-sample t-test
over the per-run differences, so a gain counts only when it is large against
how much it moves from seed to seed. The paired test of each run on its own
test examples is listed beside it.

When every run starts from the same MLE model (equal MLE metrics), the spread
is the RL seed's alone; otherwise it includes MLE training noise too, and the
summary says so.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy.stats import ttest_1samp

from .engine.atomicwrite import save_json
from .report import significance_key


def load(path: str | Path) -> dict:
    """One results file, or a one-line error."""
    try:
        res = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"no results file {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not a results JSON file ({e})") from None
    if not isinstance(res, dict) or not isinstance(res.get("mle"), dict) or not isinstance(res.get("rlvr"), dict):
        raise ValueError(f"{path} is not a results file of `rlvr-world run` (no mle / rlvr metrics)")
    return res


def tables(res: dict) -> dict[str, dict]:
    """The results tables of one file: the top level, and every section holding its own mle / rlvr."""
    out = {"": res}
    out.update({k: v for k, v in res.items() if isinstance(v, dict) and isinstance(v.get("mle"), dict)
                and isinstance(v.get("rlvr"), dict)})
    return out


def summarise(paths: list[str], command: str) -> dict:
    """Per table and column: every run's difference and paired p, their mean, SD and t-test over runs."""
    if len(paths) < 2:
        raise ValueError("seeds needs at least two results files")
    runs = [load(p) for p in paths]
    domains = {r.get("domain") for r in runs}
    if len(domains) > 1:
        raise ValueError(f"the results come from different domains ({', '.join(map(str, sorted(domains)))})")
    out: dict = {"command": command, "domain": runs[0].get("domain"), "n_runs": len(runs),
                 "runs": [{"path": str(p), "command": r.get("command"),
                           "rl_seed": r.get("config", {}).get("rl", {}).get("seed"),
                           "rl_lr": r.get("config", {}).get("rl", {}).get("lr")} for p, r in zip(paths, runs)],
                 "tables": {}}
    same = True
    for name, first in tables(runs[0]).items():
        per_run = [tables(r).get(name) for r in runs]
        if any(t is None for t in per_run):
            continue
        same &= all(t["mle"] == first["mle"] for t in per_run)
        table = {}
        for col, value in first["mle"].items():
            if not isinstance(value, float) or not all(isinstance(t["rlvr"].get(col), (int, float)) for t in per_run):
                continue  # counts (n) and non-numbers are not metrics
            sig = [t.get("significance", {}).get(significance_key(t, col), {}) for t in per_run]
            # the paired test's difference (a mean over the examples) where there is one: the difference of two
            # rounded means can hide how it varies (two runs' PSNR gains of 0.0092 and 0.0096 dB both read 0.01)
            d = np.array([s["delta"] if isinstance(s.get("delta"), (int, float)) else t["rlvr"][col] - t["mle"][col]
                          for s, t in zip(sig, per_run)], dtype=float)
            sd = float(d.std(ddof=1))
            p = float(ttest_1samp(d, 0.0).pvalue) if sd > 0 else (1.0 if d[0] == 0 else 0.0)
            table[col] = {"mle": [t["mle"][col] for t in per_run], "rlvr": [t["rlvr"][col] for t in per_run],
                          "delta": [round(float(x), 6) for x in d], "paired_p": [s.get("p") for s in sig],
                          "mean": round(float(d.mean()), 6), "sd": round(sd, 6),
                          "t_test_p": p, "n_up": int((d > 0).sum()), "n_down": int((d < 0).sum())}
        out["tables"][name or "main"] = table
    out["same_mle"] = bool(same)
    return out


def markdown(s: dict) -> str:
    rows = [f"{s['n_runs']} runs of the {s['domain']} domain"
            + (" from one MLE model (the spread is the RL seed's)" if s["same_mle"]
               else " from different MLE models (the spread includes MLE training noise)")
            + f". Written by `{s['command']}`.", "",
            "t-test p: one-sample t-test of the per-run RLVR - MLE differences against 0.", ""]
    for name, table in s["tables"].items():
        rows += [f"**{name}**", "", "| column | per-run RLVR - MLE (paired p) | mean | SD | t-test p | up / down |",
                 "| --- | --- | --- | --- | --- | --- |"]
        for col, c in table.items():
            each = ", ".join(f"{d:+.3g}" + (f" ({p:.2g})" if p is not None else "")
                             for d, p in zip(c["delta"], c["paired_p"]))
            rows.append(f"| {col} | {each} | {c['mean']:+.3g} | {c['sd']:.3g} | {c['t_test_p']:.2g} | "
                        f"{c['n_up']} / {c['n_down']} |")
        rows.append("")
    return "\n".join(rows)


def plot(s: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(s["tables"])
    fig, axes = plt.subplots(1, len(names), figsize=(5.5 * len(names), 3.8), squeeze=False)
    for ax, name in zip(axes[0], names):
        table = s["tables"][name]
        for i, c in enumerate(table.values()):
            ax.scatter([i] * len(c["delta"]), c["delta"], color="tab:blue", alpha=0.7, zorder=3)
            ax.errorbar(i + 0.18, c["mean"], yerr=c["sd"], fmt="s", color="tab:red", capsize=4, zorder=3)
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xticks(range(len(table)), [f"{col}\np={c['t_test_p']:.2g}" for col, c in table.items()], fontsize=8)
        ax.set(ylabel="RLVR - MLE", title=f"{name}: per run (dots), mean ± SD (red); p: t-test over runs")
    fig.suptitle(f"{s['domain']}: {s['n_runs']} runs", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(s: dict, path: Path) -> None:
    save_json(path, s)
    path.with_suffix(".md").write_text(markdown(s))
    plot(s, path.with_suffix(".png"))
