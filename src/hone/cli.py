"""The `hone` command. Only this module reads argv and the environment; heavy imports happen
inside each subcommand so `hone --help` is instant."""

from __future__ import annotations

import argparse
import json
import os
import sys


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may come after options (`hone train run.yaml --no-progress train.lr=1e-4`)
    if extra and hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    _quiet_libraries()
    from hone.errors import HoneError

    try:
        return args.run(args) or 0
    except HoneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the last line of defence: no tracebacks for users
        if os.environ.get("HONE_DEBUG"):
            raise
        print(f"internal error: {type(exc).__name__}: {exc}\n  (set HONE_DEBUG=1 for the traceback and "
              "please report it)", file=sys.stderr)
        return 70


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hone", description="Fine-tune language models end to end.")
    from hone import __version__

    parser.add_argument("--version", action="version", version=f"hone {__version__}")
    commands = parser.add_subparsers(metavar="COMMAND")

    data = commands.add_parser("data", help="inspect training data").add_subparsers(metavar="ACTION")
    check = data.add_parser("check", help="validate a JSONL file and print a report")
    check.add_argument("file")
    check.add_argument("--model", default=None, help="tokenizer for length stats (default: the default model)")
    check.add_argument("--max-length", type=int, default=512)
    check.add_argument("--loss-on", choices=["assistant", "all"], default="assistant")
    check.add_argument("--no-tokens", action="store_true", help="skip tokenization (faster, no length stats)")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.set_defaults(run=_data_check)

    train = commands.add_parser("train", help="fine-tune a model", description=(
        "Train from a YAML config plus key=value overrides, e.g. "
        "`hone train run.yaml train.lr=1e-4 method.rank=8`."))
    train.add_argument("config", nargs="?", help="YAML run config")
    train.add_argument("overrides", nargs="*", help="key=value settings that override the config")
    train.add_argument("--preset", help="start from a shipped preset")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    train.add_argument("--no-progress", action="store_true")
    train.set_defaults(run=_train)

    ev = commands.add_parser("eval", help="score a base or tuned model on a held-out chat file")
    ev.add_argument("file")
    _model_args(ev)
    ev.add_argument("--metric", default="exact_match", help="exact_match | json")
    ev.add_argument("--grader", metavar="SPEC", help="score with a grader spec (JSON/YAML file or inline JSON) "
                    "instead of --metric")
    ev.add_argument("--max-new-tokens", type=int, default=256)
    ev.add_argument("--batch-size", type=int, default=16)
    ev.add_argument("--predictions", metavar="JSONL", help="write each prompt, reference and prediction here")
    ev.set_defaults(run=_eval)

    grader = commands.add_parser("grader", help="check and try grader specs").add_subparsers(metavar="ACTION")
    validate = grader.add_parser("validate", help="print the normalised spec, or every problem with its path")
    validate.add_argument("spec", help="a JSON/YAML file or inline JSON")
    validate.set_defaults(run=_grader_validate)
    grade = grader.add_parser("run", help="grade a file of model outputs; print each score and the mean")
    grade.add_argument("spec", help="a JSON/YAML file or inline JSON")
    grade.add_argument("file", help="`hone eval --predictions` output, or items (with --samples)")
    grade.add_argument("--samples", metavar="JSONL", help="model outputs, one per item of FILE")
    grade.add_argument("--json", action="store_true", help="print the scores as JSON")
    grade.set_defaults(run=_grader_run)

    gen = commands.add_parser("generate", help="generate with a base or tuned model")
    gen.add_argument("prompt", help="the user message ('-' reads standard input)")
    _model_args(gen)
    gen.add_argument("--system", help="a system message")
    gen.add_argument("--max-new-tokens", type=int, default=256)
    gen.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    gen.add_argument("--top-p", type=float, default=1.0)
    gen.add_argument("--seed", type=int)
    gen.set_defaults(run=_generate)

    sc = commands.add_parser("score", help="score responses with a reward model, or texts with a classifier")
    sc.add_argument("run_dir", metavar="RUN", help="a run directory (or its adapter/) trained with objective reward or classify")
    sc.add_argument("file", help="JSONL: conversations ending with the reply / preference pairs (reward), "
                                 "text or labelled records (classify)")
    sc.add_argument("--output", metavar="JSONL", help="write the results here instead of standard output")
    sc.add_argument("--batch-size", type=int, default=16)
    sc.set_defaults(run=_score)

    demo = commands.add_parser("demo", help="the main job: pizza orders to JSON, before and after LoRA")
    demo.add_argument("--output-dir", default="runs")
    demo.add_argument("overrides", nargs="*", help="key=value settings for the demo's training run")
    demo.set_defaults(run=_demo)
    return parser


