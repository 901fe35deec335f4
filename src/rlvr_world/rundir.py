"""A run directory that knows what it holds, and is used by one run at a time.

Before its first phase a run records every phase's fingerprint: the options
that phase's outputs depend on and a hash of the examples it reads
(`phases.json`). `--resume` continues a phase only when its fingerprint is
unchanged, and refuses otherwise with one line naming the options that differ.
A fresh run never mixes with an old one: it refuses a directory that holds
anything unless asked to `--overwrite` (which clears only what runs write).
A lock (`flock` on `.lock`, released by the kernel when its process dies, so it
is never stale) keeps a second run out while one is using the directory.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, Sequence

# The options each phase's outputs depend on, by dotted prefix, on top of those of the phases it starts from.
PHASES = {
    "tokenizer": ((), ("domain", "data", "vocab_size", "model.init_from")),
    "mle": (("tokenizer",), ("model", "mle")),
    "eval_mle": (("mle",), ("eval_limit", "eval_balanced", "max_new_tokens")),
    "rl": (("mle",), ("rl",)),
    "eval_rlvr": (("rl", "eval_mle"), ()),
}
# Options that never change what a phase computes: how often it saves or evaluates on the side.
HARMLESS = ("mle.save_every", "rl.save_every", "rl.eval_every", "log")
# Options an interrupted phase may change on resume: RL's prompt batches are the same for any step count and its
# learning rate is constant, so more (or fewer) steps continue the same run. A finished phase is held to them.
EXTENDABLE = ("rl.steps",)
# Data options that shape RL's prompts alone (`data.rl_unchanged_ratio`, video's `data.rl_settings`): the phases
# before RL never read them, so RL may be re-run from a finished MLE model with others.
RL_DATA = "data.rl_"
# Options added after runs were recorded, with the value that does what those runs did: a recorded phase without
# the option was made with that value.
ADDED = {"rl.scale": "group", "rl.advantage": "grpo", "rl.balance_strata": False}
# What a run writes into its directory (`--overwrite` clears these and nothing else).
RUN_FILES = ("config.json", "phases.json", "timings.json", "results.json", "results.md", "results.png",
             "eval_mle.json", "eval_rlvr.json", "eval_mle.partial.jsonl", "eval_rlvr.partial.jsonl", "tokenizer", "mle",
             "rl", "bridge")
RANK_FILE = re.compile(r"eval_(mle|rlvr)\.partial\.\d+\.jsonl")  # the other processes' records of a torchrun run


class RunDirError(ValueError):
    """A run directory that cannot be used as asked."""


def flatten(cfg: Any, prefix: str = "") -> dict[str, Any]:
    """A nested dataclass as {"mle.lr": 0.0003, ...}."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            out.update(flatten(value, prefix + f.name + "."))
        else:
            out[prefix + f.name] = value
    return out


def options_of(phase: str) -> tuple[str, ...]:
    """Every option prefix `phase` depends on, its own and its inputs'."""
    inputs, own = PHASES[phase]
    return tuple(p for i in inputs for p in options_of(i)) + own


def depends(phase: str, option: str) -> bool:
    """Whether `phase`'s outputs depend on `option` (a dotted name)."""
    prefixes = options_of(phase)
    if option in HARMLESS or (option.startswith(RL_DATA) and "rl" not in prefixes):
        return False
    return any(option == p or option.startswith(p + ".") for p in prefixes)


def fingerprint(cfg: Any, phase: str, data_hash: str = "") -> dict[str, Any]:
    """The options (and examples) a phase's outputs depend on, JSON-ready."""
    fp = {k: v for k, v in flatten(cfg).items() if depends(phase, k)}
    fp = json.loads(json.dumps(fp, default=str))  # lists and tuples compare alike once stored
    if data_hash:
        fp["examples"] = data_hash
    return fp


def examples_hash(examples: Sequence) -> str:
    """A short hash of examples' prompt and target ids: changed data means a changed fingerprint."""
    h = hashlib.sha256()
    for e in examples:
        h.update(repr((list(e.prompt_ids), list(e.target_ids))).encode())
    return h.hexdigest()[:16]


