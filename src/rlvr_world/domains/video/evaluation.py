"""What a video run reports beyond the reward: metrics per setting, real footage, pictures.

Axes: N examples, F predicted frames, C context frames, L tokens per frame,
H×W pixels.

- Per setting (single-step, multi-step): MSE (on the [0, 1] pixel scale),
  MAE, PSNR (dB), SSIM, the share of valid predictions and, multi-step, the
  repetition rate (%: rollouts whose last predicted frame is token-identical
  to the one before), each for MLE and RLVR on the same test examples, with a
  paired Wilcoxon test per metric.
- The frame tokenizer's reconstruction quality on simulated test frames, the
  held-out real Bridge episodes and the real RT-1 episode.
- Real Bridge footage: both world models zero-shot on the 5 held-out
  episodes; then the MLE model fine-tuned by MLE on the other 20 (and, with
  `bridge_rl_steps`, post-trained by RLVR on them) and tested again.
- A PNG strip per setting: real frames, MLE prediction, RLVR prediction.
- The baseline a world model must beat, on both: "copy the last context
  frame" (its codes repeated), scored like a prediction.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ...engine import distributed as dist
from ...engine.atomicwrite import save_json
from ...engine.evaluate import part_means
from ...stats import paired_test, round_sig
from .data import bridge, rt1_frames
from .domain import REAL_FOOTAGE
from .metrics import frame_metrics

METRICS = ("mse", "mae", "psnr", "ssim", "lpips")  # lpips unless `VideoData.lpips` is empty
LOWER_IS_BETTER = {"mse", "mae", "lpips", "repeat"}


def setting(ev: dict, group: str) -> dict:
    """One model's metrics on one setting, from an evaluation summary (means of its records: the summary's own
    means are rounded to 4 decimals, which leaves an MSE two digits)."""
    parts = part_means([r for r in ev["records"] if r["group"] == group], (*METRICS, "repeat", "valid"), 1.0)
    out = {k: round_sig(parts[k], 5) for k in METRICS if k in parts}
    if "repeat" in parts:
        out["repetition_rate"] = round(100.0 * parts["repeat"], 2)
    out["valid_rate"] = round(100.0 * parts.get("valid", 0.0), 2)
    out["reward"] = ev.get(group)
    out["n"] = ev["counts"].get(group, 0)
    return out


def compare(mle: dict, rlvr: dict, groups: Sequence[str]) -> dict:
    """Per setting: MLE and RLVR metrics and paired tests (RLVR - MLE) per metric."""
    out = {}
    for g in groups:
        sig = {k: paired_test(mle, rlvr, g, binary=False, key=k, scale=1.0, lower_is_better=k in LOWER_IS_BETTER)
               for k in (*METRICS, "repeat")}
        out[g] = {"mle": setting(mle, g), "rlvr": setting(rlvr, g), "significance": {k: v for k, v in sig.items() if v}}
    return out


# each reward recomputed from an evaluation record's parts: (the parts it needs, record -> value), as `video_reward`
REWARD_FROM_PARTS = {"mae_ssim": (("mae", "ssim"), lambda r: -(r["mae"] + 1.0 - r["ssim"])),
                     "mae_lpips": (("mae", "lpips"), lambda r: -(r["mae"] + r["lpips"]))}


def repeat_rewards(ev: dict) -> dict:
    """Do the rewards punish repeating the last frame? Multi-step records of one model, split by whether the
    last predicted frame repeats the one before: each reward's mean over both, and a Mann-Whitney U test
    (two-sided) of repeating against other rollouts."""
    from scipy.stats import mannwhitneyu

    recs = [r for r in ev["records"] if r["group"] == "multi_step" and "repeat" in r]
    out: dict = {"n_repeating": sum(r["repeat"] == 1.0 for r in recs), "n_other": sum(r["repeat"] != 1.0 for r in recs)}
    for name, (needs, fn) in REWARD_FROM_PARTS.items():
        if not recs or not all(k in recs[0] for k in needs):
            continue
        rep = [fn(r) for r in recs if r["repeat"] == 1.0]
        other = [fn(r) for r in recs if r["repeat"] != 1.0]
        if rep and other:
            out[name] = {"repeating": round_sig(float(np.mean(rep)), 5), "other": round_sig(float(np.mean(other)), 5),
                         "p": round_sig(float(mannwhitneyu(rep, other).pvalue), 3)}
    return out


def copy_last(domain, examples) -> dict:
    """The baseline a world model must beat: predict that the last context frame stays as it is."""
    tok = domain.tokenizer
    L, A = tok.tokens_per_frame, tok.action_dims
    rows: dict[str, list[dict]] = {}
    for e in examples:
        last = e.prompt_ids[-(L + A):-A]  # the last context frame's codes
        F = len(e.payload.frames)
        response = []
        for k in range(F):  # the same frame F times, the real actions between, then <eos>
            response += last + (e.target_ids[k * (L + A) + L:(k + 1) * (L + A)] if k < F - 1 else [])
        parts = domain.score(domain.metric, response + [tok.eos_token_id], e)[1]
        rows.setdefault(e.group, []).append(parts)
    return {g: {k: round_sig(float(np.mean([p[k] for p in ps])), 5) for k in METRICS if k in ps[0]} | {"n": len(ps)}
            for g, ps in rows.items()}


def real_repetition(examples) -> dict:
    """How often the real frames repeat: the share (%) of multi-frame examples whose last real frame has the same
    codes as the one before, the rate a world model's repetition rate would match if it were right."""
    reps = [np.array_equal(e.payload.codes[-1], e.payload.codes[-2]) for e in examples if len(e.payload.codes) > 1]
    return {"repetition_rate": round(100.0 * float(np.mean(reps)), 2), "n": len(reps)} if reps else {}


