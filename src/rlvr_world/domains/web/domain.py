"""The web-page domain: predict how a page's accessibility tree changes after an action.

Real transitions come from MiniWoB++ pages in headless Chromium (`browser`,
`collect`); the prompt is the instruction, the page before as WebArena-style
tree lines and the action; the response is the difference in the `New items:`
/ `Deleted items:` / `Updated items:` layout (`acctree`), scored by pooled F1
of exact line matches (`reward`).

The target difference uses the plain `aligned` rule by default: MiniWoB ids
are DOM node ids, stable while an element lives, so the difference says what
changed. By default each transition's ids are then renamed 1, 2, 3, ...
(`WebData.ids`, `acctree.renumber`), which keeps the difference up to the
names and makes every id short and predictable. The WMA-Agents annotation
rule (`diff_rule="wma"`, reproduced exactly on the real WebArena samples)
lists nearly every element as updated because its assignment pairs the least
similar elements; learning that would be learning a bug.
"""

from __future__ import annotations

from ...engine.domain import collect_stage
from ..textdomain import TextDomain
from . import data as webdata
from .acctree import Diff, format_diff
from .data import DataError, Transition
from .options import WebData
from .reward import answer_kind, f1_reward

__all__ = ["DataError", "WebData", "WebDomain", "prompt_text", "target_text"]


def prompt_text(t: Transition) -> str:
    return f"Objective: {t.objective}\nPage:\n{t.before}\nAction: {t.action}\nChanges:\n"


def target_text(t: Transition) -> str:
    return format_diff(t.diff)


def trivial_text(t: Transition) -> str:
    """The difference that changes nothing: every section empty."""
    return format_diff(Diff())


class WebDomain(TextDomain):
    """Serialises page transitions into token ids and scores decoded differences."""

    name = "web"
    data_options = WebData
    rewards = {"f1": lambda text, t: f1_reward(text, t.diff)}
    transition_type = Transition  # what a reward scores against (a dataclass of JSON values)
    metric = "f1"
    metric_label = "F1"
    prompt_format = ("The prompt is `Objective: ` and the task, `Page:` and the page's accessibility tree, `Action: ` "
                     "and the action, then `Changes:`. The answer is the page's difference in three sections, "
                     "`New items:`, `Deleted items:` and `Updated items:`, each its elements one a line (or `None`), "
                     "a blank line between sections.")
    columns = ("precision", "recall", "f1", "changed", "unchanged")  # of the results table
    binary_metric = False  # 0/1 per example (McNemar's test) or graded (Wilcoxon's)
    reported_parts = ("precision", "recall", "f1")
    # element ids are copied from the page into the answer: one token per digit makes "[645]" the same
    # tokens in the page, the action and the answer (with Chromium's 4-5 digit ids the small models still wrote
    # wrong ids, changed-page F1 0.0; with the default dense ids, WebData.ids, 25.7 on web-full: docs/web.md)
    split_digits = True
    # facts from the RLVR-World paper (WebArena page prediction, 1.5B model); ours is MiniWoB++, not WebArena
    reference = {
        "paper 1.5B SFT (WebArena)": {"precision": 49.0, "recall": 56.1, "f1": 49.9},
        "paper 1.5B RLVR (WebArena)": {"precision": 72.8, "recall": 64.6, "f1": 65.1},
    }

    def __init__(self, tokenizer, data: WebData | None = None):
        super().__init__(tokenizer, data or WebData())

    @staticmethod
    def prepare(data: WebData) -> None:
        """Collect the dataset with a real browser unless it is already there."""
        from .collect import collect

        path = data.path()
        if not path.is_file():
            if data.dataset:
                raise DataError(f"web dataset not found: {path}")
            collect(data.collect_config(), path)

    stages = (collect_stage(prepare),)  # the pages collected before the tokenizer reads them

    @staticmethod
    def check_data(data: WebData) -> None:
        """Bad settings and unreadable datasets fail before anything is written or collected."""
        from .collect import task_url

        if data.diff_rule not in ("aligned", "wma"):
            raise ValueError(f"unknown diff rule {data.diff_rule!r}; known: aligned, wma")
        webdata.check_ids(data.ids)
        for task in data.tasks:
            task_url(task)
        if data.dataset or data.path().is_file():
            WebDomain.transitions("train", data)

    @staticmethod
    def describe(data: WebData) -> dict:
        tasks = sorted({t.task for t in WebDomain.transitions("test", data)})
        return {"n_task_types": len(tasks), "tasks": tasks}

    @staticmethod
    def transitions(split: str, data: WebData) -> list[Transition]:
        return webdata.split(webdata.read(data.path(), data.diff_rule, data.ids), split, data.test_fraction)

    prompt_text = staticmethod(prompt_text)
    target_text = staticmethod(target_text)
    trivial_text = staticmethod(trivial_text)

    @staticmethod
    def kind_of(text: str, t: Transition) -> str:
        return answer_kind(text)

