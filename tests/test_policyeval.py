"""Policy evaluation inside a video world model: the frame networks, the detector's rule, the rollouts' layout, and
labelled simulator episodes."""

import numpy as np
import pytest
import torch

from rlvr_world.apps.policyeval import data, imagine as imagine_mod
from rlvr_world.apps.policyeval.detector import Detector, accuracy, runs_of
from rlvr_world.apps.policyeval.imagine import hold_last, imagine, to_uint8
from rlvr_world.apps.policyeval.nets import FrameNet, fit, predict
from rlvr_world.apps.policyeval.options import SPEC, PolicyEvalConfig
from rlvr_world.apps.policyeval.policies import Policy
from rlvr_world.domains.video import VideoTokenizer
from rlvr_world.domains.video.frames import FrameTokenizer, FrameTokenizerConfig
from rlvr_world.domains.video.simulate import SimConfig
from rlvr_world.engine.models import ModelConfig, build


@pytest.fixture(scope="module")
def tok():
    torch.manual_seed(0)
    return VideoTokenizer(FrameTokenizer(FrameTokenizerConfig(grid=4, levels=[5, 3], channels=16)), 4, bins=8)


def frames(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, 64, 64, 3), dtype=np.uint8)


def test_policies_act_per_episode_within_the_action_range(tmp_path):
    torch.manual_seed(0)
    net = FrameNet(n_tasks=2, out=4)
    x, tasks = frames(3), np.array([0, 1, 0])
    noisy = Policy(SPEC["bc-noise-0.5"], net)
    together = noisy.act(x, tasks, [np.random.default_rng(s) for s in (1, 2, 3)])
    alone = np.concatenate([noisy.act(x[i:i + 1], tasks[i:i + 1], [np.random.default_rng(s)])
                            for i, s in enumerate((1, 2, 3))])
    assert together.shape == (3, 4) and np.abs(together).max() <= 1.0
    np.testing.assert_allclose(together, alone, atol=1e-5)  # an episode's actions do not depend on its batch
    clean = Policy(SPEC["bc"], net).act(x, tasks, [np.random.default_rng(1)] * 3)
    assert not np.allclose(clean, together)  # the noise is there
    rand = Policy(SPEC["random"]).act(x, tasks, [np.random.default_rng(s) for s in range(3)])
    assert rand.shape == (3, 4) and np.abs(rand).max() <= 1.0 and len({tuple(r) for r in rand}) == 3
    with pytest.raises(ValueError, match="needs a trained network"):
        Policy(SPEC["bc"])
    net.save(tmp_path / "p.safetensors", note="x")
    again, meta = FrameNet.load(tmp_path / "p.safetensors")
    assert meta["note"] == "x" and sorted(p.name for p in tmp_path.iterdir()) == ["p.json", "p.safetensors"]
    np.testing.assert_array_equal(predict(net, x, tasks), predict(again, x, tasks))


def test_a_detector_learns_a_visible_flag_and_judges_episodes_by_runs():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 120, size=(200, 64, 64, 3), dtype=np.uint8)
    y = rng.random(200) < 0.3
    x[y, 20:44, 20:44] = 250  # "success" is a bright square
    torch.manual_seed(0)
    net = FrameNet(n_tasks=1, out=1, width=8, hidden=32)
    losses = fit(net, x, np.zeros(200, int), y[:, None].astype(np.float32), "bce", steps=120, batch_size=32,
                 lr=3e-3, pos_weight=7 / 3)
    assert np.mean(losses[-20:]) < 0.5 * np.mean(losses[:20])
    det = Detector(net, run=2)
    probs = det.frame_probs(x.reshape(20, 10, 64, 64, 3), np.zeros(20, int))  # (E, F)
    assert probs.shape == (20, 10) and accuracy(probs >= 0.5, y.reshape(20, 10))["accuracy"] > 90
    flags = np.array([[0, 1, 0, 1, 0], [0, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]], dtype=bool)
    assert runs_of(flags, 1).tolist() == [True, True, True, False]
    assert runs_of(flags, 2).tolist() == [False, True, True, False]
    assert runs_of(flags, 6).tolist() == [False] * 4
    a = accuracy(np.array([1, 0, 1, 0]), np.array([1, 1, 0, 0]))
    assert a["accuracy"] == 50 and a["recall"] == 50 and a["specificity"] == 50 and a["positives"] == 2