def reconstruction(tok, frames: np.ndarray, lpips=None) -> dict:
    """The frame tokenizer's round trip on (N, H, W, 3) uint8 frames: mean MSE, MAE, PSNR, SSIM (, LPIPS)."""
    flat = frames.reshape(-1, *frames.shape[-3:])  # (N, H, W, 3)
    rec = torch.as_tensor(tok.decode_frames(tok.frame_codes(flat)))  # (N, H, W, 3)
    m = frame_metrics(rec, torch.as_tensor(flat).float() / 255.0, lpips)
    return {**{k: round_sig(float(m[k].mean()), 5) for k in METRICS if k in m}, "n_frames": len(flat)}


def finish(domain, stage, test, mle_model, rl_model, mle_eval: dict, rl_eval: dict) -> dict:
    """The video sections of the results (see the module docstring); pictures go beside the results file."""
    tok = domain.tokenizer
    res = compare(mle_eval, rl_eval, domain.groups)
    for g, m in copy_last(domain, test).items():
        res[g]["copy_last"] = m
    if "multi_step" in res:
        res["multi_step"]["real"] = real_repetition([e for e in test if e.group == "multi_step"])
        res["multi_step"]["repeat_rewards"] = {"mle": repeat_rewards(mle_eval), "rlvr": repeat_rewards(rl_eval)}
    res["tokenizer"] = {name: reconstruction(tok, frames, domain.lpips) for name, frames in (
        ("sim_test", domain.episodes("test").frames), ("bridge_test", bridge("test").frames),
        ("rt1", rt1_frames(tok.frames.cfg.size)))}
    res["bridge_real"] = real_footage(domain, stage, mle_model, rl_model)
    if dist.is_main():  # under torchrun every process runs this; process 0 writes
        res["pictures"] = {g: str(strip(stage.results.with_name(f"{stage.results.stem}-{g}.png"), domain, test,
                                        mle_eval, rl_eval, g)) for g in domain.groups}
    return res


