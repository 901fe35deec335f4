"""The `rlvr-world` command line.

    rlvr-world run [--preset NAME] [--config FILE] [--rl.steps 50 ...]  the whole pipeline
    rlvr-world eval --model DIR [--limit N]                       greedy evaluation of a saved model
    rlvr-world seeds A.json B.json ... [--out F.json]             is the gain larger than the seed spread?
    rlvr-world serve --model DIR [--port 8000]                    the model behind OpenAI-compatible endpoints
    rlvr-world agent --mle DIR --rlvr DIR                         a web agent planning with world models (MiniWoB++)
    rlvr-world policy-eval --run runs/video                       robot policies evaluated inside video world models
    rlvr-world export verl|trl [--domain D --data.* ...] [--out DIR]  a domain's data for verl or TRL (parquet)
    rlvr-world adapter save RUN/PHASE DIR [--start DIR]           a run's LoRA adapter as a folder to commit
    rlvr-world adapter check DIR                                  an adapter folder and its base model, checked

`run` starts from a preset (`run --help` lists them with what each is for), takes a config file's values over it
(`--config FILE`, YAML or JSON: a run's own config.json works as it is) and the options given over both;
`--print-config` prints the result as YAML, a config file, and runs nothing. Every command's `--help` lists its
options, grouped by prefix (`--rl.*`, ...), each with its help, choices and default; `rlvr-world --version` names
the version. Every error a user can cause ends in one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from . import __version__
from .engine.errors import UserError
from .optionparsing import OneLineParser, add_options, apply_overrides, choices_of, require, require_choice, to_yaml
from .rundir import run_config_of


@dataclass
class EvalConfig:
    """Greedy evaluation of a saved model on a domain's test split."""

    # a model directory (Hugging Face format, tokenizer inside), an adapter folder (adapters/NAME), a .gguf file or a
    # model name
    model: str = ""
    domain: str = "textgame"  # which domain (default: the run's own, read from config.json beside the model)
    limit: int = 0  # evaluate a fixed random subset of this many test examples (0: all)
    balanced: bool = False  # with limit: as many examples from each group (the subset `run --eval-balanced` uses)
    batch_size: int = 48  # prompts per decoding batch
    max_new_tokens: int = 512  # longest response
    out: str = ""  # write the summary and per-example records to this JSON file
    device: str = "auto"  # auto, cpu, cuda, ...
    dtype: Literal["auto", "bf16", "fp32"] = "auto"  # auto (bf16 autocast where the hardware has it), bf16 or fp32
    threads: int = 0  # torch CPU threads (0: one per core)
    data: Any = field(default=None)  # the domain's data options (default: the run's own, from its config.json)

    def __post_init__(self):
        require_choice(self, "", **choices_of(self))
        require(self, "", limit=">= 0", batch_size=">= 1", max_new_tokens=">= 1", threads=">= 0")


@dataclass
class AdapterSaveConfig:
    """A finished run's LoRA phase saved as an adapter folder to commit (`adapters`)."""

    # for RUN/rl: the adapter folder holding the adapter RUN/mle trained, which RL started from (default: the run's
    # --model.init-adapter)
    start: str = ""
    dtype: Literal["bf16", "fp32"] = "bf16"  # how the LoRA matrices are stored (bf16: half the size of fp32)
    overwrite: bool = False  # replace the folder if it exists

    def __post_init__(self):
        require_choice(self, "", **choices_of(self))


def eval_defaults(model: str | None, domain: str | None) -> EvalConfig:
    """`eval`'s options: the run's own domain and data options when the model comes from a run, else defaults."""
    from . import domains

    run = run_config_of(model) if model else {}
    name = domain or run.get("domain") or EvalConfig.domain
    data_cls = domains.data_class(name) if name in domains.DOMAINS else domains.data_class(EvalConfig.domain)
    known = {f.name for f in dataclasses.fields(data_cls)}
    data = data_cls(**{k: v for k, v in run.get("data", {}).items() if k in known}) if run.get("domain") == name \
        else data_cls()
    return EvalConfig(domain=name, data=data)


def parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The command line; `run` offers the options of the preset named in `argv` (its domain's data options), or of
    the config file's, with the file's values as their defaults."""
    from .domains import DOMAINS
    from .runconfig import presets, reward_names, run_start

    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--preset")
    pre.add_argument("--domain")
    pre.add_argument("--model")
    pre.add_argument("--config")
    known = pre.parse_known_args(argv)[0]

    p = OneLineParser(prog="rlvr-world", description="World models post-trained with RLVR.")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    run = sub.add_parser("run", help="tokenizer -> MLE -> RLVR -> evaluation -> results",
                         usage="%(prog)s [--preset NAME] [--config FILE] [--print-config] [--OPTION VALUE ...]",
                         description="The whole pipeline on one domain: tokenizer -> MLE -> RLVR -> evaluation -> "
                                     "results.\nA run takes a preset's values, a config file's over them, and the "
                                     "options given over both.", epilog=preset_list(),
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("--preset", choices=tuple(presets()), default=None, metavar="NAME",
                     help="named configuration, listed below (default: the config file's preset, else the --domain's "
                          "first, else default)")
    run.add_argument("--config", metavar="FILE", help="a YAML or JSON config file (e.g. configs/jsonl.yaml, or a run's "
                     "own config.json): its values replace the preset's; flags given beside it replace the file's")
    run.add_argument("--print-config", action="store_true",
                     help="print the resolved config as YAML (a config file for --config) and exit without running")
    is_run = (sys.argv[1:] if argv is None else argv)[:1] == ["run"]
    try:  # an unknown preset is refused by the parser below, in one line
        _, start, _ = run_start(known.preset if known.preset in presets() else None, known.domain,
                                known.config if is_run else None)
    except ValueError as e:  # a config file that cannot be used
        p.exit(2, f"{p.prog}: error: {e}\n")
    add_options(run, start, choices={"domain": tuple(DOMAINS), "rl.reward": reward_names(start.domain)})
    ev = sub.add_parser("eval", help="greedy evaluation of a saved model")
    add_options(ev, eval_defaults(known.model, known.domain))
    se = sub.add_parser("seeds", help="RLVR - MLE over runs that differ in their seed: mean, SD, t-test")
    se.add_argument("results", nargs="+", help="results JSON files written by `rlvr-world run`")
    se.add_argument("--out", default="", help="also write the summary to this JSON file (a .md table and a .png "
                                              "plot go beside it)")
    from .serve import ServeConfig

    sv = sub.add_parser("serve", help="a model behind OpenAI-compatible completions and chat endpoints")
    add_options(sv, ServeConfig())
    from .apps.webagent.options import AgentConfig

    ag = sub.add_parser("agent", help="a MiniWoB++ web agent planning with web world models, against its policy "
                                      "alone and an oracle")
    add_options(ag, AgentConfig())
    from .apps.policyeval.options import PolicyEvalConfig

    pe = sub.add_parser("policy-eval", help="frame-based robot policies evaluated inside a video run's MLE and RLVR "
                                            "world models, against their true success in Meta-World")
    add_options(pe, PolicyEvalConfig())
    from .integrations.export import ENGINES, export_defaults

    ex = sub.add_parser("export", help="a language domain's train/test transitions and rewards as verl or TRL "
                                       "datasets (parquet)")
    ex.add_argument("engine", choices=ENGINES, help="the RL engine whose dataset format to write")
    add_options(ex, export_defaults(known.preset, known.domain))  # the preset's or --domain's data options
    ad = sub.add_parser("adapter", help="a run's trained LoRA adapter as a small folder to commit, or one checked")
    act = ad.add_subparsers(dest="action", required=True, parser_class=OneLineParser)
    save = act.add_parser("save", help="write an adapter folder from a finished run's LoRA phase (its manifest: the "
                                       "base model and its sha256, the command, the measured scores)")
    save.add_argument("phase", help="the run's phase directory: RUN/mle (SFT) or RUN/rl")
    save.add_argument("folder", help="the adapter folder to write, e.g. adapters/NAME")
    add_options(save, AdapterSaveConfig())
    chk = act.add_parser("check", help="check an adapter folder, those it starts from and its base model against "
                                       "their sha256; print what it is")
    chk.add_argument("folder", help="an adapter folder")
    return p


def preset_list() -> str:
    """`run --help`'s list of presets, by domain, each with the first line of its docstring."""
    from shutil import get_terminal_size
    from textwrap import fill

    from .runconfig import preset_summaries

    width = max(80, get_terminal_size().columns - 2)  # as wide as argparse writes the options
    lines = ["presets (--preset NAME), by domain; the first of each is what --domain DOMAIN alone runs:"]
    for domain, summaries in preset_summaries().items():
        lines.append(f"  {domain}:")
        lines += [fill(doc, width, initial_indent=f"    {name:<20} ", subsequent_indent=" " * 25,
                       break_on_hyphens=False) for name, doc in summaries.items()]
    return "\n".join(lines + ["", fill("`rlvr-world run --preset NAME --print-config > FILE.yaml` writes a preset as a "
                                    "config file to edit and run with --config FILE.yaml.", width)])


def run_config(args: argparse.Namespace):
    """`run`'s config: the preset, the config file's values over it, the options given over both, and, for a
    pretrained model on a from-scratch preset, the pretrained presets' model settings where not given (said in one
    line on stderr); and the preset and that line."""
    from .runconfig import run_start, with_pretrained_defaults

    name, start, in_file = run_start(args.preset, getattr(args, "domain", None), args.config)
    skip = ("command", "preset", "config", "print_config")
    cfg = apply_overrides(start, args, skip=skip)
    source, applied = with_pretrained_defaults(cfg, name, in_file | (set(vars(args)) - set(skip)))
    line = ""
    if applied:
        flags = ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in applied.items())
        line = (f"preset {name} is made for a model trained from scratch; with --model.init-from it takes {source}'s "
                f"settings for a pretrained model, except those given: {flags}")
        sys.stderr.write(f"rlvr-world: {line}\n")
    return cfg, name, line


