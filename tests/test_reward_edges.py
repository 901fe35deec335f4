"""Rewards and `score` at the edges (issue #22, item 7): never raising, always in range, linear in time.

- web `f1` on megabytes of repeated section headers: linear, and the same
  answer as the two-pass reading it replaced (a naive reference below);
- every domain's `score` (and `decode`, and the video `token_rewards`) on id
  sequences that are not ids of the vocabulary: negative, past the
  vocabulary, beyond int64, floats, None, strings, bools, empty. They score
  as the domain's unparseable response, with `parts["why"]`; valid ids score
  as before.
"""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from rlvr_world.domains.textgame import TextGameDomain, reward as textgame_reward
from rlvr_world.domains.textgame.data import Transition
from rlvr_world.domains.textgame.serialize import prompt_text, target_text
from rlvr_world.domains.video import VideoData, VideoDomain, VideoTokenizer
from rlvr_world.domains.video.data import Episodes
from rlvr_world.domains.video.frames import FrameTokenizer, FrameTokenizerConfig
from rlvr_world.domains.video.metrics import WORST_REWARD, video_reward
from rlvr_world.domains.web import WebData, WebDomain
from rlvr_world.domains.web.acctree import _HEADER, _ITEM, Diff, format_diff, parse_diff
from rlvr_world.domains.web.reward import f1_reward, has_answer, prf
from rlvr_world.text import train_bpe

WEB = Path(__file__).parent / "fixtures" / "web"
A, B, C = "[1] button 'A'", "[2] link 'B'", "[3] StaticText 'C'"


# ---- web: linear time, same values ------------------------------------------------------------------------------


def two_pass_parse_diff(text: str) -> Diff:
    """The reading `parse_diff` documents, done the naive way: find every header, start at the last
    `New items:` (else the first header), then read from there."""
    lines = [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]
    headers = [(i, m.group(1).lower()) for i, line in enumerate(lines) if (m := _HEADER.match(line))]
    if not headers:
        return Diff()
    news = [i for i, kind in headers if kind == "new"]
    start = news[-1] if news else headers[0][0]
    sections: dict[str, list[str]] = {"new": [], "deleted": [], "updated": []}
    current = None
    for line in lines[start:]:
        m = _HEADER.match(line)
        if m:
            current, line = sections[m.group(1).lower()], m.group(2)
        item = line.replace("\t", "").lstrip(" ")
        if current is not None and _ITEM.match(item):
            current.append(item)
    return Diff(sections["new"], sections["deleted"], sections["updated"])


def random_answer(rng: random.Random) -> str:
    pieces = ["New items:", "Deleted items:", "Updated items:", "**New items:**", "### Updated items: " + C,
              "new ITEMS :", "- Deleted items:" + A, "None", "", A, B, C, "\t\t" + B, "  " + A + "\r",
              "I think a button appears.", "[x] not an item", "[12]", "[7] heading 'Title'", "New items"]
    return "\n".join(rng.choice(pieces) for _ in range(rng.randint(0, 25)))


def test_parse_diff_matches_the_two_pass_reading_on_normal_and_random_answers():
    texts = [r["next_state_tao"] for r in json.loads((WEB / "webarena_samples_tao.json").read_text())]
    texts += [format_diff(Diff(new=(A,), deleted=(B,), updated=(C,))), format_diff(Diff()), "no answer"]
    rng = random.Random(0)
    texts += [random_answer(rng) for _ in range(2000)]
    real = Diff(new=(A, B), updated=(C,))
    for text in texts:
        assert parse_diff(text) == two_pass_parse_diff(text), text
        assert f1_reward(text, real)[0] == (prf(two_pass_parse_diff(text), real)["f1"] if has_answer(text) else 0.0)


