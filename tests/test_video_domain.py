"""The video domain's token layout, interleaved multi-step sampling, and scoring of decoded frames."""

import numpy as np
import pytest
import torch

from rlvr_world.domains.video import VideoData, VideoDomain, VideoTokenizer
from rlvr_world.domains.video.data import Episodes, bridge, rt1_frames
from rlvr_world.domains.video.frames import FrameTokenizer, FrameTokenizerConfig
from rlvr_world.domains.video.metrics import WORST_REWARD
from rlvr_world.engine.mle import mle_loss
from rlvr_world.engine.models import ModelConfig, build
from rlvr_world.engine.sampler import sample


@pytest.fixture(scope="module")
def tok():
    torch.manual_seed(0)
    return VideoTokenizer(FrameTokenizer(FrameTokenizerConfig(grid=4, levels=[5, 3], channels=16)), 4, bins=8)


def episodes(E=2, T=5, seed=0):
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, size=(E, T + 1, 64, 64, 3), dtype=np.uint8)
    actions = rng.uniform(-1, 1, size=(E, T, 4)).astype(np.float32)
    return Episodes(frames, actions, ["a"] * E)


def test_action_bins_round_trip_within_half_a_bin(tok):
    a = np.random.default_rng(1).uniform(-1.3, 1.3, size=(50, 4))
    ids = tok.action_ids(a)
    assert ids.min() >= tok.action_base and ids.max() < tok.bos_token_id
    assert np.all(np.abs(tok.actions(ids) - np.clip(a, -1, 1)) <= 1.0 / tok.bins + 1e-9)
    # each dimension has its own ids
    assert len({int(i) for i in ids[:, 0]} & {int(i) for i in ids[:, 1]}) == 0
    with pytest.raises(ValueError, match="dimensions"):
        tok.action_ids(np.zeros((3, 7)))


def test_sequences_interleave_real_actions_masked_from_the_loss(tok):
    dom = VideoDomain(tok, VideoData(context=2, horizon=3))
    ep = episodes()
    ex = [e for e in dom.episode_examples(ep) if e.group == "multi_step"][0]  # episode 0, start 0
    L, A = tok.tokens_per_frame, tok.action_dims
    codes, acts = dom.codes(ep)[0], tok.action_ids(ep.actions[0])
    assert ex.prompt_ids == [tok.bos_token_id] + [*codes[0], *acts[0], *codes[1], *acts[1]]
    assert ex.target_ids == [*codes[2], *acts[2], *codes[3], *acts[3], *codes[4], tok.eos_token_id]
    assert ex.loss_mask == [1] * L + [0] * A + [1] * L + [0] * A + [1] * L + [0]
    forced = ex.forced()
    n = len(ex.target_ids)
    assert [i for i, f in enumerate(forced) if f >= 0] == [*range(L, L + A), *range(2 * L + A, 2 * L + 2 * A), n - 1]
    single = [e for e in dom.episode_examples(ep) if e.group == "single_step"]
    assert len(single) == 2 * (6 - 2) and single[0].target_ids == [*codes[2], tok.eos_token_id]
    assert single[0].loss_mask == [1] * L + [0]
    # MLE: changing a given action token changes no loss term it should not (the masked position's own term)
    model = build(ModelConfig(hidden_size=32, num_layers=1, num_heads=2, max_positions=128), len(tok),
                  pad_id=tok.pad_token_id, bos_id=tok.bos_token_id, eos_id=tok.eos_token_id)
    _, n = mle_loss(model, [ex], tok.pad_token_id)
    assert n == 3 * L


def test_rl_settings_choose_the_rl_prompts(tok, monkeypatch):
    dom = VideoDomain(tok, VideoData(context=2, horizon=3, rl_settings="single_step"))
    monkeypatch.setattr(dom, "episodes", lambda split: episodes())
    assert {e.group for e in dom.examples("train", stage="rl")} == {"single_step"}
    assert {e.group for e in dom.examples("train", stage="mle")} == {"multi_step"}
    assert {e.group for e in dom.examples("test")} == {"single_step", "multi_step"}
    with pytest.raises(ValueError, match="rl_settings"):
        VideoData(rl_settings="single_step,both").rl_setting_list()


