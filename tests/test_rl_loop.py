"""The GRPO loop on a toy domain: it moves the reward, changes the weights, and resumes exactly."""

import os
import signal
from types import SimpleNamespace

import pytest
import torch

from rlvr_world.engine import models
from rlvr_world.engine.domain import Domain, Example
from rlvr_world.engine.rl import RLConfig, train_rl

TARGET = 7


class ToyDomain(Domain):
    """Reward: the share of response tokens that are TARGET (a verifiable, dense reward)."""

    name = "toy"
    metric = "share"
    eos_id, pad_id = 2, 0

    def __init__(self):
        self.rewards = {"share": self._share}

    @staticmethod
    def _share(ids, example):
        body = [i for i in ids if i != 2]
        return (sum(i == TARGET for i in body) / len(body) if body else 0.0), {"len": len(body)}

    def decode(self, ids):
        return ids

    def score(self, reward, ids, example):
        return self.rewards[reward](ids, example)


def toy_model():
    torch.manual_seed(0)
    return models.build(models.ModelConfig(hidden_size=32, num_layers=1, num_heads=2, max_positions=64), 12,
                        pad_id=0, bos_id=1, eos_id=2)


TOK = SimpleNamespace(save_pretrained=lambda path: None)
EXAMPLES = [Example([3 + i % 5, 4, 5], [TARGET, 2]) for i in range(20)]


def cfg(**kw):
    base = dict(reward="share", steps=30, prompts_per_step=4, group_size=8, lr=3e-3, max_new_tokens=6,
                micro_batch_size=16, eval_every=0, save_every=1000, kl_coef=0.001)
    return RLConfig(**{**base, **kw})


def rows(path):
    import json

    return [json.loads(l) for l in path.read_text().splitlines()]


def test_rl_moves_the_reward_and_changes_the_weights(tmp_path):
    torch.set_num_threads(1)
    model = toy_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train_rl(model, TOK, ToyDomain(), EXAMPLES, cfg(), tmp_path)
    log = [r for r in rows(tmp_path / "metrics.jsonl") if "reward/mean" in r]
    early = sum(r["reward/mean"] for r in log[:5]) / 5
    late = sum(r["reward/mean"] for r in log[-5:]) / 5
    assert late > early + 0.2, (early, late)
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(r["loss/kl"] >= 0 for r in log) and log[-1]["loss/kl"] > 0


def test_rl_resume_after_interrupt_equals_uninterrupted(tmp_path):
    torch.set_num_threads(1)
    full = toy_model()
    train_rl(full, TOK, ToyDomain(), EXAMPLES, cfg(steps=6), tmp_path / "full")

    calls = []

    def interrupt_at_3(model):  # called before step 1 and after steps 1, 2, 3, ...
        calls.append(1)
        if len(calls) == 4:
            os.kill(os.getpid(), signal.SIGINT)  # the loop finishes step 3, saves, and stops
        return {}

    with pytest.raises(KeyboardInterrupt):
        train_rl(toy_model(), TOK, ToyDomain(), EXAMPLES, cfg(steps=6, eval_every=1), tmp_path / "cut",
                 evaluate_fn=interrupt_at_3)
    ckpt = tmp_path / "cut" / "checkpoint"
    assert torch.load(ckpt / "trainer_state.pt", weights_only=False)["step"] == 3
    resumed = models.load(ckpt)
    train_rl(resumed, TOK, ToyDomain(), EXAMPLES, cfg(steps=6), tmp_path / "cut", resume=True)
    for k, v in full.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k
    assert [r["step"] for r in rows(tmp_path / "cut" / "metrics.jsonl") if "reward/mean" in r] == [1, 2, 3, 4, 5, 6]


def test_given_tokens_get_no_gradient_in_mle_or_rl():
    """Tokens the data gives (Example.loss_mask 0) count in neither loss: changing them changes neither."""
    from rlvr_world.engine.mle import mle_loss
    from rlvr_world.engine.rl import trained_mask

    model = toy_model()
    a = [Example([3, 4], [7, 9, 7, 2], loss_mask=[1, 0, 1, 1])]
    b = [Example([3, 4], [7, 9, 7, 2], loss_mask=[1, 1, 1, 1])]
    loss_a, n_a = mle_loss(model, a, pad_id=0)
    loss_b, n_b = mle_loss(model, b, pad_id=0)
    assert (n_a, n_b) == (3, 4) and not torch.isclose(loss_a, loss_b)
    assert a[0].forced() == [-1, 9, -1, -1] and b[0].forced() is None
    mask = trained_mask([[7, 9, 7, 2], [7]], [[1, 0, 1, 1], [1, 0, 1, 1]], 5)
    assert mask.tolist() == [[1, 0, 1, 1, 0], [1, 0, 0, 0, 0]]


