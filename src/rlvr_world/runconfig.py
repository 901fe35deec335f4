"""What a run is: `RunConfig`, one dataclass for the whole pipeline, and the named presets of every domain.

Nothing here loads torch or a domain's dependencies: the command line lists
and checks options from this module alone. Presets live with their domain
(`domains/<name>/presets.py`), each a function returning a `RunConfig`; the
first one a domain lists is what `--domain NAME` alone runs. A config file
(`run --config FILE`, YAML or JSON, e.g. a run's own config.json) sets values
over a preset's, and `run --print-config` writes one.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from functools import cache
from typing import Callable, Literal

from . import domains
from .config import check, choices_of, read_file, require, require_choice, update
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


def run_start(name: str | None, domain: str | None, config: str | None) -> tuple[str, RunConfig]:
    """What `run` sets its flags on, and the preset it starts from: the preset named (else the config file's
    `preset`), else the first of the domain's (`--domain`, else the file's `domain`), else `default`; with the config
    file's values over it. A one-line ValueError names the file and its unknown key or bad value."""
    if not config:
        return preset_for(name, domain), preset(preset_for(name, domain))
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
    return name, cfg


def _known(value, known, what: str):
    if value is None or isinstance(value, str) and value in known:
        return value
    raise ValueError(f"unknown {what} {value!r}; known: {', '.join(known)}")
