"""The video domain's presets: named `RunConfig`s; the first is what `--domain video` alone runs."""

from __future__ import annotations

from ...engine.options import MLEConfig, ModelConfig, RLConfig
from ...runconfig import RunConfig
from .options import VideoData


def video() -> RunConfig:
    """~35 min here: Meta-World simulated here (once, cached), Bridge/RT-1 bundled, the paper's LPIPS reward"""
    return RunConfig(
        domain="video", out="runs/video", results="results/video-default.json",
        # 4x4 codes per frame: 98 tokens an example instead of 338, MLE and decoding ~3x faster, and the
        # MLE model repeats the previous frame in ~19% of multi-step rollouts (the real frames' codes: ~1%).
        # GRPO (token credit, group baseline) on multi-step prompts, 60 steps. With -(MAE + 1 - SSIM), on two MLE
        # models: PSNR +0.13 to +0.20 dB, every Wilcoxon p < 1e-7, repetition not lowered (18.6% -> 20.1%,
        # 17.8% -> 19.6%). With the paper's -(MAE + LPIPS-VGG16), two seeds: LPIPS, MAE, SSIM better (p <= 0.002),
        # PSNR +0.035 / +0.045 dB (n.s.) and +0.13 / +0.18 (p <= 1e-8), repetition 22.8% -> 16.4% (p = 5e-8) and
        # 20.8% -> 18.4% (p = 0.03); LPIPS costs ~20 min. docs/video.md.
        data=VideoData(episodes_per_task=100, tokenizer_steps=2000, grid=4, bridge_finetune_epochs=20.0,
                       rl_settings="multi_step"),
        model=ModelConfig(max_positions=512),
        mle=MLEConfig(epochs=2.0, lr=2e-3, warmup_steps=20),
        rl=RLConfig(reward="mae_lpips", credit="token", advantage="grpo", steps=60, prompts_per_step=32, group_size=4,
                    micro_batch_size=32, max_new_tokens=256, lr=5e-5, temperature=0.6, eval_every=20),
        max_new_tokens=256, curve_limit=48,
    )


def video_full() -> RunConfig:
    """~110 min at 2 threads here (AMD EPYC, AVX-512), LPIPS-VGG16 reward and metric included"""
    return RunConfig(
        domain="video", out="runs/video-full", results="results/video.json",
        # simulated episodes are cheap (~0.3 s each) and 20 per task were memorised (MLE loss 0.17): many more
        data=VideoData(episodes_per_task=150, tokenizer_steps=4000, bridge_finetune_epochs=30.0,
                       bridge_rl_steps=20, rl_settings="single_step"),
        model=ModelConfig(max_positions=512),
        mle=MLEConfig(epochs=3.0, lr=2e-3, warmup_steps=20),
        # rollouts at temperature 0.6: at 1.0 a frame of 64 codes is mostly sampling noise, GRPO sharpened the
        # sampler and greedy predictions got worse (measured: PSNR -0.87 dB after 25 steps).
        # Token credit (each code rewarded by its own tile of the decoded frame), 60 steps: on one 8x8-grid MLE
        # model, two seeds, PSNR +0.055/+0.038 dB single-step, +0.038/+0.042 multi-step, MAE and SSIM better too
        # (every Wilcoxon p <= 0.016); on a freshly trained one -0.036/-0.033 dB; on video-full's -0.003/+0.024.
        # The paper's one advantage per response did worse: -0.09 dB multi-step (30 steps at 0.6, groups of 8),
        # -0.05 dB on video-full (40 steps at 0.3, groups of 16). Against the greedy response (ReMax) on
        # single-step prompts, 32 per step in groups of 4, 150 steps: +0.12 / +0.11 dB on an 8x8-grid default
        # run, +0.081 / +0.086 dB on video-full, every metric p < 1e-6; past ~250 steps entropy climbs and the
        # policy collapses (on 4x4 codes and multi-step prompts, after ~40). With the paper's reward, two RL seeds
        # from one MLE model: LPIPS -0.0020 / -0.0019 single-step, -0.0017 / -0.0020 multi-step (p <= 5e-24), PSNR
        # n.s.; from the same model -(MAE + 1 - SSIM) improved every single-step metric (p <= 8e-4), LPIPS -0.0009.
        # docs/video.md.
        rl=RLConfig(reward="mae_lpips", credit="token", advantage="grpo", baseline="greedy", steps=150,
                    prompts_per_step=32, group_size=4, micro_batch_size=32, max_new_tokens=256, lr=5e-5, temperature=0.6,
                    eval_every=25),
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
