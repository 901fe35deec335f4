"""The accessibility-tree difference: the WMA-Agents annotation reproduced on
real WebArena records, the plain ("aligned") rule on hand-made trees, and the
annotation text read and written."""

from __future__ import annotations

import gzip
import json
from functools import cache
from pathlib import Path

import pytest

from rlvr_world.domains.web.acctree import Diff, Node, apply_diff, diff, format_diff, parse, parse_diff, renumber

FIXTURE = Path(__file__).parent / "fixtures" / "web" / "webarena_samples_tao.json"

EMPTY_TEXT = "New items:\nNone\n\nDeleted items:\nNone\n\nUpdated items:\nNone\n"


@cache
def records() -> tuple[dict, ...]:
    return tuple(json.loads(FIXTURE.read_text(encoding="utf-8")))


def section(field: str) -> list[str]:
    """A record's ``new_items`` / ``deleted_items`` / ``updated_items`` as a list."""
    return [] if field == "None" else field.split("\n")


def tree(*lines: str) -> str:
    """A WebArena tree text: the tab header, a blank line, then ``lines``."""
    return "Tab 0 (current): Test page\n\n" + "\n".join(lines)


# ---------------------------------------------------------------------------
# The published annotation, record by record. All 10 records reproduce
# exactly, section by section and as text: there is no known difference.


def test_fixture_has_ten_records():
    assert len(records()) == 10


@pytest.mark.parametrize("index", range(10))
def test_wma_rule_reproduces_annotation(index):
    record = records()[index]
    d = diff(record["observation"], record["next_state_acctree"])
    assert list(d.new) == section(record["new_items"])
    assert list(d.deleted) == section(record["deleted_items"])
    assert list(d.updated) == section(record["updated_items"])
    assert format_diff(d) == record["next_state_tao"]


@pytest.mark.parametrize("index", range(10))
def test_parse_diff_reads_annotation(index):
    record = records()[index]
    d = parse_diff(record["next_state_tao"])
    assert d == diff(record["observation"], record["next_state_acctree"])
    assert parse_diff(format_diff(d)) == d


def test_wma_rule_lists_unchanged_lines_as_updated():
    # Record 0 clicks the tab that is already open; the annotation still lists
    # every element of the page as updated, 162 of the 163 lines verbatim as
    # they were before (each was paired with some other element).
    record = records()[0]
    d = diff(record["observation"], record["next_state_acctree"])
    before = {node.line for node in parse(record["observation"])}
    assert len(d.updated) == 163
    assert sum(line in before for line in d.updated) == 162


def test_wma_rule_lists_an_element_as_new_and_deleted():
    # Record 1: the deleted test looks a before id up among paired after ids,
    # so the 11 unpaired gridcells, present in both trees, are both.
    record = records()[1]
    d = diff(record["observation"], record["next_state_acctree"])
    assert len(d.new) == 11
    assert d.new == d.deleted
    assert d.new[0] == "[1016] gridcell '10' required: False"


def test_wma_rule_on_identical_trees_updates_everything():
    # The annotation rule pairs unlike elements, so even an unchanged page of
    # distinct elements comes out fully updated (order depends on ties).
    page = tree("[1] RootWebArea 'Page' focused: True", "\t[2] link 'A'", "\t[3] link 'B'")
    d = diff(page, page)
    assert d.new == d.deleted == ()
    assert sorted(d.updated) == sorted(node.line for node in parse(page))
    assert diff(tree("[1] RootWebArea 'Page'"), tree("[1] RootWebArea 'Page'")).empty


# ---------------------------------------------------------------------------
# The aligned rule.


def test_aligned_rule_on_a_real_menu_click():
    # Record 1 opens the SALES menu: its 11 elements appear and the clicked
    # link gains focus; nothing else changes.
    record = records()[1]
    d = diff(record["observation"], record["next_state_acctree"], rule="aligned")
    assert d.deleted == ()
    assert d.updated == ("[12] link '\\ue60b SALES' focused: True",)
    assert len(d.new) == 11
    assert d.new[0].startswith("[71] generic '\\ue60b SALES Sales")
    assert d.new[-1] == "[441] link 'Braintree Virtual Terminal'"
    # Record 2 closes it again.
    back = records()[2]
    d2 = diff(back["observation"], back["next_state_acctree"], rule="aligned")
    assert d2.deleted == d.new
    assert d2.updated == ("[12] link '\\ue60b SALES'",) and d2.new == ()


PAGE = (
    "[1] RootWebArea 'Shop' focused: True",
    "\t[2] link 'Home'",
    "\t[3] button 'Save'",
    "\t[4] combobox 'Size' expanded: False",
)


