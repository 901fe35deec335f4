"""`rlvr-world policy-eval`: how well do video world models estimate robot policies' success rates?

Phases, each kept in `run_dir` so that a stopped run continues where it stopped:

1. labelled data: the noisy expert's episodes with the clean expert action
   and the per-frame success flag (`data.labelled`), for training and, on
   other seeds, for measuring the detector;
2. networks: the behaviour-cloning policies of the set (`options.SPECS`),
   then the success detector (`detector`), trained on the same frames plus
   `detector_episodes` of each policy's own episodes (on seeds of their
   own: the states the policies reach, which the expert's episodes miss),
   half of them as the world model's tokenizer reconstructs them;
3. the truth: every policy in the simulator, `episodes` per task on fixed
   seeds, judged by Meta-World's own flag;
4. imagination: every policy inside the MLE and the RLVR world model of the
   same run, from the same seeds' first real frames (`imagine`), and the
   "no dynamics" baseline (the last real frame held);
5. the results: per policy and task, the true success rate against the
   detector's estimate on real simulator frames (what a perfect world model
   would give, the detector's own error), inside each world model and
   without dynamics; Pearson and Spearman correlation and mean absolute
   error over the points; the MLE against the RLVR world model paired over
   points (Wilcoxon) and episodes (McNemar); what the rollouts did (frames
   repeated, motion kept, error against the real frames by step); a scatter
   plot and a strip of one rollout (by default one where a world model's verdict is wrong).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from scipy.stats import pearsonr, spearmanr

from ...domains.video.layout import VideoTokenizer
from ...domains.video.options import VideoData
from ...domains.video.simulate import check_tasks
from ...engine import models
from ...engine.atomicwrite import save_json
from ...progress import console
from ...rundir import run_config_of
from ...stats import paired_test, round_sig
from .data import Rollouts, concat, labelled, load_arrays, run_policy, save_arrays
from .detector import Detector, accuracy, runs_of
from .imagine import Imagined, hold_last, imagine, to_uint8
from .nets import FrameNet, fit
from .options import SPEC, PolicyEvalConfig
from .policies import Policy

ESTIMATORS = {"real": "detector on real frames", "mle": "MLE world model", "rlvr": "RLVR world model",
              "hold": "no dynamics (last real frame held)"}


# ---- the run's world models and settings -------------------------------------------------------------------------
def world_models(cfg: PolicyEvalConfig) -> dict[str, Path]:
    run = Path(cfg.run)
    paths = {"mle": Path(cfg.mle) if cfg.mle else run / "mle" / "model",
             "rlvr": Path(cfg.rlvr) if cfg.rlvr else run / "rl" / "model"}
    for name, p in paths.items():
        if not (p / "config.json").is_file() or not (p / "video_tokenizer.json").is_file():
            raise ValueError(f"no video world model at {p} (the {name} model); train one with "
                             f"`rlvr-world run --domain video --out {cfg.run}` or give --{name}")
    return paths


def video_data(model: Path) -> VideoData:
    """The data options of the run the model belongs to (defaults where it has none)."""
    given = run_config_of(str(model)).get("data", {})
    known = {f.name for f in dataclasses.fields(VideoData)}
    return VideoData(**{k: v for k, v in given.items() if k in known})


def stored(path: Path, make: Callable, cls):
    """Load what an earlier run stored at `path`, or make it and store it."""
    if path.is_file():
        return load_arrays(cls, path)
    obj = make()
    save_arrays(path, obj)
    return obj


def check_settings(work: Path, settings: dict) -> None:
    """A run directory serves one set of settings; another set gets a one-line error, never mixed files."""
    path = work / "settings.json"
    settings = json.loads(json.dumps(settings))  # as JSON gives it back (tuples become lists)
    if path.is_file():
        before = json.loads(path.read_text())
        if before != settings:
            diff = sorted(k for k in settings.keys() | before.keys() if before.get(k) != settings.get(k))
            raise ValueError(f"{work} holds a policy evaluation with other settings ({', '.join(diff)}); "
                             "give another --run-dir or remove it")
    else:
        save_json(path, settings)


# ---- phase 2: networks -------------------------------------------------------------------------------------------
def reconstructed(tok: VideoTokenizer, frames: np.ndarray) -> np.ndarray:
    """Frames as the world model's tokenizer gives them back (encode, decode): same shape, uint8."""
    flat = frames.reshape(-1, *frames.shape[-3:])  # (N, H, W, 3)
    out = np.concatenate([to_uint8(tok.decode_frames(tok.frame_codes(flat[i: i + 1024])))
                          for i in range(0, len(flat), 1024)])
    return out.reshape(frames.shape)