def test_an_imagined_rollout_keeps_frame_and_action_tokens_in_place(tok, monkeypatch):
    torch.manual_seed(0)
    model = build(ModelConfig(hidden_size=32, num_layers=1, num_heads=2, max_positions=128), len(tok),
                  pad_id=tok.pad_token_id, bos_id=tok.bos_token_id, eos_id=tok.eos_token_id).eval()
    E, C, T, L, A = 3, 2, 6, tok.tokens_per_frame, tok.action_dims
    ctx = frames(E * C).reshape(E, C, 64, 64, 3)
    ctx_actions = np.random.default_rng(1).uniform(-1, 1, size=(E, C, 4)).astype(np.float32)
    prompts = []
    real_sample = imagine_mod.sample

    def recording(model, batch, **kw):
        prompts.append([list(p) for p in batch])
        return real_sample(model, batch, **kw)

    monkeypatch.setattr(imagine_mod, "sample", recording)
    im = imagine(model, tok, Policy(SPEC["random"]), ctx, ctx_actions, np.zeros(E, int), np.arange(E), T,
                 temperature=1.0, generator=torch.Generator().manual_seed(0))
    assert im.frames.shape == (E, T + 1, 64, 64, 3) and im.actions.shape == (E, T, 4)
    assert im.codes.shape == (E, T + 1, L)
    np.testing.assert_array_equal(im.frames[:, :C], ctx)
    np.testing.assert_array_equal(im.actions[:, :C], ctx_actions)
    np.testing.assert_array_equal(im.codes[:, :C], tok.frame_codes(ctx))
    assert (im.codes >= 0).all() and (im.codes < tok.codebook).all()  # every predicted position is a frame code
    for t in range(C, T + 1):
        np.testing.assert_array_equal(im.frames[:, t], to_uint8(tok.decode_frames(im.codes[:, t])))
    assert len(prompts) == T + 1 - C  # one call per predicted frame, the context sliding
    act_ids = np.stack([tok.action_ids(a) for a in im.actions])  # (E, T, A)
    for k, batch in enumerate(prompts):
        t = C + k
        for e, p in enumerate(batch):
            want = [tok.bos_token_id]
            for s in range(t - C, t):
                want += im.codes[e, s].tolist() + act_ids[e, s].tolist()  # frame codes, then that step's action
            assert p == want and len(p) == 1 + C * (L + A)
    held = hold_last(ctx, ctx_actions, T)
    assert held.frames.shape == (E, T + 1, 64, 64, 3) and (held.frames[:, C:] == ctx[:, -1:]).all()
    with pytest.raises(ValueError, match="shorter than"):
        imagine(model, tok, Policy(SPEC["random"]), ctx, ctx_actions, np.zeros(E, int), np.arange(E), 1)


def test_labelled_episodes_carry_expert_actions_and_per_frame_success(tmp_path):
    cfg = SimConfig(tasks=["reach-v3"], steps=4)
    ep = data.labelled(cfg, ["reach-v3"], 2, "test")
    assert ep.frames.shape == (2, 5, 64, 64, 3) and ep.expert.shape == (2, 4, 4) and ep.frame_success.shape == (2, 5)
    assert np.abs(ep.expert).max() <= 1.0 and not np.array_equal(ep.expert, ep.actions)  # noise at the second level
    np.testing.assert_array_equal(ep.seed, [data.seed_of("test", "reach-v3", i) for i in range(2)])
    data.save_arrays(tmp_path / "e.npz", ep)
    again = data.load_arrays(data.Rollouts, tmp_path / "e.npz")
    for k, v in vars(ep).items():
        np.testing.assert_array_equal(getattr(again, k), v, err_msg=k)
    pol = Policy(SPEC["random"])
    run = data.run_policy(cfg, ["reach-v3"], 2, pol, "random")
    assert run.expert is None and run.actions.shape == (2, 4, 4)
    assert data.seed_of("eval", "reach-v3", 0) != data.seed_of("test", "reach-v3", 0)


def test_bad_options_are_one_line():
    with pytest.raises(ValueError, match="unknown policy 'nope'"):
        PolicyEvalConfig(policies=["bc", "nope"])
    with pytest.raises(ValueError, match="--episodes must be >= 2"):
        PolicyEvalConfig(episodes=1)
    with pytest.raises(ValueError, match="'bc' is not among the evaluated policies"):
        PolicyEvalConfig(policies=["random"], strip="bc:push-v3")
    with pytest.raises(ValueError, match="give POLICY or POLICY:TASK"):
        PolicyEvalConfig(strip="bc:")


def test_policy_spread_compares_how_far_policies_part_ways_imagined_and_real():
    from rlvr_world.apps.policyeval.experiment import policy_spread, rollout_report

    def episodes(a, b):  # two policies' episodes of 3 frames from the same seed: frame 2 differs by a and b
        f = np.zeros((2, 1, 3, 4, 4, 3), dtype=np.uint8)
        f[0, 0, 2], f[1, 0, 2] = a, b
        return {n: data.Rollouts(frames=f[i], actions=np.zeros((1, 2, 4), np.float32), success=np.zeros(1, bool),
                                 frame_success=np.zeros((1, 3), bool), task=np.zeros(1, int),
                                 seed=np.zeros(1, np.int64)) for i, n in enumerate(("bc", "random"))}

    real = episodes(0, 102)  # the simulator: the policies part ways at the last frame
    im = {n: imagine_mod.Imagined(frames=r.frames, actions=r.actions, codes=np.zeros((1, 3, 0), np.int64))
          for n, r in episodes(0, 51).items()}  # the world model: half as far apart
    real_spread = policy_spread({n: r.frames for n, r in real.items()}, context=2)
    assert real_spread == pytest.approx(0.4)
    report = rollout_report(im, real, context=2, real_spread=real_spread)
    assert report["policy_spread"] == {"imagined": 0.2, "real": 0.4, "ratio": 0.5}
    assert "policy_spread" not in rollout_report({"bc": im["bc"]}, real, context=2, real_spread=0.0)
