"""The web domain's presets: named `RunConfig`s; the first is what `--domain web` alone runs."""

from __future__ import annotations

from ...engine.options import MLEConfig, ModelConfig, RLConfig
from ...runconfig import RunConfig
from .options import WebData


def web() -> RunConfig:
    """~25 min: 44 MiniWoB tasks x 12 episodes collected, 12 MLE epochs, 30 RL steps"""
    return RunConfig(
        domain="web", out="runs/web", results="results/web-default.json",
        data=WebData(mle_unchanged_ratio=0.25, rl_unchanged_ratio=1.0),  # RL on both strata (the decision split)
        # test prompts are never cut, and a test page's answer must fit too: the longest test example of this
        # collection needs ~5,650 positions (rotary positions: the limit costs nothing where it is not used)
        model=ModelConfig(max_positions=8192),
        mle=MLEConfig(epochs=12.0, lr=3e-3),
        # the decision held near the MLE model's (decision_kl): without it RL taught "always attempt a change" and
        # lost the unchanged pages, at lr 1e-4 or 3e-5, on both strata or on changed pages alone (docs/grpo.md)
        rl=RLConfig(reward="f1", steps=30, prompts_per_step=8, group_size=8, micro_batch_size=32,
                    max_new_tokens=256, eval_every=10, decision_kl=10.0),
        max_new_tokens=256, curve_limit=100,
    )


def web_full() -> RunConfig:
    """~1.2 h: three times the episodes of `web`, 8 MLE epochs, 120 RL steps"""
    return RunConfig(
        domain="web", out="runs/web-full", results="results/web.json",
        data=WebData(episodes_per_task=36, mle_unchanged_ratio=0.25, rl_unchanged_ratio=1.0),
        # test prompts are never cut: the longest of this collection is ~3,800 tokens of its BPE tokenizer
        model=ModelConfig(max_positions=4096),
        mle=MLEConfig(epochs=8.0, lr=3e-3),
        # 120 steps at lr 3e-5: 40 steps moved nothing, and at lr 1e-4 the gain varied too much between seeds to
        # tell from noise; at 3e-5 it held over seeds, at a small cost on changed pages (docs/web.md, "RL settings
        # and seeds")
        rl=RLConfig(reward="f1", steps=120, prompts_per_step=8, group_size=8, micro_batch_size=32,
                    max_new_tokens=256, lr=3e-5, eval_every=40),
        max_new_tokens=256, curve_limit=100,
    )


def web_pretrained() -> RunConfig:
    """SmolLM2-135M-Instruct, LoRA SFT then GRPO, on web-full's data and test split"""
    # the budget (one SFT epoch, 30 RL steps) follows the text game's measured costs (docs/pretrained.md); this
    # preset has not been timed on its own
    return RunConfig(
        domain="web", out="runs/web-pretrained", results="results/web-pretrained.json",
        data=WebData(episodes_per_task=36, mle_unchanged_ratio=0.25, rl_unchanged_ratio=1.0),
        model=ModelConfig(init_from="smollm2-135m", lora_rank=32, lora_alpha=16.0),
        mle=MLEConfig(epochs=1.0, lr=3e-4, warmup_steps=10, batch_tokens=4096, weight_decay=0.0, save_every=20),
        rl=RLConfig(reward="f1", steps=30, prompts_per_step=6, group_size=6, micro_batch_size=6,
                    max_new_tokens=256, lr=5e-5, eval_every=0, save_every=5),
        max_new_tokens=256, curve_limit=0, eval_batch_size=32,
    )


def web_tiny() -> RunConfig:
    """Seconds (plus a browser), for tests"""
    return RunConfig(
        domain="web", out="runs/web-tiny", results="runs/web-tiny/results.json", vocab_size=600,
        data=WebData(tasks=["click-checkboxes", "click-button", "enter-text"], episodes_per_task=3, max_steps=3),
        model=ModelConfig(hidden_size=64, num_layers=2, num_heads=2, max_positions=2048),
        mle=MLEConfig(epochs=30, lr=1e-2, batch_tokens=2000, warmup_steps=2, save_every=20),
        rl=RLConfig(reward="f1", steps=4, prompts_per_step=6, group_size=6, max_new_tokens=48, eval_every=2,
                    save_every=1, lr=1e-3),
        eval_limit=4, curve_limit=2, max_new_tokens=48, eval_batch_size=4,
    )


PRESETS = {
    "web": web,
    "web-full": web_full,
    "web-pretrained": web_pretrained,
    "web-tiny": web_tiny,
}