def test_multi_step_sampling_writes_the_real_actions_between_generated_frames(tok):
    dom = VideoDomain(tok, VideoData(context=2, horizon=3))
    exs = [e for e in dom.episode_examples(episodes()) if e.group == "multi_step"][:2]
    torch.manual_seed(0)
    model = build(ModelConfig(hidden_size=32, num_layers=1, num_heads=2, max_positions=128), len(tok),
                  pad_id=tok.pad_token_id, bos_id=tok.bos_token_id, eos_id=tok.eos_token_id).eval()
    out = sample(model, [e.prompt_ids for e in exs], eos_id=dom.eos_id, pad_id=dom.pad_id,
                 max_new_tokens=len(exs[0].target_ids), num_samples=3, temperature=1.0,
                 forced=[e.forced() for e in exs], suppress=dom.suppressed_ids)
    L, A = tok.tokens_per_frame, tok.action_dims
    for row, resp in enumerate(out.responses()):
        ex = exs[row // 3]
        assert len(resp) == len(ex.target_ids) and resp[-1] == tok.eos_token_id  # whole frames, then the given end
        assert resp[L:L + A] == ex.target_ids[L:L + A]
        assert resp[2 * L + A:2 * L + 2 * A] == ex.target_ids[2 * L + A:2 * L + 2 * A]
        frames = resp[:L] + resp[L + A:2 * L + A] + resp[2 * L + 2 * A:-1]
        assert all(0 <= i < tok.codebook for i in frames)  # suppressed: no action or special id inside a frame
    # without suppression the random model does put non-visual ids in frames
    free = sample(model, [e.prompt_ids for e in exs], eos_id=dom.eos_id, pad_id=dom.pad_id,
                  max_new_tokens=len(exs[0].target_ids), num_samples=3, forced=[e.forced() for e in exs])
    assert any(i >= tok.codebook for r in free.responses() for i in r[:L])


def test_score_perfect_codes_beat_noisy_ones_and_bad_ids_score_worst(tok):
    dom = VideoDomain(tok, VideoData(context=2, horizon=3))
    ex = [e for e in dom.episode_examples(episodes()) if e.group == "multi_step"][0]
    perfect, parts = dom.score("mae_ssim", ex.target_ids, ex)
    assert parts["valid"] == 1.0 and perfect <= 0.0 and {"mae", "ssim", "psnr", "mse", "repeat"} <= parts.keys()
    rng = np.random.default_rng(0)
    noisy = list(ex.target_ids)
    for i in rng.choice(tok.tokens_per_frame, size=tok.tokens_per_frame // 2, replace=False):
        noisy[i] = int(rng.integers(0, tok.codebook))
    assert dom.score("mae_ssim", noisy, ex)[0] <= perfect
    for bad in ([tok.eos_token_id] * len(ex.target_ids), ex.target_ids[:5], [], [10**6, -4] * 40):
        value, parts = dom.score("mae_ssim", bad, ex)  # clamped / filled, scored, flagged: never a crash
        assert WORST_REWARD <= value <= 0 and parts["valid"] == 0.0 and "why" in parts
    assert np.array(dom.decode(ex.target_ids)).shape == (3, tok.tokens_per_frame)


def test_tokenizer_save_load_round_trip(tok, tmp_path):
    tok.save_pretrained(tmp_path / "t")
    back = VideoTokenizer.from_pretrained(tmp_path / "t")
    frames = episodes(1, 2).frames[0]
    assert len(back) == len(tok) and back.eos_token_id == tok.eos_token_id
    assert np.array_equal(back.frame_codes(frames), tok.frame_codes(frames))
    with pytest.raises(FileNotFoundError):
        VideoTokenizer.from_pretrained(tmp_path)


def test_bundled_real_footage_loads():
    train, test = bridge("train"), bridge("test")
    assert train.frames.shape == (20, 10, 64, 64, 3) and test.frames.shape == (5, 10, 64, 64, 3)
    assert test.actions.shape == (5, 9, 4) and np.abs(test.actions).max() <= 1.0
    assert train.actions[..., 3].min() >= -1.0 and train.actions[..., 3].max() <= 1.0
    rt1 = rt1_frames()
    assert rt1.shape == (22, 64, 64, 3) and rt1.dtype == np.uint8 and rt1.std() > 10


def test_local_lpips_weights_add_the_metric_and_the_papers_reward(tok, tmp_path):
    from rlvr_world.domains.video.lpips import LPIPS

    torch.manual_seed(0)
    torch.save(LPIPS().state_dict(), tmp_path / "alex.pth")  # random weights in a local file
    dom = VideoDomain(tok, VideoData(lpips=str(tmp_path / "alex.pth")))
    ex = [e for e in dom.episode_examples(episodes()) if e.group == "single_step"][0]
    value, parts = dom.score("mae_lpips", ex.target_ids, ex)
    assert "lpips" in parts and value == pytest.approx(-(parts["mae"] + parts["lpips"]), abs=1e-6)
    assert "lpips" in dom.score("mae_ssim", ex.target_ids, ex)[1]
    with pytest.raises(ValueError, match="LPIPS"):
        VideoDomain(tok, VideoData(lpips="")).score("mae_lpips", ex.target_ids, ex)
    with pytest.raises(FileNotFoundError):
        VideoDomain.check_data(VideoData(lpips=str(tmp_path / "missing.pth")))


def test_token_rewards_split_the_reward_over_the_frame_codes(tok):
    from rlvr_world.domains.video.metrics import patch_rewards, video_reward

    dom = VideoDomain(tok, VideoData(context=2, horizon=3))
    ex = [e for e in dom.episode_examples(episodes()) if e.group == "multi_step"][0]
    rng = np.random.default_rng(0)
    noisy = list(ex.target_ids)
    for i in rng.choice(tok.tokens_per_frame, size=4, replace=False):  # change 4 codes of the first frame
        noisy[i] = (noisy[i] + 1 + int(rng.integers(0, tok.codebook - 1))) % tok.codebook
    per_token = dom.token_rewards("mae_ssim", noisy, ex)
    L, A = tok.tokens_per_frame, tok.action_dims
    assert len(per_token) == len(noisy)
    assert all(per_token[k * (L + A) + L + a] == 0.0 for k in range(2) for a in range(A))  # given actions
    frames = [per_token[k * (L + A): k * (L + A) + L] for k in range(3)]
    value, _ = dom.score("mae_ssim", noisy, ex)
    assert np.mean(frames) == pytest.approx(value, abs=1e-4)  # the tiles' mean is the reward
    # tiles themselves: a perfect frame scores 0 everywhere, noise in one tile hurts that tile most
    real = torch.as_tensor(ex.payload.frames[:1]).float() / 255
    assert torch.allclose(patch_rewards(real, real, 4), torch.zeros(1, 16))
    hurt = real.clone()
    hurt[0, :16, 16:32] = 1 - hurt[0, :16, 16:32]  # tile (0, 1)
    tiles = patch_rewards(hurt, real, 4)[0]
    assert tiles.argmin().item() == 1 and tiles.mean().item() == pytest.approx(video_reward(hurt, real)[0], abs=1e-4)
    # the paper's reward (pretrained VGG16 LPIPS, the default network) splits the same way, and scoring a
    # response then splitting its reward runs the network once
    calls = []
    inner = dom.lpips.inner.distance_map
    dom.lpips.inner.distance_map = lambda *a, **k: calls.append(1) or inner(*a, **k)
    noisy[L + A] = (noisy[L + A] + 1) % tok.codebook  # a response not scored yet (frame 2 differs too)
    value, parts = dom.score("mae_lpips", noisy, ex)
    per_token = dom.token_rewards("mae_lpips", noisy, ex)
    frames = [per_token[k * (L + A): k * (L + A) + L] for k in range(3)]
    assert parts["lpips"] > 0 and np.mean(frames) == pytest.approx(value, abs=1e-5) and len(calls) == 1
    with pytest.raises(ValueError, match="LPIPS"):
        VideoDomain(tok, VideoData(lpips="")).token_rewards("mae_lpips", noisy, ex)


def test_real_repetition_counts_examples_whose_last_real_frames_share_codes():
    from rlvr_world.domains.video import Target
    from rlvr_world.domains.video.evaluation import real_repetition
    from rlvr_world.engine.domain import Example

    def example(*codes):
        F = len(codes)
        t = Target(np.zeros((F, 64, 64, 3), np.uint8), np.array(codes), np.zeros((2, 64, 64, 3), np.uint8))
        return Example([0], [0], group="multi_step" if F > 1 else "single_step", payload=t)

    still, moving = example([1, 2], [3, 4], [3, 4]), example([1, 2], [3, 4], [3, 5])
    assert real_repetition([still, moving, moving, moving]) == {"repetition_rate": 25.0, "n": 4}
    assert real_repetition([example([1, 2])]) == {}  # one predicted frame: nothing to repeat


def test_repeat_rewards_compare_repeating_rollouts_with_the_others():
    from rlvr_world.domains.video.evaluation import repeat_rewards

    def rec(repeat, mae, ssim, lpips, group="multi_step"):
        return {"group": group, "repeat": repeat, "mae": mae, "ssim": ssim, "lpips": lpips}

    # repeats: SSIM cannot tell them apart from the others, LPIPS can
    recs = [rec(1.0, 0.1, 0.8, 0.5 + i / 100) for i in range(8)] + [rec(0.0, 0.1, 0.8, 0.2 + i / 100) for i in range(8)]
    out = repeat_rewards({"records": recs + [rec(0.0, 0.9, 0.0, 0.9, "single_step")]})
    assert out["n_repeating"] == 8 and out["n_other"] == 8
    assert out["mae_ssim"]["repeating"] == out["mae_ssim"]["other"] == pytest.approx(-0.3)
    assert out["mae_ssim"]["p"] > 0.5
    assert out["mae_lpips"]["repeating"] < out["mae_lpips"]["other"] and out["mae_lpips"]["p"] < 0.001
    assert "mae_lpips" not in repeat_rewards({"records": [{k: v for k, v in r.items() if k != "lpips"} for r in recs]})


def test_compare_tests_each_metric_against_another_runs_models_on_the_same_examples(tmp_path):
    import json

    from rlvr_world import report
    from rlvr_world.domains.video.evaluation import markdown
    from rlvr_world.engine.evaluate import result_of

    rng = np.random.default_rng(0)
    groups = ["single_step"] * 20 + ["multi_step"] * 20

    def ev(shift):  # an evaluation: per-example metrics; `shift` lowers MAE and LPIPS everywhere
        recs = [{"index": i, "group": g, "value": -0.3, "mae": 0.1 - shift + rng.uniform(0, 0.01), "mse": 0.01,
                 "psnr": 20.0, "ssim": 0.8, "lpips": 0.3 - shift + rng.uniform(0, 0.01), "valid": 1.0,
                 **({"repeat": 0.0} if g == "multi_step" else {})} for i, g in enumerate(groups)]
        r = result_of(recs, (), 1.0)
        return {**r.summary(), "records": r.records}  # as an evaluation file holds it: means, counts, records

    there = tmp_path / "there"
    there.mkdir()
    (there / "results.json").write_text(json.dumps({"domain": "video", "n_test_split": 50, "reward": "mae_lpips",
                                                    "test_indices": list(range(10, 50)), "command": "rlvr-world run"}))
    for name, e in (("mle", ev(0.0)), ("rlvr", ev(0.0))):
        (there / f"eval_{name}.json").write_text(json.dumps(e))
    ours = {"domain": "video", "n_test_split": 50, "test_indices": list(range(10, 50)),
            "evals": {"mle": ev(0.0), "rlvr": ev(0.05)}}  # our RLVR model: 0.05 lower MAE and LPIPS on every example
    c = report.compared(str(there), ours)
    rl = c["per_metric"]["rlvr_vs_rlvr"]
    for g in ("single_step", "multi_step"):
        assert rl[g]["significance"]["mae"]["delta"] == pytest.approx(-0.05, abs=0.01)
        assert rl[g]["significance"]["mae"]["p"] < 0.001 and rl[g]["significance"]["mae"]["gained"] == 20
        assert rl[g]["significance"]["psnr"]["p"] == 1.0  # equal everywhere
        assert abs(c["per_metric"]["mle_vs_mle"][g]["significance"]["lpips"]["delta"]) < 0.01
    md = markdown({"params": 1e6, "wall_s": 60, "command": "x", "reward": "mae_ssim", "compared": c})
    assert f"`{there}`" in md and "| RLVR there (mae_lpips reward) |" in md
    assert md.count("| RLVR here - RLVR there |") == 2
