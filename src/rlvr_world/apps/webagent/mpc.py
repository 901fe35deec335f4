"""Model-predictive control on MiniWoB++: propose, predict, score, act; and the paired comparison of agents.

At each step the proposal policy offers K distinct actions (`policy.propose`),
a world model predicts the page each leads to (`worlds`), a value function
scores each predicted page against the instruction (`value`), and the agent
carries out the best in the real browser (ties go to the policy's earlier
candidate). The episode ends when MiniWoB says it is done or after
`max_steps`; success is MiniWoB's own reward (> 0).

Every agent meets the same seeded problems and, at its first step, the same
candidates, so their outcomes pair episode by episode (McNemar's test).
"""

from __future__ import annotations

import random
import time
import zlib
from dataclasses import asdict, dataclass, field
from typing import Callable

from ...domains.web.acctree import diff, renumber
from ...domains.web.browser import Action, Browser
from ...domains.web.collect import Episode
from ...domains.web.reward import prf
from .policy import propose
from .value import JudgeValue, LearnedValue
from .worlds import State, World, dense

Chooser = Callable[[State, list[Action]], tuple[int, list[str] | None]]  # -> chosen index, predicted pages


@dataclass
class EpisodeResult:
    """One agent's episode: MiniWoB's outcome, and what planning cost and got right."""

    agent: str
    task: str
    seed: int
    success: bool = False
    reward: float = 0.0
    steps: int = 0
    world_calls: int = 0  # world-model predictions (one per candidate and step)
    wall_s: float = 0.0
    error: str = ""  # why the episode was counted as a failure without finishing (a crashed or hung page)
    chosen: list[int] = field(default_factory=list)  # index of the candidate taken at each step (0: the policy's own)
    changed_f1: list[float] = field(default_factory=list)  # F1 of the predicted against the real difference of
    # each step's chosen action, where that action changed the page
    missed_end: int = 0  # steps whose chosen action ended the episode without the prediction saying so
    trace: list[dict] = field(default_factory=list)  # value data per step: {goal, before, action, after, steps_left}
    # (ids renamed 1, 2, 3, ...)


def episode_seed(task: str, index: int, split: str) -> int:
    """The seed of a task's `index`-th episode in the set `split` ("value": the value function's data; "test": the
    reported comparison; any other name: episodes of its own)."""
    return zlib.crc32(f"{split}:{task}:{index}".encode())


def policy_alone(state: State, candidates: list[Action]) -> tuple[int, None]:
    return 0, None


def planner(world: World, value: LearnedValue | JudgeValue, max_steps: int) -> Chooser:
    """Choose the candidate whose predicted page the value function scores highest."""

    def choose(state: State, candidates: list[Action]) -> tuple[int, list[str]]:
        pages = world.predict(state, candidates)
        left = max_steps - len(state.history) - 1
        scores = [value.score(state.goal, before, page, act, left)
                  for (before, act), page in zip((dense(state.tree, a) for a in candidates), pages)]
        return max(range(len(scores)), key=lambda i: (scores[i], -i)), pages

    return choose


def run_episode(browser: Browser, agent: str, choose: Chooser, task: str, seed: int, *, k: int, max_steps: int,
                settle_s: float = 0.15, world: World | None = None) -> EpisodeResult:
    """One seeded episode of `task` with the agent `choose`; raises what the browser raises."""
    start, calls = time.perf_counter(), world.calls if world is not None else 0
    out = EpisodeResult(agent, task, seed)
    page = Episode(browser, task, seed, settle_s)
    state = State(task, seed, page.goal, page.tree)
    rng, used = random.Random(seed), set()
    for _ in range(max_steps):
        candidates = propose(state.tree, state.goal, k, rng, done=used)
        i, predicted = choose(state, candidates)
        action, before = candidates[i], state.tree
        if action.node is not None:
            used.add(action.node)
        after = page.act(action)
        real_before, real_after, act = renumber(before, after, str(action))
        out.trace.append({"goal": state.goal, "before": real_before, "action": act, "after": real_after,
                          "steps_left": max_steps - out.steps - 1})
        if predicted is not None:
            score_prediction(out, real_before, real_after, predicted[i])
        out.chosen.append(i)
        state.history.append((before, action))
        state.tree = after
        out.steps += 1
        if page.done:
            break
    out.reward = page.reward
    out.success = out.reward > 0
    out.world_calls = (world.calls - calls) if world is not None else 0
    out.wall_s = round(time.perf_counter() - start, 3)
    return out


def score_prediction(out: EpisodeResult, before: str, after: str, predicted: str) -> None:
    """Record how the world model's page for the chosen action compares with the real one."""
    real, guess = diff(before, after, rule="aligned"), diff(before, predicted, rule="aligned")
    if not real.empty:
        out.changed_f1.append(round(prf(guess, real)["f1"], 4))
    if any("'START'" in line for line in real.new) and not any("'START'" in line for line in guess.new):
        out.missed_end += 1


def run_with_retry(make_browser: Callable[[], Browser], browser: Browser, agent: str, choose: Chooser, task: str,
                   seed: int, *, retries: int = 1, log=print, **kw) -> tuple[EpisodeResult, Browser]:
    """`run_episode`, retried with a fresh browser when the page crashes or hangs; then a failure with a message."""
    for attempt in range(retries + 1):
        try:
            return run_episode(browser, agent, choose, task, seed, **kw), browser
        except Exception as e:  # a crashed or hung page, a dead browser
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
            log(f"{agent} {task} seed {seed}: {reason} ({'retrying' if attempt < retries else 'counted as a failure'})")
            browser.close()
            browser = make_browser()
    return EpisodeResult(agent, task, seed, error=reason), browser


def as_record(r: EpisodeResult, with_trace: bool = False) -> dict:
    d = asdict(r)
    if not with_trace:
        d.pop("trace")
    return d
