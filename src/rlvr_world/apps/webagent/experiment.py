"""`rlvr-world agent`: fit the value function, run every agent on the same seeded episodes, write the results.

Phases, each continuing where a stopped run left it (records in `run_dir`):

1. value data: the proposal policy alone on `value_episodes` episodes per
   task, on seeds of their own (`mpc.episode_seed(..., "value")`), every step
   labelled with its episode's real outcome;
2. the value function: fitted on three quarters of those episodes, its AUC
   measured on the other quarter (or loaded from `--value`);
3. the agents: the policy alone, MPC with the oracle world and with each world
   model given, on the same `episodes` test seeds per task;
4. the results: success per agent overall and per task with 95% intervals,
   McNemar's test between agents on the paired episodes, world-model calls
   and wall time per episode, and how well the world models predicted the
   pages of the actions they chose.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
from scipy.stats import binomtest

from ...domains.web.browser import Browser
from ...domains.web.collect import task_url
from ...engine.atomicwrite import save_json
from ...progress import advance, bar, console, skip
from ...stats import paired_test
from .mpc import as_record, episode_seed, planner, policy_alone, run_with_retry
from .options import AgentConfig
from .value import FEATURES, JudgeValue, LearnedValue, auc, features
from .worlds import OracleWorld, World, endpoint, in_process

PAIRS = [("oracle", "policy"), ("mle", "policy"), ("rlvr", "policy"), ("rlvr", "mle"), ("oracle", "rlvr")]


class Records:
    """Episode records in a JSON-lines file, appended one by one; each names the settings that make it comparable
    (a record made with other settings is not reused)."""

    def __init__(self, path: Path):
        self.path = path
        self.done: dict[tuple, dict] = {}
        if path.is_file():
            for line in path.read_text().splitlines():
                r = json.loads(line)
                self.done[(r.get("settings"), r["agent"], r["task"], r["seed"])] = r

    @staticmethod
    def key(settings: dict) -> str:
        return json.dumps(settings, sort_keys=True)

    def get(self, settings: dict, agent: str, task: str, seed: int) -> dict | None:
        return self.done.get((self.key(settings), agent, task, seed))

    def add(self, settings: dict, record: dict) -> None:
        record = {**record, "settings": self.key(settings)}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        self.done[(record["settings"], record["agent"], record["task"], record["seed"])] = record


def world_model(spec: str, cfg: AgentConfig) -> World:
    if spec.startswith(("http://", "https://")):
        return endpoint(spec, max_tokens=cfg.max_tokens)
    return in_process(spec, device=cfg.device, dtype=cfg.dtype, max_tokens=cfg.max_tokens)


def world_key(spec: str) -> str:
    """What identifies a world model in the records: a directory's path and when its files last changed (a model
    trained again in the same place is another model)."""
    path = Path(spec)
    if spec and path.is_dir():
        return f"{spec}@{max((f.stat().st_mtime_ns for f in path.iterdir()), default=0)}"
    return spec


def run_agents(cfg: AgentConfig, command: str) -> dict:
    """All phases; returns (and writes to `cfg.out`) the results."""
    for task in cfg.tasks:
        task_url(task)  # an unknown task fails before any browser starts
    run = Path(cfg.run_dir)
    common = {"k": cfg.k, "max_steps": cfg.max_steps, "settle_s": cfg.settle_s}
    browser, oracle = Browser(), OracleWorld(settle_s=cfg.settle_s) if cfg.oracle else None
    try:
        value, value_report, browser = fit_value(cfg, run, common, browser)
        agents = {"policy": (policy_alone, None)}
        if oracle is not None:
            agents["oracle"] = (planner(oracle, value, cfg.max_steps), oracle)
        for name, spec in (("mle", cfg.mle), ("rlvr", cfg.rlvr)):
            if spec:
                world = world_model(spec, cfg)
                agents[name] = (planner(world, value, cfg.max_steps), world)
        value_key = value_report.get("weights") if value_report["kind"] == "learned" else value_report["judge"]
        records = Records(run / "episodes.jsonl")
        settings = {name: {**common, "agent": name, "world": world_key(spec), "value": value_key}
                    for name, spec in (("oracle", "browser"), ("mle", cfg.mle), ("rlvr", cfg.rlvr))}
        settings["policy"] = {**common, "agent": "policy"}  # plans with nothing
        jobs = [(task, episode_seed(task, i, cfg.seeds)) for i in range(cfg.episodes) for task in cfg.tasks]
        out: dict[str, list[dict]] = {name: [] for name in agents}
        with bar("agents", total=len(jobs) * len(agents)) as progress:
            for task, seed in jobs:
                for name, (choose, world) in agents.items():
                    r = records.get(settings[name], name, task, seed)
                    step = skip if r is not None else advance  # episodes from before a resume: not in the rate
                    if r is None:
                        result, browser = run_with_retry(Browser, browser, name, choose, task, seed, world=world,
                                                         log=console.print, **common)
                        r = as_record(result)
                        records.add(settings[name], r)
                    out[name].append(r)
                    step(progress, 1, " ".join(f"{n} {100 * np.mean([x['success'] for x in v]):.0f}%"
                                               for n, v in out.items() if v))
    finally:
        browser.close()
        if oracle is not None:
            oracle.close()
    res = summarise(cfg, out, value_report, command)
    save_json(Path(cfg.out), res)
    plot(res, Path(cfg.out).with_suffix(".png"))
    return res


def fit_value(cfg: AgentConfig, run: Path, common: dict, browser: Browser) -> tuple[LearnedValue, dict, Browser]:
    """The value function: loaded from `cfg.value`, or fitted on the policy's own labelled episodes."""
    if cfg.value:
        value = LearnedValue.load(cfg.value)
        return value, {"kind": "learned", "path": cfg.value, "weights": value.named_weights()}, browser
    records, settings = Records(run / "value-episodes.jsonl"), {**common, "agent": "policy", "trace": 2}
    jobs = [(task, episode_seed(task, i, "value")) for i in range(cfg.value_episodes) for task in cfg.tasks]
    episodes = []
    with bar("value data", total=len(jobs)) as progress:
        for task, seed in jobs:
            r = records.get(settings, "policy", task, seed)
            step = skip if r is not None else advance
            if r is None:
                result, browser = run_with_retry(Browser, browser, "policy", policy_alone, task, seed,
                                                 log=console.print, **common)
                r = as_record(result, with_trace=True)
                records.add(settings, r)
            episodes.append(r)
            step(progress, 1, f"{100 * np.mean([e['success'] for e in episodes]):.0f}% successes")
    value, report = fit_and_measure(episodes, split=cfg.value_target == "ends",
                                    judge=JudgeValue(cfg.judge, dtype=cfg.dtype) if cfg.judge else None)
    if isinstance(value, LearnedValue):
        value.save(run / "value.json")
    return value, report, browser


