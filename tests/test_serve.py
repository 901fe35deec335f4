"""`rlvr-world serve`: a saved world model behind an OpenAI-compatible completions endpoint."""

import http.client
import json
import os
import subprocess
import sys

import pytest
from conftest import save_tiny_text_model

from rlvr_world.engine.sampler import sample
from rlvr_world.serve import Completer, RequestError

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "CI": "true"}
PAGE = "[1] RootWebArea 'Form' focused: True\n\t[4] button 'Submit'\nclick [4]\n"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A saved random 2-layer Llama with a BPE tokenizer trained on page-like text (context 128)."""
    texts = [PAGE, "New items:\nNone\n\nDeleted items:\nNone\n\nUpdated items:\n[4] button 'Submit'\n"] * 20
    return save_tiny_text_model(tmp_path_factory.mktemp("serve") / "model", texts, 300, max_positions=128)


@pytest.fixture(scope="module")
def completer(model_dir):
    from rlvr_world.engine import models
    from rlvr_world.text import load_tokenizer

    return Completer(models.load(model_dir), load_tokenizer(model_dir), "wm", max_tokens=6)


def test_a_greedy_completion_is_the_samplers_answer(completer):
    r = completer.complete({"model": "wm", "prompt": PAGE, "max_tokens": 12, "temperature": 0})
    tok = completer.tokenizer
    ids = tok.encode(PAGE, add_special_tokens=False)
    out = sample(completer.model, [ids], eos_id=tok.eos_token_id, pad_id=tok.pad_token_id, max_new_tokens=12,
                 temperature=0.0)
    expected = tok.decode([t for t in out.tokens[0, : int(out.lengths[0])].tolist() if t != tok.eos_token_id],
                          skip_special_tokens=True)
    assert r["object"] == "text_completion" and r["model"] == "wm"
    assert [c["text"] for c in r["choices"]] == [expected]
    assert r["usage"]["prompt_tokens"] == len(ids)
    assert r["usage"]["total_tokens"] == len(ids) + r["usage"]["completion_tokens"]
    # the same prompt as token ids gives the same answer
    assert completer.complete({"prompt": ids, "max_tokens": 12, "temperature": 0})["choices"][0]["text"] == expected


def test_several_prompts_and_samples_come_in_order_and_a_seed_repeats(completer):
    body = {"prompt": [PAGE, "click [4]"], "n": 3, "max_tokens": 5, "seed": 7}
    r = completer.complete(body)
    assert [c["index"] for c in r["choices"]] == list(range(6))
    assert all(c["finish_reason"] in ("stop", "length") for c in r["choices"])
    assert [c["text"] for c in completer.complete(body)["choices"]] == [c["text"] for c in r["choices"]]
    assert completer.complete({"prompt": "click [4]"})["usage"]["completion_tokens"] <= 6  # the server's default


def test_a_stop_string_cuts_the_text(completer):
    text = completer.complete({"prompt": PAGE, "max_tokens": 20, "temperature": 0})["choices"][0]["text"]
    assert len(text) >= 2
    r = completer.complete({"prompt": PAGE, "max_tokens": 20, "temperature": 0, "stop": [text[1:3]]})["choices"][0]
    assert r["text"] == text[: text.find(text[1:3])] and r["finish_reason"] == "stop"


@pytest.mark.parametrize("body, status, words", [
    ([1, 2], 400, "JSON object"),
    ({"model": "other", "prompt": "a"}, 404, "not served here"),
    ({}, 400, "prompt must be"),
    ({"prompt": ""}, 400, "empty"),
    ({"prompt": [["a"]]}, 400, "string or a list of token ids"),
    ({"prompt": [5, 300]}, 400, "outside the vocabulary"),
    ({"prompt": "a", "max_tokens": 0}, 400, "max_tokens must be an integer >= 1"),
    ({"prompt": "a", "max_tokens": 1000}, 400, "context of 128 tokens"),
    ({"prompt": "a", "n": 100}, 400, "at most 64"),
    ({"prompt": "a", "temperature": -1}, 400, "temperature must be"),
    ({"prompt": "a", "top_p": "high"}, 400, "top_p must be"),
    ({"prompt": "a", "stop": [""]}, 400, "stop must be"),
    ({"prompt": "a", "seed": 1.5}, 400, "seed must be an integer"),
    ({"prompt": "a", "stream": True}, 400, "stream=True is not supported"),
    ({"prompt": "a", "logprobs": 2}, 400, "logprobs=2 is not supported"),
    ({"prompt": "a", "frequency_penalty": 0.5}, 400, "not supported"),
])
def test_a_bad_request_is_refused_with_one_line(completer, body, status, words):
    with pytest.raises(RequestError) as e:
        completer.complete(body)
    assert e.value.status == status and words in str(e.value) and "\n" not in str(e.value)


def test_harmless_defaults_are_accepted(completer):
    r = completer.complete({"prompt": "a", "max_tokens": 2, "stream": False, "logprobs": None, "echo": False,
                            "best_of": 1, "logit_bias": {}, "presence_penalty": 0, "user": "me"})
    assert len(r["choices"]) == 1


def request(port: int, method: str, path: str, body=None, conn=None):
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    data = body if isinstance(body, bytes) else (None if body is None else json.dumps(body).encode())
    conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    return r.status, json.loads(r.read())


def test_the_server_answers_over_http_and_survives_bad_requests(model_dir, tmp_path):
    p = subprocess.Popen([sys.executable, "-m", "rlvr_world.cli", "serve", "--model", str(model_dir), "--port", "0",
                          "--threads", "1", "--name", "wm"], cwd=tmp_path, env=ENV, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()
        assert line.startswith("serving 'wm' at http://127.0.0.1:"), line + p.stderr.read()
        port = int(line.split("127.0.0.1:")[1].split("/")[0])
        status, models = request(port, "GET", "/v1/models")
        assert status == 200 and models["data"][0]["id"] == "wm"
        status, r = request(port, "POST", "/v1/completions", {"model": "wm", "prompt": PAGE, "max_tokens": 4,
                                                               "temperature": 0})
        assert status == 200 and len(r["choices"]) == 1 and r["choices"][0]["finish_reason"] in ("stop", "length")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)  # one kept-alive connection throughout
        status, err = request(port, "POST", "/v1/completions", b"{not json", conn)
        assert status == 400 and "not JSON" in err["error"]["message"]
        status, err = request(port, "POST", "/v1/chat/completions", {"messages": []}, conn)
        assert status == 404 and "POST /v1/completions" in err["error"]["message"]
        status, err = request(port, "POST", "/v1/completions", {"prompt": "a", "max_tokens": 10_000}, conn)
        assert status == 400 and "context" in err["error"]["message"]
        status, again = request(port, "POST", "/v1/completions", {"prompt": PAGE, "max_tokens": 4, "temperature": 0},
                                conn)
        assert status == 200 and again["choices"][0]["text"] == r["choices"][0]["text"]
        assert p.poll() is None
    finally:
        p.terminate()
        p.wait(30)


def test_a_bad_model_is_one_line(tmp_path):
    p = subprocess.run([sys.executable, "-m", "rlvr_world.cli", "serve", "--model", str(tmp_path / "nothing")],
                       cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and p.stderr.startswith("rlvr-world: error:")
    p = subprocess.run([sys.executable, "-m", "rlvr_world.cli", "serve", "--port", "70000"], cwd=tmp_path, env=ENV,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "--port must be in [0, 65535]" in p.stderr