def print_config(args: argparse.Namespace) -> None:
    """`run --print-config`: the resolved config as YAML, a config file that `run --config` takes back."""
    from .domains import DOMAINS
    from .runconfig import preset_summaries, reward_names

    cfg, name, pretrained = run_config(args)
    about = {k: v for summaries in preset_summaries().values() for k, v in summaries.items()}[name]
    header = [f"written by: rlvr-world {shlex.join(sys.argv[1:])}", f"preset {name}: {about}",
              *([f"with the values of {args.config} over the preset's"] if args.config else []),
              *([pretrained] if pretrained else []),
              "rlvr-world run --config FILE runs it; flags given beside --config override its values"]
    print(to_yaml(cfg, header, choices={"domain": tuple(DOMAINS), "rl.reward": reward_names(cfg.domain)}), end="")


def cmd_run(args: argparse.Namespace) -> None:
    cfg, _, _ = run_config(args)
    from .engine import distributed as dist
    from .pipeline import Pipeline, command_line

    res = Pipeline(cfg).run(command_line())
    dist.teardown()
    if dist.is_main() and res:  # under torchrun, process 0 reports
        from .report import markdown

        print(markdown(res))


def cmd_eval(args: argparse.Namespace) -> None:

    from . import adapters, domains
    from . import device as dev
    from .engine import models
    from .engine.atomicwrite import save_json
    from .engine.evaluate import answer_breakdown, balanced_indices, evaluate, subsample_indices

    cfg = apply_overrides(eval_defaults(args.model if "model" in args else None, getattr(args, "domain", None)), args,
                          skip=("command",))
    if not cfg.model:
        raise ValueError("--model is required")
    dev.set_threads(cfg.threads)
    device = dev.pick_device(cfg.device)
    domain_cls = domains.get(cfg.domain)
    model, path = adapters.load_model(cfg.model)  # a model directory, an adapter folder, a named / GGUF model
    tok = domain_cls.load_tokenizer(path)
    models.check_vocab(model, len(tok), cfg.model)
    domain_cls.check_data(cfg.data)
    domain = domain_cls(tok, cfg.data)
    test = domain.examples("test")
    indices = list(range(len(test)))
    if cfg.limit:
        indices = (balanced_indices if cfg.balanced else subsample_indices)(test, cfg.limit, seed=1)
        test = [test[i] for i in indices]
    amp = dev.amp(device, cfg.dtype)
    r = evaluate(model.to(device), domain, test, batch_size=cfg.batch_size, max_new_tokens=cfg.max_new_tokens,
                 autocast=amp)
    answers = answer_breakdown(r.records)  # attempted / nothing changes / unreadable, per group
    summary = {**r.summary(), **({"answers": answers} if answers else {})}
    print(json.dumps(summary, indent=2))
    if cfg.out:
        save_json(Path(cfg.out), {**summary, "model": cfg.model, "domain": cfg.domain,
                                  "data": dataclasses.asdict(cfg.data), "test_indices": indices, "records": r.records})