class ToyTokenDomain(ToyDomain):
    """The same reward, split over the tokens: 1 for each TARGET token, 0 for the others (their mean is the share)."""

    token_credit = True

    def token_rewards(self, reward, ids, example):
        return [float(i == TARGET) for i in ids]


def test_token_credit_moves_the_reward_and_needs_a_domain_that_splits_it(tmp_path):
    torch.set_num_threads(1)
    model = toy_model()
    train_rl(model, TOK, ToyTokenDomain(), EXAMPLES, cfg(credit="token"), tmp_path)
    log = [r for r in rows(tmp_path / "metrics.jsonl") if "reward/mean" in r]
    early = sum(r["reward/mean"] for r in log[:5]) / 5
    late = sum(r["reward/mean"] for r in log[-5:]) / 5
    assert late > early + 0.2, (early, late)
    assert all(0 <= r["adv/contested_token_frac"] <= 1 for r in log)
    with pytest.raises(ValueError, match="cannot split its reward"):
        train_rl(toy_model(), TOK, ToyDomain(), EXAMPLES, cfg(credit="token"), tmp_path / "b")
    with pytest.raises(ValueError, match="unknown credit"):
        cfg(credit="pixel")


def test_pipeline_rl_leaves_the_mle_model_as_it_was(tmp_path, monkeypatch):
    """GRPO trains in place: the pipeline must hand it a copy, since the MLE model is used after RL (video finish)."""
    from rlvr_world import pipeline as pl

    def fake_train_rl(policy, *args, **kwargs):
        with torch.no_grad():
            for p in policy.parameters():
                p.add_(1.0)
        return policy

    monkeypatch.setattr(pl.rl, "train_rl", fake_train_rl)
    cfg = pl.preset("tiny")
    cfg.out = str(tmp_path / "run")
    mle = models.build(models.ModelConfig(hidden_size=16, num_layers=1, num_heads=2, max_positions=32), 40,
                       pad_id=0, bos_id=1, eos_id=2)
    before = [p.clone() for p in mle.parameters()]
    rl = pl.Pipeline(cfg).train_rl(None, mle, None, [], [])
    assert rl is not mle and all(torch.equal(a, b) for a, b in zip(before, mle.parameters()))


def test_greedy_baseline_moves_the_reward_and_credits_only_departures(tmp_path):
    from rlvr_world.engine.rl import departs

    assert departs([[1, 2, 3], [1, 5, 3, 4]], [[1, 2, 9]], 2, 4).tolist() == [[0, 0, 1, 1], [0, 1, 1, 1]]
    torch.set_num_threads(1)
    for credit, domain in (("sequence", ToyDomain()), ("token", ToyTokenDomain())):
        train_rl(toy_model(), TOK, domain, EXAMPLES, cfg(credit=credit, baseline="greedy"), tmp_path / credit)
        log = [r for r in rows(tmp_path / credit / "metrics.jsonl") if "reward/mean" in r]
        early = sum(r["reward/greedy"] for r in log[:5]) / 5
        late = sum(r["reward/greedy"] for r in log[-5:]) / 5
        assert late > early + 0.2, (credit, early, late)
    with pytest.raises(ValueError, match="unknown baseline"):
        cfg(baseline="best")


@pytest.mark.parametrize("scale", ["batch", "none"])
def test_batch_or_no_reward_scaling_moves_the_reward(tmp_path, scale):
    torch.set_num_threads(1)
    train_rl(toy_model(), TOK, ToyDomain(), EXAMPLES, cfg(scale=scale), tmp_path)
    log = [r for r in rows(tmp_path / "metrics.jsonl") if "reward/mean" in r]
    early = sum(r["reward/mean"] for r in log[:5]) / 5
    late = sum(r["reward/mean"] for r in log[-5:]) / 5
    assert late > early + 0.2, (scale, early, late)
    # the setting reached the advantages: unscaled ones are the raw deviations of rewards in [0, 1]
    pushes = sum(r["adv/abs_mean"] for r in log) / len(log)
    assert (pushes < 0.3) if scale == "none" else (pushes > 0.3), (scale, pushes)


def test_rl_leaves_out_prompts_whose_answer_cannot_fit_the_budget():
    from rlvr_world.pipeline import fitting

    short, long = Example([5, 6], [7, 7, 2]), Example([5, 6], [7] * 9 + [2])
    kept, cut = fitting([short, long, short], max_new_tokens=5)  # every sample of `long` would be cut off
    assert kept == [short, short] and cut == 1
    assert fitting([short, long], max_new_tokens=10) == ([short, long], 0)
    with pytest.raises(ValueError, match="no RL prompt's answer fits --rl.max-new-tokens 2 .*3 tokens"):
        fitting([short, long], max_new_tokens=2)
