"""`rlvr-world serve` under concurrent clients: requests decoded one at a time against batched together.

    python bench/serve_batching.py --model runs/house/rl/model [--clients 16] [--rounds 3] [--threads 2]
                                   [--out results/bench-serve-batching.json]

A run's model answers the first `--clients` prompts of its run's test split,
each sent by its own client over HTTP at the same moment (greedy, the
server's default length: the run's own), by a server that decodes one
request at a time (`--max-batch 1`) and by one that batches the requests
waiting (`--max-batch 64`, the default), alternating, `--rounds` times each.
Writes the wall time from the clients' start to the last answer, the
completion tokens a second, how many batches the server decoded, and whether
both servers gave every client the same answer.
"""

from __future__ import annotations

import argparse
import http.client
import json
import shlex
import statistics
import sys
import threading
import time
from pathlib import Path

from rlvr_world import device as dev
from rlvr_world import domains
from rlvr_world.engine import models
from rlvr_world.engine.atomicwrite import save_json
from rlvr_world.rundir import run_config_of
from rlvr_world.serve import Completer, default_max_tokens, make_server
from rlvr_world.text import load_tokenizer


def test_prompts(model_dir: str, n: int) -> tuple[list[str], list[str]]:
    """The first n prompts of the model's run's test split, and their targets."""
    run = run_config_of(model_dir)
    if not run:
        sys.exit(f"{model_dir} is not a run's model directory (RUN/rl/model beside RUN/config.json)")
    domain_cls = domains.get(run["domain"])
    data = domain_cls.data_options(**run["data"])
    ts = domain_cls.transitions("test", data)[:n]
    return [domain_cls.prompt_text(t) for t in ts], [domain_cls.target_text(t) for t in ts]


def round_trip(completer: Completer, prompts: list[str]) -> tuple[float, list[dict]]:
    """Every prompt sent by its own client at once; (seconds to the last answer, the answers in prompt order)."""
    server = make_server(completer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    start = threading.Barrier(len(prompts) + 1)
    answers: dict[int, dict] = {}

    def client(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=3600)
        start.wait()
        conn.request("POST", "/v1/completions", json.dumps({"prompt": prompts[i], "temperature": 0}),
                     {"Content-Type": "application/json"})
        answers[i] = json.loads(conn.getresponse().read())

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - t0
    server.shutdown()
    server.server_close()
    return seconds, [answers[i] for i in range(len(prompts))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="a run's model directory (RUN/rl/model)")
    ap.add_argument("--clients", type=int, default=16, help="concurrent clients, one test prompt each")
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds of each server")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda")
    ap.add_argument("--out", default="results/bench-serve-batching.json")
    args = ap.parse_args()
    dev.quiet_hf()
    dev.set_threads(args.threads)
    device = dev.pick_device(args.device)
    prompts, targets = test_prompts(args.model, args.clients)
    model, tok = models.load(args.model).to(device), load_tokenizer(args.model)
    length = default_max_tokens(args.model)
    modes = {"one at a time": 1, "batched": 64}
    times: dict[str, list[float]] = {m: [] for m in modes}
    tokens: dict[str, int] = {}
    batches: dict[str, list[int]] = {m: [] for m in modes}
    texts: dict[str, list[str]] = {}
    round_trip(Completer(model, tok, "wm", max_tokens=length, autocast=dev.amp(device)), prompts[:2])  # warm-up
    for r in range(args.rounds):
        for mode, max_batch in modes.items():
            completer = Completer(model, tok, "wm", max_tokens=length, autocast=dev.amp(device), max_batch=max_batch)
            seconds, answers = round_trip(completer, prompts)
            times[mode].append(round(seconds, 3))
            batches[mode].append(completer.decoded["batches"])
            tokens[mode] = sum(a["usage"]["completion_tokens"] for a in answers)
            texts.setdefault(mode, [a["choices"][0]["text"] for a in answers])
            print(f"round {r + 1} {mode}: {seconds:.2f} s, {batches[mode][-1]} batches", flush=True)
    median = {m: statistics.median(t) for m, t in times.items()}
    result = {
        "command": "python " + " ".join(shlex.quote(a) for a in sys.argv), "model": args.model,
        "device": str(device), "threads": args.threads, "cpu": dev.cpu_signature(), "clients": args.clients,
        "max_tokens": length, "seconds": times, "median_s": median, "batches": batches,
        "completion_tokens_per_s": {m: round(tokens[m] / median[m], 1) for m in modes},
        "speedup": round(median["one at a time"] / median["batched"], 2),
        "same_answers": texts["one at a time"] == texts["batched"],
        "exact": sum(a == b for a, b in zip(texts["batched"], targets)) / len(targets),
    }
    save_json(Path(args.out), result)
    print(json.dumps({k: result[k] for k in ("median_s", "completion_tokens_per_s", "speedup", "same_answers")}))


if __name__ == "__main__":
    main()