def fit_and_measure(episodes: list[dict], held_out: float = 0.25, seed: int = 0, split: bool = True,
                    judge: JudgeValue | None = None) -> tuple[LearnedValue | JudgeValue, dict]:
    """Fit on most episodes and measure AUC (step level) on the rest; the learned value is then refitted on all.

    With a `judge`, it is measured on the same held-out steps, and whichever has the higher AUC is returned.
    """
    order = list(range(len(episodes)))
    random.Random(seed).shuffle(order)
    test = set(order[: max(1, round(held_out * len(order)))])
    steps = [(i, s) for i in range(len(episodes)) for s in episodes[i]["trace"]]
    x = np.array([features(s["goal"], s["before"], s["after"], s["action"]) for _, s in steps])
    x = x.reshape(-1, len(FEATURES))  # (N, F)
    y = np.array([float(episodes[i]["success"]) for i, _ in steps])  # (N,)
    left = np.array([s["steps_left"] for _, s in steps], dtype=int)  # (N,)
    held = np.array([i in test for i, _ in steps], dtype=bool)  # (N,)
    x_train, y_train, x_test, y_test = x[~held], y[~held], x[held], y[held]
    scores = LearnedValue.fit(x_train, y_train, left[~held], split=split).logits(x_test, left[held])
    value = LearnedValue.fit(x, y, left, split=split)
    ends = x_test[:, FEATURES.index("ends")] > 0
    report = {
        "kind": "learned", "target": "ends" if split else "all",
        "episodes": len(episodes), "steps": int(len(y_train) + len(y_test)),
        "successful_episodes": int(sum(e["success"] for e in episodes)),
        "held_out_episodes": len(test), "held_out_steps": int(len(y_test)),
        "held_out_auc": round(auc(scores, y_test), 4),
        "held_out_accuracy": round(float(np.mean((scores > 0) == (y_test > 0))), 4) if len(y_test) else None,
        "held_out_ending_steps": int(ends.sum()),
        "held_out_ending_auc": round(auc(scores[ends], y_test[ends]), 4),  # where the step's label is its own reward
        "weights": value.named_weights(),
    }
    if judge is None:
        return value, report
    held_steps = [s for i, s in steps if i in test]
    judged = np.array([judge.score(s["goal"], s["before"], s["after"], s["action"], s["steps_left"])
                       for s in progress_over(held_steps, "judge on held-out steps")])
    report["judge"] = {"model": judge.spec, "held_out_auc": round(auc(judged, y_test), 4),
                       "held_out_accuracy": round(float(np.mean((judged > 0) == (y_test > 0))), 4)}
    if report["judge"]["held_out_auc"] > report["held_out_auc"]:
        return judge, {**report, "kind": "judge"}
    return value, report


