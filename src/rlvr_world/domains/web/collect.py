"""Collecting real browser transitions on MiniWoB++ task pages.

MiniWoB++ (the `miniwob` package) ships its task pages as local HTML files. An
episode opens a task page in headless Chromium, starts a fresh problem, hides
the parts of the page that change on their own (the reward and timer panel,
the click visualiser), and then takes up to `max_steps` actions, recording
(tree before, action, tree after) for each. It ends early when the task says
it is done.

Actions come from a mix of two policies, chosen afresh at every step: a
task-aware scripted one (click the elements the instruction names, type the
text it quotes, then press a submit-like button) and a random one (click,
hover, type, press a key or scroll anywhere), so the data holds successes,
wrong moves and no-ops. The page's own randomness (`Math.random`, which
MiniWoB uses to generate problems) is replaced by a generator seeded from
`seed`, so the same settings pose the same problems and choose the same
actions again; element ids, which Chromium assigns, can still differ between
runs (measured: 60 of 264 transitions differed only in ids).

A page that crashes or hangs costs one retry with a fresh browser, then the
episode is skipped with a message; the dataset file is written to a temporary
name and renamed into place only once complete.
"""

from __future__ import annotations

import gzip
import importlib.resources
import json
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from selenium.common.exceptions import TimeoutException, WebDriverException

from ...progress import advance, bar, console
from .acctree import parse
from .browser import Action, Browser, BrowserError

# task pages with elements to click and fields to type into (canvas and drag tasks left out: the
# accessibility tree shows nothing of them); "-nodelay" variants where they exist
TASKS = [
    "book-flight-nodelay", "choose-list", "click-button", "click-button-sequence", "click-checkboxes",
    "click-checkboxes-large", "click-checkboxes-soft", "click-collapsible-2-nodelay", "click-collapsible-nodelay",
    "click-dialog", "click-dialog-2", "click-link", "click-menu", "click-option", "click-tab", "click-tab-2",
    "click-tab-2-hard", "click-test", "click-test-2", "click-widget", "email-inbox", "email-inbox-forward-nl",
    "enter-password", "enter-text", "enter-text-2", "find-word", "focus-text", "focus-text-2", "form-sequence",
    "guess-number", "login-user", "login-user-popup", "multi-layouts", "multi-orderings", "navigate-tree",
    "phone-book", "read-table", "search-engine", "simple-arithmetic", "social-media", "social-media-some",
    "terminal", "text-transform", "use-autocomplete-nodelay",
]
START = r"""
let state = arguments[0] >>> 0;  // the page's randomness, seeded (mulberry32), so a collection can be repeated
Math.random = function () {
  state = (state + 0x6D2B79F5) >>> 0;
  let t = state;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};
core.EPISODE_MAX_TIME = 3600 * 1000;  // our steps are slow; the task's own timer must not end the episode
core.startEpisodeReal();
for (const id of ['reward-display', 'click-canvas', 'sync-task-cover']) {
  const e = document.getElementById(id); if (e) e.style.display = 'none';
}
const query = document.getElementById('query');  // the instruction (core.getUtterance is overridden by some tasks)
return query ? query.textContent.replace(/\s+/g, ' ').trim() : '';
"""
CLICKABLE = {"button", "link", "checkbox", "radio", "tab", "menuitem", "option", "treeitem", "switch", "combobox",
             "gridcell", "cell", "listitem", "image", "StaticText", "heading", "ListBoxOption", "MenuListOption",
             "spinbutton", "slider", "row"}
TYPEABLE = {"textbox", "searchbox", "combobox", "spinbutton", "TextField"}
SUBMIT = {"submit", "ok", "search", "go", "send", "next", "login", "log in", "done", "yes"}
WORDS = ["hello", "yes", "no", "abc", "42", "search", "Alice", "test", "1", "foo bar"]
RANDOM_KEYS = ["Enter", "Tab", "Escape", "ArrowDown", "Backspace"]


@dataclass
class CollectConfig:
    """What to collect."""

    tasks: list[str]  # MiniWoB task names
    episodes_per_task: int = 10
    max_steps: int = 5  # actions per episode at most
    scripted_prob: float = 0.6  # share of steps where the scripted policy acts (the rest: random)
    settle_s: float = 0.15  # wait after an action before reading the page, and between reads until two agree
    seed: int = 0


def task_url(task: str) -> str:
    page = importlib.resources.files("miniwob") / "html" / "miniwob" / f"{task}.html"
    if not page.is_file():
        raise ValueError(f"unknown MiniWoB task {task!r} (no {page})")
    return Path(str(page)).as_uri()


def elements(tree: str) -> list[tuple[int, str, str]]:
    """(id, role, name) of every tree line."""
    return [(int(n.id), n.role, n.name) for n in parse(tree)]


def scripted_action(tree: str, goal: str, done: set[int], rng: random.Random) -> Action | None:
    """A task-aware move: click what the instruction names, type what it quotes, then submit."""
    goal_l = goal.lower()
    quoted = re.findall(r'"([^"]+)"', goal)
    els = [e for e in elements(tree) if e[0] not in done]
    named = [e for e in els if e[1] in CLICKABLE and e[1] != "StaticText" and e[2].strip()
             and e[2].strip().lower() not in SUBMIT  # submit comes last
             and re.search(r"\b" + re.escape(e[2].strip().lower()) + r"\b", goal_l)]
    if named:
        e = rng.choice(named)
        return Action("click", e[0])
    fields = [e for e in els if e[1] in TYPEABLE]
    if fields:
        text = rng.choice(quoted) if quoted else rng.choice(goal.split() or WORDS)
        return Action("type", fields[0][0], text, enter=rng.random() < 0.3)
    submit = [e for e in els if e[1] in ("button", "link") and e[2].strip().lower() in SUBMIT]
    if submit:
        return Action("click", rng.choice(submit)[0])
    return None