def cmd_seeds(args: argparse.Namespace) -> None:
    from . import seeds
    from .pipeline import command_line

    s = seeds.summarise(args.results, command_line())
    if args.out:
        seeds.write(s, Path(args.out))
    print(seeds.markdown(s))


def cmd_serve(args: argparse.Namespace) -> None:
    from . import adapters
    from . import device as dev
    from .serve import Completer, ServeConfig, default_max_tokens, make_server
    from .text import load_tokenizer

    cfg = apply_overrides(ServeConfig(), args, skip=("command",))
    if not cfg.model:
        raise ValueError("--model is required")
    dev.set_threads(cfg.threads)
    device = dev.pick_device(cfg.device)
    model, path = adapters.load_model(cfg.model)
    completer = Completer(model.to(device), load_tokenizer(path), cfg.name or cfg.model,
                          autocast=dev.amp(device, cfg.dtype),
                          max_tokens=cfg.max_tokens or default_max_tokens(cfg.model), max_batch=cfg.max_batch)
    server = make_server(completer, cfg.host, cfg.port, log=lambda line: print(line, file=sys.stderr, flush=True))
    host, port = server.server_address[:2]
    routes = "/v1/completions" + (", /v1/chat/completions" if completer.chat_template else "")
    print(f"serving {completer.name!r} at http://{host}:{port}/v1 (POST {routes}; max_tokens {completer.max_tokens} "
          f"unless a request says; Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        server.server_close()


def cmd_agent(args: argparse.Namespace) -> None:
    from . import device as dev
    from . import domains

    domains.require_extra("web")  # one line, before its modules load, if the web extra is missing
    from .apps.webagent.experiment import markdown, run_agents
    from .apps.webagent.options import AgentConfig
    from .pipeline import command_line

    cfg = apply_overrides(AgentConfig(), args, skip=("command",))
    dev.set_threads(cfg.threads)
    print(markdown(run_agents(cfg, command_line())))


def cmd_policy_eval(args: argparse.Namespace) -> None:
    from . import device as dev
    from . import domains

    domains.require_extra("video")  # one line, before its modules load, if the video extra is missing
    from .apps.policyeval.experiment import markdown, run_policy_eval
    from .apps.policyeval.options import PolicyEvalConfig
    from .pipeline import command_line

    cfg = apply_overrides(PolicyEvalConfig(), args, skip=("command",))
    dev.set_threads(cfg.threads)
    print(markdown(run_policy_eval(cfg, command_line())))


def cmd_export(args: argparse.Namespace) -> None:
    from .integrations.export import export, export_defaults
    from .pipeline import command_line

    cfg = apply_overrides(export_defaults(getattr(args, "preset", None), getattr(args, "domain", None)), args,
                          skip=("command", "engine"))
    info = export(args.engine, cfg, command_line())
    print(json.dumps(info, indent=2))


def cmd_adapter(args: argparse.Namespace) -> None:
    from . import adapters
    from .pipeline import command_line

    if args.action == "check":
        m = adapters.check(args.folder)
        print(json.dumps({k: m[k] for k in ("name", "phase", "domain", "base", "start", "lora", "file", "scores")},
                         indent=2))
        return
    cfg = apply_overrides(AdapterSaveConfig(), args, skip=("command", "action", "phase", "folder"))
    m = adapters.save(args.phase, args.folder, start=cfg.start, dtype=cfg.dtype, overwrite=cfg.overwrite,
                      command=command_line())
    print(json.dumps({"folder": args.folder, **{k: m[k] for k in ("base", "start", "lora", "file", "rounding")},
                      "scores": m["scores"]["model"]}, indent=2))


def main(argv: list[str] | None = None) -> int:
    args = parser(argv).parse_args(argv)  # light: help and option errors come back before torch loads
    try:
        if getattr(args, "print_config", False):  # light too
            print_config(args)
            return 0
        from .device import quiet_hf

        quiet_hf()
        commands = {"run": cmd_run, "eval": cmd_eval, "seeds": cmd_seeds, "serve": cmd_serve, "agent": cmd_agent,
                    "policy-eval": cmd_policy_eval, "export": cmd_export, "adapter": cmd_adapter}
        commands[args.command](args)
    except (UserError, ValueError, OSError) as e:  # what a user can fix (and the checks' plain ValueErrors): one line
        sys.stderr.write(f"rlvr-world: error: {e}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("rlvr-world: interrupted; continue with --resume\n")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