def progress_over(items: list, description: str):
    with bar(description, total=len(items)) as progress:
        for item in items:
            yield item
            advance(progress)


def rate(successes: int, n: int) -> dict:
    ci = binomtest(successes, n).proportion_ci(method="wilson") if n else None
    return {"success": round(100 * successes / n, 2) if n else None, "n": n,
            "ci95": [round(100 * ci.low, 2), round(100 * ci.high, 2)] if ci else None}


def summarise(cfg: AgentConfig, out: dict[str, list[dict]], value_report: dict, command: str) -> dict:
    agents = {}
    for name, recs in out.items():
        f1 = [x for r in recs for x in r["changed_f1"]]
        agents[name] = {
            **rate(sum(r["success"] for r in recs), len(recs)),
            "per_task": {t: rate(sum(r["success"] for r in recs if r["task"] == t),
                                 sum(r["task"] == t for r in recs)) for t in cfg.tasks},
            "world_calls_per_episode": round(float(np.mean([r["world_calls"] for r in recs])), 2),
            "wall_s_per_episode": round(float(np.mean([r["wall_s"] for r in recs])), 2),
            "steps_per_episode": round(float(np.mean([r["steps"] for r in recs])), 2),
            "took_other_than_policy": round(float(np.mean([i > 0 for r in recs for i in r["chosen"]] or [0])), 4),
            "chosen_changed_f1": round(100 * float(np.mean(f1)), 2) if f1 else None,
            "missed_ends": int(sum(r["missed_end"] for r in recs)),
            "failed_pages": [f"{r['task']} seed {r['seed']}: {r['error']}" for r in recs if r["error"]],
        }
    if "oracle" in out:
        for name in ("mle", "rlvr"):
            if name in out:
                agents[name]["against_oracle"] = against_oracle(out[name], out["oracle"])
    pairs = {}
    for a, b in PAIRS:
        if a in out and b in out:
            as_eval = {n: {"records": [{"index": i, "group": r["task"], "value": float(r["success"])}
                                       for i, r in enumerate(out[n])]} for n in (a, b)}
            pairs[f"{a} vs {b}"] = paired_test(as_eval[b], as_eval[a], binary=True)
    return {"command": command, "tasks": cfg.tasks, "episodes_per_task": cfg.episodes, "seed_set": cfg.seeds,
            "k": cfg.k,
            "max_steps": cfg.max_steps, "world_models": {"mle": cfg.mle, "rlvr": cfg.rlvr},
            "value_function": value_report, "agents": agents, "paired": pairs,
            "seeds": [r["seed"] for r in next(iter(out.values()))]}


