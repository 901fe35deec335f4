"""Results of a pipeline run: JSON, a Markdown table and a plot, plus the paired significance test.

Significance (`stats.paired_test`): MLE and RLVR are scored on the same test examples, so their
difference is tested per example: McNemar's exact test for a 0/1 metric
(exact-state accuracy), the Wilcoxon signed-rank test for a graded one (F1),
and a paired bootstrap 95% interval of the difference in points; the column
`split_mix` (the groups at the whole test split's mix) gets a sign-flip test
(`stats.weighted_paired_test`). What a
domain reports (its metric's name, table columns, extra parts, the paper's
numbers) comes from the domain class.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np

from . import domains
from .engine.atomicwrite import save_json
from .engine.metriclog import MetricLog
from .engine.evaluate import answer_breakdown, result_of
from .stats import paired_test, weighted_paired_test


def groups(domain_cls) -> tuple[str, ...]:
    """The evaluation groups a domain reports, then "overall"."""
    return (*domain_cls.groups, "overall")


def scores(summary: dict, domain_cls, shares: dict[str, float] | None = None) -> dict:
    """The metric per group and overall, plus the parts the domain reports (in percent unless the domain says);
    with `shares` (`split_shares`) also `split_mix`, the groups' mean weighted by them."""
    out = {k: summary[k] for k in (*groups(domain_cls), *domain_cls.reported_parts) if k in summary}
    if shares and all(g in out for g in shares):
        out["split_mix"] = round(sum(share * out[g] for g, share in shares.items()), 4)
    return out


def split_shares(split_groups: dict[str, int] | None, domain_cls) -> dict[str, float] | None:
    """Each group's share of the whole test split (`split_groups`: examples per group), for the column `split_mix`:
    what the split's overall is when a subset of another mix (e.g. balanced) was evaluated, and how a paper that
    reports the whole split's mean compares. None for a domain of one group."""
    total = sum((split_groups or {}).get(g, 0) for g in domain_cls.groups)
    if len(domain_cls.groups) < 2 or not total:
        return None
    return {g: split_groups.get(g, 0) / total for g in domain_cls.groups}


def tests_by_column(a: dict, b: dict, domain_cls, shares: dict[str, float] | None) -> dict:
    """b - a per group and overall (`stats.paired_test`), and in the split's mix (`stats.weighted_paired_test`)."""
    out = {g: paired_test(a, b, None if g == "overall" else g, binary=domain_cls.binary_metric,
                          scale=domain_cls.metric_scale) for g in groups(domain_cls)}
    if shares:
        out["split_mix"] = weighted_paired_test(a, b, shares, scale=domain_cls.metric_scale)
    return out


def model_label(cfg) -> str:
    """How the models of a run were made, for the results: from scratch, or fine-tuned from a pretrained model."""
    m = cfg.model
    if not m.init_from:
        return "trained from scratch"
    how = f"LoRA rank {m.lora_rank}, alpha {m.lora_alpha:g}" if m.lora_rank else "all weights"
    return f"fine-tuned from {m.init_from} ({how})" + (f", MLE from the adapter {m.init_adapter}" if m.init_adapter
                                                       else "")


def machine(cfg) -> dict:
    """What the invocation that writes the results ran on, so that its phase times can be read (a resumed run's
    earlier phases may have run elsewhere): the CPU and its flags, cores, threads, device, autocast dtype and, on the
    CPU, which fp32 products went through oneDNN (`engine.kernels`)."""
    import torch

    from . import device as dev
    from .engine import kernels

    d = dev.pick_device(cfg.device)
    out = {"cpu": dev.cpu_signature(), "cores": os.cpu_count(), "threads": torch.get_num_threads(),
           "torch": torch.__version__, "device": torch.cuda.get_device_name(d) if d.type == "cuda" else "cpu",
           "dtype": "bf16" if dev.resolve_dtype(cfg.dtype, d) is not None else "fp32"}
    if d.type == "cpu" and out["dtype"] == "fp32" and kernels.ONEDNN:
        out["onednn"] = kernels.choice()
    limits = dev.isa_limits()
    if limits:  # the libraries were told to use fewer instructions than the flags above offer
        out["isa_limits"] = limits
    return out