def _model_args(parser) -> None:
    parser.add_argument("--adapter", metavar="RUN", help="a run directory (or its adapter/) to load")
    parser.add_argument("--model", help="a base model: shipped name, model directory, .gguf file or hub id")


def _data_check(args) -> int:
    from hone.data.report import check_file

    tokenizer = None
    if not args.no_tokens:
        from hone.models.load import load_tokenizer
        from hone.models.registry import DEFAULT_MODEL

        tokenizer = load_tokenizer(args.model or DEFAULT_MODEL)
    report = check_file(args.file, tokenizer, max_length=args.max_length, loss_on=args.loss_on)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.render())
    return 0 if report.ok else 1


def _train(args) -> int:
    from hone.api import train

    config, overrides = args.config, list(args.overrides)
    if config and "=" in config and not config.endswith((".yaml", ".yml")):
        config, overrides = None, [config, *overrides]  # `hone train key=value ...` with no file
    result = train(config, overrides, resume=args.resume,
                   progress=not args.no_progress, preset=args.preset)
    print(f"adapter saved to {result.adapter_dir}")
    print(json.dumps(result.metrics, indent=2))
    return 0


def _eval(args) -> int:
    from hone.api import evaluate

    result = evaluate(args.file, adapter=args.adapter, model=args.model, metric=args.metric,
                      max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, grader=args.grader)
    if args.predictions:
        with open(args.predictions, "w", encoding="utf-8") as f:
            for i, (item, prediction) in enumerate(zip(result.items, result.predictions)):
                record = {"where": item.where, "messages": item.messages, "reference": item.reference,
                          "prediction": prediction}
                if result.grades:
                    record["grade"] = result.grades[i].to_dict()
                f.write(json.dumps(record) + "\n")
    for key, value in result.metrics.items():
        print(f"{key:>16}: {value:.4f}" if isinstance(value, float) else f"{key:>16}: {value}")
    return 0


def _grader_validate(args) -> int:
    from hone.rewards.spec import dump_spec, load_spec

    print(json.dumps(dump_spec(load_spec(args.spec)), indent=2))
    return 0


def _grader_run(args) -> int:
    from hone.rewards import grade_outputs
    from hone.rewards.batch import GradeReport, read_graded_file
    from hone.rewards.spec import load_spec

    spec = load_spec(args.spec)
    items, outputs = read_graded_file(args.file, args.samples)
    report = GradeReport(grade_outputs(spec, outputs, items), items)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.render())
    return 0


def _generate(args) -> int:
    from hone.api import generate

    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    print(generate(prompt, adapter=args.adapter, model=args.model, system=args.system,
                   max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
                   seed=args.seed))
    return 0


def _score(args) -> int:
    from hone.api import score

    results = score(args.file, adapter=args.run_dir, batch_size=args.batch_size)
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in results)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(lines)
        print(f"{len(results)} results written to {args.output}")
    else:
        sys.stdout.write(lines)
    pairs = [r["correct"] for r in results if "correct" in r]
    golds = [r["label"] == r["gold"] for r in results if "gold" in r]
    for name, hits in (("pairwise accuracy", pairs), ("accuracy", golds)):
        if hits:
            print(f"{name}: {sum(hits) / len(hits):.4f} over {len(hits)}", file=sys.stderr)
    return 0


def _demo(args) -> int:
    from hone.demo import run_demo

    run_demo(args.output_dir, args.overrides)
    return 0


def _quiet_libraries() -> None:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import warnings

    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    try:
        from transformers.utils import logging

        logging.set_verbosity_error()
        logging.disable_progress_bar()
    except ImportError:
        pass


if __name__ == "__main__":
    sys.exit(main())