def train_policy_net(cfg: PolicyEvalConfig, spec, train: Rollouts, recon: np.ndarray, n_tasks: int) -> FrameNet:
    """Behaviour cloning of the clean expert action on a share of each task's training episodes."""
    keep = [i for k in range(n_tasks) for i in np.flatnonzero(train.task == k)[: max(1, round(spec.data *
                                                                                           (train.task == k).sum()))]]
    ep = train.subset(keep)
    T = ep.actions.shape[1]
    frames = ep.frames[:, :T].reshape(-1, *ep.frames.shape[2:])  # (E*T, H, W, 3): the frames acted on
    alt = recon[keep][:, :T].reshape(frames.shape)
    torch.manual_seed(cfg.seed)
    net = FrameNet(n_tasks, 4)
    fit(net, frames, np.repeat(ep.task, T), ep.expert.reshape(-1, 4), "mse",
        steps=max(1, round(spec.steps * cfg.policy_steps)), batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed,
        alt=alt, description=f"policy {spec.name}")
    return net


def train_detector(cfg: PolicyEvalConfig, train: Rollouts, recon: np.ndarray, n_tasks: int) -> FrameNet:
    F = train.frames.shape[1]
    labels = train.frame_success.reshape(-1, 1).astype(np.float32)  # (E*F, 1)
    share = float(labels.mean())
    torch.manual_seed(cfg.seed)
    net = FrameNet(n_tasks, 1)
    fit(net, train.frames.reshape(-1, *train.frames.shape[2:]), np.repeat(train.task, F), labels, "bce",
        steps=cfg.detector_steps, batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed,
        alt=recon.reshape(-1, *recon.shape[2:]), pos_weight=(1 - share) / max(share, 1e-3),
        description="success detector")
    return net


def stored_net(path: Path, make: Callable[[], FrameNet]) -> FrameNet:
    if path.is_file():
        return FrameNet.load(path)[0]
    net = make()
    net.save(path)
    return net


def detector_report(det: Detector, test: Rollouts, test_recon: np.ndarray) -> dict:
    """The detector on held-out labelled episodes, as real frames and as the tokenizer reconstructs them."""
    out = {"run": det.run}
    for name, frames in (("real", test.frames), ("reconstructed", test_recon)):
        probs = det.frame_probs(frames, test.task)  # (E, F)
        out[f"frames_{name}"] = accuracy(probs >= 0.5, test.frame_success)
        out[f"episodes_{name}"] = accuracy(runs_of(probs >= 0.5, det.run), test.success)
    return out


# ---- phases 3-4: the truth and the imagined episodes ---------------------------------------------------------------
def imagined_episodes(model: torch.nn.Module, tok: VideoTokenizer, policy: Policy, truth: Rollouts, context: int,
                      temperature: float, seed: int) -> Imagined:
    steps = truth.actions.shape[1]
    gen = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    return imagine(model, tok, policy, truth.frames[:, :context], truth.actions[:, :context], truth.task,
                   truth.seed, steps, temperature=temperature, generator=gen)


# ---- phase 5: the results ----------------------------------------------------------------------------------------
def correlation(fn, x, y) -> float | None:
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None  # undefined for a constant
    return round(float(fn(x, y)[0]), 4)


def agreement(points: list[dict], est: str) -> dict:
    """How well one estimator's success rates follow the true ones over points (percent)."""
    x = np.array([p["true"] for p in points])
    y = np.array([p[est] for p in points])
    return {"pearson": correlation(pearsonr, x, y), "spearman": correlation(spearmanr, x, y),
            "mae": round(float(np.abs(y - x).mean()), 2), "bias": round(float((y - x).mean()), 2)}