def random_action(tree: str, rng: random.Random) -> Action:
    """Anything a user might do: mostly clicks, sometimes typing, hovering, a key or a scroll."""
    els = elements(tree)[1:]  # not the root
    clickable = [e for e in els if e[1] in CLICKABLE] or els
    fields = [e for e in els if e[1] in TYPEABLE]
    u = rng.random()
    if fields and u < 0.2:
        return Action("type", rng.choice(fields)[0], rng.choice(WORDS), enter=rng.random() < 0.3)
    if clickable and u < 0.8:
        return Action("click", rng.choice(clickable)[0])
    if clickable and u < 0.88:
        return Action("hover", rng.choice(clickable)[0])
    if u < 0.94:
        return Action("press", text=rng.choice(RANDOM_KEYS))
    return Action("scroll", text=rng.choice(["down", "up"]))


def settled_tree(browser: Browser, seconds: float, tries: int = 5) -> str:
    """The page's accessibility tree once it has stopped changing: two reads `seconds` apart agree.

    On a busy machine one fixed wait can read a page that is still reacting,
    and the same seeded episode then records a different next page.
    """
    browser.settle(seconds)
    tree = browser.tree()
    for _ in range(tries):
        browser.settle(seconds)
        again = browser.tree()
        if again == tree:
            break
        tree = again
    return tree


class Episode:
    """One seeded MiniWoB++ problem in a browser page: the same `seed` poses the same problem again.

    `tree` is the page as last read; `reward` and `done` are MiniWoB's own
    (`WOB_RAW_REWARD_GLOBAL`: 1 for success, -1 for failure, 0 while
    running), read from the page's script and never shown to a model.
    """

    def __init__(self, browser: Browser, task: str, seed: int, settle_s: float = 0.15):
        self.browser, self.task, self.seed, self.settle_s = browser, task, seed, settle_s
        browser.open(task_url(task))
        self.goal: str = browser.js(START, seed) or ""
        self.tree = settled_tree(browser, settle_s)

    def act(self, action: Action) -> str:
        """Carry out `action` and return the page once it has settled (an action the page refuses changes nothing)."""
        try:
            self.browser.act(action)
        except TimeoutException:
            raise
        except WebDriverException:  # e.g. the element has no box to click: the page stays as it was
            pass
        self.tree = settled_tree(self.browser, self.settle_s)
        return self.tree

    @property
    def reward(self) -> float:
        return float(self.browser.js("return WOB_RAW_REWARD_GLOBAL;") or 0.0)

    @property
    def done(self) -> bool:
        return bool(self.browser.js("return WOB_DONE_GLOBAL;"))


def run_episode(browser: Browser, task: str, episode: int, cfg: CollectConfig, rng: random.Random) -> list[dict]:
    """One episode's transitions: {task, episode, step, objective, before, action, after}."""
    page = Episode(browser, task, rng.randrange(2**32), cfg.settle_s)
    out, done = [], set()
    for step in range(cfg.max_steps):
        tree = page.tree
        action = scripted_action(tree, page.goal, done, rng) if rng.random() < cfg.scripted_prob else None
        action = action or random_action(tree, rng)
        if action.node is not None:
            done.add(action.node)
        after = page.act(action)
        out.append({"task": task, "episode": episode, "step": step, "objective": page.goal, "before": tree,
                    "action": str(action), "after": after})
        if page.done:
            break
    return out


def collect(cfg: CollectConfig, path: str | Path, *, browser_factory: Callable[[], Browser] = Browser,
            retries: int = 1) -> Path:
    """Collect every task's episodes into a gzipped JSON-lines file at `path` (written atomically)."""
    for task in cfg.tasks:
        task_url(task)  # unknown tasks fail before the browser starts
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    rng = random.Random(cfg.seed)
    jobs = [(task, i) for i in range(cfg.episodes_per_task) for task in cfg.tasks]
    browser, skipped, n = browser_factory(), 0, 0
    try:
        with gzip.open(tmp, "wt", encoding="utf-8") as f, bar("collect", total=len(jobs)) as progress:
            for episode, (task, _) in enumerate(jobs):
                seed = rng.random()  # drawn once, so a retried episode replays the same problem and actions
                for attempt in range(retries + 1):
                    try:
                        rows = run_episode(browser, task, episode, cfg, random.Random(seed))
                        break
                    except Exception as e:  # crashed or hung page: fresh browser, then retry or skip
                        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                        verdict = "retrying" if attempt < retries else "skipped"
                        console.print(f"[yellow]{task} episode {episode}: {reason[:120]} ({verdict})")
                        browser.close()
                        browser = browser_factory()
                else:
                    rows = []
                    skipped += 1
                for row in rows:
                    f.write(json.dumps(row) + "\n")
                n += len(rows)
                advance(progress, 1, f"{n} transitions, {skipped} skipped")
        if n == 0:
            raise BrowserError("no transition collected: every episode failed")
        os.replace(tmp, path)
    finally:
        browser.close()
        if tmp.exists():
            tmp.unlink()
    return path
