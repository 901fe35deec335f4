"""Frame tokenizer (FSQ autoencoder) and frame metrics, on synthetic frames."""

import json

import numpy as np
import pytest
import torch

from rlvr_world.domains.video import frames as frames_mod
from rlvr_world.domains.video.frames import (FSQ, FrameTokenizer, FrameTokenizerConfig, codebook_usage,
                                           train_frame_tokenizer, train_until_used)
from rlvr_world.domains.video.metrics import WORST_REWARD, frame_metrics, repetition_rate, video_reward

torch.set_num_threads(1)

SMALL = dict(size=16, grid=4, channels=16, batch_size=8, shift=1)


def rectangles(n: int, size: int, seed: int = 0) -> np.ndarray:
    """(n, size, size, 3) uint8: random coloured rectangles on a plain background."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    for i in range(n):
        out[i] = rng.integers(0, 256, 3)
        for _ in range(2):
            y0, x0 = rng.integers(0, size - 2, 2)
            y1, x1 = y0 + rng.integers(2, size // 2), x0 + rng.integers(2, size // 2)
            out[i, y0:y1, x0:x1] = rng.integers(0, 256, 3)
    return out


def test_default_tokenizer_shapes_and_code_range():
    torch.manual_seed(0)
    tok = FrameTokenizer().eval()
    assert tok.codebook_size == 1000 and tok.tokens_per_frame == 64
    frames = rectangles(3, 64)
    codes = tok.encode(frames)
    assert codes.shape == (3, 64) and codes.dtype == torch.long
    assert int(codes.min()) >= 0 and int(codes.max()) < tok.codebook_size
    rec = tok.decode(codes)
    assert rec.shape == (3, 64, 64, 3) and rec.dtype == torch.float32
    assert float(rec.min()) >= 0.0 and float(rec.max()) <= 1.0
    assert torch.equal(tok.reconstruct(torch.from_numpy(frames)), rec)


def test_fsq_codes_round_trip_every_code():
    fsq = FSQ([8, 5, 5, 5])
    codes = torch.arange(1000).view(10, 100)  # 10 "frames" of a 10x10 grid
    assert torch.equal(fsq.codes(fsq.from_codes(codes, 10)), codes)
    z = torch.randn(2, 4, 3, 3) * 5
    q = fsq.quantize(z)
    assert torch.equal(fsq.codes(fsq.from_codes(fsq.codes(q), 3)), fsq.codes(q))


def test_decode_clamps_out_of_range_codes():
    tok = FrameTokenizer(FrameTokenizerConfig(**SMALL)).eval()
    bad = torch.tensor([[-5, 10**6, 3, 999] * 4])
    assert torch.equal(tok.decode(bad), tok.decode(bad.clamp(0, tok.codebook_size - 1)))


def test_bad_input_and_config_fail_clearly():
    tok = FrameTokenizer(FrameTokenizerConfig(**SMALL))
    with pytest.raises(TypeError):
        tok.encode(np.zeros((1, 16, 16, 3), dtype=np.float32))
    with pytest.raises(ValueError):
        tok.encode(np.zeros((1, 8, 8, 3), dtype=np.uint8))
    with pytest.raises(ValueError):
        FrameTokenizer(FrameTokenizerConfig(size=64, grid=12))


def test_save_load_round_trip(tmp_path):
    tok = FrameTokenizer(FrameTokenizerConfig(**SMALL)).eval()
    frames = rectangles(4, 16)
    tok.save(tmp_path / "tok")
    back = FrameTokenizer.load(tmp_path / "tok")
    assert back.cfg == tok.cfg
    assert torch.equal(back.encode(frames), tok.encode(frames))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text(json.dumps({"model_type": "llama"}))
    for where in (tmp_path / "missing", tmp_path / "other"):
        with pytest.raises(FileNotFoundError, match="not a frame tokenizer directory"):
            FrameTokenizer.load(where)


def test_training_reduces_loss_and_is_deterministic(tmp_path):
    frames = rectangles(32, 16)
    cfg = FrameTokenizerConfig(**SMALL, steps=40, lr=3e-3)
    tok = train_frame_tokenizer(frames, cfg, log_path=tmp_path / "log.jsonl")
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [10, 20, 30, 40]
    assert log[-1]["loss"] < log[0]["loss"]
    again = train_frame_tokenizer(frames, cfg)
    assert torch.equal(again.encode(frames), tok.encode(frames))


def test_a_collapsed_tokenizer_is_trained_again_at_half_the_learning_rate(monkeypatch):
    frames = rectangles(32, 16)
    cfg = FrameTokenizerConfig(**SMALL, steps=40, lr=3e-3)
    collapsed = FrameTokenizer(cfg)
    for p in collapsed.encoder.parameters():
        torch.nn.init.zeros_(p)  # every cell encodes to the same latent: one code
    assert codebook_usage(collapsed, frames) == 1 / collapsed.codebook_size
    lrs = []

    def fake_train(frames, cfg):
        lrs.append(cfg.lr)
        return collapsed if len(lrs) == 1 else train_frame_tokenizer(frames, cfg)

    monkeypatch.setattr(frames_mod, "train_frame_tokenizer", fake_train)
    tok = train_until_used(frames, cfg, min_usage=0.01)
    assert lrs == [3e-3, 1.5e-3]
    assert tok is not collapsed and codebook_usage(tok, frames) >= 0.01


# ---- metrics ---------------------------------------------------------------------


def test_perfect_prediction_scores_best():
    real = torch.from_numpy(rectangles(3, 32)).float() / 255
    m = frame_metrics(real, real)
    assert set(m) == {"mse", "mae", "psnr", "ssim"} and m["mse"].shape == (3,)
    assert torch.all(m["mse"] == 0) and torch.allclose(m["ssim"], torch.ones(3))
    value, parts = video_reward(real, real)
    assert value == pytest.approx(0.0, abs=1e-6) and parts["ssim"] == pytest.approx(1.0, abs=1e-6)
    rollouts = frame_metrics(real.view(1, 3, 32, 32, 3), real.view(1, 3, 32, 32, 3))  # (N, F, H, W, 3)
    assert rollouts["ssim"].shape == (1, 3)


def test_reward_falls_with_noise():
    real = torch.from_numpy(rectangles(2, 32)).float() / 255
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(real.shape, generator=g)
    values = [video_reward((real + s * noise).clamp(0, 1), real)[0] for s in (0.0, 0.02, 0.05, 0.1, 0.2, 0.4)]
    assert all(a > b for a, b in zip(values, values[1:]))
    assert values[-1] >= WORST_REWARD


def test_reward_never_raises_on_bad_shapes():
    real = torch.rand(2, 32, 32, 3)
    for pred in (torch.rand(3, 32, 32, 3), torch.rand(32, 32, 3), torch.rand(2, 32, 32, 4)):
        value, parts = video_reward(pred, real)
        assert value == WORST_REWARD and "why" in parts
    with pytest.raises(ValueError):
        video_reward(real, real, perceptual="lpips")  # a bad setting, not bad frames


def test_repetition_rate():
    a = torch.tensor([[1, 2, 3], [4, 5, 6]])
    rollouts = torch.stack([
        torch.stack([a[0], a[1], a[1]]),  # last frame repeats
        torch.stack([a[1], a[1], a[0]]),  # an earlier repeat does not count
        torch.stack([a[0], a[0], a[0]]),
        torch.stack([a[0], a[1], torch.tensor([4, 5, 7])]),
    ])  # (R=4, F=3, L=3)
    assert repetition_rate(rollouts) == 0.5
    assert repetition_rate(rollouts[:, :2].numpy()) == 0.5  # rollouts 1 and 2
    with pytest.raises(ValueError):
        repetition_rate(rollouts[:, :1])


# ---- LPIPS with random weights (the pretrained ones: test_lpips.py) ----------


def test_lpips_random_weights(tmp_path):
    from rlvr_world.domains.video.lpips import LPIPS, load_lpips

    torch.manual_seed(0)
    net = LPIPS()
    x = torch.from_numpy(rectangles(3, 64)).permute(0, 3, 1, 2).float() / 255  # (N, 3, H, W)
    y = torch.from_numpy(rectangles(3, 64, seed=1)).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        same, diff = net(x, x), net(x, y)
    assert same.shape == (3,) and torch.all(same == 0) and torch.all(diff > 0)

    sd = {k: v for k, v in net.state_dict().items()}
    torch.save({**sd, "classifier.1.weight": torch.zeros(2, 2)}, tmp_path / "alex.pth")  # extra keys are ignored
    back = load_lpips(tmp_path / "alex.pth")
    with torch.no_grad():
        assert torch.allclose(back(x, y), diff)
    pkg = {k.replace("features.", "net.slice1.", 1) if k.startswith("features.") else k: v for k, v in sd.items()}
    torch.save(pkg, tmp_path / "pkg.pth")  # the lpips package's own key names
    assert torch.allclose(load_lpips(tmp_path / "pkg.pth")(x, y).detach(), diff)

    with pytest.raises(FileNotFoundError, match="not found"):
        load_lpips(tmp_path / "none.pth")
    torch.save({"weight": torch.zeros(3)}, tmp_path / "foreign.pth")
    (tmp_path / "junk.pth").write_text("not a checkpoint")
    for bad in ("foreign.pth", "junk.pth"):
        with pytest.raises(ValueError) as e:
            load_lpips(tmp_path / bad)
        assert "\n" not in str(e.value)

    real = x.permute(0, 2, 3, 1)  # (N, H, W, 3)
    value, parts = video_reward(real, real, perceptual="lpips", lpips=net)
    assert value == 0.0 and parts["lpips"] == 0.0 and parts["perceptual"] == 0.0
    worse, parts = video_reward(y.permute(0, 2, 3, 1), real, perceptual="lpips", lpips=net)
    assert worse < 0 and parts["perceptual"] == pytest.approx(diff.mean().item(), rel=1e-5)
    assert frame_metrics(real, real, lpips=net)["lpips"].shape == (3,)
