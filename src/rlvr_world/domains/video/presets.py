"""The video domain's presets: named `RunConfig`s; the first is what `--domain video` alone runs."""

from __future__ import annotations

from ...engine.options import MLEConfig, ModelConfig, RLConfig
from ...runconfig import RunConfig
from .options import VideoData


def video() -> RunConfig:
    """~35 min on 2 CPU threads: Meta-World simulated (once, cached), Bridge/RT-1 bundled, the paper's LPIPS reward"""
    return RunConfig(
        domain="video", out="runs/video", results="results/video-default.json",
        # 4x4 codes per frame: 98 tokens an example instead of 338, so MLE and decoding are ~3x faster. Its MLE
        # model repeats the previous frame in multi-step rollouts far more often than the real frames do, which
        # multi-step prompts give GRPO the chance to punish; the paper's -(MAE + LPIPS) is the reward that lowered
        # that repetition (-(MAE + 1 - SSIM) did not). What each choice measured: docs/video.md
        data=VideoData(episodes_per_task=100, tokenizer_steps=2000, grid=4, bridge_finetune_epochs=20.0,
                       rl_settings="multi_step"),
        model=ModelConfig(max_positions=512),
        mle=MLEConfig(epochs=2.0, lr=2e-3, warmup_steps=20),
        rl=RLConfig(reward="mae_lpips", credit="token", advantage="grpo", steps=60, prompts_per_step=32, group_size=4,
                    micro_batch_size=32, max_new_tokens=256, lr=5e-5, temperature=0.6, eval_every=20),
        max_new_tokens=256, curve_limit=48,
    )


def video_full() -> RunConfig:
    """~110 min on 2 CPU threads (AMD EPYC, AVX-512), LPIPS-VGG16 reward and metric included"""
    return RunConfig(
        domain="video", out="runs/video-full", results="results/video.json",
        # simulated episodes are cheap (~0.3 s each), and an MLE model memorises a few per task: many more
        data=VideoData(episodes_per_task=150, tokenizer_steps=4000, bridge_finetune_epochs=30.0,
                       bridge_rl_steps=20, rl_settings="single_step"),
        model=ModelConfig(max_positions=512),
        mle=MLEConfig(epochs=3.0, lr=2e-3, warmup_steps=20),
        # rollouts at temperature 0.6: at 1.0 a frame of 64 codes is mostly sampling noise, and GRPO sharpens the
        # sampler while greedy predictions get worse. Token credit (each code rewarded by its own tile of the
        # decoded frame): one advantage per response, as in the paper, spreads one number over 64 codes and did
        # worse. Against the greedy response (ReMax): the baseline is the prediction the evaluation scores, so a
        # sample is credited only for beating it. 150 steps: past ~250 the entropy climbs and the policy collapses.
        # The measurements behind each choice: docs/video.md ("RL settings on 8x8 codes")
        rl=RLConfig(reward="mae_lpips", credit="token", advantage="grpo", baseline="greedy", steps=150,
                    prompts_per_step=32, group_size=4, micro_batch_size=32, max_new_tokens=256, lr=5e-5,
                    temperature=0.6, eval_every=25),
        max_new_tokens=256, curve_limit=48,
    )


def video_tiny() -> RunConfig:
    """Seconds (plus the simulator), for tests"""
    return RunConfig(
        domain="video", out="runs/video-tiny", results="runs/video-tiny/results.json",
        data=VideoData(tasks=["reach-v3"], episodes_per_task=3, steps=5, test_fraction=0.34, grid=4,
                       levels="5,3", tokenizer_steps=30, action_bins=8, bridge_finetune_epochs=1.0,
                       bridge_rl_steps=1, lpips="alex"),  # AlexNet: ~30x cheaper than VGG16 on CPU
        model=ModelConfig(hidden_size=32, num_layers=1, num_heads=2, max_positions=128),
        mle=MLEConfig(epochs=3, lr=1e-2, batch_tokens=2000, warmup_steps=2, save_every=20),
        rl=RLConfig(reward="mae_lpips", credit="token", advantage="grpo", steps=2, prompts_per_step=3, group_size=4,
                    max_new_tokens=64, eval_every=1, save_every=1, lr=1e-3),
        eval_limit=6, curve_limit=2, max_new_tokens=64, eval_batch_size=8,
    )


PRESETS = {
    "video": video,
    "video-full": video_full,
    "video-tiny": video_tiny,
}