def build(cfg, *, command: str, timings: dict[str, float], params: int, mle: dict, rlvr: dict, out: Path,
          n_train: int, n_rl: int, n_test_split: int, test_indices: list[int], trivial: dict | None = None,
          split_groups: dict[str, int] | None = None) -> dict:
    curve = [r for r in MetricLog(out / "rl" / "metrics.jsonl").rows()]
    domain_cls = domains.get(cfg.domain)
    shares = split_shares(split_groups, domain_cls)
    if shares and any(g not in mle for g in shares):  # a group the evaluated examples lack cannot be weighted
        shares = None
    res = {
        "command": command,
        "wall_s": round(sum(timings.values()), 1),  # all phases, summed over resumed invocations
        "phase_s": timings,
        "machine": machine(cfg),
        "domain": cfg.domain,
        "metric": domain_cls.metric_label,
        "columns": [*domain_cls.columns, *(["split_mix"] if shares else [])],
        "metric_column": "overall" if "overall" in domain_cls.columns else domain_cls.metric,
        **domain_cls.describe(cfg.data),
        "n_test": mle["n"],
        "n_test_split": n_test_split,  # transitions in the whole test split (n_test is a subset when smaller)
        "n_test_groups": mle["counts"],
        **({"split_groups": {g: split_groups[g] for g in shares}} if shares else {}),
        "test_indices": test_indices,  # the evaluated examples' positions in the test split
        "model": model_label(cfg),
        "n_train_mle": n_train,
        "n_train_rl": n_rl,
        "eval_balanced": cfg.eval_balanced,
        "reward": cfg.rl.reward,
        "params": params,
        "mle": scores(mle, domain_cls, shares),
        "rlvr": scores(rlvr, domain_cls, shares),
        "significance": tests_by_column(mle, rlvr, domain_cls, shares),
        "reference": domain_cls.reference,
        "rl_curve": [{k: v for k, v in r.items() if k == "step" or k.startswith(("test/", "reward/mean", "decision/"))}
                     for r in curve],
        "config": dataclasses.asdict(cfg),
    }
    if trivial is not None:  # "nothing changes" on the same examples, and each model's leaning toward it
        res["trivial"] = scores(trivial, domain_cls, shares)
        res["rlvr_vs_trivial"] = tests_by_column(trivial, rlvr, domain_cls, shares)
        res["decision"] = {k: ev["decision"] for k, ev in (("mle", mle), ("rlvr", rlvr)) if ev.get("decision")}
        answers = {k: answer_breakdown(ev.get("records", [])) for k, ev in (("mle", mle), ("rlvr", rlvr))}
        if all(answers.values()):
            res["answers"] = answers
    if cfg.compare:
        res["compared"] = compared(cfg.compare, {**res, "evals": {"mle": mle, "rlvr": rlvr}})
    return res


