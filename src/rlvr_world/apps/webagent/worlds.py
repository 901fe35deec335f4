"""World models an agent can plan with: each predicts the page every candidate action leads to.

Every world answers `predict(state, actions)` with one predicted page per
action, written as accessibility-tree lines whose ids are renamed 1, 2, 3, ...
in the order of the page before (`acctree.renumber`), so predictions of any
world compare line by line with the page the agent sees.

- `LanguageWorld`: a trained web world model (a run's `mle/model` or
  `rl/model`), in process or behind `rlvr-world serve`. Its prompt is the web
  domain's (`prompt_text`); its greedy answer is a page difference, applied to
  the page before (`acctree.apply_diff`).
- `OracleWorld`: the real browser. The seeded episode is replayed to the
  current step in a fresh page, the candidate is carried out there, and the
  page is read: what a perfect world model would predict.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Callable, Protocol

from ...domains.web.acctree import apply_diff, parse, parse_diff, renumber
from ...domains.web.browser import Action, Browser
from ...domains.web.collect import Episode
from ...domains.web.data import Transition
from ...domains.web.domain import prompt_text


@dataclass
class State:
    """What the agent knows at a step: the task's page now and how it got there."""

    task: str
    seed: int  # the episode's seed (`collect.Episode`): only the oracle, which replays it, reads it
    goal: str
    tree: str  # the page now, with the browser's ids
    history: list[tuple[str, Action]] = field(default_factory=list)  # (page before, action) of each step taken


class World(Protocol):
    calls: int  # predictions made so far (one per candidate action)

    def predict(self, state: State, actions: list[Action]) -> list[str]: ...


def dense(tree: str, action: Action | None = None) -> tuple[str, str]:
    """The page with ids renamed 1, 2, 3, ... in order, and the action in those ids."""
    page, _, act = renumber(tree, "", str(action) if action is not None else "")
    return page, act


class LanguageWorld:
    """A web world model's greedy predictions, from any OpenAI-style completions function."""

    def __init__(self, complete: Callable[[dict], dict], *, ids: str = "dense", max_tokens: int = 256):
        self.complete, self.ids, self.max_tokens = complete, ids, max_tokens
        self.calls, self.failed = 0, 0  # failed: requests refused (e.g. a page longer than the model's context)

    def predict(self, state: State, actions: list[Action]) -> list[str]:
        pages, prompts = [], []
        for action in actions:
            page, act = dense(state.tree, action) if self.ids == "dense" else (state.tree, str(action))
            pages.append(page)
            prompts.append(prompt_text(Transition(state.task, 0, 0, state.goal, act, page, "")))
        self.calls += len(actions)
        try:
            choices = self.complete({"prompt": prompts, "temperature": 0.0, "max_tokens": self.max_tokens})["choices"]
        except ValueError:  # a request the model refuses: it predicts nothing changes
            self.failed += len(actions)
            return [dense(page)[0] for page in pages]
        texts = {c["index"]: c["text"] for c in choices}
        return [renumber(page, apply_diff(page, parse_diff(texts.get(i, ""))))[1] for i, page in enumerate(pages)]


def in_process(model_dir: str, *, device: str = "auto", dtype: str = "auto", max_tokens: int = 256) -> LanguageWorld:
    """A run's saved web world model (or an adapter folder), loaded here; its id convention comes from the run's
    config.json (or the adapter's manifest)."""
    from ... import adapters
    from ... import device as dev
    from ...serve import Completer
    from ...text import load_tokenizer

    model, path = adapters.load_model(model_dir)
    where = dev.pick_device(device)
    completer = Completer(model.to(where), load_tokenizer(path), model_dir, max_tokens=max_tokens,
                          autocast=dev.amp(where, dtype))
    return LanguageWorld(completer.complete, ids=run_ids(model_dir), max_tokens=max_tokens)  # refusals: ValueErrors


def endpoint(url: str, model: str = "", *, ids: str = "dense", max_tokens: int = 256,
             timeout_s: float = 600.0) -> LanguageWorld:
    """A world model served by `rlvr-world serve` (or any OpenAI-compatible completions server) at `url`.

    `model`: the model's name in the API (empty: the server's own)."""

    def complete(body: dict) -> dict:
        data = json.dumps({**body, **({"model": model} if model else {})}).encode()
        request = urllib.request.Request(url.rstrip("/") + "/completions", data=data,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as reply:
                return json.loads(reply.read())
        except urllib.error.HTTPError as e:
            if 400 <= e.code < 500:  # refused: this request only
                raise ValueError(f"{url}: HTTP {e.code}") from None
            raise OSError(f"{url}: HTTP {e.code}") from None

    return LanguageWorld(complete, ids=ids, max_tokens=max_tokens)


def run_ids(model_dir: str) -> str:
    """The id convention (`WebData.ids`) of the run a model directory belongs to ("dense" when unknown)."""
    from ...rundir import run_config_of

    return str(run_config_of(model_dir).get("data", {}).get("ids", "dense"))


class OracleWorld:
    """The real next page of each candidate, by replaying the seeded episode in a second browser page."""

    def __init__(self, browser_factory: Callable[[], Browser] = Browser, settle_s: float = 0.15):
        self.browser_factory, self.settle_s = browser_factory, settle_s
        self.browser: Browser | None = None
        self.calls, self.diverged = 0, 0  # diverged: replays whose page did not match the real one

    def close(self) -> None:
        if self.browser is not None:
            self.browser.close()
            self.browser = None

    def predict(self, state: State, actions: list[Action]) -> list[str]:
        self.calls += len(actions)
        return [self.try_action(state, action) for action in actions]

    def try_action(self, state: State, action: Action) -> str:
        if self.browser is None:
            self.browser = self.browser_factory()
        page = Episode(self.browser, state.task, state.seed, self.settle_s)
        for tree, past in state.history:
            page.act(translate(past, tree, page.tree))
        ids = id_map(state.tree, page.tree)
        if ids is None:  # the replay did not reach the same page: it cannot say what the candidate does
            self.diverged += 1
            return dense(state.tree)[0]
        before = page.tree
        return renumber(before, page.act(translate(action, state.tree, before)))[1]


def id_map(real: str, replay: str) -> dict[int, int] | None:
    """Real page ids -> the replayed page's, element by element in order; None when the pages differ."""
    a, b = parse(real), parse(replay)
    if len(a) != len(b) or any(x.role != y.role or x.name != y.name or x.depth != y.depth for x, y in zip(a, b)):
        return None
    return {int(x.id): int(y.id) for x, y in zip(a, b)}


def translate(action: Action, real: str, replay: str) -> Action:
    """`action` on the real page, carried over to the same element of the replayed page."""
    if action.node is None:
        return action
    ids = id_map(real, replay) or {}
    return Action(action.kind, ids.get(action.node, action.node), action.text, action.enter)