@pytest.mark.parametrize("unit", ["New items:\n", "**New items:** [1] button 'A'\nDeleted items:\n[2] link 'B'\n"])
def test_f1_on_megabytes_of_repeated_headers_is_linear(unit):
    real = Diff(new=(A,), deleted=(B,))

    def cpu_seconds(size: int) -> float:
        text = unit * (size // len(unit))
        start = time.process_time()  # CPU time: other jobs on the machine do not count
        value, parts = f1_reward(text, real)
        assert 0.0 <= value <= 1.0 and parts["parsed"] == 1.0
        return time.process_time() - start

    small, large = min(cpu_seconds(500_000) for _ in range(3)), min(cpu_seconds(4_000_000) for _ in range(2))
    # 8x the text: ~8x the time when linear, ~64x when quadratic (the two-pass reading it replaced was 4-5x slower)
    assert large < 20 * max(small, 1e-3), f"f1 took {small:.3f} s on 0.5 MB and {large:.3f} s on 4 MB"
    # the answer is read from the last `New items:` header on: one unit's worth of lines
    text = unit * (4_000_000 // len(unit))
    assert parse_diff(text) == parse_diff(unit)


# ---- score on ids that are not ids ------------------------------------------------------------------------------


def bad_id_sequences(vocab: int, valid: list[int]) -> list:
    """Sequences that are not token ids of a `vocab`-sized vocabulary, each with a valid prefix or alone."""
    singles = [-1, -(2**63), vocab, vocab + 10**6, 2**63, 10**30, -(10**30), 3.0, 3.5, math.nan, math.inf, -math.inf,
               None, "7", b"7", True, np.float32(2.0), np.float64(math.nan), torch.tensor(2.5), [1, 2], {"a": 1}]
    out = [[x] for x in singles] + [valid[:3] + [x] + valid[3:] for x in singles]
    out += [np.array(valid, dtype=np.float64), torch.tensor(valid, dtype=torch.float32), [-1] * 40, [vocab] * 40]
    out += [None, 5, 2.5, "not ids", torch.tensor(3)]  # not sequences at all
    return out


def check_value(value, lo: float, hi: float) -> None:
    assert isinstance(value, float) and math.isfinite(value) and lo <= value <= hi, value


@pytest.fixture(scope="module")
def textgame():
    obj = lambda uuid, on: {"name": f"lamp{uuid}", "uuid": uuid, "type": "Lamp",  # noqa: E731
                            "properties": {"on": on}, "contains": []}
    score = {"score": 0, "gameOver": False, "gameWon": False}
    t = Transition("lamp", "s", "turn on the lamp", "turn on lamp", [obj(1, False), obj(2, False)], score,
                   [obj(1, True), obj(2, False)], {**score, "score": 1}, max_uuid=3)
    tok = train_bpe([prompt_text(t) + target_text(t)] * 4, 300)
    dom = TextGameDomain(tok)
    return dom, dom.example(t)


@pytest.fixture(scope="module")
def web():
    data = WebData(dataset=str(WEB / "miniwob-sample.jsonl.gz"))
    dom = WebDomain(WebDomain.make_tokenizer(data, 600), data)
    return dom, next(e for e in dom.examples("test") if e.payload.changed)


RANGES = {"binary": (0.0, 1.0), "task_specific": (0.0, 1.3), "f1": (0.0, 1.0)}


@pytest.mark.parametrize("which", ["textgame", "web"])
def test_text_domains_score_bad_ids_as_the_empty_response(which, request):
    dom, ex = request.getfixturevalue(which)
    vocab = len(dom.tokenizer)
    for name, reward in dom.rewards.items():
        lo, hi = RANGES[name]
        best = dom.score(name, ex.target_ids, ex)[0]
        assert best == pytest.approx(hi)  # the real target: the best value
        for ids in (np.array(ex.target_ids), torch.tensor(ex.target_ids), [np.int64(i) for i in ex.target_ids]):
            assert dom.score(name, ids, ex)[0] == best  # valid ids in other containers: the same value
        empty_value, empty_parts = reward("", ex.payload)
        for ids in bad_id_sequences(vocab, ex.target_ids):
            value, parts = dom.score(name, ids, ex)
            check_value(value, lo, hi)
            assert value == empty_value and parts["why"] and parts["parsed"] == empty_parts["parsed"] == 0.0
            assert dom.decode(ids) == ""
        for ids in ([], [dom.eos_id], [dom.pad_id] * 10, [vocab - 1] * 512):  # valid ids, nothing parseable
            check_value(dom.score(name, ids, ex)[0], lo, hi)
            assert isinstance(dom.decode(ids), str)


def test_textgame_rewards_take_any_object_as_the_response(textgame):
    _, ex = textgame
    for text in (None, 12, 1.5, ["modified"], {"modified": []}, b"\xff\xfe"):
        for reward in textgame_reward.REWARDS.values():
            value, parts = reward(text, ex.payload)
            assert value == 0.0 and parts["why"] == "not JSON"
    assert textgame_reward.binary(target_text(ex.payload).encode(), ex.payload)[0] == 1.0  # bytes: JSON as before


@pytest.fixture(scope="module")
def video():
    torch.manual_seed(0)
    tok = VideoTokenizer(FrameTokenizer(FrameTokenizerConfig(grid=4, levels=[5, 3], channels=16)), 4, bins=8)
    rng = np.random.default_rng(0)
    ep = Episodes(rng.integers(0, 256, size=(1, 5, 64, 64, 3), dtype=np.uint8),
                  rng.uniform(-1, 1, size=(1, 4, 4)).astype(np.float32), ["a"])
    dom = VideoDomain(tok, VideoData(context=2, horizon=2))
    return dom, [e for e in dom.episode_examples(ep) if e.group == "multi_step"][0]


def test_video_score_gives_bad_ids_the_failure_value_and_valid_ids_their_old_value(video):
    dom, ex = video
    tok = dom.tokenizer
    codes, _ = tok.split_response(ex.target_ids, 2)
    expected = video_reward(torch.as_tensor(tok.decode_frames(codes)), torch.as_tensor(ex.payload.frames).float() / 255)
    for ids in (ex.target_ids, np.array(ex.target_ids), torch.tensor(ex.target_ids)):
        value, parts = dom.score("mae_ssim", ids, ex)
        assert value == expected[0] and parts["valid"] == 1.0
    for ids in bad_id_sequences(len(tok), ex.target_ids):
        value, parts = dom.score("mae_ssim", ids, ex)
        assert value == WORST_REWARD and parts["valid"] == 0.0 and parts["why"]
        assert np.array(dom.decode(ids)).shape[1] == tok.tokens_per_frame
        rewards = dom.token_rewards("mae_ssim", ids, ex)
        assert all(r == WORST_REWARD for r in rewards)
        if isinstance(ids, list):
            assert len(rewards) == len(ids)  # one value per response position, as the token credit needs
    # in-vocabulary ids where a frame code belongs, or too few ids: clamped, filled, scored, flagged (as before)
    for ids in ([], [tok.eos_token_id] * len(ex.target_ids), ex.target_ids[:5], [len(tok) - 1] * 512):
        value, parts = dom.score("mae_ssim", ids, ex)
        check_value(value, WORST_REWARD, 0.0)
        assert parts["valid"] == 0.0