def compared(run: str, res: dict) -> dict:
    """Another run's MLE and RLVR scores on this run's test examples, and this run's models tested against its.

    The examples are matched by their position in the test split: the other run
    may have evaluated more of the split (e.g. all of it), and is then scored on
    this run's examples alone. Raises ValueError when that run is unfinished,
    of another domain or another test split, or lacks some of this run's examples.
    """
    d = Path(run)
    try:
        theirs = json.loads((d / "results.json").read_text())
        evals = {k: json.loads((d / f"eval_{k}.json").read_text()) for k in ("mle", "rlvr")}
    except (OSError, ValueError) as e:
        raise ValueError(f"--compare {run}: not a finished run directory ({e})") from None
    if theirs.get("domain") != res["domain"]:
        raise ValueError(f"--compare {run}: a {theirs.get('domain')} run, not {res['domain']}")
    positions = theirs.get("test_indices") or []
    missing = set(res["test_indices"]) - set(positions)
    if theirs.get("n_test_split") != res["n_test_split"] or missing:
        raise ValueError(f"--compare {run}: evaluated on other test examples than this run "
                         f"({len(missing)} of this run's {len(res['test_indices'])} missing)")
    domain_cls = domains.get(res["domain"])
    ours = {p: i for i, p in enumerate(res["test_indices"])}  # split position -> this run's record index

    def on_ours(ev: dict) -> dict:
        """Their records of this run's examples, renumbered as this run numbers them."""
        kept = [{**r, "index": ours[positions[r["index"]]]} for r in ev["records"] if positions[r["index"]] in ours]
        kept.sort(key=lambda r: r["index"])
        return {**result_of(kept, domain_cls.reported_parts, domain_cls.metric_scale).summary(), "records": kept}

    evals = {k: on_ours(v) for k, v in evals.items()}
    shares = split_shares(res.get("split_groups"), domain_cls)
    per_metric = {f"{k}_vs_{k}": domain_cls.compare_models(evals[k], res["evals"][k]) for k in ("mle", "rlvr")}
    return {
        "run": run, "command": theirs.get("command"), "model": theirs.get("model", "trained from scratch"),
        "reward": theirs.get("reward"),
        "params": theirs.get("params"), "n_evaluated_there": len(positions),
        "mle": scores(evals["mle"], domain_cls, shares), "rlvr": scores(evals["rlvr"], domain_cls, shares),
        # this run's model minus that run's, per example: MLE against MLE, RLVR against RLVR
        "mle_vs_mle": tests_by_column(evals["mle"], res["evals"]["mle"], domain_cls, shares),
        "rlvr_vs_rlvr": tests_by_column(evals["rlvr"], res["evals"]["rlvr"], domain_cls, shares),
        # a domain with several metrics: each tested (this run's model minus that run's), per group
        **({"per_metric": per_metric} if per_metric["mle_vs_mle"] is not None else {}),
    }


def significance_key(res: dict, column: str) -> str:
    """Where `res["significance"]` holds the paired test of a column: the metric's column is tested as "overall"."""
    return "overall" if column == res.get("metric_column") else column


