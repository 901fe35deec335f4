r"""What an action changed on a web page, read off two accessibility trees.

A tree is WebArena text: a ``Tab 0 (current): <title>`` line, a blank line,
then one element a line, indented by one tab per level of depth::

    [1] RootWebArea 'Dashboard / Magento Admin' focused: True
    \t[6] menubar '' orientation: horizontal
    \t\t[12] link '\ue60b SALES'

The difference between the tree before an action and the tree after it is
three lists of element lines, written as in the WMA-Agents annotation
("transition-focused observation abstraction", Chae et al. 2024), which
RLVR-World uses as the web world model's prediction target::

    New items:
    [1016] gridcell '10' required: False

    Deleted items:
    None

    Updated items:
    [12] link '\ue60b SALES' focused: True

Two rules compute it (``diff(..., rule=...)``):

``"wma"`` (default) — the rule that produced the published annotation,
reproduced exactly (all 10 records of ``tests/fixtures/web``). The elements of
each tree are keyed by their integer id (a repeated id keeps the position of
its first line and the text of its last; id 0 is left out). Every before
element is scored against every after element with
``100 * [same text after the role] + 0.5 * [same role]`` and a one-to-one
assignment of ``min(len(before), len(after))`` pairs is chosen that makes the
total score *smallest* (scipy's ``linear_sum_assignment``). Then:

- new: after elements not in any pair, in after-tree order;
- deleted: before elements whose id is not the id of any paired after element,
  in before-tree order;
- updated: for each pair, in before-tree order, the after element's line when
  the pair differs in id or line text.

The scoring is how the WMA-Agents code weighs similarity, but its solver
(``pygmtools.hungarian``) maximises a score while the code hands it a cost,
so the annotation pairs elements that are as *unlike* as possible. Its
consequences are part of the target and are kept here: nearly every element
of the smaller tree is listed as updated, including elements whose line did
not change (they were paired with some other element), and an element can be
both new and deleted (the deleted test compares ids across the two trees).

``"aligned"`` — a plain difference, for when the target should mean what it
says: elements are paired first by equal id (WebArena ids are DOM backend
node ids, stable while the element lives), then the rest by equal role and
text in document order (an element re-rendered under a new id). A pair is
updated when its line changed (an id-only change is not an update); unpaired
after elements are new, unpaired before elements are deleted. Identical trees
give an empty difference.

Deliberate departures from the WMA-Agents code, both rules:

- An empty difference is written with ``None`` in all three sections; the
  original writes the sentence "Previous Action did not make any changes."
  instead (no annotated record has one).
- When one tree has no elements, every element of the other is new (or
  deleted); the original returns the ids of the after tree as deleted items
  and then fails to format them.
- ``diff`` does not look at the action; the original writes that same
  sentence for the action ``"None"`` whatever the trees.
- A line ending in ``\r`` (CRLF text) loses the ``\r``.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = ["Diff", "Node", "Rule", "SECTION_HEADERS", "apply_diff", "diff", "format_diff", "parse", "parse_diff",
           "renumber"]

Rule = Literal["wma", "aligned"]

SECTION_HEADERS = ("New items:", "Deleted items:", "Updated items:")
EMPTY_SECTION = "None"

# One element line once its tabs are removed: "[id] role rest".
_ELEMENT = re.compile(r"\[(\d+)\]\s*(\S+)\s*(.*)", re.S)
# A name as Python writes a string literal: '...' or "...", escapes kept.
_NAME = re.compile(r"""'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*\"""", re.S)
# The id of an element line (tabs first) and the element id of an action naming one.
_ELEMENT_ID = re.compile(r"^(\t*)\[(\d+)\](?=\s*\S)")
_ACTION_ID = re.compile(r"^(\s*(?:click|hover|type)\s*)\[(\d+)\]")
# A section header, tolerating markdown decoration (**New items:**, ### ...).
_HEADER = re.compile(r"^[\s#*_>-]*(new|deleted|updated)\s+items[*_]*\s*:[*_]*\s*(.*)$", re.I)
# A line that reads as an element, once leading whitespace is dropped.
_ITEM = re.compile(r"\[\d+\]\s*\S")

