"""GRPO math against naive per-element loops."""

import math

import pytest
import torch

from rlvr_world.engine.grpo import group_advantages, grpo_loss, kl_k3


def naive_advantages(rewards, G):
    out = []
    for b in range(len(rewards) // G):
        grp = rewards[b * G:(b + 1) * G]
        mean = sum(grp) / G
        std = math.sqrt(sum((r - mean) ** 2 for r in grp) / (G - 1))
        out += [(r - mean) / (std + 1e-6) for r in grp]
    return out


def naive_loss(logp, old, ref, adv, mask, clip, kl_coef):
    total, n, clipped = 0.0, 0, 0
    for i in range(len(logp)):
        for t in range(len(logp[0])):
            if not mask[i][t]:
                continue
            ratio = math.exp(logp[i][t] - old[i][t])
            a = adv[i]
            pg = max(-a * ratio, -a * min(max(ratio, 1 - clip), 1 + clip))
            clipped += (-a * min(max(ratio, 1 - clip), 1 + clip)) > (-a * ratio)
            d = ref[i][t] - logp[i][t]
            total += pg + kl_coef * (math.exp(d) - d - 1)
            n += 1
    return total / n, clipped / n


def test_group_advantages_match_loop():
    g = torch.Generator().manual_seed(0)
    r = torch.rand(12, generator=g)
    adv, m = group_advantages(r, 4)
    assert torch.allclose(adv, torch.tensor(naive_advantages(r.tolist(), 4)), atol=1e-5)
    assert m["adv/flat_group_frac"] == 0.0


def test_flat_groups_get_zero_advantage_and_are_counted():
    r = torch.tensor([1.0, 1.0, 1.0, 0.0, 1.0, 0.5])
    adv, m = group_advantages(r, 3)
    assert torch.all(adv[:3] == 0)
    assert abs(m["adv/flat_group_frac"] - 0.5) < 1e-9


def test_kl_k3_is_nonnegative_and_zero_at_equality():
    a = torch.randn(50)
    assert torch.all(kl_k3(a, a + torch.randn(50)) >= 0)
    assert torch.allclose(kl_k3(a, a), torch.zeros(50))


def test_loss_matches_loop_with_clipping_and_mask():
    g = torch.Generator().manual_seed(1)
    logp = -torch.rand(6, 7, generator=g) * 3
    old = logp + (torch.rand(6, 7, generator=g) - 0.5) * 0.8  # ratios well outside the clip range too
    ref = logp + (torch.rand(6, 7, generator=g) - 0.5)
    adv = torch.randn(6, generator=g)
    mask = (torch.rand(6, 7, generator=g) > 0.3).long()
    loss, m = grpo_loss(logp, old, ref, adv, mask, clip_eps=0.2, kl_coef=0.1)
    want, clip_frac = naive_loss(logp.tolist(), old.tolist(), ref.tolist(), adv.tolist(), mask.tolist(), 0.2, 0.1)
    assert abs(loss.item() - want) < 1e-5
    assert abs(m["loss/clip_frac"] - clip_frac) < 1e-6
    assert 0 < clip_frac < 1


def test_micro_batches_sum_to_the_full_batch_gradient():
    g = torch.Generator().manual_seed(2)
    base = torch.randn(8, 5, generator=g)
    ref = base + 0.1 * torch.randn(8, 5, generator=g)
    adv = torch.randn(8, generator=g)
    mask = (torch.rand(8, 5, generator=g) > 0.2).long()

    full = base.clone().requires_grad_(True)
    loss, _ = grpo_loss(full, full.detach(), ref, adv, mask, kl_coef=0.05)
    loss.backward()

    acc = base.clone().requires_grad_(True)
    n = int(mask.sum())
    for rows in (slice(0, 3), slice(3, 8)):
        part, _ = grpo_loss(acc[rows], acc[rows].detach(), ref[rows], adv[rows], mask[rows], kl_coef=0.05, num_tokens=n)
        part.backward()
    assert torch.allclose(full.grad, acc.grad, atol=1e-6)


def test_on_policy_gradient_is_advantage_weighted_logprob_gradient():
    # With old == logp (detached) the ratio is 1: the gradient is -adv * grad(logp) / n_tokens.
    logp = torch.tensor([[-1.0, -2.0], [-0.5, -0.1]], requires_grad=True)
    adv = torch.tensor([2.0, -1.0])
    mask = torch.ones(2, 2)
    loss, _ = grpo_loss(logp, logp.detach(), None, adv, mask, kl_coef=0.0)
    loss.backward()
    assert torch.allclose(logp.grad, torch.tensor([[-0.5, -0.5], [0.25, 0.25]]))


def test_token_advantages_compare_positions_within_a_group():
    from rlvr_world.engine.grpo import token_advantages

    # one group of 3: position 0 agreed by all, position 1 won by row 0, position 2 reached by rows 0 and 1 only
    r = torch.tensor([[0.5, 1.0, 0.2], [0.5, 0.0, 0.4], [0.5, 0.0, 9.0]])
    mask = torch.tensor([[1.0, 1, 1], [1, 1, 1], [1, 1, 0]])
    adv, m = token_advantages(r, mask, 3)
    assert torch.allclose(adv[:, 0], torch.zeros(3))  # nobody differs: no credit
    assert adv[0, 1] > 0 > adv[1, 1] and torch.isclose(adv[1, 1], adv[2, 1])
    assert adv[1, 2] > 0 > adv[0, 2] and adv[2, 2] == 0  # the masked 9.0 is ignored
    assert m["adv/contested_token_frac"] == pytest.approx(2 / 3)
    # on one shared scale: the root mean square of the deviations over the group's scored tokens is 1
    assert ((adv**2 * mask).sum() / mask.sum()).item() == pytest.approx(1.0, rel=1e-4)


def test_a_baseline_replaces_the_group_mean():
    from rlvr_world.engine.grpo import group_advantages, token_advantages

    # sequence credit: rewards 1, 2 against a greedy reward of 1 -> only the second response is ahead
    adv, _ = group_advantages(torch.tensor([1.0, 2.0, 3.0, 4.0]), 2, baseline=torch.tensor([1.0, 5.0]))
    assert adv[0] == 0 and adv[1] > 0 and adv[2] < adv[3] < 0
    # token credit: a position everyone beats the baseline at is credited positively for all of them
    r = torch.tensor([[0.5, 1.0], [0.7, 0.0]])
    adv, _ = token_advantages(r, torch.ones(2, 2), 2, baseline=torch.tensor([[0.0, 0.5]]))
    assert adv[0, 0] > 0 and adv[1, 0] > adv[0, 0]
    assert adv[0, 1] > 0 > adv[1, 1]
    assert ((adv**2).mean()).item() == pytest.approx(1.0, rel=1e-4)  # one shared scale, as without a baseline


def test_batch_and_no_scale_keep_small_reward_gaps_small():
    from rlvr_world.engine.grpo import token_advantages

    # two groups: one whose rewards differ by 0.01 (e.g. "no change" scored 0.30 against 0.29), one by 1.0
    r = torch.tensor([0.30, 0.29, 1.0, 0.0])
    per_group, _ = group_advantages(r, 2)
    assert per_group[0] == pytest.approx(per_group[2], rel=1e-3)  # the paper's scale: both push alike
    none, _ = group_advantages(r, 2, scale="none")
    assert torch.allclose(none, torch.tensor([0.005, -0.005, 0.5, -0.5]), atol=1e-6)
    batch, _ = group_advantages(r, 2, scale="batch")
    assert torch.allclose(batch, none / r.std(), atol=1e-5)
    assert batch[2] / batch[0] == pytest.approx(100, rel=1e-3)
    # per-token credit: the same three choices, with one scale over the batch's scored tokens
    tr, mask = torch.tensor([[0.3, 1.0], [0.29, 0.0]]), torch.ones(2, 2)
    tok_none, _ = token_advantages(tr, mask, 2, scale="none")
    assert torch.allclose(tok_none, torch.tensor([[0.005, 0.5], [-0.005, -0.5]]), atol=1e-6)
    tok_batch, _ = token_advantages(tr, mask, 2, scale="batch")
    assert ((tok_batch**2).mean()).item() == pytest.approx(1.0, rel=1e-4)
    with pytest.raises(ValueError, match="scale must be one of"):
        group_advantages(r, 2, scale="global")


def test_decision_kl_pulls_only_the_decision_tokens_back_toward_the_start():
    g = torch.Generator().manual_seed(3)
    ref = -torch.rand(3, 6, generator=g) * 2
    logp = (ref + 0.5).requires_grad_()  # every token drifted the same way
    mask = torch.ones(3, 6)
    at = torch.tensor([2, 0, -1])  # decisions up to position 2, at position 0, and a response without one
    loss, m = grpo_loss(logp, logp.detach(), ref, torch.zeros(3), mask, kl_coef=0.0, decision_kl=1.0,
                        decision_at=at)
    loss.backward()
    moved = logp.grad != 0
    assert moved.tolist() == [[True, True, True, False, False, False], [True] + [False] * 5, [False] * 6]
    assert (logp.grad[moved] > 0).all()  # descending the loss lowers the log-probs that rose
    assert m["loss/decision_kl"] == pytest.approx(kl_k3(logp, ref).detach()[moved].sum().item() / mask.sum().item())
    # off, the loss is GRPO's with the plain KL term
    plain, _ = grpo_loss(logp, logp.detach(), ref, torch.ones(3), mask, kl_coef=0.01)
    same, _ = grpo_loss(logp, logp.detach(), ref, torch.ones(3), mask, kl_coef=0.01, decision_at=at)
    assert plain.item() == same.item()
