"""What a run is: `RunConfig`, one dataclass for the whole pipeline, and the named presets of every domain.

Nothing here loads torch or a domain's dependencies: the command line lists
and checks options from this module alone. Presets live with their domain
(`domains/<name>/presets.py`), each a function returning a `RunConfig`; the
first one a domain lists is what `--domain NAME` alone runs. A config file
(`run --config FILE`, YAML or JSON, e.g. a run's own config.json) sets values
over a preset's, and `run --print-config` writes one. A pretrained model
(`model.init_from`) on a preset made for a model from scratch takes the
pretrained presets' model settings (`PRETRAINED_OPTIONS`) where not given.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Callable, Iterable, Literal

from . import domains
from .optionparsing import check, choices_of, read_file, require, require_choice, update
from .domains.jsonl import JsonlData
from .domains.textgame import TextGameData
from .domains.video import VideoData
from .domains.web import WebData
from .engine.options import MLEConfig, ModelConfig, RLConfig


@dataclass
class RunConfig:
    """The whole pipeline for one domain."""

    domain: str = "textgame"  # which domain (see rlvr_world.domains.DOMAINS)
    out: str = "runs/textgame"  # run directory: config, logs, checkpoints, models
    results: str = "results/textgame-default.json"  # results JSON (a Markdown table and a plot go beside it)
    resume: bool = False  # continue an interrupted run in `out` (only with the options it was made with)
    overwrite: bool = False  # start over in an `out` that holds a run (its outputs are deleted first)
    device: str = "auto"  # auto, cpu, cuda, cuda:1, ...
    dtype: Literal["auto", "bf16", "fp32"] = "auto"  # auto (bf16 autocast where the hardware has it), bf16 or fp32
    threads: int = 0  # torch CPU threads (0: one per core)
    vocab_size: int = 4096  # BPE vocabulary (ignored when model.init_from brings a tokenizer)
    eval_batch_size: int = 48  # prompts per greedy-decoding batch
    max_new_tokens: int = 512  # longest response in evaluation
    eval_limit: int = 0  # test examples in the final evaluations (0: all)
    eval_balanced: bool = False  # with eval_limit: as many test examples from each group (e.g. changed, unchanged)
    curve_limit: int = 150  # test examples in the evaluations during RL
    # metrics.jsonl per phase (jsonl), and the same as TensorBoard event files (tensorboard)
    log: Literal["jsonl", "tensorboard"] = "jsonl"
    # another finished run's directory evaluated on the same test examples (e.g. the from-scratch models): its MLE
    # and RLVR scores join this run's results, with paired tests of this run's models against its
    compare: str = ""
    # the domain's data options (from its presets)
    data: TextGameData | WebData | VideoData | JsonlData = field(default_factory=TextGameData)
    model: ModelConfig = field(default_factory=ModelConfig)
    mle: MLEConfig = field(default_factory=MLEConfig)
    rl: RLConfig = field(default_factory=RLConfig)

    def __post_init__(self):
        require_choice(self, "", domain=tuple(domains.DOMAINS), **choices_of(self))
        require(self, "", threads=">= 0", vocab_size=">= 1", eval_batch_size=">= 1", max_new_tokens=">= 1",
                eval_limit=">= 0", curve_limit=">= 0")
        if self.resume and self.overwrite:
            raise ValueError("--resume continues a run and --overwrite deletes it: give one of them")


@cache
def presets() -> dict[str, Callable[[], RunConfig]]:
    """Every domain's presets by name, in the order of `domains.DOMAINS`."""
    out: dict[str, Callable[[], RunConfig]] = {}
    for name in domains.DOMAINS:
        out.update(importlib.import_module(f"{domains.__name__}.{name}.presets").PRESETS)
    return out


def preset(name: str) -> RunConfig:
    """A fresh `RunConfig` of the named preset."""
    if name not in presets():
        raise ValueError(f"unknown preset {name!r}; known: {', '.join(presets())}")
    return presets()[name]()


def preset_for(name: str | None, domain: str | None) -> str:
    """The preset a command line asks for: the one named, else its `--domain`'s first, else `default`."""
    if name:
        return name
    if domain in domains.DOMAINS:
        return next(iter(importlib.import_module(f"{domains.__name__}.{domain}.presets").PRESETS))
    return "default"


def preset_summaries() -> dict[str, dict[str, str]]:
    """Each domain's presets, in order, with the first line of their docstrings."""
    return {d: {name: (make.__doc__ or "").strip().partition("\n")[0].rstrip(".")
                for name, make in importlib.import_module(f"{domains.__name__}.{d}.presets").PRESETS.items()}
            for d in domains.DOMAINS}