def outcome_errors(called: np.ndarray, won: np.ndarray) -> dict:
    """An estimator's bias taken apart, over episodes: the share of truly failed episodes it calls successes and
    of truly successful ones it calls failures (None where there are none)."""
    def share(x: np.ndarray) -> float | None:
        return round(100 * float(x.mean()), 2) if len(x) else None

    return {"false_success": share(called[~won]), "missed_success": share(~called[won])}


def rollout_report(im: dict[str, Imagined], truth: dict[str, Rollouts], context: int, real_spread: float) -> dict:
    """What a world model's rollouts did, over every policy's episodes (`real_spread`: `policy_spread` of the
    simulator's episodes)."""
    frames = np.concatenate([im[n].frames for n in im]).astype(np.float32) / 255.0  # (E, T+1, H, W, 3)
    real = np.concatenate([truth[n].frames for n in im]).astype(np.float32) / 255.0
    codes = np.concatenate([im[n].codes for n in im])  # (E, T+1, L)
    motion = np.abs(np.diff(frames[:, context - 1:], axis=1)).mean(axis=(0, 2, 3, 4))  # (T+1-C,)
    real_motion = np.abs(np.diff(real[:, context - 1:], axis=1)).mean(axis=(0, 2, 3, 4))
    out = {"motion": round(float(motion.mean()), 5), "real_motion": round(float(real_motion.mean()), 5),
           "motion_by_step": [round(float(m), 5) for m in motion],
           "real_motion_by_step": [round(float(m), 5) for m in real_motion],
           "mae_by_step": [round(float(m), 5) for m in np.abs(frames - real)[:, context:].mean(axis=(0, 2, 3, 4))]}
    if codes.shape[-1]:
        same = (codes[:, context:] == codes[:, context - 1: -1]).all(axis=-1)  # (E, T+1-C)
        out["repeat"] = round(100 * float(same.mean()), 2)  # share of predicted frames equal to the one before
    # the first predicted frame against the real one, per policy: the world model has read the real frames and actions
    # so far, so this is its one-step error on each policy's actions (the hold baseline's: the real frame-to-frame
    # change)
    out["first_step_mae"] = {n: round(float(np.abs(im[n].frames[:, context].astype(np.float32)
                                                   - truth[n].frames[:, context]).mean()) / 255.0, 5) for n in im}
    if len(im) > 1:  # against the simulator's: a world model that follows the actions less makes it smaller
        imagined = policy_spread({n: ep.frames for n, ep in im.items()}, context)
        out["policy_spread"] = {"imagined": round(imagined, 5), "real": round(real_spread, 5),
                                "ratio": round(imagined / real_spread, 3) if real_spread else None}
    return out


def policy_spread(frames: dict[str, np.ndarray], context: int) -> float:
    """How far apart different policies' episodes from the same seeds end up: the mean absolute pixel difference
    (in [0, 1]) between two policies' frames (E, T+1, H, W, 3) at the same step, over every pair of policies,
    episode and step after the `context` frames."""
    names = list(frames)
    return float(np.mean([np.abs(frames[a][:, context:].astype(np.float32) - frames[b][:, context:]).mean() / 255.0
                          for i, a in enumerate(names) for b in names[i + 1:]]))