def real_footage(domain, stage, mle_model, rl_model) -> dict:
    """World models on the held-out real Bridge episodes: zero-shot, then fine-tuned on the other 20."""
    from ...engine.mle import train_mle
    from ...engine.rl import train_rl

    data, out = domain.data, stage.out / REAL_FOOTAGE
    test = domain.episode_examples(bridge("test"))
    res = {"n_test_episodes": 5, "n_train_episodes": 20, "n_test": len(test), "copy_last": copy_last(domain, test)}
    for name, model in (("zero_shot_mle", mle_model), ("zero_shot_rlvr", rl_model)):
        res[name] = evaluate(stage, domain, model, test, f"bridge {name}", out / f"eval_{name}.json")
    if data.bridge_finetune_epochs <= 0:
        return res
    train = domain.episode_examples(bridge("train"), ("multi_step",))
    cfg = dataclasses.replace(stage.mle, epochs=data.bridge_finetune_epochs, warmup_steps=5)
    tuned = train_mle(copy.deepcopy(mle_model), domain.tokenizer, train, cfg, out / "mle", autocast=stage.autocast)
    res["finetuned_mle"] = evaluate(stage, domain, tuned, test, "bridge fine-tuned MLE", out / "eval_mle.json")
    res["n_train"] = len(train)
    if data.bridge_rl_steps > 0:
        rl_cfg = dataclasses.replace(stage.rl, steps=data.bridge_rl_steps, eval_every=0)
        rl_train = domain.episode_examples(bridge("train"))
        tuned = train_rl(tuned, domain.tokenizer, domain, rl_train, rl_cfg, out / "rl", autocast=stage.autocast)
        res["finetuned_rlvr"] = evaluate(stage, domain, tuned, test, "bridge fine-tuned RLVR", out / "eval_rl.json")
        res["finetuned_compare"] = compare(*[_load(out / f) for f in ("eval_mle.json", "eval_rl.json")], domain.groups)
    return res


def evaluate(stage, domain, model, examples, description: str, path: Path) -> dict:
    r = stage.evaluate(model, domain, examples, description)
    summary = {**r.summary(), "records": r.records}
    if dist.is_main():
        save_json(path, summary)
    return {g: setting(summary, g) for g in domain.groups}


def _load(path: Path) -> dict:
    import json

    return json.loads(path.read_text())


