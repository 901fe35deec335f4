"""The jsonl domain's presets: named `RunConfig`s; the first is what `--domain jsonl` alone runs."""

from __future__ import annotations

from ...engine.options import MLEConfig, RLConfig
from ...runconfig import RunConfig
from .options import JsonlData


def jsonl() -> RunConfig:
    """Your own transitions (--data.train-path, --data.test-path); a small model from scratch"""
    return RunConfig(
        domain="jsonl", out="runs/jsonl", results="results/jsonl.json", data=JsonlData(),
        mle=MLEConfig(epochs=4.0, lr=2e-3),
        rl=RLConfig(reward="diff_f1", steps=50, prompts_per_step=8, group_size=8, micro_batch_size=32,
                    eval_every=25),
        curve_limit=100,
    )


PRESETS = {
    "jsonl": jsonl,
}
