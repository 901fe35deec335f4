"""`rlvr-world serve`: a saved world model behind OpenAI-compatible completions and chat endpoints, for many
clients at once."""

import contextlib
import http.client
import json
import os
import shutil
import subprocess
import sys
import threading
import time

import pytest
from conftest import save_tiny_text_model

from rlvr_world.engine.sampler import sample
from rlvr_world.serve import Completer, RequestError, default_max_tokens

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
        assert status == 400 and "has no chat template" in err["error"]["message"]
        status, err = request(port, "POST", "/v1/embeddings", {"input": "a"}, conn)
        assert status == 404 and "POST /v1/completions, POST /v1/chat/completions" in err["error"]["message"]
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


# ---- the completion length a request does not give ------------------------------------------------------------------

TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>{% endif %}")


@pytest.fixture(scope="module")
def run_model(model_dir, tmp_path_factory):
    """The tiny model as a run saves it (`RUN/rl/model`, the run's config.json evaluating 40 tokens), its tokenizer
    carrying a chat template."""
    from rlvr_world.text import load_tokenizer

    run = tmp_path_factory.mktemp("run")
    shutil.copytree(model_dir, run / "rl" / "model")
    tok = load_tokenizer(model_dir)
    tok.chat_template = TEMPLATE
    tok.save_pretrained(run / "rl" / "model")
    (run / "config.json").write_text(json.dumps({"domain": "web", "data": {}, "max_new_tokens": 40}))
    return run / "rl" / "model"


def test_the_default_length_is_the_runs_own_else_512(model_dir, run_model, completer):
    assert default_max_tokens(run_model) == 40 and default_max_tokens(model_dir) == 512
    long = Completer(completer.model, completer.tokenizer, "wm", max_tokens=512)  # more than the context of 128
    ids = completer.tokenizer.encode(PAGE, add_special_tokens=False)
    r = long.complete({"prompt": ids, "seed": 3})  # no max_tokens: as much of 512 as the context leaves
    assert r["usage"]["completion_tokens"] <= 128 - len(ids)
    assert r == {**r, "choices": long.complete({"prompt": ids, "seed": 3, "max_tokens": 128 - len(ids)})["choices"]}
    with pytest.raises(RequestError, match="context of 128 tokens"):  # a request's own length is not cut
        long.complete({"prompt": ids, "max_tokens": 512})


# ---- many clients at once -------------------------------------------------------------------------------------------

def prompts16() -> list[str]:
    return [f"[{i}] button 'Item {i}'\n" * (1 + i % 3) + "click [4]\n" for i in range(16)]


def bodies16() -> list[dict]:
    """Greedy and seeded requests, each its own prompt; the seeded ones sample 2 completions."""
    return [{"prompt": p, "max_tokens": 10, "temperature": 0} if i % 2 else
            {"prompt": p, "max_tokens": 10, "seed": i, "n": 2} for i, p in enumerate(prompts16())]


def test_waiting_requests_are_decoded_in_one_batch_each_with_its_own_answer(completer):
    alone = [completer.complete(b) for b in bodies16()]
    before = dict(completer.decoded)
    got: dict[int, dict] = {}
    with completer.lock:  # the model is busy: all 16 requests wait, then the first to get it takes the rest along
        threads = [threading.Thread(target=lambda i=i, b=b: got.__setitem__(i, completer.complete(b)))
                   for i, b in enumerate(bodies16())]
        for t in threads:
            t.start()
        while len(completer.waiting) < 16 and all(t.is_alive() for t in threads):  # no deadline: slow is not wrong
            time.sleep(0.01)
    for t in threads:
        t.join(60)
    assert completer.decoded["requests"] - before["requests"] == 16
    assert completer.decoded["batches"] - before["batches"] == 2  # the greedy ones together, the seeded ones too
    for i in range(16):
        assert [c["text"] for c in got[i]["choices"]] == [c["text"] for c in alone[i]["choices"]], i
        assert got[i]["usage"] == alone[i]["usage"]
    assert len({c["text"] for r in alone for c in r["choices"]}) >= 12  # answers differ: a mix-up would show


