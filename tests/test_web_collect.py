"""The web domain's browser side: tree rendering, actions, and collection from a real headless Chromium."""

from __future__ import annotations

import gzip
import json
import re

import pytest
from selenium.common.exceptions import TimeoutException

from rlvr_world.domains.web.browser import Action, BrowserError, render
from rlvr_world.domains.web.collect import CollectConfig, collect, elements, scripted_action


def node(i, role, name="", parent=None, children=(), props=(), ignored=False):
    return {"nodeId": str(i), "backendDOMNodeId": i, "role": {"value": role}, "name": {"value": name},
            "parentId": None if parent is None else str(parent), "childIds": [str(c) for c in children],
            "ignored": ignored, "properties": [{"name": k, "value": {"value": v}} for k, v in props]}


def test_render_webarena_lines():
    nodes = [
        node(1, "RootWebArea", "Task", children=[2], props=[("focused", True), ("url", "file:///x.html")]),
        node(2, "generic", parent=1, children=[3, 5, 7]),  # unnamed layout: left out, children move up
        node(3, "button", "Submit", parent=2, children=[4], props=[("focusable", True)]),
        node(4, "StaticText", "Submit", parent=3),  # repeats its parent's name: dropped
        node(5, "checkbox", "ab", parent=2, props=[("checked", "true"), ("invalid", "false")]),
        node(7, "StaticText", "  ", parent=2),  # whitespace only: dropped
    ]
    assert render(nodes) == "\n".join([
        "[1] RootWebArea 'Task' focused: True",
        "\t[3] button 'Submit'",
        "\t[5] checkbox 'ab' checked: True",
    ])


@pytest.mark.parametrize("action", [Action("click", 12), Action("hover", 3), Action("type", 7, "two words", True),
                                    Action("type", 7, "x", False), Action("press", text="Enter"),
                                    Action("scroll", text="down")])
def test_action_text_round_trip(action):
    assert Action.parse(str(action)) == action


@pytest.mark.parametrize("bad", ["", "click", "click [x]", "jump [3]", "type [3]"])
def test_bad_action_is_a_one_line_error(bad):
    with pytest.raises(ValueError):
        Action.parse(bad)


def test_scripted_policy_follows_the_instruction():
    tree = ("[1] RootWebArea 'T'\n\t[4] checkbox 'QV' checked: False\n\t[5] checkbox 'zz' checked: False\n"
            "\t[2] button 'Submit'")
    import random

    a = scripted_action(tree, "Select QV and click Submit.", set(), random.Random(0))
    assert a.kind == "click" and a.node in (4, 2)
    assert scripted_action(tree, "Select QV and click Submit.", {4, 2}, random.Random(0)) is None
    assert [e[0] for e in elements(tree)] == [1, 4, 5, 2]


def test_real_browser_collects_transitions(tmp_path):
    """Headless Chromium on a MiniWoB page: clicking a checkbox shows up in the next tree."""
    cfg = CollectConfig(tasks=["click-checkboxes"], episodes_per_task=2, max_steps=2, scripted_prob=1.0)
    path = collect(cfg, tmp_path / "web.jsonl.gz")
    rows = [json.loads(line) for line in gzip.open(path, "rt")]
    assert rows and not list(tmp_path.glob("*.part"))
    assert all(r["task"] == "click-checkboxes" and r["objective"].startswith("Select") for r in rows)
    assert all("Last reward" not in r["before"] and "Time left" not in r["before"] for r in rows)  # HUD stripped
    toggled = 0
    for r in rows:
        action = Action.parse(r["action"])
        before = next((line for line in r["before"].splitlines() if f"[{action.node}] checkbox" in line), None)
        if action.kind == "click" and before is not None:
            after = next(line for line in r["after"].splitlines() if f"[{action.node}]" in line)
            assert ("checked: True" in after) != ("checked: True" in before)
            toggled += 1
    assert toggled
    again = collect(cfg, tmp_path / "again.jsonl.gz")  # the page's randomness is seeded: the same problems again
    # (Chromium numbers a page's nodes itself, and a fresh load now and then shifts a node's number by one)
    assert [same_ids(json.loads(line)) for line in gzip.open(again, "rt")] == [same_ids(r) for r in rows]


def same_ids(row: dict) -> dict:
    """A transition with its node numbers replaced by their order of first appearance (before, action, after)."""
    ids: dict[str, str] = {}

    def renumber(text: str) -> str:
        return re.sub(r"\[(\d+)\]", lambda m: f"[{ids.setdefault(m.group(1), str(len(ids)))}]", text)

    return {**row, **{k: renumber(row[k]) for k in ("before", "action", "after")}}


class FlakyBrowser:
    """A stand-in browser whose page hangs on given calls (no Chromium needed)."""

    opened = 0

    def __init__(self, hang_on: set[int]):
        self.hang_on = hang_on

    def open(self, url):
        FlakyBrowser.opened += 1
        if FlakyBrowser.opened in self.hang_on:
            raise TimeoutException("page hung")

    def js(self, script, *args):
        return "Click the button." if "query" in script else True

    def tree(self):
        return "[1] RootWebArea 'T'\n\t[2] button 'OK'"

    def act(self, action):
        pass

    def settle(self, s):
        pass

    def close(self):
        pass


def test_hung_page_is_retried_then_skipped(tmp_path, capsys):
    FlakyBrowser.opened = 0
    cfg = CollectConfig(tasks=["click-button", "click-link"], episodes_per_task=2, max_steps=1)
    # episode 0 hangs once (retried), episode 1 hangs twice (skipped), episodes 2 and 3 are fine
    path = collect(cfg, tmp_path / "d.jsonl.gz", browser_factory=lambda: FlakyBrowser({1, 3, 4}))
    rows = [json.loads(line) for line in gzip.open(path, "rt")]
    assert [r["episode"] for r in rows] == [0, 2, 3]
    assert not list(tmp_path.glob("*.part"))


def test_nothing_collected_leaves_no_file(tmp_path):
    FlakyBrowser.opened = 0
    cfg = CollectConfig(tasks=["click-button"], episodes_per_task=1, max_steps=1)
    with pytest.raises(BrowserError):
        collect(cfg, tmp_path / "d.jsonl.gz", browser_factory=lambda: FlakyBrowser(set(range(1, 10))))
    assert not list(tmp_path.iterdir())


def test_unknown_task_fails_before_the_browser_starts(tmp_path):
    with pytest.raises(ValueError, match="unknown MiniWoB task"):
        collect(CollectConfig(tasks=["no-such-task"]), tmp_path / "d.jsonl.gz",
                browser_factory=lambda: pytest.fail("browser started"))