def test_aligned_identical_trees_give_no_difference():
    d = diff(tree(*PAGE), tree(*PAGE), rule="aligned")
    assert d == Diff() and d.empty
    assert format_diff(d) == EMPTY_TEXT


def test_aligned_added_element():
    d = diff(tree(*PAGE), tree(*PAGE, "\t\t[9] option 'Large' selected: False"), rule="aligned")
    assert d == Diff(new=["[9] option 'Large' selected: False"])


def test_aligned_removed_element():
    d = diff(tree(*PAGE), tree(*PAGE[:2], PAGE[3]), rule="aligned")
    assert d == Diff(deleted=["[3] button 'Save'"])


def test_aligned_changed_name_and_attribute():
    after = tree(PAGE[0], PAGE[1], "\t[3] button 'Saved'", "\t[4] combobox 'Size' expanded: True")
    d = diff(tree(*PAGE), after, rule="aligned")
    assert d == Diff(updated=["[3] button 'Saved'", "[4] combobox 'Size' expanded: True"])


def test_aligned_new_id_same_element_is_not_a_change():
    # Re-rendered under a new id, or moved to another depth: same line text.
    after = tree(PAGE[0], "\t[20] link 'Home'", "\t\t[3] button 'Save'", PAGE[3])
    assert diff(tree(*PAGE), after, rule="aligned").empty


def test_aligned_repeated_lines_pair_in_order():
    before = tree("[1] list ''", "\t[2] link 'More'", "\t[3] link 'More'")
    after = tree("[1] list ''", "\t[7] link 'More'", "\t[8] link 'More'", "\t[9] link 'More'")
    assert diff(before, after, rule="aligned") == Diff(new=["[9] link 'More'"])


@pytest.mark.parametrize("rule", ["wma", "aligned"])
def test_empty_side_is_all_new_or_all_deleted(rule):
    lines = [line.strip("\t") for line in PAGE]
    assert diff("", tree(*PAGE), rule=rule) == Diff(new=lines)
    assert diff(tree(*PAGE), "Tab 0 (current): blank\n\n", rule=rule) == Diff(deleted=lines)
    assert diff("", "", rule=rule).empty


def test_unknown_rule_is_an_error():
    with pytest.raises(ValueError, match="unknown rule"):
        diff("", "", rule="nearest")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# Parsing trees.


def test_parse_reads_elements_depth_and_parents():
    nodes = parse(tree(*PAGE, "\t\t[5] StaticText \"Don't\"", "[6] contentinfo ''"))
    assert [n.id for n in nodes] == ["1", "2", "3", "4", "5", "6"]
    assert [n.depth for n in nodes] == [0, 1, 1, 1, 2, 0]
    assert [n.parent for n in nodes] == [None, "1", "1", "1", "4", None]
    assert nodes[0] == Node(
        id="1", role="RootWebArea", content="'Shop' focused: True", name="Shop", attrs="focused: True",
        depth=0, line="[1] RootWebArea 'Shop' focused: True", parent=None,
    )
    assert (nodes[3].name, nodes[3].attrs) == ("Size", "expanded: False")
    assert (nodes[4].name, nodes[4].attrs) == ("Don't", "")
    assert (nodes[5].name, nodes[5].line) == ("", "[6] contentinfo ''")


def test_parse_on_real_tree():
    nodes = parse(records()[0]["observation"])
    assert len(nodes) == 163  # the "Tab 0 (current)" header and blank line are not elements
    assert nodes[2].line == "[63] img 'Magento Admin Panel'" and nodes[2].parent == "54"
    assert nodes[4].name == "\\ue604 DASHBOARD"


@pytest.mark.parametrize(
    "text",
    ["", "\n\n", "Tab 0 (current): x", "[] link 'a'", "[12]", "[x] link", "link 'a' [3]", "\t\t\t", "[4 link 'b'",
     "\x00\x01", "[5] button 'unterminated"],
)
def test_parse_skips_what_it_cannot_read(text):
    nodes = parse(text)
    assert all(isinstance(n, Node) for n in nodes)
    assert [n.line for n in nodes] == (["[5] button 'unterminated"] if text.startswith("[5]") else [])


def test_parse_non_text_is_empty():
    assert parse(None) == []  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# Writing and reading the annotation text.


def test_format_diff_layout():
    d = Diff(new=["[9] link 'a'", "[10] link 'b'"], updated=["[3] button 'c'"])
    assert format_diff(d) == (
        "New items:\n[9] link 'a'\n[10] link 'b'\n\nDeleted items:\nNone\n\nUpdated items:\n[3] button 'c'\n"
    )
    assert format_diff(Diff()) == EMPTY_TEXT


