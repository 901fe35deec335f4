"""The advantage estimators of the registry, each against a plain loop over responses and tokens."""

import math
import random

import pytest
import torch

from rlvr_world.engine.advantages import ESTIMATORS, KINDS, Scores
from rlvr_world.engine.options import RLConfig
from rlvr_world.engine.rl import joined

EPS = 1e-6
SCALES = ("group", "batch", "none")


def std(xs, unbiased=True):
    mean = sum(xs) / len(xs)
    return math.sqrt(sum((x - mean) ** 2 for x in xs) / max(1, len(xs) - unbiased))


def divided(d, group_scale, batch_scale, scale):
    return d / (group_scale + EPS) if scale == "group" else d / (batch_scale + EPS) if scale == "batch" else d


def plain_grpo(rewards, G, baseline, scale):
    groups = [rewards[b * G:(b + 1) * G] for b in range(len(rewards) // G)]
    if baseline is None:
        centres, spreads, whole = [sum(g) / G for g in groups], [std(g) for g in groups], std(rewards)
    else:
        centres = baseline
        spreads = [math.sqrt(sum((r - c) ** 2 for r in g) / G) for g, c in zip(groups, centres)]
        whole = math.sqrt(sum((r - centres[i // G]) ** 2 for i, r in enumerate(rewards)) / len(rewards))
    return [divided(r - centres[i // G], spreads[i // G], whole, scale) for i, r in enumerate(rewards)]


def plain_decision(rewards, decided, lengths, G, scale, balance):
    """One response at a time: the decision credited by its correctness, the content by the reward among attempts."""
    N, width = len(rewards), max(1, max(lengths))
    at = [d[0] for d in decided]
    attempt = [d[1] == KINDS.index("change") or d[0] < 0 for d in decided]
    right = [float(d[1] == KINDS.index("no_change") if d[2] else d[1] == KINDS.index("change")) for d in decided]

    def centred(values, members):
        dev, spread = [0.0] * N, [0.0] * N
        for b in range(N // G):
            idx = [i for i in range(b * G, (b + 1) * G) if members[i]]
            mean = sum(values[i] for i in idx) / max(1, len(idx))
            for i in idx:
                dev[i] = values[i] - mean
            for i in range(b * G, (b + 1) * G):
                spread[i] = math.sqrt(sum(dev[j] ** 2 for j in idx) / max(1, len(idx) - 1))
        whole = math.sqrt(sum(d * d for d in dev) / max(1, sum(members) - 1))
        return [divided(dev[i], spread[i], whole, scale) for i in range(N)]

    dec = centred(right, [a >= 0 for a in at])
    con = centred(rewards, attempt)
    if balance:
        strata = [[i for i in range(N) if at[i] >= 0 and decided[i][2] == u] for u in (1, 0)]
        pushes = [sum(abs(dec[i]) for i in s) for s in strata]
        if min(pushes) > 0:
            for s, push in zip(strata, pushes):
                for i in s:
                    dec[i] *= min(pushes) / push
    return [[dec[i] if t <= at[i] else con[i] for t in range(width)] for i in range(N)]


def plain_token(rewards, mask, G, baseline, scale):
    N, T = len(rewards), len(rewards[0])
    dev = [[0.0] * T for _ in range(N)]
    for b in range(N // G):
        for t in range(T):
            idx = [i for i in range(b * G, (b + 1) * G) if mask[i][t]]
            mean = baseline[b][t] if baseline is not None else sum(rewards[i][t] for i in idx) / max(1, len(idx))
            for i in idx:
                dev[i][t] = rewards[i][t] - mean

    def rms(rows):
        return math.sqrt(sum(dev[i][t] ** 2 for i in rows for t in range(T))
                         / max(1, sum(mask[i][t] for i in rows for t in range(T))))

    whole = rms(range(N))
    return [[divided(dev[i][t], rms(range(i // G * G, (i // G + 1) * G)), whole, scale) for t in range(T)]
            for i in range(N)]


def batch(seed, B=3, G=4, T=6, greedy=False):
    """Random scores of B groups of G: some examples with a trivial answer, some without, ragged lengths."""
    rng = random.Random(seed)
    N = B * G
    lengths = [rng.randint(1, T) for _ in range(N)]
    decided = []
    for i in range(N):
        has_trivial = (i // G) % 3 != 2  # every third group's example has no trivial answer
        decided.append([rng.randrange(lengths[i]) if has_trivial else -1, rng.randrange(3) if has_trivial else 0,
                        int(has_trivial and (i // G) % 2 == 0)])
    mask = [[float(t < lengths[i] and rng.random() < 0.8) for t in range(T)] for i in range(N)]
    return Scores(
        rewards=torch.tensor([rng.choice([0.0, 0.25, 1.0, rng.random()]) for _ in range(N)]), group_size=G,
        decided=torch.tensor(decided), lengths=torch.tensor(lengths),
        baseline=torch.tensor([rng.random() for _ in range(B)]) if greedy else None,
        token_rewards=torch.tensor([[rng.random() * m for m in row] for row in mask]), token_mask=torch.tensor(mask),
        token_baseline=torch.tensor([[rng.random() for _ in range(T)] for _ in range(B)]) if greedy else None)


def test_every_estimator_the_options_can_name_is_registered():
    named = {RLConfig(credit=c, baseline=b, advantage=a).estimator
             for c in ("sequence", "token") for b in ("group", "greedy") for a in ("decision", "grpo")}
    assert named == set(ESTIMATORS) == {"grpo", "decision", "token"}


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("greedy", [False, True])
def test_grpo_matches_a_plain_loop(scale, greedy):
    for seed in range(5):
        s = batch(seed, greedy=greedy)
        adv, metrics = ESTIMATORS["grpo"](s, RLConfig(scale=scale))
        want = plain_grpo(s.rewards.tolist(), s.group_size, None if s.baseline is None else s.baseline.tolist(), scale)
        assert adv.shape == (12,) and torch.allclose(adv, torch.tensor(want), atol=1e-4)
        assert all(k.startswith("adv/") for k in metrics)


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("balance", [False, True])
def test_decision_matches_a_plain_loop(scale, balance):
    for seed in range(5):
        s = batch(seed)
        adv, metrics = ESTIMATORS["decision"](s, RLConfig(scale=scale, balance_strata=balance))
        want = plain_decision(s.rewards.tolist(), s.decided.tolist(), s.lengths.tolist(), s.group_size, scale, balance)
        assert adv.shape == (12, max(s.lengths)) and torch.allclose(adv, torch.tensor(want), atol=1e-4)
        assert 0 <= metrics["adv/decision_split_frac"] <= 1


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("greedy", [False, True])
def test_token_matches_a_plain_loop(scale, greedy):
    for seed in range(5):
        s = batch(seed, greedy=greedy)
        adv, metrics = ESTIMATORS["token"](s, RLConfig(credit="token", scale=scale))
        want = plain_token(s.token_rewards.tolist(), s.token_mask.tolist(), s.group_size,
                           None if s.token_baseline is None else s.token_baseline.tolist(), scale)
        assert adv.shape == (12, 6) and torch.allclose(adv, torch.tensor(want), atol=1e-4)
        assert {"adv/flat_group_frac", "adv/contested_token_frac"} <= set(metrics)  # the response's and the tokens'
    with pytest.raises(ValueError, match="token rewards"):
        ESTIMATORS["token"](Scores(s.rewards, 4, s.decided, s.lengths), RLConfig(credit="token"))


def test_processes_shares_join_in_rank_order_with_token_tables_padded():
    a, b = batch(0, B=1, T=3, greedy=True), batch(1, B=2, T=5, greedy=True)
    whole = joined([a, b])
    assert torch.equal(whole.rewards, torch.cat([a.rewards, b.rewards])) and whole.decided.shape == (12, 3)
    assert whole.token_rewards.shape == (12, 5) and whole.token_baseline.shape == (3, 5)
    assert torch.equal(whole.token_mask[:4, :3], a.token_mask) and not whole.token_mask[:4, 3:].any()
