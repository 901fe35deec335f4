"""The main job: tokenizer -> MLE -> RLVR (from the MLE model) -> evaluation of both -> results.

Each phase is declared once (`rundir.Phase`: the engine's in `rundir.PHASES`,
a domain's own stages in `Domain.stages`) and the job runs them in order.
Every phase writes into the run directory; with `resume` a finished phase is
loaded instead of redone and an interrupted one continues from its
checkpoint, provided it was made with the same options and examples.

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
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import device as dev
from . import adapters, domains, modelcard, report, rundir
from .engine import distributed as dist
from .engine import mle, models, pretrained, rl
from .engine.atomicwrite import save_config, save_json
from .engine.checkpoint import load_trainer_state
from .engine.domain import Domain, StageContext
from .engine.evaluate import (balanced_indices, decision_summary, evaluate, partial_files, subsample,
                              subsample_indices, trivial_eval, trivial_logprobs)
from .progress import console
from .runconfig import RunConfig, preset, presets


@dataclass
class Examples:
    """What the phases read, made once the tokenizer exists; the sets of `rundir.EXAMPLE_SETS` are hashed into the
    fingerprints of the phases that read them."""

    train: list  # MLE's
    rl: list  # RL's prompts
    test: list  # the final evaluations' (the test split, or a fixed subset of it with eval_limit)
    curve: list  # the evaluations during RL (a fixed subset of `test`)
    n_test_split: int  # examples in the test split
    test_indices: list[int]  # `test`'s positions in it
    split_groups: dict[str, int]  # examples per group in the whole test split

    def hashes(self) -> dict[str, str]:
        return {name: rundir.examples_hash(getattr(self, name)) for name in rundir.EXAMPLE_SETS}


class Pipeline:
    """Holds what the phases share: device, precision, domain, tokenizer, what each phase returned."""

    def __init__(self, cfg: RunConfig):
        self.cfg = cfg
        self.out = Path(cfg.out)
        dev.set_threads(cfg.threads)
        self.device = dev.pick_device(dist.setup(cfg.device))
        self.amp = dev.amp(self.device, cfg.dtype)
        domain_cls = domains.get(cfg.domain)
        if not isinstance(cfg.data, domain_cls.data_options):
            raise ValueError(f"the {cfg.domain} domain takes its data options from its presets "
                             f"({', '.join(p for p in presets() if preset(p).domain == cfg.domain)})")
        self.domain_cls = domain_cls
        self.make_tokenizer, self.load_tokenizer = domain_cls.make_tokenizer, domain_cls.load_tokenizer
        self.init_dir: Path | None = None  # the pretrained model's HF directory (`pretrained.resolve`), once known
        self.phases = rundir.in_order((*domain_cls.stages, *rundir.PHASES.values()))  # this run's, by name
        self.fingerprints = rundir.RunDir(self.out, self.phases)  # theirs in phases.json
        self.got: dict[str, Any] = {}  # what each phase run (or loaded) so far returned, by name
        self.domain: Domain | None = None  # the domain and the examples the phases read, once the tokenizer exists
        self.examples: Examples | None = None
        self.early: Examples | None = None  # the examples, when made and checked before any work (`check_examples`)
        self.trained_tokenizer = None  # a new tokenizer trained then, which the tokenizer phase saves

    def verify(self, hashes: dict[str, str] | None = None) -> dict[str, dict]:
        """On resume, refuse when any phase's saved work was made with other options (or, given each example set's
        hash, other examples); return every phase's fingerprint."""
        fps = {name: rundir.fingerprint(self.cfg, name, hashes, self.phases) for name in self.phases}
        for name, fp in fps.items():
            phase = self.phases[name]
            if self.cfg.resume and self.holds(*phase.saved()):
                self.fingerprints.check(name, fp, finished=self.holds(phase.finished),
                                        ignore=() if hashes else ("examples",))
        return fps

    def holds(self, *paths: str) -> bool:
        """Whether the run directory holds any of these paths (or patterns)."""
        return rundir.holds(self.out, (p for p in paths if p))

    # ---- phases ------------------------------------------------------------
    def train_tokenizer(self):
        """The tokenizer phase: the pretrained model's tokenizer, the one a resumed run saved, or one trained on the
        training split (or already, by `check_examples`) and saved."""
        path = self.out / "tokenizer"
        if self.init_dir:
            return self.load_tokenizer(self.init_dir)
        if self.cfg.resume:
            with contextlib.suppress(FileNotFoundError):
                return self.load_tokenizer(path)
        with dist.by_main() as main:
            if main:
                console.print(f"[bold]tokenizer[/]: the {self.cfg.domain} tokenizer, trained on the training split")
                tok = self.trained_tokenizer or self.make_tokenizer(self.cfg.data, self.cfg.vocab_size)
                tok.save_pretrained(path)
        return self.load_tokenizer(path)

    def check_examples(self) -> None:
        """Before any work, where no stage of the domain makes its data first: the examples, made with the tokenizer
        the run will use, each checked against the model's context (`check_context`), so that a run that cannot fit
        writes nothing and its advice can be followed as it is. The tokenizer is the pretrained model's, the one a
        resumed run saved, or trained here (seconds: 0.2 s for 3,000 jsonl records, 8 s for the text game) and saved
        by the tokenizer phase. A domain whose stage collects the data checks once the tokenizer phase is done."""
        if next(iter(self.phases)) != "tokenizer":
            return
        tok = None
        if self.init_dir:
            tok = self.load_tokenizer(self.init_dir)
        elif self.cfg.resume:
            with contextlib.suppress(FileNotFoundError):
                tok = self.load_tokenizer(self.out / "tokenizer")
        if tok is None:
            tok = self.trained_tokenizer = self.make_tokenizer(self.cfg.data, self.cfg.vocab_size)
        self.early = self.make_examples(tok, taken=False)

    def initial_model(self, tok):
        if self.init_dir:
            model = models.load(self.init_dir)
        else:
            dev.seed_everything(self.cfg.mle.seed)
            model = models.build(self.cfg.model, len(tok), pad_id=tok.pad_token_id, bos_id=tok.bos_token_id,
                                 eos_id=tok.eos_token_id)
        models.check_vocab(model, len(tok), self.cfg.model.init_from or "the new model")
        return model

    def trainable(self, start, checkpoint: Path, resume: bool, seed: int, adapter: str = ""):
        """The model a phase trains: `start()` with a saved `adapter` (an adapter folder), or with fresh LoRA adapters
        when asked; its checkpoint on resume."""
        m = self.cfg.model
        if resume and not models.is_adapter(checkpoint):
            return models.load(checkpoint)
        model = start()
        if resume or adapter:
            return models.load_adapter(model, checkpoint if resume else adapter)
        if m.lora_rank:
            dev.seed_everything(seed)
            model = models.with_lora(model, m.lora_rank, m.lora_alpha)
        return model

    def train_mle(self, tok, train):
        d = self.out / "mle"
        resume = self.cfg.resume and load_trainer_state(d / "checkpoint") is not None
        adapter = self.cfg.model.init_adapter  # MLE continues it, on its base with what it starts from folded in
        start = (lambda: adapters.starts_folded(self.initial_model(tok), adapter)) if adapter else \
            (lambda: self.initial_model(tok))
        model = self.trainable(start, d / "checkpoint", resume, self.cfg.mle.seed, adapter=adapter)
        self.checked(model, tok, d / "checkpoint")
        console.print(f"[bold]MLE[/]: {models.num_params(model) / 1e6:.2f}M parameters "
                      f"({models.num_trainable(model) / 1e6:.2f}M trained), {len(train)} examples"
                      + (f", from the adapter {adapter}" if adapter else "")
                      + (" (--mle.epochs 0: no step; the MLE model is the one it starts from)"
                         if not self.cfg.mle.epochs else ""))
        return mle.train_mle(model.to(self.device), tok, train, self.cfg.mle, d, autocast=self.amp, resume=resume,
                             tensorboard=self.cfg.log == "tensorboard")

    def train_rl(self, tok, start_model, domain, train, curve):
        d = self.out / "rl"
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

        train, cut = fitting(train, self.cfg.rl.max_new_tokens)
        console.print(f"[bold]RLVR[/]: {len(train)} prompts, reward {self.cfg.rl.reward}" + (
            f" ({cut} left out: their answers are longer than --rl.max-new-tokens)" if cut else ""))
        return rl.train_rl(policy, tok, domain, train, self.cfg.rl, d, autocast=self.amp, resume=resume,
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

    def saved_model(self, where: str):
        """A finished phase's model, from `where` in the run directory."""
        return self.checked(models.load(self.out / where), self.got["tokenizer"], self.out / where)

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

    def saved_eval(self, name: str) -> dict:
        """A finished final evaluation."""
        return json.loads((self.out / f"eval_{name}.json").read_text())

    def final_eval(self, name, model, domain, test):
        path = self.out / f"eval_{name}.json"
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
    def timed(self, phase: rundir.Phase):
        """Add the phase's seconds to `timings.json` in the run directory, even when it is interrupted.

        A phase that picks up saved work (on --resume, what it leaves finished or interrupted exists) adds to
        its earlier time; one that starts over starts from zero, so the total is what the results cost.
        """
        carried = self.cfg.resume and self.holds(*phase.saved())
        t0 = time.time()
        try:
            yield
        finally:
            if dist.is_main():  # (a `return` here would swallow the phase's exception)
                timings = self.timings()
                timings[phase.name] = round((timings.get(phase.name, 0.0) if carried else 0.0) + time.time() - t0, 1)
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
            known = ", ".join(self.domain_cls.rewards)
            raise ValueError(f"unknown {cfg.domain} reward {cfg.rl.reward!r}; known: {known}")
        self.domain_cls.check_reward(cfg.rl.reward, cfg.data)
        if cfg.model.init_from:
            self.init_dir = pretrained.resolve(cfg.model.init_from)
            vocab = json.loads((self.init_dir / "config.json").read_text()).get("vocab_size", 0)
            ids = len(self.load_tokenizer(self.init_dir))
            if vocab < ids:
                raise models.ModelError(f"model vocabulary ({vocab}) is smaller than its tokenizer's ({ids}) in "
                                        f"{cfg.model.init_from}")
        if cfg.model.init_adapter:  # checked, and trained on that model
            adapters.check_start(cfg.model.init_adapter, cfg.model.init_from)
        self.check_examples()  # every example fits the model's context
        results = Path(cfg.results)
        main = dist.is_main()  # process 0 takes the directory; the others follow once it has
        written = self.written() if cfg.overwrite and main else ()
        if main:  # refuses before the lock creates the directory
            rundir.prepare(self.out, cfg.resume, cfg.overwrite, results, written)
        with rundir.Lock(self.out) if main else contextlib.nullcontext():
            if main:
                rundir.prepare(self.out, cfg.resume, cfg.overwrite, results, written)  # again, now no other run writes
            dist.barrier()
            self.fingerprints.trust_unrecorded = cfg.resume and self.fingerprints.stored() is None
            dist.barrier()  # every process has read the directory as it was before this run records itself
            return self.phases_in_order(command)

    def written(self) -> list[rundir.Phase]:
        """The phases whose outputs --overwrite clears: this run's, and the stages of the domain of the run it
        replaces (its config.json's), where that domain loads here."""
        try:
            old = json.loads((self.out / "config.json").read_text()).get("domain")
        except (OSError, ValueError, AttributeError):
            old = None
        stages = () if old not in domains.DOMAINS or old == self.cfg.domain or domains.missing_modules(old) \
            else domains.get(old).stages
        return [*self.phases.values(), *stages]

    def phases_in_order(self, command: str) -> dict:
        main = dist.is_main()
        self.verify()  # the options alone, before anything in the directory is written
        if not self.cfg.resume and main:
            (self.out / "timings.json").unlink(missing_ok=True)
        for phase in self.phases.values():
            if self.examples is None and any(p.examples for p in rundir.lineage(phase.name, self.phases)):
                self.read_examples()
            with self.timed(phase):
                self.got[phase.name] = self.run_phase(phase)
            if phase.name in modelcard.PHASES:  # a model of its own: its README beside it
                self.write_card(phase.name, self.domain, self.examples.test, self.got["tokenizer"], command)
        if not main:  # process 0 reports
            return {}
        return self.results(command)

    def run_phase(self, phase: rundir.Phase) -> Any:
        """A finished phase loaded (on --resume), or the phase run, continuing its saved work if any."""
        run = self.stage() if phase in self.domain_cls.stages else self
        if self.cfg.resume and self.holds(phase.finished):
            return phase.load(run) if phase.load else None
        with dist.by_main() if phase.on_main else contextlib.nullcontext(True) as mine:
            return phase.run(run) if mine else None

    def stage(self) -> StageContext:
        """What a domain's stage gets from the run."""
        cfg = self.cfg
        return StageContext(out=self.out, results=Path(cfg.results), mle=cfg.mle, rl=cfg.rl, autocast=self.amp,
                            evaluate=self.evaluate, data=cfg.data, domain=self.domain,
                            test=self.examples.test if self.examples else (), got=self.got)

    def read_examples(self) -> None:
        """The domain and the examples the phases read (once the tokenizer exists); then every phase is checked
        against them too and recorded (`phases.json`) with the config: from here this run owns the directory."""
        cfg = self.cfg
        self.domain = self.domain_cls(self.got["tokenizer"], cfg.data)
        self.examples = self.early or self.make_examples(self.got["tokenizer"], taken=not cfg.resume)
        fps = self.verify(self.examples.hashes())  # each set hashed once
        if dist.is_main():
            self.fingerprints.record(fps)
            save_config(self.out, cfg)

    def make_examples(self, tok, taken: bool) -> Examples:
        """The examples the phases read, made with `tok`; one that cannot fit the model's context is a one-line error
        (`taken`: this run has already written into the run directory, which --resume then continues)."""
        cfg = self.cfg
        domain = self.domain_cls(tok, cfg.data)
        train = domain.examples("train", stage="mle", seed=cfg.mle.seed)
        rl_train = domain.examples("train", stage="rl", seed=cfg.rl.seed)
        test = domain.examples("test")
        check_context(self.context_size(), cfg, train, rl_train, test, pretrained=bool(self.init_dir), taken=taken)
        n_test_split, split_groups = len(test), dict(Counter(e.group for e in test))
        test_indices = list(range(n_test_split))
        if cfg.eval_limit:
            test_indices = (balanced_indices if cfg.eval_balanced else subsample_indices)(test, cfg.eval_limit, seed=1)
            test = [test[i] for i in test_indices]
        curve = subsample(test, cfg.curve_limit, seed=2) if cfg.curve_limit else []
        return Examples(train, rl_train, test, curve, n_test_split, test_indices, split_groups)

    def results(self, command: str) -> dict:
        """Both final evaluations side by side, with what the domain's stages returned; written beside `cfg.results`."""
        cfg, got, e = self.cfg, self.got, self.examples
        results = report.build(cfg, command=command, timings=self.timings(), params=models.num_params(got["rl"]),
                               mle=got["eval_mle"], rlvr=got["eval_rlvr"], out=self.out, n_train=len(e.train),
                               n_rl=len(e.rl), n_test_split=e.n_test_split, test_indices=e.test_indices,
                               trivial=trivial_eval(self.domain, e.test), split_groups=e.split_groups)
        for stage in self.domain_cls.stages:
            results.update(got[stage.name] or {})
        report.write(Path(cfg.results), results, self.out)
        return results


def fitting(examples: list, max_new_tokens: int) -> tuple[list, int]:
    """The RL prompts whose true answer fits the sampling budget, and how many were left out: every sample of one
    that does not is cut off and scores as no answer at all, so its groups could only teach the trivial one."""
    kept = [e for e in examples if len(e.target_ids) <= max_new_tokens]
    if examples and not kept:
        raise ValueError(f"no RL prompt's answer fits --rl.max-new-tokens {max_new_tokens} (the shortest has "
                         f"{min(len(e.target_ids) for e in examples)} tokens): give a larger budget")
    return kept, len(examples) - len(kept)


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


def check_context(context: int, cfg: RunConfig, train, rl, test, pretrained: bool, taken: bool = False) -> None:
    """A one-line error, naming the options that fix it, when an example's prompt plus its longest response exceeds
    the model's `context` positions.

    A training example (MLE's `train`, RL's `rl`) needs room for its target and RL's longest sample, a test example
    for the evaluation's longest response (and its target, so that it can be answered). What fixes it: a model from
    scratch with more positions (`--model.max-positions`; a pretrained model's are its own); shorter responses where
    that cuts no answer; for training examples, `--data.max-prompt-tokens` below the prompt (longer training prompts
    are skipped); test prompts never are, so a test example nothing else fits is taken out of the test data.
    """
    def need(e, n: int) -> int:
        return len(e.prompt_ids) + max(n, len(e.target_ids))

    sets = (("test", test, cfg.max_new_tokens, "--max-new-tokens"),
            ("training", [*train, *rl], cfg.rl.max_new_tokens, "--rl.max-new-tokens"))
    over = {split: [i for i, e in enumerate(examples) if need(e, n) > context] for split, examples, n, _ in sets}
    if not any(over.values()):
        return
    most = max(need(examples[i], n) for split, examples, n, _ in sets for i in over[split])
    split, examples, n, option = next(s for s in sets if over[s[0]])
    worst = max(over[split], key=lambda i: need(examples[i], n))
    e = examples[worst]
    which = f"test example {worst + 1}" if split == "test" else "a training example"
    fixes = [] if pretrained else [f"give --model.max-positions {most}"]
    room = context - max(len(examples[i].prompt_ids) for i in over[split])
    if room >= max(len(x.target_ids) for x in examples):  # shorter responses, no answer cut
        fixes.append(f"give {option} {room}")
    if split == "training" and hasattr(cfg.data, "max_prompt_tokens"):
        limit = min(len(examples[i].prompt_ids) for i in over[split]) - 1
        if limit >= 1:
            fixes.append(f"give --data.max-prompt-tokens {limit} (longer training prompts are skipped)")
    if split == "test":
        out = ", ".join(str(i + 1) for i in over[split][:5]) + (", ..." if len(over[split]) > 5 else "")
        fixes.append(f"take test example{'s' * (len(over[split]) > 1)} {out} out of the test data (test prompts are "
                     f"never skipped)")
    if not fixes:
        fixes.append("take the longest examples out of the training data")
    then = "; continue with --resume to keep the tokenizer this run made" if taken else ""
    raise ValueError(f"{which} needs {need(e, n)} positions (a prompt of {len(e.prompt_ids)} tokens and a response of "
                     f"up to {max(n, len(e.target_ids))}), {'the pretrained' if pretrained else 'the'} model has "
                     f"{context}: {', or '.join(fixes)}{then}")


def command_line() -> str:
    return "rlvr-world " + " ".join(shlex.quote(a) for a in sys.argv[1:])