def against_oracle(recs: list[dict], oracle: list[dict]) -> dict:
    """Where a world-model agent's choices part from the oracle's, on the same episodes (paired by order).

    At the first step both see the same page and the same candidates, so the
    share of first choices that match the oracle's measures the world model
    as a decision aid. The episodes the oracle won and this agent lost are
    counted with what the world model got wrong in them: an episode ending
    its chosen action caused but its predicted page did not show, and how
    well it predicted the real changes of the actions it chose (F1).
    """
    first = [r["chosen"][0] == o["chosen"][0] for r, o in zip(recs, oracle) if r["chosen"] and o["chosen"]]
    lost = [r for r, o in zip(recs, oracle) if o["success"] and not r["success"]]
    won = [r for r, o in zip(recs, oracle) if r["success"] and not o["success"]]
    f1 = [x for r in lost for x in r["changed_f1"]]
    return {"first_choice_as_oracle": round(100 * float(np.mean(first)), 2) if first else None,
            "lost_where_oracle_won": len(lost), "won_where_oracle_lost": len(won),
            "lost_with_missed_end": sum(r["missed_end"] > 0 for r in lost),
            "lost_chosen_changed_f1": round(100 * float(np.mean(f1)), 2) if f1 else None}


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(res["agents"])
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(14, 4.5), gridspec_kw={"width_ratios": [1, 4]})
    for i, n in enumerate(names):
        a = res["agents"][n]
        ax.bar(i, a["success"], color=f"C{i}")
        ax.errorbar(i, a["success"], yerr=[[a["success"] - a["ci95"][0]], [a["ci95"][1] - a["success"]]], color="k",
                    capsize=4)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("success (%), 95% interval")
    ax.set_title(f"{len(res['tasks'])} tasks x {res['episodes_per_task']} episodes")
    width = 0.8 / len(names)
    for i, n in enumerate(names):
        per = res["agents"][n]["per_task"]
        bx.bar(np.arange(len(res["tasks"])) + i * width, [per[t]["success"] or 0 for t in res["tasks"]], width,
               label=n, color=f"C{i}")
    bx.set_xticks(np.arange(len(res["tasks"])) + 0.4 - width / 2, res["tasks"], rotation=30, ha="right", fontsize=8)
    bx.set_ylabel("success (%)")
    bx.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(res: dict) -> str:
    """The results as a table: success per agent, and the paired tests."""
    v = res["value_function"]
    lines = [f"MiniWoB++: {len(res['tasks'])} tasks x {res['episodes_per_task']} episodes, "
             f"{res['k']} candidates a step",
             "", "| agent | success % (95% interval) | world-model calls / episode | s / episode |",
             "|---|---|---|---|"]
    for name, a in res["agents"].items():
        lines.append(f"| {name} | {a['success']:.1f} ({a['ci95'][0]:.1f}-{a['ci95'][1]:.1f}) | "
                     f"{a['world_calls_per_episode']:.1f} | {a['wall_s_per_episode']:.1f} |")
    for name, a in res["agents"].items():
        if "against_oracle" in a:
            o = a["against_oracle"]
            lines.append(f"{name}: first choice as the oracle's in {o['first_choice_as_oracle']}% of episodes; "
                         f"lost {o['lost_where_oracle_won']} the oracle won ({o['lost_with_missed_end']} with a missed "
                         f"episode end), won {o['won_where_oracle_lost']} it lost")
    lines += ["", *(f"{pair}: {t['delta']:+.1f} points, McNemar p = {t['p']:.3g} ({t['gained']} won, {t['lost']} lost)"
                    for pair, t in res["paired"].items() if t)]
    if "held_out_auc" in v:
        lines += ["", f"value function: held-out AUC {v['held_out_auc']:.3f} on {v['held_out_steps']} steps "
                      f"of {v['held_out_episodes']} episodes"]
    if "judge" in v:
        lines += [f"judge ({v['judge']['model']}): held-out AUC {v['judge']['held_out_auc']:.3f}; planning with the "
                  f"{v['kind']} value function"]
    return "\n".join(lines)