# WMA scoring: text after the role weighs 100, the role 0.5.
_WMA_TEXT_WEIGHT = 100.0
_WMA_ROLE_WEIGHT = 0.5


@dataclass(frozen=True)
class Node:
    """One element line of an accessibility tree.

    Attributes:
        id: the element id as written between the brackets (digits).
        role: the accessibility role, e.g. ``link``.
        content: everything after the role: the name and the attributes.
        name: the name with its quotes removed, escapes as written
            (``'\\ue60b SALES'`` gives ``\\ue60b SALES``); empty when the line
            has no quoted name.
        attrs: what follows the name, e.g. ``focused: True``; empty if none.
        depth: the number of leading tabs.
        line: the line with its tabs removed, as the difference lists it.
        parent: the id of the nearest earlier element of smaller depth.
    """

    id: str
    role: str
    content: str
    name: str
    attrs: str
    depth: int
    line: str
    parent: str | None


@dataclass(frozen=True)
class Diff:
    """The lines that are new, deleted and updated, each in its order.

    Any sequence given is stored as a tuple, so a ``Diff`` compares by value
    and can be hashed.
    """

    new: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for section in ("new", "deleted", "updated"):
            object.__setattr__(self, section, tuple(getattr(self, section)))

    @property
    def empty(self) -> bool:
        """True when nothing is new, deleted or updated."""
        return not (self.new or self.deleted or self.updated)

    @property
    def sections(self) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
        """The three lists in the order of ``SECTION_HEADERS``."""
        return self.new, self.deleted, self.updated


def parse(tree: str) -> list[Node]:
    """The element lines of a tree, in order.

    Lines that are not ``[id] role ...`` once their tabs are removed (the
    ``Tab ...`` header, blank lines, anything malformed) are skipped; nothing
    raises, and a non-string gives an empty list.
    """
    if not isinstance(tree, str):
        return []
    nodes: list[Node] = []
    ancestors: list[tuple[int, str]] = []  # (depth, id), innermost last
    for raw in tree.split("\n"):
        if raw.endswith("\r"):
            raw = raw[:-1]
        depth = len(raw) - len(raw.lstrip("\t"))
        line = raw.replace("\t", "")
        match = _ELEMENT.match(line)
        if match is None:
            continue
        node_id, role, content = match.groups()
        name, attrs = _split_name(content)
        while ancestors and ancestors[-1][0] >= depth:
            ancestors.pop()
        parent = ancestors[-1][1] if ancestors else None
        nodes.append(Node(node_id, role, content, name, attrs, depth, line, parent))
        ancestors.append((depth, node_id))
    return nodes


def diff(before: str, after: str, *, rule: Rule = "wma") -> Diff:
    """The difference from tree ``before`` to tree ``after``.

    ``rule="wma"`` reproduces the WMA-Agents annotation; ``rule="aligned"``
    is the plain difference (see the module docstring for both).
    """
    if rule == "wma":
        return _wma_diff(parse(before), parse(after))
    if rule == "aligned":
        return _aligned_diff(parse(before), parse(after))
    raise ValueError(f"unknown rule {rule!r}; known: 'wma', 'aligned'")