def markdown(res: dict) -> str:
    domain_cls = domains.get(res["domain"])
    own = domain_cls.markdown(res)  # a domain whose results are not one table of groups
    if own is not None:
        return own
    cols = res["columns"]
    rows = ["| model | " + " | ".join(cols) + " |", "| --- |" + " --- |" * len(cols)]
    for name, key in (("MLE", "mle"), (f"RLVR ({res['reward']} reward)", "rlvr")):
        rows.append(f"| {name} | " + " | ".join(str(res[key].get(c, "-")) for c in cols) + " |")
    sig = res["significance"]
    tested = {c: significance_key(res, c) for c in cols}
    rows.append("| RLVR - MLE (points) | " + " | ".join(
        f"{sig[tested[c]]['delta']} (p={sig[tested[c]]['p']:.2g})" if sig.get(tested[c]) else "" for c in cols) + " |")
    if "trivial" in res:
        rows.append("| trivial predictor (always \"nothing changes\") | " +
                    " | ".join(str(res["trivial"].get(c, "-")) for c in cols) + " |")
    other = res.get("compared")
    if other:
        for name, key in (("MLE", "mle"), ("RLVR", "rlvr")):
            rows.append(f"| {name}, {other['model']} (`{other['run']}`) | " +
                        " | ".join(str(other[key].get(c, "-")) for c in cols) + " |")
        vs = other["rlvr_vs_rlvr"]
        rows.append("| RLVR here - RLVR there (points) | " + " | ".join(
            f"{vs[tested[c]]['delta']} (p={vs[tested[c]]['p']:.2g})" if vs.get(tested[c]) else "" for c in cols) + " |")
    for name, ref in res["reference"].items():
        rows.append(f"| {name} | " + " | ".join(str(ref.get(c, "")) for c in cols) + " |")
    kind = "stratified random" if res.get("eval_balanced") else "random"
    subset = (f"a fixed {kind} subset of the {res['n_test_split']}-transition test split"
              if res["n_test"] < res["n_test_split"] else "the whole test split")
    info = "; ".join(f"{k}: {v if isinstance(v, (str, int)) else ', '.join(map(str, v))}"
                     for k, v in res.items() if k in ("games", "n_task_types"))
    tests = sorted({s.get("test", "") for s in sig.values() if s})
    head = (f"{res['metric']} (%) on {res['n_test']} test transitions ({subset}; {res['n_test_groups']}); "
            f"{info}; {res['params'] / 1e6:.2f}M-parameter model {res.get('model', 'trained from scratch')}; "
            f"wall time {res['wall_s'] / 60:.1f} min.\n\n"
            f"Written by `{res['command']}`. p: paired {' / '.join(tests)} test on the same test transitions.\n\n"
            + (f"split_mix: the groups weighted as the whole test split mixes them "
               f"({', '.join(f'{n} {g}' for g, n in res['split_groups'].items())}), the split's overall.\n\n"
               if "split_mix" in cols else ""))
    notes = "\n\n".join(n for n in (decision_markdown(res), answers_markdown(res), domain_cls.notes_markdown(res)) if n)
    return head + "\n".join(rows) + "\n" + (f"\n{notes}" if notes else "")


def decision_markdown(res: dict) -> str:
    """One line per model: its probability of the trivial answer where it is right and where it is wrong."""
    lines = []
    for name, d in res.get("decision", {}).items():
        p = d.get("p_trivial", {})
        auc = f", AUC {d['auc']}" if "auc" in d else ""
        lines.append(f"- {name.upper()}: P(nothing changes) {p.get('unchanged', '-')} on unchanged, "
                     f"{p.get('changed', '-')} on changed transitions{auc}")
    return ("How each model decides whether anything changes (probability of the trivial answer; AUC: how well it "
            "separates the two kinds):\n" + "\n".join(lines)) if lines else ""


def answers_markdown(res: dict) -> str:
    """A table of what each model's greedy answers were, per group (`evaluate.answer_breakdown`)."""
    answers = res.get("answers")
    if not answers:
        return ""
    rows = ["| answers (greedy): attempted a change (right) / no change / invalid | " +
            " | ".join(answers["mle"]) + " |", "| --- |" + " --- |" * len(answers["mle"])]
    for name, key in (("MLE", "mle"), ("RLVR", "rlvr")):
        rows.append(f"| {name} | " + " | ".join(
            f"{a['attempted']} ({a['attempted_right']}) / {a['no_change']} / {a['invalid']}"
            for a in answers[key].values()) + " |")
    return "\n".join(rows) + "\n"


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
    for g in groups(domains.get(res["domain"])):
        pts = [(r["step"], r[f"test/{g}"]) for r in curve if f"test/{g}" in r]
        if pts:
            ax2.plot(*zip(*pts), marker="o", label=g)
    ax2.set(xlabel="RL step", ylabel=f"{res['metric']} (%)", title=f"Test-subset {res['metric']} during RLVR")
    if ax2.lines:
        ax2.legend()
    else:
        ax2.text(0.5, 0.5, "not evaluated during RL", ha="center", va="center",
                 transform=ax2.transAxes)
    fig.suptitle(f"{res['domain']}: {res['command']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(path: Path, res: dict, run_dir: Path) -> None:
    save_json(path, res)
    path.with_suffix(".md").write_text(markdown(res))
    plot(res, path.with_suffix(".png"))
    save_json(run_dir / "results.json", res)