def differences(stored: dict, now: dict, ignore: tuple[str, ...] = ()) -> list[str]:
    """`option=stored (now new)` for every option that differs."""
    keys = sorted((set(stored) | set(now)) - set(ignore))
    return [f"{k}={stored.get(k, '(unset)')!r} (now {now.get(k, '(unset)')!r})" for k in keys
            if stored.get(k) != now.get(k)]


class RunDir:
    """The phases' fingerprints in `out/phases.json`, checked on resume."""

    def __init__(self, out: Path):
        self.out = out
        self.path = out / "phases.json"
        self.trust_unrecorded = False  # a directory from before fingerprints existed (no phases.json): trusted

    def stored(self) -> dict[str, dict] | None:
        if not self.path.is_file():
            return None
        try:
            data = json.loads(self.path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise RunDirError(f"{self.path} is damaged: start over with --overwrite or use another --out") from None
        return data if isinstance(data, dict) else {}

    def check(self, phase: str, fp: dict, finished: bool, ignore: tuple[str, ...] = ()) -> None:
        """Refuse to continue `phase`'s saved work when it was made with other options or examples.

        A directory written before fingerprints existed (`trust_unrecorded`) is trusted, as it always was.
        """
        if self.trust_unrecorded:
            return
        stored = self.stored() or {}
        if phase not in stored:
            raise RunDirError(f"{self.out} holds {phase} work of unknown origin: start over with --overwrite "
                              f"or use another --out")
        # a phase recorded before RL_DATA existed lists RL's data options too: they never shaped it
        made = {**{k: v for k, v in ADDED.items() if k in fp},
                **{k: v for k, v in stored[phase].items() if k == "examples" or depends(phase, k)}}
        diff = differences(made, fp, ignore + (() if finished else EXTENDABLE))
        if diff:
            more = f" and {len(diff) - 3} more" if len(diff) > 3 else ""
            raise RunDirError(f"{self.out} holds {phase} work made with other options: {'; '.join(diff[:3])}{more}; "
                              f"run with those, use another --out, or --overwrite to start over")

    def record(self, fingerprints: dict[str, dict]) -> None:
        """Every phase's fingerprint, as this run makes (or continues) it."""
        from .engine.checkpoint import save_json

        save_json(self.path, fingerprints)


def prepare(out: Path, resume: bool, overwrite: bool, results: Path) -> None:
    """Refuse a fresh run into a directory that holds anything, unless asked to overwrite a run's outputs
    (those in RUN_FILES, and the results file with what goes beside it when `results` lies in `out`)."""
    if out.exists() and not out.is_dir():
        raise RunDirError(f"--out {out} is a file, not a directory")
    if resume or not out.is_dir():
        return
    entries = [p.name for p in out.iterdir() if p.name != ".lock"]
    if not entries:
        return
    if not overwrite:
        raise RunDirError(f"{out} already holds a run: continue it with --resume, start over with --overwrite, "
                          f"or use another --out")
    beside = results.stem if results.parent.resolve() == out.resolve() else None
    foreign = sorted(n for n in set(entries) - set(RUN_FILES) - {n + ".tmp" for n in RUN_FILES}
                     if not (beside and n.startswith(beside)) and not RANK_FILE.fullmatch(n))
    if foreign:
        raise RunDirError(f"{out} holds files no run writes ({', '.join(foreign[:3])}): not clearing it; "
                          f"use another --out")
    for name in entries:
        p = out / name
        shutil.rmtree(p) if p.is_dir() else p.unlink()


def run_config_of(model: str) -> dict:
    """The `config.json` of the run a model directory belongs to (`RUN/mle/model`, `RUN/rl/model`), or {}."""
    path = Path(model).parent.parent / "config.json"
    try:
        cfg = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return cfg if isinstance(cfg, dict) and isinstance(cfg.get("data"), dict) else {}


class Lock:
    """An exclusive lock on a run directory for as long as this process holds it."""

    def __init__(self, out: Path):
        self.path = out / ".lock"
        self.fd: int | None = None

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise RunDirError(f"another run (pid {holder}) is using {self.path.parent}: wait for it, "
                              f"or use another --out") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self.fd = fd
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None
        return False
