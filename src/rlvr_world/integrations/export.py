"""`rlvr-world export verl|trl`: a language domain's train and test transitions as the engine's dataset files.

    rlvr-world export trl --preset default --out DIR
    rlvr-world export trl --domain jsonl --data.train-path train.jsonl --data.test-path test.jsonl --out DIR

    DIR/train.parquet, DIR/test.parquet, DIR/export.json (what was written, by which command)

The data options are `run`'s (`--data.*` of the preset's domain, e.g. your
own JSON-lines files), so a run and its export read the same transitions.

verl (its `RLHFDataset` and reward managers): one row per transition with
`data_source` (`rlvr_world/<domain>`, which `verl.compute_score` reads),
`prompt` as chat messages (one user turn holding our prompt text; verl
applies the model's chat template), `ability`, `reward_model` (`style`
"rule", `ground_truth` = the target text) and `extra_info` (split, index,
group, reward name, the transition as JSON).

TRL (`datasets.load_dataset("parquet", ...)` for `GRPOTrainer`): `prompt` as
plain text, exactly as our own runs tokenize it, and the columns the reward
function reads (`domain`, `reward`, `transition`) beside `ground_truth`,
`group`, `split` and `index`.

The training split is the one our RL phase samples from: every changing
transition plus the preset's share of unchanged ones (`rl_unchanged_ratio`);
the test split is whole. `--limit N` keeps the first N of each.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .rows import DATA_SOURCE, Row, rows, text_domain

ENGINES = ("verl", "trl")


@dataclass
class ExportConfig:
    """A language domain's data and rewards, written for another RL engine."""

    preset: str = "default"  # whose RL reward and default data (`rlvr-world run --preset`; default: the --domain's)
    domain: str = "textgame"  # a language domain: textgame, web or jsonl (default: the preset's)
    out: str = ""  # the folder to write (default: runs/export/ENGINE-PRESET)
    limit: int = 0  # keep the first N rows of each split (0: all)
    data: Any = field(default=None)  # the domain's data options, as `run` takes them (default: the preset's)

    def __post_init__(self):
        from ..optionparsing import require

        require(self, "", limit=">= 0")


def export_defaults(preset_name: str | None = None, domain: str | None = None) -> ExportConfig:
    """`export`'s options for a command line's --preset and --domain: the preset's domain and data options."""
    from ..runconfig import preset, preset_for, presets

    name = preset_for(preset_name, domain)
    run = preset(name if name in presets() else "default")  # an unknown name is refused by `export`, in one line
    return ExportConfig(preset=name, domain=run.domain, data=run.data)


def verl_row(r: Row) -> dict:
    return {"data_source": DATA_SOURCE + r.domain, "prompt": [{"role": "user", "content": r.prompt}],
            "ability": "world_model", "reward_model": {"style": "rule", "ground_truth": r.ground_truth},
            "extra_info": {"split": r.split, "index": r.index, "group": r.group, "reward": r.reward,
                           "transition": r.transition}}


def trl_row(r: Row) -> dict:
    return dataclasses.asdict(r)


def write_parquet(records: list[dict], path: Path) -> None:
    """Rows as one parquet file, written under a temporary name and renamed."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(pa.Table.from_pylist(records), tmp)
    tmp.replace(path)


def export(engine: str, cfg: ExportConfig, command: str) -> dict:
    """Write both splits of `cfg.domain`'s data for `engine`, with `cfg.preset`'s RL reward; returns what
    `export.json` says."""
    from ..runconfig import preset

    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; known: {', '.join(ENGINES)}")
    cls = text_domain(cfg.domain)
    run = preset(cfg.preset)
    data = run.data if cfg.data is None else cfg.data
    if run.domain != cfg.domain:
        raise ValueError(f"--preset {cfg.preset} is a {run.domain} preset, not a {cfg.domain} one: give one of the two")
    cls.check_data(data)
    cls.prepare(data)  # e.g. the web domain collects its pages once (cached)
    out = Path(cfg.out or f"runs/export/{engine}-{cfg.preset}")
    out.mkdir(parents=True, exist_ok=True)
    to_row = verl_row if engine == "verl" else trl_row
    counts = {}
    for split in ("train", "test"):
        rs = rows(cfg.domain, data, split, run.rl.reward, rl_unchanged_ratio=data.rl_unchanged_ratio,
                  seed=run.rl.seed, limit=cfg.limit)
        write_parquet([to_row(r) for r in rs], out / f"{split}.parquet")
        counts[split] = {"rows": len(rs), "changed": sum(r.group == "changed" for r in rs)}
    info = {"command": command, "engine": engine, "preset": cfg.preset, "domain": cfg.domain,
            "data": dataclasses.asdict(data), "reward": run.rl.reward, "splits": counts,
            "files": [f"{s}.parquet" for s in counts]}
    (out / "export.json").write_text(json.dumps(info, indent=2) + "\n")
    return info