@pytest.mark.parametrize(
    "d",
    [
        Diff(),
        Diff(new=["[9] link 'a'"]),
        Diff(deleted=["[1] RootWebArea 'x' focused: True", "[2] StaticText \"it's\""]),
        Diff(new=["[2] link 'a'"], deleted=["[2] link 'a'"], updated=["[3] button 'None'"]),
    ],
)
def test_round_trip(d):
    assert parse_diff(format_diff(d)) == d


def test_parse_diff_ignores_prose_before_the_answer():
    text = (
        "The click opens a menu. New items: will appear.\n"
        "Draft:\nNew items:\n[1] link 'draft'\n\n"
        "Final answer:\n"
        "New items:\n[9] link 'Orders'\n\nDeleted items:\nNone\n\nUpdated items:\n[12] link 'SALES' focused: True\n"
        "I hope this helps."
    )
    assert parse_diff(text) == Diff(new=["[9] link 'Orders'"], updated=["[12] link 'SALES' focused: True"])


def test_parse_diff_missing_sections_and_decoration():
    assert parse_diff("Updated items:\n  [3] button 'c'") == Diff(updated=["[3] button 'c'"])
    assert parse_diff("**New items:**\n\t[4] link 'd'\nDeleted items: [5] link 'e'") == Diff(
        new=["[4] link 'd'"], deleted=["[5] link 'e'"]
    )
    assert parse_diff("New items:\r\n[4] link 'd'\r\n\r\nDeleted items:\r\nNone\r\n") == Diff(new=["[4] link 'd'"])


@pytest.mark.parametrize(
    "text",
    ["", "None", "garbage", "New items", "Previous Action did not make any changes.", "\x00\n\x1c\u2028",
     "[1] link 'outside any section'", "Deleted items:\nnot an item\nNone", "New items:" * 3, None, 42],
)
def test_parse_diff_never_raises_on_garbage(text):
    assert parse_diff(text) == Diff()  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# A difference applied to the page before: the predicted page an agent reads.

MINIWOB = Path(__file__).parent / "fixtures" / "web" / "miniwob-sample.jsonl.gz"


def bundled_pairs() -> list[tuple[str, str]]:
    """(before, after) of every bundled transition: the WebArena records, and the MiniWoB sample with its
    browser ids and renumbered as the web domain does."""
    pairs = [(r["observation"], r["next_state_acctree"]) for r in records()]
    with gzip.open(MINIWOB, "rt", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            pairs += [(r["before"], r["after"]), renumber(r["before"], r["after"])[:2]]
    return pairs


def test_applying_the_true_difference_gives_the_page_after_on_every_bundled_transition():
    pairs = bundled_pairs()
    assert len(pairs) == 10 + 2 * 264
    changed = 0
    for before, after in pairs:
        d = diff(before, after, rule="aligned")
        changed += not d.empty
        predicted = apply_diff(before, d)
        assert diff(predicted, after, rule="aligned").empty
        # the same elements with the same text, id for id except elements re-rendered under a new id
        nodes = lambda text: sorted((n.role, n.content) for n in parse(text))  # noqa: E731
        assert nodes(predicted) == nodes(after)
    assert changed > 100  # the round trip is not only tested on empty differences


def test_apply_diff_deletes_updates_in_place_and_adds_at_the_end():
    before = tree("[1] RootWebArea 'Form' focused: True", "\t[2] textbox 'Name'", "\t\t[3] StaticText 'x'",
                  "\t[4] button 'Submit'")
    d = Diff(new=["[9] alert 'Saved'"], deleted=["[3] StaticText 'x'"], updated=["[2] textbox 'Name' focused: True"])
    assert apply_diff(before, d) == tree("[1] RootWebArea 'Form' focused: True", "\t[2] textbox 'Name' focused: True",
                                         "\t[4] button 'Submit'", "\t[9] alert 'Saved'")
    assert apply_diff(before, Diff()) == before


def test_apply_diff_takes_a_models_wrong_answer_without_raising():
    before = tree("[1] RootWebArea 'Form'", "\t[2] button 'OK'")
    d = parse_diff("New items:\nnonsense\n[5] link 'a'\n\nDeleted items:\n[7] button 'gone'\n\n"
                   "Updated items:\n[8] text 'no such id'\nmore nonsense")
    assert apply_diff(before, d) == tree("[1] RootWebArea 'Form'", "\t[2] button 'OK'", "\t[5] link 'a'",
                                         "\t[8] text 'no such id'")
    assert apply_diff(None, d) == "\t[5] link 'a'\n\t[8] text 'no such id'"