def test_16_concurrent_clients_each_get_their_own_answer(run_model, tmp_path):
    with served(run_model, tmp_path) as (port, line):
        assert "max_tokens 40 unless a request says" in line  # the run's own evaluation length
        alone = [request(port, "POST", "/v1/completions", b)[1] for b in bodies16()]
        got: dict[int, tuple] = {}
        barrier = threading.Barrier(16)

        def client(i: int, body: dict) -> None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            barrier.wait()
            got[i] = request(port, "POST", "/v1/completions", body, conn)

        threads = [threading.Thread(target=client, args=(i, b)) for i, b in enumerate(bodies16())]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert sorted(got) == list(range(16)) and all(status == 200 for status, _ in got.values())
        for i, (_, r) in got.items():
            assert [c["text"] for c in r["choices"]] == [c["text"] for c in alone[i]["choices"]], i
            assert r["usage"] == alone[i]["usage"]
        status, health = request(port, "GET", "/health")
        assert health["decoded"]["requests"] == 32 and health["decoded"]["batches"] <= 32
        # a request without max_tokens gets the run's 40; its own max_tokens wins
        free = request(port, "POST", "/v1/completions", {"prompt": PAGE, "seed": 5})[1]
        assert free["usage"]["completion_tokens"] <= 40
        assert free["choices"] == request(port, "POST", "/v1/completions",
                                          {"prompt": PAGE, "seed": 5, "max_tokens": 40})[1]["choices"]
        short = request(port, "POST", "/v1/completions", {"prompt": PAGE, "seed": 5, "max_tokens": 3})[1]
        assert short["usage"]["completion_tokens"] <= 3


# ---- chat ----------------------------------------------------------------------------------------------------------

MESSAGES = [{"role": "system", "content": "You predict pages."}, {"role": "user", "content": PAGE}]


def test_chat_applies_the_models_template(run_model, completer):
    from rlvr_world.text import load_tokenizer

    tok = load_tokenizer(run_model)
    chat = Completer(completer.model, tok, "wm", max_tokens=6)
    text = tok.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    assert text == f"<|system|>You predict pages.\n<|user|>{PAGE}\n<|assistant|>"
    r = chat.chat({"model": "wm", "messages": MESSAGES, "max_tokens": 12, "temperature": 0})
    same = chat.complete({"prompt": text, "max_tokens": 12, "temperature": 0})
    assert r["object"] == "chat.completion" and r["id"].startswith("chatcmpl-") and r["usage"] == same["usage"]
    assert [c["message"] for c in r["choices"]] == [{"role": "assistant", "content": same["choices"][0]["text"]}]
    assert r["choices"][0]["finish_reason"] == same["choices"][0]["finish_reason"]
    parts = [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]
    assert chat.chat({"messages": parts, "max_completion_tokens": 3, "n": 2, "seed": 1, "response_format": {
        "type": "text"}})["usage"]["completion_tokens"] <= 6
    with pytest.raises(RequestError, match="has no chat template.*POST /v1/completions"):
        completer.chat({"messages": MESSAGES})


@pytest.mark.parametrize("body, words", [
    ({}, "messages must be a non-empty list"),
    ({"messages": [{"content": "a"}]}, "string role"),
    ({"messages": [{"role": "user", "content": 3}]}, "content must be a string or a list of text parts"),
    ({"messages": MESSAGES, "stream": True}, "stream=True is not supported"),
    ({"messages": MESSAGES, "tools": [{"type": "function"}]}, "tools="),
    ({"messages": MESSAGES, "logprobs": True}, "logprobs=True is not supported"),
    ({"messages": MESSAGES, "max_completion_tokens": 0}, "max_completion_tokens must be an integer >= 1"),
])
def test_a_bad_chat_request_is_refused_with_one_line(run_model, completer, body, words):
    from rlvr_world.text import load_tokenizer

    chat = Completer(completer.model, load_tokenizer(run_model), "wm", max_tokens=6)
    with pytest.raises(RequestError) as e:
        chat.chat(body)
    assert e.value.status == 400 and words in str(e.value) and "\n" not in str(e.value)


def test_chat_over_http(run_model, tmp_path):
    with served(run_model, tmp_path) as (port, line):
        assert "POST /v1/completions, /v1/chat/completions" in line
        status, r = request(port, "POST", "/v1/chat/completions", {"model": "wm", "messages": MESSAGES,
                                                                    "max_tokens": 8, "temperature": 0})
        text = f"<|system|>You predict pages.\n<|user|>{PAGE}\n<|assistant|>"
        status2, same = request(port, "POST", "/v1/completions", {"prompt": text, "max_tokens": 8, "temperature": 0})
        assert status == status2 == 200
        assert r["choices"][0]["message"] == {"role": "assistant", "content": same["choices"][0]["text"]}
        status, err = request(port, "POST", "/v1/chat/completions", {"messages": "hello"})
        assert status == 400 and "messages must be" in err["error"]["message"]


@contextlib.contextmanager
def served(model, cwd):
    """`rlvr-world serve` on a free port, named wm: (port, the line it printed at start)."""
    p = subprocess.Popen([sys.executable, "-m", "rlvr_world.cli", "serve", "--model", str(model), "--port", "0",
                          "--threads", "1", "--name", "wm"], cwd=cwd, env=ENV, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()
        assert line.startswith("serving 'wm' at http://127.0.0.1:"), line + p.stderr.read()
        yield int(line.split("127.0.0.1:")[1].split("/")[0]), line
        assert p.poll() is None
    finally:
        p.terminate()
        p.wait(30)