def summarise(cfg: PolicyEvalConfig, tasks: list[str], truth: dict[str, Rollouts], flags: dict[str, dict],
              det_report: dict, rollouts: dict, paths: dict, command: str, wall_s: float) -> dict:
    points = []
    for name, tr in truth.items():
        for k, task in enumerate(tasks):
            sel = tr.task == k
            points.append({"policy": name, "task": task, "true": round(100 * float(tr.success[sel].mean()), 2),
                           **{e: round(100 * float(flags[e][name][sel].mean()), 2) for e in ESTIMATORS}})
    per_policy = [{"policy": name, "true": round(100 * float(tr.success.mean()), 2),
                   **{e: round(100 * float(flags[e][name].mean()), 2) for e in ESTIMATORS}}
                  for name, tr in truth.items()]
    right = {e: np.concatenate([flags[e][n] == truth[n].success for n in truth]) for e in ESTIMATORS}
    won = np.concatenate([truth[n].success for n in truth])  # (all episodes,)
    task_of = np.concatenate([truth[n].task for n in truth])
    called = {e: np.concatenate([flags[e][n] for n in truth]) for e in ESTIMATORS}
    est = {e: {"label": label, **agreement(points, e), "per_policy": agreement(per_policy, e),
               "episode_agreement": round(100 * float(right[e].mean()), 2), **outcome_errors(called[e], won)}
           for e, label in ESTIMATORS.items()}
    per_task = {}
    for k, task in enumerate(tasks):
        pts = [p for p in points if p["task"] == task]
        sel = task_of == k
        per_task[task] = {e: {"mae": round(float(np.mean([abs(p[e] - p["true"]) for p in pts])), 2),
                              "episode_agreement": round(100 * float(right[e][sel].mean()), 2),
                              **outcome_errors(called[e][sel], won[sel])} for e in ESTIMATORS}
    err = {e: {"records": [{"index": i, "group": "", "value": abs(p[e] - p["true"])} for i, p in enumerate(points)]}
           for e in ("mle", "rlvr")}
    ok = {e: {"records": [{"index": i, "group": "", "value": float(v)} for i, v in enumerate(right[e])]}
          for e in ("mle", "rlvr")}
    return {
        "command": command, "wall_s": round(wall_s, 1),
        "world_models": {k: str(v) for k, v in paths.items()}, "tasks": tasks, "policies": list(truth),
        "episodes_per_task": cfg.episodes, "temperature": cfg.temperature,
        "settings": {k: v for k, v in dataclasses.asdict(cfg).items()
                     if k not in ("out", "run_dir", "threads", "strip")},
        "detector": det_report, "estimators": est, "points": points, "per_policy": per_policy, "per_task": per_task,
        # RLVR - MLE: the absolute error of the success rate over points (lower is better), and whether each
        # episode's imagined outcome matched the real one (McNemar)
        "rlvr_vs_mle": {"abs_error": paired_test(err["mle"], err["rlvr"], binary=False, scale=1.0,
                                                 lower_is_better=True),
                        "episode_agreement": paired_test(ok["mle"], ok["rlvr"])},
        "rollouts": rollouts,
    }


def percent(x: float | None) -> str:
    return "-" if x is None else f"{x}%"


