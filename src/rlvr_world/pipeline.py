"""The main job: tokenizer -> MLE -> RLVR (from the MLE model) -> evaluation of both -> results.

Every phase writes into the run directory; with `resume` a finished phase is
loaded instead of redone and an interrupted one continues from its checkpoint,
provided it was made with the same options and examples (`rundir`).

Under `torchrun` every process runs the same phases on its share of the work
(`engine.distributed`); process 0 alone takes the run directory and writes
into it, and the others wait for what they read (the tokenizer, the data).
"""

from __future__ import annotations

import contextlib
import copy
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch

from . import device as dev
from . import domains, modelcard, report, rundir
from .engine import distributed as dist
from .engine import models, pretrained
from .engine.checkpoint import load_trainer_state, save_config, save_json
from .engine.domain import Domain, StageContext
from .engine.evaluate import decision_summary, evaluate, partial_files, result_of, trivial_logprobs
from .engine.mle import train_mle
from .engine.rl import train_rl
from .progress import console
from .runconfig import RunConfig, preset, presets


class Pipeline:
    """Holds what the phases share: device, precision, domain, tokenizer."""

    def __init__(self, cfg: RunConfig):
        self.cfg = cfg
        self.out = Path(cfg.out)
        dev.set_threads(cfg.threads)
        self.device = dev.pick_device(dist.setup(cfg.device))
        self.amp = dev.amp(self.device, cfg.dtype)
        domain_cls, data_cls, self.make_tokenizer = domains.get(cfg.domain)
        if not isinstance(cfg.data, data_cls):
            raise ValueError(f"the {cfg.domain} domain takes its data options from its presets "
                             f"({', '.join(p for p in presets() if preset(p).domain == cfg.domain)})")
        self.domain_cls = domain_cls
        self.load_tokenizer = domain_cls.load_tokenizer
        self.init_dir: Path | None = None  # the pretrained model's HF directory (`pretrained.resolve`), once known
        self.phases = rundir.RunDir(self.out)

    def verify(self, hashes: dict[str, str] | None = None) -> dict[str, dict]:
        """On resume, refuse when any phase's saved work was made with other options (or, given their hashes,
        other examples); return every phase's fingerprint."""
        fps = {phase: rundir.fingerprint(self.cfg, phase, (hashes or {}).get(phase, "")) for phase in OUTPUTS}
        for phase, fp in fps.items():
            finished, partial = OUTPUTS[phase]
            if self.cfg.resume and any((self.out / p).exists() for p in (finished, *partial)):
                self.phases.check(phase, fp, finished=(self.out / finished).exists(),
                                  ignore=() if hashes else ("examples",))
        return fps

    # ---- phases ------------------------------------------------------------
    def tokenizer(self):
        path = self.out / "tokenizer"
        if self.init_dir:
            return self.load_tokenizer(self.init_dir)
        if self.cfg.resume:
            with contextlib.suppress(FileNotFoundError):
                return self.load_tokenizer(path)
        with dist.by_main() as main:
            if main:
                console.print(f"[bold]tokenizer[/]: training the {self.cfg.domain} tokenizer on the training split")
                self.make_tokenizer(self.cfg.data, self.cfg.vocab_size).save_pretrained(path)
        return self.load_tokenizer(path)

    def initial_model(self, tok):
        if self.init_dir:
            model = models.load(self.init_dir)
        else:
            dev.seed_everything(self.cfg.mle.seed)
            model = models.build(self.cfg.model, len(tok), pad_id=tok.pad_token_id, bos_id=tok.bos_token_id,
                                 eos_id=tok.eos_token_id)
        models.check_vocab(model, len(tok), self.cfg.model.init_from or "the new model")
        return model

    def trainable(self, start, checkpoint: Path, resume: bool, seed: int):
        """The model a phase trains: `start()` (with fresh LoRA adapters when asked), or its checkpoint on resume."""
        m = self.cfg.model
        if resume and not models.is_adapter(checkpoint):
            return models.load(checkpoint)
        model = start()
        if resume:
            return models.load_adapter(model, checkpoint)
        if m.lora_rank:
            dev.seed_everything(seed)
            model = models.with_lora(model, m.lora_rank, m.lora_alpha)
        return model

    def mle(self, tok, train):
        d = self.out / "mle"
        if self.cfg.resume and (d / "model" / "config.json").is_file():
            return self.checked(models.load(d / "model"), tok, d / "model")
        resume = self.cfg.resume and load_trainer_state(d / "checkpoint") is not None
        model = self.trainable(lambda: self.initial_model(tok), d / "checkpoint", resume, self.cfg.mle.seed)
        self.checked(model, tok, d / "checkpoint")
        console.print(f"[bold]MLE[/]: {models.num_params(model) / 1e6:.2f}M parameters "
                      f"({models.num_trainable(model) / 1e6:.2f}M trained), {len(train)} examples")
        return train_mle(model.to(self.device), tok, train, self.cfg.mle, d, autocast=self.amp, resume=resume,
                         tensorboard=self.cfg.log == "tensorboard")

    def rl(self, tok, start_model, domain, train, curve):
        d = self.out / "rl"
        if self.cfg.resume and (d / "model" / "config.json").is_file():
            return self.checked(models.load(d / "model"), tok, d / "model")
        resume = self.cfg.resume and load_trainer_state(d / "checkpoint") is not None
        # a copy: GRPO trains in place, and the MLE model is still needed after RL (e.g. the video domain's `finish`)
        policy = self.trainable(lambda: copy.deepcopy(start_model), d / "checkpoint", resume,
                                self.cfg.rl.seed).to(self.device)

        def curve_eval(model):
            r = self.evaluate(model, domain, curve, "eval (curve)", show=False)
            d = self.decisions(model, domain, curve)
            model.train()
            return {**{f"test/{g}": v for g, v in {**r.groups, "overall": r.overall}.items()},
                    **{f"test/p_trivial/{k}": v for k, v in d.get("p_trivial", {}).items()},
                    **({"test/decision_auc": d["auc"]} if "auc" in d else {})}

        console.print(f"[bold]RLVR[/]: {len(train)} prompts, reward {self.cfg.rl.reward}")
        return train_rl(policy, tok, domain, train, self.cfg.rl, d, autocast=self.amp, resume=resume,
                        evaluate_fn=curve_eval if curve else None, tensorboard=self.cfg.log == "tensorboard")

    def write_card(self, phase: str, domain, test, tok, command: str) -> None:
        """README.md beside the phase's saved model: its domain, prompt format with a real test example, reward,
        the command that made it and how to use it (`modelcard`)."""
        model_dir = self.out / phase / "model"
        if not dist.is_main() or not model_dir.is_dir():
            return
        example = next((e for e in test if e.group == "changed"), test[0] if test else None)
        text = modelcard.card(phase=phase, model_dir=model_dir, domain_cls=self.domain_cls, cfg=self.cfg,
                              command=command, example=domain.card_example(example) if example else None,
                              eos_token=str(getattr(tok, "eos_token", "") or "<eos>"))
        modelcard.write(model_dir, text)

    def checked(self, model, tok, where: Path):
        """A model (on the run's device) whose vocabulary holds every id of the run's tokenizer."""
        models.check_vocab(model, len(tok), str(where))
        return model.to(self.device)

    def context_size(self) -> int:
        """Positions the model has: the pretrained model's own, or the configured shape's."""
        if self.init_dir:
            return json.loads((self.init_dir / "config.json").read_text()).get("max_position_embeddings", 1 << 30)
        return self.cfg.model.max_positions

    def evaluate(self, model, domain, examples, description, show=True, partial=None):
        return evaluate(model, domain, examples, batch_size=self.cfg.eval_batch_size,
                        max_new_tokens=self.cfg.max_new_tokens, autocast=self.amp, description=description,
                        show_progress=show, partial=partial)

    def decisions(self, model, domain, examples) -> dict:
        """The model's probability of the trivial answer per stratum, and how well it separates them."""
        if all(e.trivial_ids is None for e in examples):
            return {}
        return decision_summary(examples, trivial_logprobs(model, examples, domain.pad_id, autocast=self.amp,
                                                           batch_size=max(1, self.cfg.eval_batch_size // 2)))

    def final_eval(self, name, model, domain, test):
        path = self.out / f"eval_{name}.json"
        if self.cfg.resume and path.is_file():
            return json.loads(path.read_text())
        partial = self.out / f"eval_{name}.partial.jsonl"  # each finished batch, so --resume loses little
        if not self.cfg.resume:
            with dist.by_main() as main:
                for p in partial_files(partial) if main else ():
                    p.unlink(missing_ok=True)
        r = self.evaluate(model, domain, test, f"eval {name}", partial=partial)
        result = {**r.summary(), "decision": self.decisions(model, domain, test), "records": r.records}
        with dist.by_main() as main:
            if main:
                save_json(path, result)
                for p in partial_files(partial):
                    p.unlink(missing_ok=True)
        return result

    @contextlib.contextmanager
    def timed(self, phase: str, *progress: str):
        """Add the phase's seconds to `timings.json` in the run directory, even when it is interrupted.

        A phase that picks up saved work (one of the `progress` paths exists, on --resume) adds to its
        earlier time; one that starts over starts from zero, so the total is what the results cost.
        """
        carried = self.cfg.resume and any((self.out / p).exists() for p in progress)
        t0 = time.time()
        try:
            yield
        finally:
            if dist.is_main():  # (a `return` here would swallow the phase's exception)
                timings = self.timings()
                timings[phase] = round((timings.get(phase, 0.0) if carried else 0.0) + time.time() - t0, 1)
                save_json(self.out / "timings.json", timings)

    def timings(self) -> dict[str, float]:
        """Seconds per phase so far; a damaged `timings.json` counts as empty (and says so)."""
        path = self.out / "timings.json"
        if not path.is_file():
            return {}
        try:
            timings = json.loads(path.read_text())
            if isinstance(timings, dict) and all(isinstance(v, (int, float)) for v in timings.values()):
                return timings
        except (json.JSONDecodeError, UnicodeDecodeError):
            pass
        console.print(f"[yellow]{path} is damaged: the time spent before this invocation is not counted[/]")
        return {}

    # ---- the whole job -----------------------------------------------------
    def run(self, command: str) -> dict:
        """Check everything a user can get wrong, take the run directory, then run the phases."""
        cfg = self.cfg
        check_writable(self.out, "--out")
        check_writable(Path(cfg.results), "--results")
        self.domain_cls.check_data(cfg.data)  # fail on bad input before writing anything
        if cfg.compare and not all((Path(cfg.compare) / f).is_file() for f in ("results.json", "eval_mle.json",
                                                                                "eval_rlvr.json")):
            raise ValueError(f"--compare {cfg.compare}: not a finished run directory (results.json, eval_mle.json "
                             f"and eval_rlvr.json)")
        if cfg.rl.reward not in self.domain_cls.rewards:
            raise ValueError(f"unknown {cfg.domain} reward {cfg.rl.reward!r}; known: {', '.join(self.domain_cls.rewards)}")
        self.domain_cls.check_reward(cfg.rl.reward, cfg.data)
        if cfg.model.init_from:
            self.init_dir = pretrained.resolve(cfg.model.init_from)
            vocab = json.loads((self.init_dir / "config.json").read_text()).get("vocab_size", 0)
            ids = len(self.load_tokenizer(self.init_dir))
            if vocab < ids:
                raise models.ModelError(f"model vocabulary ({vocab}) is smaller than its tokenizer's ({ids}) in "
                                        f"{cfg.model.init_from}")
        results = Path(cfg.results)
        main = dist.is_main()  # process 0 takes the directory; the others follow once it has
        if main:
            rundir.prepare(self.out, cfg.resume, cfg.overwrite, results)  # refuses before the lock creates the directory
        with rundir.Lock(self.out) if main else contextlib.nullcontext():
            if main:
                rundir.prepare(self.out, cfg.resume, cfg.overwrite, results)  # again, now that no other run writes here
            dist.barrier()
            self.phases.trust_unrecorded = cfg.resume and self.phases.stored() is None
            dist.barrier()  # every process has read the directory as it was before this run records itself
            return self.phases_in_order(command)

    def phases_in_order(self, command: str) -> dict:
        cfg = self.cfg
        main = dist.is_main()
        self.verify()  # the options alone, before anything in the directory is written
        if not cfg.resume and main:
            (self.out / "timings.json").unlink(missing_ok=True)
        if self.domain_cls.prepare is not Domain.prepare:  # e.g. transitions collected with a real browser, once
            with self.timed("collect"), dist.by_main() as first:
                if first:
                    self.domain_cls.prepare(cfg.data)
        with self.timed("tokenizer", "tokenizer"):
            tok = self.tokenizer()
        domain = self.domain_cls(tok, cfg.data)
        train = domain.examples("train", stage="mle", seed=cfg.mle.seed)
        rl_train = domain.examples("train", stage="rl", seed=cfg.rl.seed)
        test = domain.examples("test")
        check_context(self.context_size(), (train, cfg.rl.max_new_tokens), (test, cfg.max_new_tokens))
        n_test_split = len(test)
        test_indices = list(range(n_test_split))
        if cfg.eval_limit:
            test_indices = (balanced_indices if cfg.eval_balanced else subsample_indices)(test, cfg.eval_limit, seed=1)
            test = [test[i] for i in test_indices]
        curve = subsample(test, cfg.curve_limit, seed=2) if cfg.curve_limit else []
        tr, rl, te = (rundir.examples_hash(x) for x in (train, rl_train, test))  # each set hashed once
        h = {"mle": tr, "eval_mle": tr + te, "rl": tr + rl, "eval_rlvr": tr + rl + te}
        fps = self.verify(h)  # the examples too; then this run owns the directory
        if main:
            self.phases.record(fps)
            save_config(self.out, cfg)
        with self.timed("mle", *PROGRESS["mle"]):
            mle_model = self.mle(tok, train)
        self.write_card("mle", domain, test, tok, command)
        with self.timed("eval_mle", *PROGRESS["eval_mle"]):
            mle_eval = self.final_eval("mle", mle_model, domain, test)
        with self.timed("rl", *PROGRESS["rl"]):
            rl_model = self.rl(tok, mle_model, domain, rl_train, curve)
        self.write_card("rl", domain, test, tok, command)
        with self.timed("eval_rlvr", *PROGRESS["eval_rlvr"]):
            rl_eval = self.final_eval("rlvr", rl_model, domain, test)
        extra = {}
        if self.domain_cls.finish is not Domain.finish:  # e.g. the video domain's real-footage evaluation, pictures
            with self.timed("finish"):
                stage = StageContext(out=self.out, results=Path(cfg.results), mle=cfg.mle, rl=cfg.rl, autocast=self.amp,
                                     evaluate=self.evaluate)
                extra = domain.finish(stage, test, mle_model, rl_model, mle_eval, rl_eval)
        if not main:  # process 0 reports
            return {}
        timings = self.timings()
        results = report.build(cfg, command=command, timings=timings, params=models.num_params(rl_model),
                               mle=mle_eval, rlvr=rl_eval, out=self.out, n_train=len(train), n_rl=len(rl_train),
                               n_test_split=n_test_split, test_indices=test_indices, trivial=trivial_eval(domain, test))
        results.update(extra)
        report.write(Path(cfg.results), results, self.out)
        return results


# Each phase's outputs: the one a finished phase leaves, and those an interrupted one leaves behind.
OUTPUTS = {
    "tokenizer": ("tokenizer", ()),
    "mle": ("mle/model/config.json", ("mle/checkpoint", "mle/checkpoint.old")),
    "eval_mle": ("eval_mle.json", ("eval_mle.partial.jsonl",)),
    "rl": ("rl/model/config.json", ("rl/checkpoint", "rl/checkpoint.old")),
    "eval_rlvr": ("eval_rlvr.json", ("eval_rlvr.partial.jsonl",)),
}
PROGRESS = {phase: (finished, *partial) for phase, (finished, partial) in OUTPUTS.items()}


def trivial_eval(domain, examples) -> dict | None:
    """The trivial predictor ("nothing changes") scored like a model on the same examples; None without one."""
    if any(e.trivial_ids is None for e in examples):
        return None
    records = [{"index": i, "group": e.group, "value": domain.score(domain.metric, e.trivial_ids, e)[0]}
               for i, e in enumerate(examples)]
    return {**result_of(records, (), domain.metric_scale).summary(), "records": records}


def check_writable(path: Path, option: str) -> None:
    """A one-line error now, not after hours of work, when `path` cannot be written."""
    if path.exists() and (path.is_dir() != (option == "--out")):
        raise ValueError(f"{option} {path} is a {'directory' if path.is_dir() else 'file'}")
    parent = path if path.is_dir() else path.parent
    while not parent.exists():
        parent = parent.parent
    try:
        tempfile.TemporaryFile(dir=parent).close()  # the one sure test, root included
    except OSError as e:
        raise ValueError(f"{option} {path}: cannot write into {parent} ({e.strerror or e})") from None


def check_context(context: int, *example_sets) -> None:
    """A one-line error when a prompt plus its longest response exceeds the model's positions.

    `example_sets` are (examples, longest sampled response) pairs: a training
    example needs room for its target too.
    """
    need = max((len(e.prompt_ids) + max(n, len(e.target_ids)) for examples, n in example_sets for e in examples),
               default=0)
    if need > context:
        raise ValueError(f"the longest prompt plus response needs {need} positions, the model has {context}: "
                         f"lower --max-new-tokens, --rl.max-new-tokens or --data.max-prompt-tokens")


def subsample_indices(examples, n: int, seed: int) -> list[int]:
    """Positions of a fixed random subset of n examples, in order (all when n >= len)."""
    if n >= len(examples):
        return list(range(len(examples)))
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(len(examples), generator=g)[:n].sort().values.tolist()


def balanced_indices(examples, n: int, seed: int) -> list[int]:
    """Positions of a fixed random subset of about n examples, n / (number of groups) from each group."""
    by_group: dict[str, list[int]] = {}
    for i, e in enumerate(examples):
        by_group.setdefault(e.group, []).append(i)
    per = n // max(1, len(by_group))
    out = []
    for k, (_, idx) in enumerate(sorted(by_group.items())):
        out += [idx[j] for j in subsample_indices(idx, per, seed + k)]
    return sorted(out)


def subsample(examples, n: int, seed: int):
    """A fixed random subset of n examples (all when n >= len)."""
    return [examples[i] for i in subsample_indices(examples, n, seed)]


def command_line() -> str:
    return "rlvr-world " + " ".join(shlex.quote(a) for a in sys.argv[1:])