def apply_diff(before: str, d: Diff) -> str:
    """The page ``d`` says follows ``before``: a world model's predicted difference turned into a predicted page.

    Deleted lines leave (the first element with that line, each time);
    an updated line replaces the line of the element with its id, at that
    element's depth; new lines, and updated lines whose id the page does not
    have, are added at the end one level below the root: the difference does
    not say where an element appears, so neither does the page it gives.
    Everything else of ``before`` (its ``Tab`` header, element order and
    depths) stays. For the ``aligned`` rule this inverts ``diff``:
    ``diff(apply_diff(b, diff(b, a, rule="aligned")), a, rule="aligned")``
    is empty (the same elements with the same lines; an element re-rendered
    under a new id keeps its old one, which that rule does not count as a
    change). Nothing raises: lines that do not read as elements are ignored.
    """
    lines = before.split("\n") if isinstance(before, str) else []
    slots: list[str | None] = list(lines)  # None: deleted
    elements = []  # (index in lines, depth, id, line without tabs)
    for i, raw in enumerate(lines):
        text = raw[:-1] if raw.endswith("\r") else raw
        depth = len(text) - len(text.lstrip("\t"))
        match = _ELEMENT.match(text.replace("\t", ""))
        if match is not None:
            elements.append((i, depth, match.group(1), text.replace("\t", "")))
    for line in d.deleted:
        hit = next((i for i, _, _, text in elements if text == line and slots[i] is not None), None)
        if hit is not None:
            slots[hit] = None
    added = [line for line in d.new if _ELEMENT.match(line)]
    for line in d.updated:
        match = _ELEMENT.match(line)
        if match is None:
            continue
        hit = next(((i, depth) for i, depth, node_id, _ in elements
                    if node_id == match.group(1) and slots[i] is not None), None)
        if hit is None:
            added.append(line)
        else:
            slots[hit[0]] = "\t" * hit[1] + line
    return "\n".join([s for s in slots if s is not None] + ["\t" + line for line in added])


def renumber(before: str, after: str, action: str = "") -> tuple[str, str, str]:
    """The two trees and the action with element ids renamed 1, 2, 3, ...

    Ids are numbered in order of first appearance: the elements of ``before``
    in tree order, then those that only ``after`` has. The renaming is one
    id for one id across both trees, so the difference is the same up to the
    names (``diff`` pairs by id first). Only an element line's leading
    ``[id]`` and the action's first ``[id]`` (``click [12]``, ``type [12]
    [text] [0]``) are renamed; ids written inside names or typed text stay.
    An id the action names that neither tree has keeps its value.
    """
    ids: dict[str, str] = {}
    for node in parse(before) + parse(after):
        ids.setdefault(node.id, str(len(ids) + 1))

    def tree(text: str) -> str:
        return "\n".join(_ELEMENT_ID.sub(lambda m: f"{m[1]}[{ids.get(m[2], m[2])}]", line, count=1)
                         for line in text.split("\n"))

    act = _ACTION_ID.sub(lambda m: f"{m[1]}[{ids.get(m[2], m[2])}]", action, count=1)
    return tree(before), tree(after), act


def format_diff(d: Diff) -> str:
    """The difference as annotation text.

    Each section is its header, its lines (or ``None``) and a newline; the
    sections are separated by a blank line.
    """
    blocks = []
    for header, lines in zip(SECTION_HEADERS, d.sections):
        body = "\n".join(lines) if lines else EMPTY_SECTION
        blocks.append(f"{header}\n{body}\n")
    return "\n".join(blocks)


def parse_diff(text: str) -> Diff:
    """Read a difference back from annotation text (a model's answer, say).

    The answer starts at the last ``New items:`` header (so prose before it,
    a reasoning trace for instance, is ignored), or at the first header of
    any section when there is no ``New items:``. Within it, each header opens
    its section and every line that reads as an element (``[id] role ...``,
    leading whitespace dropped) is an item of the open section; ``None``,
    blank lines and any other text are ignored, a missing section is empty.
    Headers may carry markdown decoration and an item on the same line.
    Nothing raises: text without headers, or a non-string, gives an empty
    ``Diff``. ``parse_diff(format_diff(d)) == d`` whenever every line of ``d``
    reads as an element.
    """
    if not isinstance(text, str):
        return Diff()
    # One pass, linear in the text: each `New items:` header starts the answer afresh (the last one wins),
    # and before any header nothing is read (the first header starts the answer when there is no `New items:`).
    sections: dict[str, list[str]] = {"new": [], "deleted": [], "updated": []}
    current: list[str] | None = None
    for line in text.split("\n"):
        if line.endswith("\r"):
            line = line[:-1]
        header = _HEADER.match(line)
        if header is not None:
            kind = header.group(1).lower()
            if kind == "new":
                sections = {"new": [], "deleted": [], "updated": []}
            current = sections[kind]
            line = header.group(2)
        if current is not None and line:
            item = line.replace("\t", "").lstrip(" ")
            if _ITEM.match(item):
                current.append(item)
    return Diff(sections["new"], sections["deleted"], sections["updated"])