def strip(path: Path, domain, test, mle_eval: dict, rl_eval: dict, group: str, n: int = 4) -> Path:
    """Rows of real / MLE / RLVR frames for `n` test examples of a setting, context frames first."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tok = domain.tokenizer
    idx = [r["index"] for r in mle_eval["records"] if r["group"] == group]
    idx = [idx[i] for i in np.linspace(0, len(idx) - 1, min(n, len(idx))).round().astype(int)] if idx else []
    pred = {name: {r["index"]: r["response"] for r in ev["records"]} for name, ev in (("MLE", mle_eval),
                                                                                     ("RLVR", rl_eval))}
    rows, labels = [], []
    for i in idx:
        t = test[i].payload
        ctx = t.context.astype(np.float32) / 255.0  # (C, H, W, 3)
        blank = np.ones_like(ctx)
        rows.append(np.concatenate([ctx, t.frames.astype(np.float32) / 255.0]))  # (C+F, H, W, 3)
        labels.append(f"real #{i}")
        for name in ("MLE", "RLVR"):
            frames = tok.decode_frames(np.asarray(pred[name][i]))  # (F, H, W, 3)
            rows.append(np.concatenate([blank, frames]))
            labels.append(name)
    fig, axes = plt.subplots(len(rows), 1, figsize=(1.2 * (rows[0].shape[0] if rows else 1), 1.25 * max(1, len(rows))),
                             squeeze=False)
    for ax, row, label in zip(axes[:, 0], rows, labels):
        ax.imshow(np.concatenate(list(row), axis=1))  # (H, (C+F)*W, 3)
        ax.set_yticks([])
        ax.set_xticks([])
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    C = domain.data.context
    fig.suptitle(f"{group.replace('_', '-')}: {C} context frames, then predictions (real / MLE / RLVR)", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")  # keeps the row labels whole
    plt.close(fig)
    return path


def _row(name: str, m: dict, cols: Sequence[str]) -> str:
    return f"| {name} | " + " | ".join(str(m.get(c, "")) for c in cols) + " |"


def _delta_row(name: str, significance: dict, cols: Sequence[str]) -> str:
    """A row of paired differences with their p (the repetition rate in points)."""
    sig = {("repetition_rate" if k == "repeat" else k): v for k, v in significance.items()}
    return f"| {name} | " + " | ".join(
        f"{sig[c]['delta'] * (100 if c == 'repetition_rate' else 1):.4g} (p={sig[c]['p']:.2g})" if c in sig else ""
        for c in cols) + " |"


def markdown(res: dict) -> str:
    """The results as Markdown tables: per setting, tokenizer, real footage."""
    head = (f"Video world model ({res['params'] / 1e6:.2f}M parameters, trained from scratch) on simulated Meta-World "
            f"test episodes ({', '.join(res.get('tasks', []))}); wall time {res['wall_s'] / 60:.1f} min. "
            f"MSE on the [0, 1] pixel scale, PSNR in dB, SSIM in [0, 1], LPIPS (v0.1, "
            f"{res.get('config', {}).get('data', {}).get('lpips', '')}); p: paired Wilcoxon test on the same "
            f"test examples. Written by `{res['command']}`.\n")
    out = [head]
    for g, title in (("single_step", "Single-step"), ("multi_step", "Multi-step")):
        if g not in res:
            continue
        cols = ["mse", "mae", "psnr", "ssim", "lpips", *(["repetition_rate"] if g == "multi_step" else []),
                "valid_rate", "n"]
        s = res[g]
        out += [f"\n### {title} ({s['mle']['n']} test examples)\n",
                "| model | " + " | ".join(cols) + " |", "| --- |" + " --- |" * len(cols),
                _row("MLE", s["mle"], cols), _row(f"RLVR ({res['reward']} reward)", s["rlvr"], cols)]
        if "copy_last" in s:
            out.append(_row("baseline: copy the last context frame", s["copy_last"], cols))
        if s.get("real"):
            out.append(_row("the real frames' own codes", s["real"], cols))
        out.append(_delta_row("RLVR - MLE", s["significance"], cols))
        for name, ref in res.get("reference", {}).items():
            if title.lower() in name:
                out.append(_row(name, ref, cols))
    other = res.get("compared", {})
    if other.get("per_metric"):
        out += [f"\n### Against another run's models on the same test examples: `{other['run']}`\n",
                f"Written by `{other['command']}`; p: paired Wilcoxon test, this run's model minus that run's."]
        for g, title in (("single_step", "Single-step"), ("multi_step", "Multi-step")):
            # `compare(theirs, ours)`: that run's model is the first ("mle"), this run's the second ("rlvr")
            tests = {k: other["per_metric"][f"{k}_vs_{k}"].get(g) for k in ("mle", "rlvr")}
            if not all(tests.values()):
                continue
            cols = ["mse", "mae", "psnr", "ssim", "lpips", *(["repetition_rate"] if g == "multi_step" else []), "n"]
            out += [f"\n{title}:\n", "| model | " + " | ".join(cols) + " |", "| --- |" + " --- |" * len(cols),
                    _row("MLE there", tests["mle"]["mle"], cols),
                    _row(f"RLVR there ({other.get('reward')} reward)", tests["rlvr"]["mle"], cols),
                    _delta_row("MLE here - MLE there", tests["mle"]["significance"], cols),
                    _delta_row("RLVR here - RLVR there", tests["rlvr"]["significance"], cols)]
    reps = res.get("multi_step", {}).get("repeat_rewards")
    if reps and any(name in r for r in reps.values() for name in ("mae_ssim", "mae_lpips")):
        out += ["\n### Do the rewards punish repeated frames? (multi-step, mean reward; p: Mann-Whitney U)\n",
                "| model | reward | repeating rollouts | other rollouts | p |", "| --- | --- | --- | --- | --- |"]
        for model, r in reps.items():
            for name in ("mae_ssim", "mae_lpips"):
                if name in r:
                    out.append(f"| {model.upper()} | {name} | {r[name]['repeating']} (n={r['n_repeating']}) | "
                               f"{r[name]['other']} (n={r['n_other']}) | {r[name]['p']} |")
    if "tokenizer" in res:
        cols = ["mse", "mae", "psnr", "ssim", "lpips", "n_frames"]
        out += ["\n### Frame tokenizer reconstruction\n", "| frames | " + " | ".join(cols) + " |",
                "| --- |" + " --- |" * len(cols)]
        out += [_row(name, m, cols) for name, m in res["tokenizer"].items()]
    real = res.get("bridge_real")
    if real:
        cols = ["mse", "mae", "psnr", "ssim", "lpips", "repetition_rate", "valid_rate", "n"]
        out += [f"\n### Real BridgeData: {real['n_test_episodes']} held-out episodes\n",
                "| model | setting | " + " | ".join(cols) + " |", "| --- | --- |" + " --- |" * len(cols)]
        for name in ("copy_last", "zero_shot_mle", "zero_shot_rlvr", "finetuned_mle", "finetuned_rlvr"):
            for g in ("single_step", "multi_step"):
                if name in real and g in real[name]:
                    out.append(f"| {name.replace('_', ' ')} | {g.replace('_', '-')} | "
                               + " | ".join(str(real[name][g].get(c, "")) for c in cols) + " |")
    return "\n".join(out) + "\n"