def reward_names(domain: str) -> tuple[str, ...]:
    """The names `--rl.reward` takes in `domain` (its options module's `REWARDS`: light, unlike the domain)."""
    return importlib.import_module(f"{domains.__name__}.{domain}.options").REWARDS


def run_start(name: str | None, domain: str | None, config: str | None) -> tuple[str, RunConfig, set[str]]:
    """What `run` sets its flags on, the preset it starts from and the options the config file sets (dotted: `mle.lr`):
    the preset named (else the config file's `preset`), else the first of the domain's (`--domain`, else the file's
    `domain`), else `default`; with the config file's values over it. A one-line ValueError names the file and its
    unknown key or bad value."""
    if not config:
        return preset_for(name, domain), preset(preset_for(name, domain)), set()
    values = dict(read_file(config))
    try:
        base = _known(values.pop("preset", None), presets(), "preset")
        name = preset_for(name or base, domain or _known(values.get("domain"), domains.DOMAINS, "domain"))
        cfg = preset(name)
        if values.get("domain", cfg.domain) != cfg.domain:
            raise ValueError(f"domain {values['domain']!r} is not preset {name}'s ({cfg.domain}): leave --preset "
                             f"and --domain out, or name a {values['domain']} preset")
        check(update(cfg, values))
    except ValueError as e:
        raise ValueError(f"{config}: {e}") from None
    return name, cfg, _dotted(values)


def _dotted(values: dict, prefix: str = "") -> set[str]:
    """The dotted names of a nested mapping's leaves: {"mle": {"lr": 1}} -> {"mle.lr"}."""
    return {n for k, v in values.items()
            for n in (_dotted(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}"})}


def _known(value, known, what: str):
    if value is None or isinstance(value, str) and value in known:
        return value
    raise ValueError(f"unknown {what} {value!r}; known: {', '.join(known)}")


# ----------------------------------------------------------------------------- a pretrained model on any preset

# The options a preset sets for the model it trains rather than for its domain's data. A from-scratch preset's suit
# a small model of its own: jsonl's MLE at lr 1e-3 on 12,288-token batches would take SmolLM2-135M past 20 GB
# (8,192 tokens a step reached 20.3-20.6 GB: docs/pretrained.md). The values come from the pretrained presets
# (`textgame-pretrained`, `web-pretrained`), which agree on all but rl.lr: LoRA rank 32 / alpha 16, MLE for one
# epoch (their from-scratch siblings train 4 to 12) at lr 3e-4 with 10 warm-up steps and no weight decay on
# 4,096-token batches, checkpoints every 20 MLE and 5 RL steps (a step of the 135M model takes seconds to minutes),
# RL micro-batches of 6 and evaluation batches of 32. Response lengths, RL's prompts and group size, step counts
# and the evaluations during RL stay the preset's: they follow the domain's answers and the run's budget, not the
# model.
PRETRAINED_OPTIONS = ("model.lora_rank", "model.lora_alpha", "mle.epochs", "mle.lr", "mle.warmup_steps",
                      "mle.weight_decay", "mle.batch_tokens", "mle.save_every", "rl.lr", "rl.micro_batch_size",
                      "rl.save_every", "eval_batch_size")


def pretrained_preset(domain: str) -> str:
    """The preset whose `PRETRAINED_OPTIONS` a pretrained model takes on `domain`: the domain's own pretrained preset,
    else `textgame-pretrained` (the measured one: docs/pretrained.md)."""
    return next((n for n, make in presets().items() if (c := make()).domain == domain and c.model.init_from),
                "textgame-pretrained")


def with_pretrained_defaults(cfg: RunConfig, name: str, given: Iterable[str]) -> tuple[str, dict[str, Any]]:
    """Where `cfg` starts from a pretrained model (`model.init_from`) but its preset `name` trains one from scratch,
    set each of `PRETRAINED_OPTIONS` not `given` (the dotted options set on the command line or in a config file) to
    its value in `pretrained_preset`; return that preset and the values that changed, by dotted name."""
    if not cfg.model.init_from or preset(name).model.init_from:
        return "", {}
    source, given = pretrained_preset(cfg.domain), set(given)
    ref, applied = preset(source), {}
    for key in PRETRAINED_OPTIONS:
        *path, leaf = key.split(".")
        target, origin = cfg, ref
        for p in path:
            target, origin = getattr(target, p), getattr(origin, p)
        if key not in given and getattr(target, leaf) != getattr(origin, leaf):
            setattr(target, leaf, getattr(origin, leaf))
            applied[key] = getattr(origin, leaf)
    check(cfg)
    return source, applied
