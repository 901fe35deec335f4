"""GRPO as pure tensor functions.

Axes: B prompts, G samples per prompt, N = B*G responses, T response tokens.

Follows the paper's runs: advantages are rewards normalised within each
group, (r - mean) / (std + 1e-6), with the unbiased std as in verl; the PPO
clipped surrogate (eps 0.2); token-mean aggregation over every response token
of the whole batch; a KL penalty to the frozen starting model added to the loss
with the low-variance k3 estimator. Every knob is an explicit argument and
every function returns its metrics with namespaced keys. Beyond the paper:
`token_advantages`, credit per token from a reward the domain splits over
the response's tokens (`RLConfig.credit = "token"`); and either may measure
rewards against the greedy response's instead of the group mean
(`RLConfig.baseline = "greedy"`, as in ReMax); and the deviations may share
one scale across the whole batch, or none, instead of each group's own
(`RLConfig.scale`): with a per-group scale a group whose rewards differ by 0.01
pushes as hard as one whose rewards differ by 1 (Dr. GRPO; TRL's
`scale_rewards`).

`decision_advantages` (`RLConfig.advantage = "decision"`, the default) splits
each response's credit in two where the domain has a trivial answer ("nothing
changes"): the tokens up to the one where a response parts from the trivial
answer carry the *decision*, credited by whether it was right (the trivial
answer is right exactly when it is the target); the tokens after it carry the
*content* of an attempted change, credited by the task reward against the
other attempts of the group only. Plain GRPO credits the decision with the
task reward of sampled attempts, which at temperature 1 rarely survive
sampling intact, while the trivial answer is short and always well formed; it
therefore teaches "nothing changes" even where greedy decoding would have
predicted the change (docs/grpo.md measures this collapse). Where an example
has no trivial answer, every response is an attempt and the split is GRPO.
"""

from __future__ import annotations

import torch


SCALES = ("group", "batch", "none")


def _rescale(d: torch.Tensor, group_scale: torch.Tensor, batch_scale: torch.Tensor, scale: str, eps: float
             ) -> torch.Tensor:
    """Deviations divided by their group's scale, the batch's, or nothing."""
    if scale == "group":
        return d / (group_scale + eps)
    if scale == "batch":
        return d / (batch_scale + eps)
    if scale == "none":
        return d
    raise ValueError(f"scale must be one of {', '.join(SCALES)}, not {scale!r}")


def group_advantages(rewards: torch.Tensor, group_size: int, eps: float = 1e-6, baseline: torch.Tensor | None = None,
                     scale: str = "group") -> tuple[torch.Tensor, dict[str, float]]:
    """Group-normalised advantages for (N,) rewards laid out prompt-major.

    With `baseline` (B,), e.g. the greedy response's reward, each reward is
    measured against it instead of the group mean, scaled by the group's root
    mean square deviation from it. `scale` "batch" divides every deviation by
    the whole batch's (unbiased std of the rewards, or root mean square
    deviation from the baselines); "none" leaves them as they are.
    """
    r = rewards.float().view(-1, group_size)  # (B, G)
    if baseline is None:
        mean = r.mean(dim=1, keepdim=True)  # (B, 1)
        std = r.std(dim=1, keepdim=True) if group_size > 1 else torch.zeros_like(mean)  # (B, 1)
    else:
        mean = baseline.float().view(-1, 1)  # (B, 1)
        std = ((r - mean) ** 2).mean(dim=1, keepdim=True).sqrt()  # (B, 1)
    whole = r.std() if baseline is None else ((r - mean) ** 2).mean().sqrt()  # ()
    adv = _rescale(r - mean, std, whole, scale, eps)  # (B, G)
    flat = (r.max(dim=1).values == r.min(dim=1).values).float()  # (B,) groups with no signal
    return adv.view(-1), {"adv/flat_group_frac": flat.mean().item(), "adv/reward_std": std.mean().item(),
                          "adv/abs_mean": adv.abs().mean().item()}


