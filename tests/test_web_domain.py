"""The web domain on real collected MiniWoB++ records: splits, serialisation, reward, bad input."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pytest

from rlvr_world.domains.web import WebData, WebDomain, prompt_text, target_text
from rlvr_world.domains.web.acctree import Diff, format_diff, parse
from rlvr_world.domains.web.browser import Action
from rlvr_world.domains.web.data import DataError, read, split
from rlvr_world.text import train_bpe

ID = re.compile(r"^\[(\d+)\]")
SAMPLE = Path(__file__).parent / "fixtures" / "web" / "miniwob-sample.jsonl.gz"


@pytest.fixture(scope="module")
def records():
    return read(SAMPLE)


@pytest.fixture(scope="module")
def domain():
    data = WebData(dataset=str(SAMPLE))
    return WebDomain(WebDomain.make_tokenizer(data, 600), data)


def test_sample_is_real_and_varied(records):
    assert len({t.task for t in records}) >= 20
    changed = sum(t.changed for t in records)
    assert 0.3 * len(records) < changed < len(records)  # meaningful changes, and no-ops too
    assert all("Last reward" not in t.before for t in records)


def test_split_is_by_episode(records):
    train, test = split(records, "train", 0.2), split(records, "test", 0.2)
    assert train and test and len(train) + len(test) == len(records)
    assert not {t.episode for t in train} & {t.episode for t in test}


def test_true_difference_of_every_real_record_scores_one(domain, records):
    for t in records:
        assert domain.rewards["f1"](target_text(t), t) == (1.0, {"precision": 1.0, "recall": 1.0, "f1": 1.0,
                                                                 "parsed": 1.0})


def test_each_kind_of_error_lowers_the_reward_on_real_records(domain, records):
    t = next(t for t in records if len(t.diff.new) + len(t.diff.updated) >= 2)
    real = t.diff
    f1 = lambda d: domain.rewards["f1"](format_diff(d), t)[0]  # noqa: E731
    missing = Diff(new=real.new[1:], deleted=real.deleted, updated=real.updated) if real.new else \
        Diff(new=real.new, deleted=real.deleted, updated=real.updated[1:])
    invented = Diff(new=(*real.new, "[999999] button 'invented'"), deleted=real.deleted, updated=real.updated)
    no_change = Diff()
    for wrong in (missing, invented):
        assert 0.0 < f1(wrong) < 1.0
    assert f1(no_change) == 0.0


def test_examples_round_trip_through_the_tokenizer(domain):
    train = domain.examples("train", stage="mle")
    assert train and all(e.target_ids[-1] == domain.eos_id for e in train)
    e = train[0]
    assert domain.decode(e.target_ids) == target_text(e.payload)
    assert domain.tokenizer.decode(e.prompt_ids) == prompt_text(e.payload)
    assert domain.score("f1", e.target_ids, e)[0] == 1.0
    assert domain.score("f1", [domain.eos_id], e)[0] == 0.0  # an empty response is no answer, whatever the page did


def test_an_element_id_is_the_same_tokens_in_the_page_the_action_and_the_answer(domain):
    tok = domain.tokenizer
    ids = lambda text: tok.encode(text, add_special_tokens=False)  # noqa: E731
    assert ids("[645]") == ids("[") + ids("6") + ids("4") + ids("5") + ids("]")
    assert ids("click [645]")[-4:] == ids("\t[645] link '10'")[2:6] == ids("6") + ids("4") + ids("5") + ids("]")
    browser_ids = WebData(dataset=str(SAMPLE), ids="browser")  # Chromium's ids: 4-5 digits, merged by a plain BPE
    merged = train_bpe(WebDomain.corpus(browser_ids), 600)
    assert len(merged.encode("[645]", add_special_tokens=False)) < 5


def test_dense_ids_rename_elements_one_for_one(records):
    browser = read(SAMPLE, ids="browser")
    assert [t.action for t in records] != [t.action for t in browser]
    for dense, raw in zip(records, browser):
        before, after = parse(dense.before), parse(dense.after)
        names = {}  # browser id -> dense id, from the two trees line by line
        for d, r in zip(before + after, parse(raw.before) + parse(raw.after)):
            assert d.content == r.content and d.depth == r.depth
            assert names.setdefault(r.id, d.id) == d.id
        assert len(set(names.values())) == len(names)
        assert [n.id for n in before] == [str(i) for i in range(1, len(before) + 1)]  # tree order (ids unique here)
        # the action names the same element, and the difference is the same up to the names
        assert Action.parse(dense.action).kind == Action.parse(raw.action).kind
        if Action.parse(raw.action).node is not None:
            assert str(Action.parse(dense.action).node) == names[str(Action.parse(raw.action).node)]
        rename = lambda line: ID.sub(lambda m: f"[{names[m[1]]}]", line, count=1)  # noqa: E731
        assert dense.diff == Diff(*[[rename(line) for line in section] for section in raw.diff.sections])
    # elements that appear only after the action are numbered after every element of the page before it
    news = [(t, line) for t in records for line in t.diff.new]
    assert news and all(int(ID.match(line)[1]) > len(parse(t.before)) for t, line in news)


def test_rl_examples_keep_every_changed_transition(domain):
    rl = domain.examples("train", stage="rl", seed=0)
    changed = [e for e in rl if e.group == "changed"]
    all_train = domain.examples("train")
    assert len(changed) == sum(e.group == "changed" for e in all_train)
    assert sum(e.group == "unchanged" for e in rl) == round(0.25 * len(changed))


def test_bad_data_is_a_one_line_error(tmp_path):
    with pytest.raises(DataError, match="not found"):
        WebDomain.check_data(WebData(dataset=str(tmp_path / "missing.jsonl.gz")))
    corrupt = tmp_path / "corrupt.jsonl.gz"
    corrupt.write_bytes(b"not gzip")
    with pytest.raises(DataError, match="cannot read"):
        WebDomain.check_data(WebData(dataset=str(corrupt)))
    wrong = tmp_path / "wrong.jsonl.gz"
    with gzip.open(wrong, "wt") as f:
        f.write('{"task": "x"}\n')
    with pytest.raises(DataError, match="line 1"):
        WebDomain.check_data(WebData(dataset=str(wrong)))
    with pytest.raises(ValueError, match="diff rule"):
        WebDomain.check_data(WebData(diff_rule="fancy"))
    with pytest.raises(ValueError, match="unknown ids"):
        WebDomain.check_data(WebData(ids="sparse"))
    with pytest.raises(ValueError, match="unknown MiniWoB task"):
        WebDomain.check_data(WebData(tasks=["nope"]))
