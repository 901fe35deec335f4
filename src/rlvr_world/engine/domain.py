"""The small interface through which a domain plugs into the engine.

A domain turns (state, action) into prompt token ids and the real next state
into target token ids, decodes a generated response into a prediction, and
scores that prediction against the real next state. The engine sees only the
token ids, the rewards and a group label used to break evaluation down.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

# A reward is a pure function: (response text or decoded prediction, example
# payload) -> (value, parts). `parts` holds the components worth logging.
Reward = Callable[[Any, Any], "tuple[float, dict[str, float]]"]


@dataclass
class Example:
    """One transition, as the engine sees it."""

    prompt_ids: list[int]
    target_ids: list[int]  # ends with the end-of-sequence id
    group: str = "all"  # evaluation breakdown, e.g. "changed" / "unchanged"
    payload: Any = field(default=None, repr=False)  # what the domain needs to score
    # per target token: 1 = the model predicts it, 0 = the data gives it (e.g. a real action between
    # predicted frames): left out of every loss and written in by the sampler. None: all predicted.
    loss_mask: list[int] | None = None

    def forced(self) -> list[int] | None:
        """Per target position, the id the sampler must write (-1: the model samples); None when nothing is given."""
        if self.loss_mask is None or all(self.loss_mask):
            return None
        return [-1 if m else t for t, m in zip(self.target_ids, self.loss_mask)]


class Domain(Protocol):
    """What the engine needs from a domain."""

    name: str
    rewards: dict[str, Reward]  # named rewards the RL stage can choose from
    metric: str  # the reward whose value is the reported accuracy-like metric
    eos_id: int  # ends every response
    pad_id: int  # fills padded positions
    # optional: `suppressed_ids`, ids the sampler never draws (given tokens are still written in)
    # optional: `token_rewards(reward, response_ids, example) -> list[float]`, the reward split over the
    # response's tokens (one value per token, their mean the reward), for `RLConfig.credit = "token"`

    @staticmethod
    def check_data(data: Any) -> None:
        """Raise a one-line error when the domain's data cannot be read."""
        ...

    def examples(self, split: str, stage: str = "", seed: int = 0) -> list[Example]:
        """The examples of a split ("train" or "test"); `stage` ("mle", "rl") may select differently."""
        ...

    def decode(self, response_ids: Sequence[int]) -> Any:
        """Response token ids -> the domain's prediction (never raises)."""
        ...

    def score(self, reward: str, response_ids: Sequence[int], example: Example) -> tuple[float, dict[str, float]]:
        """Decode the response and score it with the named reward (never raises)."""
        ...