def _split_name(content: str) -> tuple[str, str]:
    """(name without quotes, attributes) of the text after a role."""
    match = _NAME.match(content)
    if match is None:
        return "", content.strip()
    return match.group()[1:-1], content[match.end():].strip()


def _wma_diff(before: Sequence[Node], after: Sequence[Node]) -> Diff:
    """The WMA-Agents annotation rule (see the module docstring)."""
    from scipy.optimize import linear_sum_assignment  # only this rule needs it; keeps start-up light
    old, new = _keyed_by_int_id(before), _keyed_by_int_id(after)
    if not old or not new:
        return Diff(new=[n.line for n in new.values()], deleted=[n.line for n in old.values()])
    old_keys, old_nodes = list(old), list(old.values())
    new_keys, new_nodes = list(new), list(new.values())

    same_text = _equal_matrix([n.content for n in old_nodes], [n.content for n in new_nodes])
    same_role = _equal_matrix([n.role for n in old_nodes], [n.role for n in new_nodes])
    score = _WMA_TEXT_WEIGHT * same_text + _WMA_ROLE_WEIGHT * same_role
    rows, cols = linear_sum_assignment(score)  # rows come back sorted

    paired = {new_keys[j] for j in cols}
    updated = [
        new_nodes[j].line
        for i, j in zip(rows, cols)
        if (old_keys[i], old_nodes[i].line) != (new_keys[j], new_nodes[j].line)
    ]
    return Diff(
        new=[n.line for key, n in new.items() if key not in paired],
        deleted=[n.line for key, n in old.items() if key not in paired],
        updated=updated,
    )


def _keyed_by_int_id(nodes: Sequence[Node]) -> dict[int, Node]:
    """Nodes by integer id as the WMA code keys them: id 0 left out, a
    repeated id keeping its first position and its last line."""
    keyed: dict[int, Node] = {}
    for node in nodes:
        key = int(node.id)
        if key:
            keyed[key] = node
    return keyed


def _equal_matrix(a: Sequence[str], b: Sequence[str]) -> np.ndarray:
    """``m[i, j] = a[i] == b[j]`` as 0/1 floats."""
    codes: dict[str, int] = {}
    ca = np.array([codes.setdefault(s, len(codes)) for s in a], dtype=np.int64)
    cb = np.array([codes.setdefault(s, len(codes)) for s in b], dtype=np.int64)
    return (ca[:, None] == cb[None, :]).astype(np.float64)


def _aligned_diff(before: Sequence[Node], after: Sequence[Node]) -> Diff:
    """The plain rule (see the module docstring)."""
    pairs: dict[int, int] = {}  # after index -> before index
    _pair_in_order(before, after, lambda n: n.id, pairs)
    _pair_in_order(before, after, lambda n: (n.role, n.content), pairs)
    paired_before = set(pairs.values())
    return Diff(
        new=[n.line for j, n in enumerate(after) if j not in pairs],
        deleted=[n.line for i, n in enumerate(before) if i not in paired_before],
        updated=[
            n.line for j, n in enumerate(after)
            if j in pairs and (before[pairs[j]].role, before[pairs[j]].content) != (n.role, n.content)
        ],
    )


def _pair_in_order(
    before: Sequence[Node], after: Sequence[Node], key: Callable[[Node], Hashable], pairs: dict[int, int]
) -> None:
    """Pair still-unpaired nodes of equal ``key``: the k-th such before node
    with the k-th such after node, in document order. Adds to ``pairs``."""
    taken = set(pairs.values())
    waiting: dict[Hashable, deque[int]] = {}
    for i, node in enumerate(before):
        if i not in taken:
            waiting.setdefault(key(node), deque()).append(i)
    for j, node in enumerate(after):
        if j in pairs:
            continue
        queue = waiting.get(key(node))
        if queue:
            pairs[j] = queue.popleft()