def token_advantages(
    token_rewards: torch.Tensor, mask: torch.Tensor, group_size: int, eps: float = 1e-6,
    baseline: torch.Tensor | None = None, scale: str = "group",
) -> tuple[torch.Tensor, dict[str, float]]:
    """Per-token advantages (N, T) from per-token rewards (N, T), for responses whose positions line up in a group.

    Each token is compared with the tokens at the same position in the other
    responses of its group: d = r - (group mean at that position, over the
    responses that reach it). The group's deviations share one scale, their
    root mean square, so a position where every sample agrees carries ~0
    advantage instead of amplified noise. Rows of `mask` are 1 on scored tokens.
    With `baseline` (B, T), e.g. the greedy response's token rewards, it
    replaces the group mean at each position. `scale` "batch" shares one root
    mean square over the whole batch; "none" leaves the deviations as they are.
    """
    N, T = token_rewards.shape
    r = token_rewards.float().view(-1, group_size, T)  # (B, G, T)
    m = mask.float().view(-1, group_size, T)  # (B, G, T)
    if baseline is None:
        mean = (r * m).sum(1, keepdim=True) / m.sum(1, keepdim=True).clamp(min=1)  # (B, 1, T)
    else:
        mean = baseline.float().view(-1, 1, T)  # (B, 1, T)
    d = (r - mean) * m  # (B, G, T)
    rms = ((d**2).sum((1, 2), keepdim=True) / m.sum((1, 2), keepdim=True).clamp(min=1)).sqrt()  # (B, 1, 1)
    whole = ((d**2).sum() / m.sum().clamp(min=1)).sqrt()  # ()
    adv = _rescale(d, rms, whole, scale, eps)  # (B, G, T)
    contested = ((d.abs() > eps).any(1) & (m.sum(1) > 1)).float()  # (B, T) positions where the group differs
    return adv.view(N, T), {"adv/token_reward_rms": rms.mean().item(),
                            "adv/contested_token_frac": (contested.sum() / (m.amax(1).sum()).clamp(min=1)).item()}


