"""A run directory that knows what it holds, and is used by one run at a time.

A run is a sequence of phases, each declared once (`Phase`): the engine's
(`PHASES`: tokenizer, MLE, its evaluation, RL, its evaluation) and any stage
of the run's domain (`Domain.stages`, e.g. data collected before the
tokenizer). Everything a run does with a phase follows from its declaration:
its fingerprint, its place in the order, whether `--resume` loads it,
continues it or runs it, what `--overwrite` clears, its line in
`timings.json`.

Before its first phase that reads examples a run records every phase's
fingerprint: the options that phase's outputs depend on, a hash of the
examples it reads and one of any file its options name for it to read (the
adapter a run starts from: `Phase.reads`) (`phases.json`). `--resume` continues a phase only when its
fingerprint is unchanged, and refuses otherwise with one line naming the
options that differ. A fresh run never mixes with an old one: it refuses a
directory that holds anything unless asked to `--overwrite` (which clears only
what runs write). A lock (`flock` on `.lock`, released by the kernel when its
process dies, so it is never stale) keeps a second run out while one is using
the directory.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from .cache import files_sha256
from .engine.errors import UserError


@dataclass(frozen=True)
class Phase:
    """One phase of a run, declared once.

    Paths are relative to the run directory and may be glob patterns (e.g. the other processes' partial files of a
    `torchrun` run). An option pattern is a dotted prefix (`mle` binds `mle.lr`) or ends in `*` (`data.rl_*`); an
    option several phases name belongs to the most specific pattern (RL's `data.rl_*` over the tokenizer's `data`),
    so that RL may be re-run from a finished MLE model with other RL data.
    """

    name: str
    after: tuple[str, ...] = ()  # the phases it starts from: their options and examples are its own too
    options: tuple[str, ...] = ()  # what its outputs depend on, besides what those of the phases it starts from do
    harmless: tuple[str, ...] = ()  # its options that never change what it computes (how often it saves, ...)
    examples: tuple[str, ...] = ()  # the example sets (`EXAMPLE_SETS`) it reads, hashed into its fingerprint
    # options that name a file or folder it reads (e.g. the adapter it starts from): when set, a hash of what the
    # path holds joins its fingerprint as `OPTION#sha256`, so that other contents under the same path are refused
    reads: tuple[str, ...] = ()
    finished: str = ""  # what a finished phase leaves: on --resume it is loaded instead ("": it runs every time)
    partial: tuple[str, ...] = ()  # what an interrupted one leaves, which --resume continues
    scratch: tuple[str, ...] = ()  # what else it writes into the run directory, redone every time
    # options an interrupted phase may change on resume (a finished one is held to them)
    extendable: tuple[str, ...] = ()
    # options added after runs were recorded, with the value that does what those runs did: a recorded phase
    # without the option was made with that value
    added: Mapping[str, Any] = field(default_factory=dict)
    # how it runs, and how a finished one is read back (None: it returns nothing then); each is called with the
    # run (the pipeline for the engine's phases, an `engine.domain.StageContext` for a domain's stage) and returns
    # what the phases after it read
    run: Callable[[Any], Any] | None = None
    load: Callable[[Any], Any] | None = None
    on_main: bool = False  # under torchrun, process 0 alone runs it and the others wait (e.g. data for a cache)

    def saved(self) -> tuple[str, ...]:
        """The paths of its saved work: found on --resume, the phase is checked against its fingerprint."""
        return tuple(p for p in (self.finished, *self.partial) if p)

    def files(self) -> tuple[str, ...]:
        """The names (or patterns) in the run directory that hold its outputs, for --overwrite."""
        return tuple(dict.fromkeys(p.split("/")[0] for p in (*self.saved(), *self.scratch)))


EXAMPLE_SETS = ("train", "rl", "test")  # MLE's examples, RL's prompts, the final evaluations' (hashed in this order)

# The engine's phases, in order. Their `run` and `load` get the pipeline (`pipeline.Pipeline`): `run.got` holds
# what the phases before returned, `run.examples` the examples they read.
PHASES = {p.name: p for p in (
    # (loading, `train_tokenizer()` trains again over a tokenizer left half-written)
    Phase("tokenizer", options=("domain", "data", "vocab_size", "model.init_from"), finished="tokenizer",
          run=lambda run: run.train_tokenizer(), load=lambda run: run.train_tokenizer()),
    # MLE starts from the pretrained model, or from a saved adapter on it (`model.init_adapter`), which it reads
    Phase("mle", after=("tokenizer",), options=("model", "mle"), harmless=("mle.save_every",), examples=("train",),
          reads=("model.init_adapter",), finished="mle/model/config.json",
          partial=("mle/checkpoint", "mle/checkpoint.old"), added={"model.init_adapter": ""},
          run=lambda run: run.train_mle(run.got["tokenizer"], run.examples.train),
          load=lambda run: run.saved_model("mle/model")),
    Phase("eval_mle", after=("mle",), options=("eval_limit", "eval_balanced", "max_new_tokens"), examples=("test",),
          finished="eval_mle.json", partial=("eval_mle.partial.jsonl", "eval_mle.partial.[0-9]*.jsonl"),
          run=lambda run: run.final_eval("mle", run.got["mle"], run.domain, run.examples.test),
          load=lambda run: run.saved_eval("mle")),
    # RL's prompt batches are the same for any step count and its learning rate is constant, so an interrupted
    # RL phase continues with more (or fewer) steps
    Phase("rl", after=("mle",), options=("rl", "data.rl_*"), harmless=("rl.save_every", "rl.eval_every"),
          examples=("rl",), finished="rl/model/config.json", partial=("rl/checkpoint", "rl/checkpoint.old"),
          extendable=("rl.steps",),
          added={"rl.scale": "group", "rl.advantage": "grpo", "rl.balance_strata": False, "rl.balance_axis": False},
          run=lambda run: run.train_rl(run.got["tokenizer"], run.got["mle"], run.domain, run.examples.rl,
                                       run.examples.curve),
          load=lambda run: run.saved_model("rl/model")),
    Phase("eval_rlvr", after=("rl", "eval_mle"), finished="eval_rlvr.json",
          partial=("eval_rlvr.partial.jsonl", "eval_rlvr.partial.[0-9]*.jsonl"),
          run=lambda run: run.final_eval("rlvr", run.got["rl"], run.domain, run.examples.test),
          load=lambda run: run.saved_eval("rlvr")),
)}
# What a run writes into its directory besides its phases' outputs (`--overwrite` clears these and those).
RUN_FILES = ("config.json", "phases.json", "timings.json", "results.json", "results.md", "results.png")


class RunDirError(UserError, ValueError):
    """A run directory that cannot be used as asked."""


def in_order(phases: Iterable[Phase]) -> dict[str, Phase]:
    """The phases by name, each after those it starts from and otherwise in the order given (a domain's stages come
    first: one that starts from no phase runs before the tokenizer)."""
    left, done = list(phases), {}
    while left:
        ready = next((p for p in left if all(a in done for a in p.after)), None)
        if ready is None or ready.name in done:
            what = f"two phases are named {ready.name}" if ready else \
                f"{', '.join(p.name for p in left)} start from phases no run has"
            raise ValueError(f"the run's phases cannot be ordered: {what}")
        done[ready.name] = ready
        left.remove(ready)
    return done


def lineage(phase: str, phases: Mapping[str, Phase] = PHASES) -> list[Phase]:
    """`phase` and every phase it starts from, directly or not."""
    own = phases[phase]
    return [own, *(p for a in own.after for p in lineage(a, phases))]


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


def matches(option: str, pattern: str) -> bool:
    return fnmatchcase(option, pattern) or fnmatchcase(option, pattern + ".*")


def depends(phase: str, option: str, phases: Mapping[str, Phase] = PHASES) -> bool:
    """Whether `phase`'s outputs depend on `option` (a dotted name): the most specific pattern any phase names it
    by is one of `phase`'s own or its inputs', and not a harmless one."""
    named = [(len(pat), harmless, p.name) for p in phases.values()
             for pats, harmless in ((p.options, False), (p.harmless, True)) for pat in pats if matches(option, pat)]
    if not named:
        return False
    best = max(n for n, _, _ in named)
    owners = [(harmless, name) for n, harmless, name in named if n == best]
    mine = {p.name for p in lineage(phase, phases)}
    return not any(harmless for harmless, _ in owners) and any(name in mine for _, name in owners)


def fingerprint(cfg: Any, phase: str, hashes: Mapping[str, str] | None = None,
                phases: Mapping[str, Phase] = PHASES) -> dict[str, Any]:
    """The options (and, given each example set's hash, the examples) a phase's outputs depend on, JSON-ready."""
    flat = flatten(cfg)
    fp = {k: v for k, v in flat.items() if depends(phase, k, phases)}
    fp = json.loads(json.dumps(fp, default=str))  # lists and tuples compare alike once stored
    for option in dict.fromkeys(o for p in lineage(phase, phases) for o in p.reads):
        if flat.get(option):
            fp[option + CONTENT] = content_hash(str(flat[option]))
    read = {s for p in lineage(phase, phases) for s in p.examples}
    data_hash = "".join((hashes or {}).get(s, "") for s in EXAMPLE_SETS if s in read)
    if data_hash:
        fp["examples"] = data_hash
    return fp


CONTENT = "#sha256"  # the suffix of a `Phase.reads` option's key in a fingerprint


def content_hash(path: str) -> str:
    """A short sha256 of what `path` holds: a file's bytes, or a folder's files (names and bytes, in name order);
    "missing" when it holds nothing."""
    p = Path(path)
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p] if p.is_file() else []
    if not files:
        return "missing"
    return _hashed(tuple((str(f.relative_to(p)) if p.is_dir() else f.name, str(f.resolve()), f.stat().st_size,
                          f.stat().st_mtime_ns) for f in files))


@lru_cache(maxsize=16)
def _hashed(files: tuple[tuple[str, str, int, int], ...]) -> str:
    """The hash of these (name, path, size, modification time) files, kept while none of them changes."""
    return files_sha256([Path(path) for _, path, *_ in files], [name for name, *_ in files])[:16]


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


def holds(out: Path, paths: Iterable[str]) -> bool:
    """Whether the run directory holds any of these paths (or patterns)."""
    return any(next(out.glob(p), None) is not None for p in paths)


class RunDir:
    """The phases' fingerprints in `out/phases.json`, checked on resume."""

    def __init__(self, out: Path, phases: Mapping[str, Phase] = PHASES):
        self.out = out
        self.phases = phases  # the run's, by name (`in_order`)
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
        # a phase recorded before RL's data options bound RL alone lists them too: they never shaped it
        added = {k: v for p in lineage(phase, self.phases) for k, v in p.added.items() if k in fp}
        made = {**added, **{k: v for k, v in stored[phase].items()
                            if k == "examples" or k.endswith(CONTENT) or depends(phase, k, self.phases)}}
        diff = differences(made, fp, ignore + (() if finished else self.phases[phase].extendable))
        if diff:
            more = f" and {len(diff) - 3} more" if len(diff) > 3 else ""
            raise RunDirError(f"{self.out} holds {phase} work made with other options: {'; '.join(diff[:3])}{more}; "
                              f"run with those, use another --out, or --overwrite to start over")

    def record(self, fingerprints: dict[str, dict]) -> None:
        """Every phase's fingerprint, as this run makes (or continues) it."""
        from .engine.atomicwrite import save_json

        save_json(self.path, fingerprints)


def prepare(out: Path, resume: bool, overwrite: bool, results: Path, phases: Iterable[Phase] = PHASES.values()) -> None:
    """Refuse a fresh run into a directory that holds anything, unless asked to overwrite a run's outputs
    (RUN_FILES, the `phases`' outputs, and the results file with what goes beside it when `results` lies in `out`)."""
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
    known = (*RUN_FILES, *(f for p in phases for f in p.files()))
    foreign = sorted(n for n in entries if not (beside and n.startswith(beside))
                     and not any(fnmatchcase(n, k) or fnmatchcase(n, k + ".tmp") for k in known))
    if foreign:
        raise RunDirError(f"{out} holds files no run writes ({', '.join(foreign[:3])}): not clearing it; "
                          f"use another --out")
    for name in entries:
        p = out / name
        shutil.rmtree(p) if p.is_dir() else p.unlink()


def run_config_of(model: str) -> dict:
    """The config of the run a model comes from, or {}: the `config.json` of the run a model directory belongs to
    (`RUN/mle/model`, `RUN/rl/model`), or the one an adapter folder's manifest carries (`adapters`)."""
    from .adapters import config_of, is_adapter

    if is_adapter(model):
        cfg = config_of(model)
    else:
        try:
            cfg = json.loads((Path(model).parent.parent / "config.json").read_text())
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