def markdown(res: dict) -> str:
    lines = [f"{len(res['policies'])} policies x {len(res['tasks'])} tasks x {res['episodes_per_task']} episodes",
             "", "| estimate of the success rate | Pearson | Spearman | MAE (points) | bias | episodes agreeing | "
                 "failures called successes | successes missed |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for e in res["estimators"].values():
        lines.append(f"| {e['label']} | {e['pearson']} | {e['spearman']} | {e['mae']} | {e['bias']:+} | "
                     f"{e['episode_agreement']}% | {percent(e.get('false_success'))} | "
                     f"{percent(e.get('missed_success'))} |")
    d = res["detector"]
    lines += ["", f"detector, held-out episodes: frames {d['frames_real']['accuracy']}% real / "
              f"{d['frames_reconstructed']['accuracy']}% reconstructed; episodes {d['episodes_real']['accuracy']}% / "
              f"{d['episodes_reconstructed']['accuracy']}%"]
    a = res["rlvr_vs_mle"]["abs_error"]
    if a:
        lines.append(f"RLVR - MLE absolute error: {a['delta']:+} points (Wilcoxon p = {round_sig(a['p'], 3)})")
    spread = {w: r["policy_spread"] for w, r in res["rollouts"].items() if (r.get("policy_spread") or {}).get("ratio")}
    if spread:
        lines.append("different policies' frames from the same seed, imagined / in the simulator: "
                     + ", ".join(f"{w} {s['ratio']}x" for w, s in spread.items()))
    return "\n".join(lines)


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(ESTIMATORS), figsize=(4.2 * len(ESTIMATORS), 4.4), sharey=True)
    markers = "osD^vP*X"
    for ax, (e, label) in zip(axes, ESTIMATORS.items()):
        for i, name in enumerate(res["policies"]):
            for j, task in enumerate(res["tasks"]):
                p = next(q for q in res["points"] if q["policy"] == name and q["task"] == task)
                ax.scatter(p["true"], p[e], color=f"C{i}", marker=markers[j % len(markers)], s=36,
                           label=name if j == 0 else None)
        ax.plot([0, 100], [0, 100], color="grey", lw=1, ls="--")
        s = res["estimators"][e]
        ax.set_title(f"{label}\nSpearman {s['spearman']}, MAE {s['mae']}", fontsize=9)
        ax.set_xlabel("true success (%)")
        ax.set_xlim(-5, 105)
        ax.set_ylim(-5, 105)
    axes[0].set_ylabel("estimated success (%)")
    axes[0].legend(fontsize=7, loc="upper left")
    fig.suptitle("marker: task (" + ", ".join(f"{markers[j]} {t}" for j, t in enumerate(res["tasks"])) + ")",
                 fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def strip(truth: Rollouts, imagined: dict[str, Imagined], flags: dict[str, np.ndarray], task_names: list[str],
          policy: str, task: str, path: Path, every: int = 2) -> dict:
    """One episode of `policy` (on `task`, or any) side by side: the simulator, then each world model, each row with
    its verdict (the simulator's own flag; the detector's on the world models' frames). It shows the first episode in
    which a world model's verdict differs from the simulator's (where the world models fail), else the first true
    success, else the first episode; returns which episode it shows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mine = truth.task == task_names.index(task) if task else np.ones(len(truth), dtype=bool)
    differs = np.any([flags[w] != truth.success for w in imagined], axis=0)
    e = int(np.flatnonzero(next(c for c in (mine & differs, mine & truth.success, mine) if c.any()))[0])
    verdict = {"simulator": truth.success[e], **{w: flags[w][e] for w in imagined}}
    rows = {"simulator": truth.frames[e], **{name: im.frames[e] for name, im in imagined.items()}}
    cols = list(range(0, truth.frames.shape[1], every))
    mosaic = np.concatenate([np.concatenate([f[t] for t in cols], axis=1) for f in rows.values()], axis=0)
    H = truth.frames.shape[2]
    fig, ax = plt.subplots(figsize=(len(cols) * 0.9, len(rows) * 1.0))
    ax.imshow(mosaic)
    ax.set_yticks([H * (i + 0.5) for i in range(len(rows))],
                  [f"{name}\n{'success' if verdict[name] else 'failure'}" for name in rows], fontsize=8)
    ax.set_xticks([H * (i + 0.5) for i in range(len(cols))], [f"t={t}" for t in cols], fontsize=7)
    ax.set_title(f"{policy} on {task_names[int(truth.task[e])]} (episode seed {int(truth.seed[e])}; simulator: "
                 "Meta-World's flag, world models: the detector's verdict)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return {"policy": policy, "task": task_names[int(truth.task[e])], "seed": int(truth.seed[e]),
            "verdicts": {name: bool(v) for name, v in verdict.items()}}


# ---- the command -------------------------------------------------------------------------------------------------
def run_policy_eval(cfg: PolicyEvalConfig, command: str) -> dict:
    start = time.monotonic()
    paths = world_models(cfg)
    data = video_data(paths["mle"])
    sim_cfg = data.sim_config()
    tasks = list(cfg.tasks or sim_cfg.tasks)
    check_tasks(tasks)
    strip_task = cfg.strip.partition(":")[2]
    if strip_task and strip_task not in tasks:
        raise ValueError(f"--strip {cfg.strip}: {strip_task!r} is not among the evaluated tasks ({', '.join(tasks)})")
    sim_cfg = dataclasses.replace(sim_cfg, tasks=tasks)
    work = Path(cfg.run_dir)
    check_settings(work, {"sim": dataclasses.asdict(sim_cfg), "world_models": {k: str(v) for k, v in paths.items()},
                          **{k: v for k, v in dataclasses.asdict(cfg).items()
                             if k not in ("out", "run_dir", "threads", "device", "policies", "strip")}})
    tok = VideoTokenizer.from_pretrained(paths["mle"])

    # 1. labelled data
    train = stored(work / "train.npz", lambda: labelled(sim_cfg, tasks, cfg.train_episodes, "train"), Rollouts)
    test = stored(work / "test.npz", lambda: labelled(sim_cfg, tasks, cfg.test_episodes, "test"), Rollouts)
    recon = reconstructed(tok, train.frames)

    # 2. networks
    specs = [SPEC[name] for name in cfg.policies]
    nets = {}
    for spec in specs:
        key = spec.net or spec.name
        if not spec.random and key not in nets:
            nets[key] = stored_net(work / "policies" / f"{key}.safetensors",
                                   lambda: train_policy_net(cfg, SPEC[key], train, recon, len(tasks)))
    policies = {s.name: Policy(s, nets.get(s.net or s.name)) for s in specs}
    extra = [stored(work / "detector-data" / f"{name}.npz",
                    lambda: run_policy(sim_cfg, tasks, cfg.detector_episodes, pol, name, purpose="detector"), Rollouts)
             for name, pol in policies.items()] if cfg.detector_episodes else []
    det_train = concat([train, *extra])
    det_recon = np.concatenate([recon, *(reconstructed(tok, r.frames) for r in extra)])
    detector = Detector(stored_net(work / "detector.safetensors",
                                   lambda: train_detector(cfg, det_train, det_recon, len(tasks))),
                        run=cfg.detector_frames)
    det_report = detector_report(detector, test, reconstructed(tok, test.frames))
    console.print(f"detector on held-out frames: {det_report['frames_real']['accuracy']}% real, "
                  f"{det_report['frames_reconstructed']['accuracy']}% reconstructed")

    # 3. the truth
    truth = {name: stored(work / "truth" / f"{name}.npz", lambda: run_policy(sim_cfg, tasks, cfg.episodes, pol, name),
                          Rollouts) for name, pol in policies.items()}

    # 4. imagination
    from ... import device as dev

    device = dev.pick_device(cfg.device)
    imagined: dict[str, dict[str, Imagined]] = {}
    for world, path in paths.items():
        model = models.load(path).to(device)
        imagined[world] = {}
        for name, pol in policies.items():
            def make():
                console.print(f"{name} inside the {world} world model")
                return imagined_episodes(model, tok, pol, truth[name], data.context, cfg.temperature, cfg.seed)

            imagined[world][name] = stored(work / "imagined" / world / f"{name}.npz", make, Imagined)
    imagined["hold"] = {name: hold_last(tr.frames[:, :data.context], tr.actions[:, :data.context],
                                        tr.actions.shape[1]) for name, tr in truth.items()}

    # 5. results
    flags = {"real": {n: detector.episodes(tr.frames, tr.task) for n, tr in truth.items()}}
    for world, ims in imagined.items():
        flags[world] = {n: detector.episodes(ims[n].frames, truth[n].task) for n in truth}
    real_spread = policy_spread({n: tr.frames for n, tr in truth.items()}, data.context) if len(truth) > 1 else 0.0
    rollouts = {w: rollout_report(imagined[w], truth, data.context, real_spread) for w in ("mle", "rlvr", "hold")}
    res = summarise(cfg, tasks, truth, flags, det_report, rollouts, paths, command, time.monotonic() - start)
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    shown = cfg.strip.partition(":")[0] or cfg.policies[0]
    res["strip"] = strip(truth[shown], {w: imagined[w][shown] for w in ("mle", "rlvr")},
                         {w: flags[w][shown] for w in ("mle", "rlvr")}, tasks, shown, strip_task,
                         out.with_name(out.stem + "-rollout.png"))
    save_json(out, res)
    plot(res, out.with_suffix(".png"))
    return res