def _centered(values: torch.Tensor, members: torch.Tensor, group_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Deviations of (N,) values from their group's mean over `members` (N,) bool, 0 elsewhere, and each group's
    unbiased std over its members (B, 1) (0 below two members)."""
    v = values.float().view(-1, group_size)  # (B, G)
    m = members.float().view(-1, group_size)  # (B, G)
    n = m.sum(1, keepdim=True)  # (B, 1)
    mean = (v * m).sum(1, keepdim=True) / n.clamp(min=1)  # (B, 1)
    d = (v - mean) * m  # (B, G)
    std = ((d**2).sum(1, keepdim=True) / (n - 1).clamp(min=1)).sqrt()  # (B, 1)
    return d, std


def decision_advantages(
    rewards: torch.Tensor, decision_at: torch.Tensor, attempt: torch.Tensor, right: torch.Tensor, group_size: int,
    width: int, eps: float = 1e-6, scale: str = "group", unchanged: torch.Tensor | None = None,
    trivial: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Per-token advantages (N, width): the decision credited by its correctness, an attempt's content by its reward.

    rewards (N,): the task reward. decision_at (N,): the position of each
    response's decision token: for a readable attempted change its first token
    that departs from the trivial answer, for any other response (no change,
    or nothing readable) its last token, since all of it is the decision; -1
    where the example has no trivial answer. attempt (N,) bool: a readable
    attempted change. right (N,) bool: the decision was right (no change where
    nothing changes, a readable change elsewhere).
    Positions <= decision_at get the decision advantage, the group-normalised
    correctness of the decision; later positions (an attempt's content) get
    the reward against the mean of the group's attempts, normalised over them.
    A group whose decisions all agree leaves the decision where it is.
    `scale` as in `group_advantages`, for both parts. Where no example has a
    trivial answer and every response is an attempt, this is `group_advantages`.

    With `unchanged` (N,) bool, the stratum of each response's example (the
    trivial answer is its target), the decision is balanced between the
    strata: each stratum's decision advantages are scaled so that its total
    push, the sum of their absolute values, is the smaller of the two strata's.
    The pushes toward "nothing changes" (from unchanged examples) and away from
    it (from changed ones) then cancel on what the strata share, and what
    moves is how well the model tells them apart. A stratum that pushes alone
    (the other's groups all decided alike) keeps its push: a model that always
    answers "nothing changes" can still learn to attempt changes, and it is
    balanced again once the unchanged transitions start to be answered wrong.

    With `trivial` (N,) bool, the responses that are the trivial answer, every
    decision advantage is shifted by one amount (toward the trivial answer for
    trivial responses, away for the others) so that their net pull toward the
    trivial answer, sum(adv * (+1 trivial, -1 other)), is zero.
    """
    N = rewards.numel()
    decides = decision_at >= 0  # (N,) responses to an example that has a trivial answer
    dd, dstd = _centered(right.float(), decides, group_size)  # (B, G), (B, 1)
    cd, cstd = _centered(rewards, attempt, group_size)  # (B, G), (B, 1)
    whole = lambda d, m: (d.pow(2).sum() / (m.sum() - 1).clamp(min=1)).sqrt()  # noqa: E731 - the batch's std
    dec = _rescale(dd, dstd, whole(dd, decides), scale, eps).view(N)  # (N,)
    if unchanged is not None:
        dec = balanced(dec, unchanged & decides, ~unchanged & decides)
    if trivial is not None and decides.any():
        axis = torch.where(trivial, 1.0, -1.0) * decides  # (N,) +1 the trivial answer, -1 any other, 0 no decision
        dec = dec - axis * (dec * axis).sum() / decides.sum()  # no net pull toward or away from the trivial answer
    con = _rescale(cd, cstd, whole(cd, attempt), scale, eps).view(N)  # (N,)
    adv = torch.where(upto(decision_at, width).bool(), dec[:, None], con[:, None])  # (N, width)
    split = dd.abs().amax(1) > 0  # (B,) groups whose decisions differ
    r = rewards.float().view(-1, group_size)  # (B, G)
    flat = (r.max(dim=1).values == r.min(dim=1).values).float()  # (B,) groups whose rewards are all equal
    return adv, {"adv/flat_group_frac": flat.mean().item(), "adv/abs_mean": adv.abs().mean().item(),
                 "adv/decision_split_frac": split.float().mean().item(),
                 "adv/decision_abs_mean": dec.abs().mean().item(),
                 "adv/content_abs_mean": con[attempt].abs().mean().item() if attempt.any() else 0.0}


def balanced(adv: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N,) advantages with the rows of `a` and of `b` (N,) bool each scaled to the smaller one's total |push|, when
    both push; a set that pushes alone keeps its advantages (nothing opposes it yet)."""
    push_a, push_b = adv[a].abs().sum(), adv[b].abs().sum()  # () each
    if push_a == 0 or push_b == 0:
        return adv
    target = torch.minimum(push_a, push_b)  # ()
    scale = torch.ones_like(adv)  # (N,)
    scale[a] = target / push_a.clamp(min=1e-12)
    scale[b] = target / push_b.clamp(min=1e-12)
    return adv * scale


def masked_sum(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum()


def upto(at: torch.Tensor, width: int) -> torch.Tensor:
    """(N, width) float: 1 at the positions up to and including `at` (N,) in each row (none where it is -1)."""
    return (torch.arange(width, device=at.device)[None, :] <= at[:, None]).float()


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of KL(policy || ref): exp(ref - logp) - (ref - logp) - 1, always >= 0."""
    d = ref_logp - logp  # (N, T)
    return torch.exp(d) - d - 1


def clipped_policy_loss(
    logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, clip_eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token PPO clipped surrogate loss (N, T) and where clipping was active (N, T).

    `advantages` is (N,), one per response, or (N, T), one per token.
    """
    ratio = torch.exp(logp - old_logp)  # (N, T)
    adv = advantages[:, None] if advantages.dim() == 1 else advantages  # (N, 1) or (N, T)
    unclipped = -adv * ratio
    clipped = -adv * ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps)
    return torch.maximum(unclipped, clipped), (clipped > unclipped).float()


def grpo_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    ref_logp: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip_eps: float = 0.2,
    kl_coef: float = 0.001,
    num_tokens: float | None = None,
    decision_kl: float = 0.0,
    decision_at: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """GRPO loss with token-mean aggregation.

    logp, old_logp, ref_logp, mask: (N, T); advantages: (N,) or (N, T). `num_tokens` is
    the token count of the whole batch when this call sees one micro-batch of
    it, so that accumulating micro-batch gradients equals one full-batch step.
    `decision_kl` weighs the KL again on each response's decision tokens, the
    positions up to `decision_at` (N,) (-1: none), so that the decision whether
    anything changes stays near the starting model's.
    """
    mask = mask.float()
    denom = mask.sum().clamp(min=1) if num_tokens is None else torch.tensor(float(num_tokens))
    pg, clipped = clipped_policy_loss(logp, old_logp, advantages, clip_eps)  # (N, T)
    loss = masked_sum(pg, mask) / denom
    metrics = {
        "loss/policy": (masked_sum(pg, mask) / denom).item(),
        "loss/clip_frac": (masked_sum(clipped, mask) / denom).item(),
    }
    if ref_logp is not None and (kl_coef != 0 or decision_kl != 0):
        kl = kl_k3(logp, ref_logp)  # (N, T)
        loss = loss + kl_coef * masked_sum(kl, mask) / denom
        metrics["loss/kl"] = (masked_sum(kl, mask) / denom).item()
        if decision_kl != 0 and decision_at is not None:
            on = mask * upto(decision_at.to(mask.device), mask.size(1))  # (N, T) the decision tokens
            loss = loss + decision_kl * masked_sum(kl, on) / denom
            metrics["loss/decision_kl"] = (masked_sum(kl, on) / denom).item()  # their part of loss/kl
    metrics["loss/total"] = loss.item()
    return loss, metrics
