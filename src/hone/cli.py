"""The `hone` command. Only this module reads argv and the environment; heavy imports happen
inside each subcommand so `hone --help` is instant."""

from __future__ import annotations

import argparse
import json
import os
import sys

import hone
from hone.data.template_check import template_problems
from hone.errors import ConfigError, HoneError
from hone.library_noise import silence_library_noise
from hone.models.families import HOW_TO_POINT, family_rows, family_table
from hone.models.load import load_tokenizer
from hone.models.registry import DEFAULT_MODEL
from hone.paths import hone_home
from hone.serve.commands import add_commands as add_serve_commands
from hone.version import __version__

GATE_FAILED = 5  # the run trained but failed its forgetting gate


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    # key=value overrides may come after options (`hone train run.yaml --no-progress train.lr=1e-4`)
    if extra and hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    _quiet_libraries()

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
    parser.add_argument("--version", action="version", version=f"hone {__version__}")
    commands = parser.add_subparsers(metavar="COMMAND")

    data = commands.add_parser("data", help="inspect training data").add_subparsers(metavar="ACTION")
    check = data.add_parser("check", help="validate a JSONL file and print a report")
    check.add_argument("file")
    check.add_argument("--objective", help="report records this objective cannot train on (sft, dpo, reward, "
                       "classify, grpo), by file:line")
    check.add_argument("--config", metavar="RUN.yaml", help="take the objective, model, max length and loss_on "
                       "from a run config (flags given here win)")
    check.add_argument("--model", default=None, help="tokenizer for length stats (default: the default model)")
    check.add_argument("--max-length", type=int, default=None, help="default 512, or the config's data.max_length")
    check.add_argument("--loss-on", choices=["assistant", "all"], default=None)
    check.add_argument("--no-tokens", action="store_true", help="skip tokenization (faster, no length stats)")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.set_defaults(run=_data_check)

    train = commands.add_parser("train", help="fine-tune a model", description=(
        "Train from a YAML config plus key=value overrides, e.g. "
        "`hone train run.yaml train.lr=1e-4 method.rank=8`."))
    _config_args(train)
    train.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    train.add_argument("--no-progress", action="store_true")
    train.add_argument("--nproc", type=_process_count, metavar="N", help=(
        "train with N processes on this machine (torchrun --standalone; one per GPU, or gloo on CPU); "
        "for several machines run torchrun -m hone train yourself"))
    train.set_defaults(run=_train)

    dist = commands.add_parser("distill", help="sample a teacher endpoint on prompts, keep its answers as a "
                               "training file, fine-tune an open model on them", description=(
        "Move a fine-tune off a retiring base: every prompt (a conversation ending with a user turn) is sent to "
        "the teacher (any OpenAI-compatible endpoint), its answers are written as a chat training file with "
        "their provenance, and an open model is fine-tuned on that file as `hone train` would."))
    dist.add_argument("prompts", help="JSONL: {\"messages\": [..., {\"role\": \"user\", ...}]} per line")
    dist.add_argument("--teacher-base-url", required=True, metavar="URL", help="e.g. https://host/v1")
    dist.add_argument("--teacher-model", required=True, metavar="NAME", help="the model the endpoint serves")
    dist.add_argument("--api-key", help="the endpoint's key (default: $OPENAI_API_KEY)")
    dist.add_argument("--out", metavar="FILE", help="the training file to write (default: PROMPTS.teacher.jsonl)")
    dist.add_argument("--max-new-tokens", type=int, default=512, help="the longest teacher answer")
    dist.add_argument("--temperature", type=float, default=0.0, help="the teacher's sampling temperature (0: greedy)")
    dist.add_argument("--train", nargs="+", default=[], metavar="ARG", help="RUN.yaml and/or key=value settings "
                      "of the fine-tune (data.train is the written file)")
    dist.add_argument("--no-train", action="store_true", help="write the training file only")
    dist.add_argument("--no-progress", action="store_true")
    dist.set_defaults(run=_distill)

    fams = commands.add_parser("models", help="the model families hone supports, what works for each, how to load one")
    fams.add_argument("--markdown", action="store_true", help="print the family table of docs/families.md")
    fams.set_defaults(run=_models)

    est = commands.add_parser("estimate", help="memory and time of a run per method, before training", description=(
        "Trainable parameters, memory (weights, gradients, optimizer states, activations) and time per "
        "epoch from a few measured steps, e.g. `hone estimate run.yaml train.batch_size=4 --all-methods`."))
    _config_args(est)
    est.add_argument("--all-methods", action="store_true", help="a row for every registered method")
    est.add_argument("--method", action="append", dest="methods", help="a row for this method (repeatable)")
    est.add_argument("--steps", type=int, default=3, help="calibration steps to time (0: memory only)")
    est.add_argument("--nproc", type=_process_count, default=1, metavar="N", help=(
        "memory per process of N (as `hone train --nproc N` would run; train.distributed: ddp or fsdp)"))
    est.add_argument("--json", action="store_true", help="print the estimate as JSON")
    est.set_defaults(run=_estimate)

    ev = commands.add_parser("eval", help="score base zero-shot, base with the best prompt and tuned side by side",
                             description="Score contenders on a held-out chat file (results are cached).")
    ev.add_argument("file")
    _model_args(ev)
    ev.add_argument("--metric", default="exact_match",
                    help="a grader type that needs no settings (exact_match | json | labels | string_check | ...) "
                         "or a registered metric")
    ev.add_argument("--grader", metavar="SPEC", help="score with a grader spec (JSON/YAML file or inline JSON) "
                    "instead of --metric")
    ev.add_argument("--contenders", default="base,prompted,tuned",
                    help="comma-separated: base (zero-shot), prompted (instruction + shots), tuned (the adapter)")
    ev.add_argument("--instruction", help="system message of the prompted contender")
    ev.add_argument("--shots", type=int, default=0, help="worked examples from the training file in the prompt")
    ev.add_argument("--train-file", help="where shots come from (default: the adapter's data.train)")
    ev.add_argument("--no-perplexity", action="store_true", help="skip the reference perplexity")
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

    report = commands.add_parser("report", help="write an HTML report of a run (plots, contenders, forgetting, diffs)")
    report.add_argument("run_dir", metavar="RUN", help="a run directory")
    report.add_argument("--out", help="output folder (default RUN/report)")
    report.set_defaults(run=_report)

    cmp = commands.add_parser("compare", help="several runs side by side in one table and plot")
    cmp.add_argument("runs", nargs="+", help="run directories")
    cmp.add_argument("--out", default="compare.html", help="HTML page to write (PNGs beside it)")
    cmp.set_defaults(run=_compare)

    gen = commands.add_parser("generate", help="generate with a base or tuned model")
    gen.add_argument("prompt", help="the user message ('-' reads standard input)")
    _model_args(gen)
    gen.add_argument("--system", help="a system message")
    gen.add_argument("--raw", action="store_true",
                     help="continue the prompt as plain text, without a chat template (a base model)")
    gen.add_argument("--max-new-tokens", type=int, default=256)
    gen.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    gen.add_argument("--top-p", type=float, default=1.0)
    gen.add_argument("--seed", type=int)
    gen.add_argument("--image", action="append", metavar="PATH",
                     help="an image shown before the prompt (a vision-language model; repeat for more)")
    gen.set_defaults(run=_generate)

    export = commands.add_parser("export", help="merge a tuned model into its base; write GGUF for llama.cpp",
                                 description=(
        "`hone export --merge RUN --out DIR`: a standalone transformers model with the tuning folded in. "
        "`hone export --merge RUN --gguf FILE` or `hone export MODEL --gguf FILE`: a llama.cpp GGUF file."))
    export.add_argument("source", nargs="?", help="a model directory or shipped model to write as GGUF")
    export.add_argument("--merge", metavar="RUN", help="a run directory (or its adapter/) to merge into its base")
    export.add_argument("--out", metavar="DIR", help="the merged model directory to write (must not exist or be empty)")
    export.add_argument("--gguf", metavar="FILE", help="write a llama.cpp GGUF file here")
    export.add_argument("--dtype", choices=["f32", "f16", "q8_0"], default="f16", help="GGUF weight type (default f16)")
    export.set_defaults(run=_export)

    merge = commands.add_parser("merge", help="combine runs on one base into one adapter or model", description=(
        "Task vectors (each run's change to the base) merged by linear sum, TIES, DARE or SLERP: LoRA runs "
        "give one LoRA adapter (each layer's merged delta factored again by SVD), full fine-tunes one model."))
    merge.add_argument("runs", nargs="+", metavar="RUN", help="run directories (or their adapter/) on the same base")
    merge.add_argument("--method", choices=["linear", "ties", "dare", "slerp"], default="linear")
    merge.add_argument("--weights", type=_weights, help="one weight per run, comma-separated (default: 1/n each; "
                       "ties 1 each; slerp: the two runs' shares)")
    merge.add_argument("--density", type=float, default=0.5, help="ties, dare: the fraction of each delta kept")
    merge.add_argument("--rank", type=int, help="LoRA: the merged adapter's rank (default: the sum of the runs')")
    merge.add_argument("--seed", type=int, default=0, help="dare: the seed of the drop masks")
    merge.add_argument("--out", metavar="DIR", required=True, help="the merged adapter or model directory to write")
    merge.set_defaults(run=_merge)

    service = commands.add_parser("service", help="the fine-tuning API (OpenAI's shape) and inference on the "
                                  "base and its tuned models, with workers and dashboard")
    _service_args(service)
    service.add_argument("--model", help="the base model served (and its jobs' models called) "
                         "(default: smollm2-135m-instruct)")
    service.add_argument("--host", default="127.0.0.1")
    service.add_argument("--port", type=int, default=8000)
    service.add_argument("--workers", type=int, default=1, help="worker processes to start beside the API")
    service.add_argument("--max-upload-mb", type=float, default=100.0)
    service.add_argument("--max-active-jobs", type=int, default=4, help="jobs per project that have not ended")
    service.add_argument("--max-bases", type=int, default=2,
                         help="base models in memory at once, --model included (others load on demand, LRU)")
    service.add_argument("--metrics-models", choices=("admin", "public", "never"), default="admin",
                         help="who sees per-model series (fine-tuned model names) in /metrics; the service has no "
                         "admin key, so by default nobody: counts are given for the base and adapters together")
    service.add_argument("--new-key", metavar="PROJECT", help="print a new API key for PROJECT (created if new)")
    service.set_defaults(run=_service)

    worker = commands.add_parser("worker", help="run queued fine-tuning jobs from the service's store")
    _service_args(worker)
    worker.add_argument("--poll", type=float, default=1.0, help="seconds between looks for work")
    worker.add_argument("--exit-when-idle", action="store_true", help="stop when no job is queued")
    worker.set_defaults(run=_worker)

    sc = commands.add_parser("score", help="score responses with a reward model, or texts with a classifier")
    sc.add_argument("run_dir", metavar="RUN", help="a run directory (or its adapter/) trained with objective reward or classify")
    sc.add_argument("file", help="JSONL: conversations ending with the reply / preference pairs (reward), "
                                 "text or labelled records (classify)")
    sc.add_argument("--output", metavar="JSONL", help="write the results here instead of standard output")
    sc.add_argument("--batch-size", type=int, default=16)
    sc.set_defaults(run=_score)

    demo = commands.add_parser("demo", help="the main job: pizza orders to JSON, before and after LoRA "
                                            "(--task shapes: count shapes in pictures with a small vision model)")
    demo.add_argument("--task", choices=("pizza", "shapes"), default="pizza",
                      help="pizza: free-text orders to JSON on the default model; shapes: a small vision-language "
                           "model trained here to count shapes in generated pictures")
    demo.add_argument("--language-model", metavar="MODEL",
                      help="shapes only: a text model (shipped name or directory) to put behind the new vision "
                           "tower instead of a random one")
    demo.add_argument("--output-dir", default="runs")
    demo.add_argument("overrides", nargs="*", help="key=value settings for the demo's training run")
    demo.set_defaults(run=_demo)


    add_serve_commands(commands)  # serve, keys, feedback, verify
    return parser


def _model_args(parser) -> None:
    parser.add_argument("--adapter", metavar="RUN", help="a run directory (or its adapter/) to load")
    parser.add_argument("--model", help="a base model: shipped name, model directory, .gguf file or hub id")


def _data_check(args) -> int:
    from hone.config.load import load_config
    from hone.data.images import FolderFiles, ImageLimits
    from hone.data.report import check_file

    config = load_config(args.config) if args.config else load_config(None)  # the defaults without --config
    objective = args.objective or (config.objective.type if args.config else None)
    formats = _objective_formats(objective) if objective else None
    tokenizer = None
    if not args.no_tokens:

        tokenizer = load_tokenizer(args.model or config.model)
    report = check_file(args.file, tokenizer, max_length=args.max_length or config.data.max_length,
                        loss_on=args.loss_on or config.data.loss_on, objective=objective, formats=formats,
                        limits=ImageLimits(max_images=config.data.max_images),
                        files=FolderFiles(config.data.image_files) if config.data.image_files else None)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.render())
    problems = []
    if tokenizer is not None and tokenizer.chat_template:

        problems = template_problems(tokenizer)
        for problem in problems:
            print(f"chat template of {args.model or DEFAULT_MODEL}: {problem}", file=sys.stderr)
    return 0 if report.ok and not problems else 1


def _objective_formats(name: str) -> tuple[str, ...]:
    from hone.objectives import OBJECTIVES

    if name not in OBJECTIVES:
        raise ConfigError(f"unknown objective {name!r}", where="--objective", hint=f"one of {', '.join(OBJECTIVES)}")
    return OBJECTIVES[name].formats


def _config_args(parser) -> None:
    """A run config as `hone train` and `hone estimate` take it: YAML, key=value overrides, a preset."""
    parser.add_argument("config", nargs="?", help="YAML run config")
    parser.add_argument("overrides", nargs="*", help="key=value settings that override the config")
    parser.add_argument("--preset", help="start from a shipped preset")


def _train(args) -> int:
    if args.nproc is not None:
        return _torchrun(args.nproc, args.argv)
    from hone.api import train

    config, overrides = args.config, list(args.overrides)
    if config and "=" in config and not config.endswith((".yaml", ".yml")):
        config, overrides = None, [config, *overrides]  # `hone train key=value ...` with no file
    result = train(config, overrides, resume=args.resume,
                   progress=not args.no_progress, preset=args.preset)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 speaks for all
        print(f"adapter saved to {result.adapter_dir}")
        print(json.dumps(result.metrics, indent=2))
    return 0 if result.status == "succeeded" else GATE_FAILED


def _distill(args) -> int:
    config, overrides = (args.train[0], args.train[1:]) if args.train and "=" not in args.train[0] \
        else (None, args.train)
    _, result = hone.distill(args.prompts, teacher_base_url=args.teacher_base_url, teacher_model=args.teacher_model,
                             out=args.out, api_key=args.api_key,
                             max_new_tokens=args.max_new_tokens, temperature=args.temperature, train_config=config,
                             overrides=overrides, no_train=args.no_train, progress=not args.no_progress)
    if result is None:
        return 0
    print(f"adapter saved to {result.adapter_dir}")
    return 0 if result.status == "succeeded" else GATE_FAILED


def _models(args) -> int:

    if args.markdown:
        print(family_table(), end="")
        return 0
    for row in family_rows():
        print(f"{row['family']} ({row['examples']}): architecture {row['architecture']}, template "
              f"data.chat_template={row['template']}")
        for key in ("system prompt", "reasoning", "features", "LoRA targets", "GGUF export",
                    "served beside other adapters"):
            print(f"  {key}: {row[key]}")
    print()
    print(HOW_TO_POINT)
    return 0


def _estimate(args) -> int:
    from hone.api import estimate

    config, overrides = args.config, list(args.overrides)
    if config and "=" in config and not config.endswith((".yaml", ".yml")):
        config, overrides = None, [config, *overrides]
    log = (lambda *a: print(*a, file=sys.stderr)) if args.json else print
    result = estimate(config, overrides, preset=args.preset, methods=args.methods, all_methods=args.all_methods,
                      calibration_steps=args.steps, processes=args.nproc, log=log)
    if args.json:
        print(json.dumps({"model": result.model, "precision": result.precision, "processes": result.processes,
                          "available": result.available, "tokens": result.workload.tokens,
                          "methods": [m.to_dict() for m in result.methods]}, indent=2))
    else:
        print(result.render())
    return 0


def _process_count(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"{value!r}: expected a process count of at least 1")
    return int(value)


def _torchrun(nproc: int, argv: list[str]) -> int:
    """Re-run this `hone train` command as N local processes under torchrun."""
    import subprocess

    rest, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            rest.append(arg)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "hone", *rest]
    return subprocess.run(cmd).returncode


def _eval(args) -> int:
    from hone.api import compare

    contenders = [c.strip() for c in args.contenders.split(",") if c.strip()]
    result = compare(args.file, adapter=args.adapter, model=args.model, metric=args.metric, contenders=contenders,
                     instruction=args.instruction, shots=args.shots, train_file=args.train_file,
                     max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                     perplexity=not args.no_perplexity, grader=args.grader)
    if args.predictions:
        with open(args.predictions, "w", encoding="utf-8") as f:
            for i, item in enumerate(result.items):
                predictions = {name: r["predictions"][i] for name, r in result.results.items()}
                record = {"where": item.where, "messages": item.messages, "reference": item.reference,
                          "predictions": predictions, "prediction": list(predictions.values())[-1],
                          "grades": {name: r["scores"][i] for name, r in result.results.items()}}
                f.write(json.dumps(record) + "\n")
    for note in result.notes:
        print(f"note: {note}")
    print(result.table())
    return 0


def _report(args) -> int:
    from hone.evaluate.report import write_report

    path = write_report(args.run_dir, out_dir=args.out)
    print(f"report: {path}")
    return 0


def _compare(args) -> int:
    from hone.evaluate.runs import write_comparison

    table, path = write_comparison(args.runs, args.out)
    print(table)
    print(f"\ncomparison: {path}")
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
                   seed=args.seed, raw=args.raw, images=args.image))
    return 0


def _export(args) -> int:
    import tempfile

    from hone.api import export_gguf

    if bool(args.merge) == bool(args.source):
        raise ConfigError("give either --merge RUN or a MODEL to export", where="hone export",
                          hint="hone export --merge RUN --out DIR, or hone export MODEL --gguf FILE")
    if args.source and not args.gguf:
        raise ConfigError("nothing to export to", where="hone export", hint="add --gguf FILE")
    if args.merge and not (args.out or args.gguf):
        raise ConfigError("--merge needs --out DIR and/or --gguf FILE", where="hone export")
    source = args.source
    with tempfile.TemporaryDirectory() as tmp:
        if args.merge:
            from hone.export.merge import merge_artifact

            report = merge_artifact(args.merge, args.out or f"{tmp}/merged")
            print(report.render())
            source = report.out
        if args.gguf:
            path = export_gguf(source, args.gguf, dtype=args.dtype)
            print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB, {args.dtype})")
    return 0


def _weights(value: str) -> list[float]:
    try:
        return [float(w) for w in value.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r}: give numbers separated by commas, e.g. 0.5,0.5") from None


def _merge(args) -> int:
    print(hone.merge_runs(args.runs, args.out, method=args.method, weights=args.weights, density=args.density,
                     rank=args.rank, seed=args.seed).render())
    return 0


def _service_args(parser) -> None:
    parser.add_argument("--db", help="SQLite file or database URL (default: $HONE_HOME/service/hone.db)")
    parser.add_argument("--data-dir", help="uploaded files and job runs (default: $HONE_HOME/service)")
    parser.add_argument("--lease", type=float, default=30.0, help="seconds before a silent worker's job is retaken")
    parser.add_argument("--job-threads", type=int, help="train.threads of every job (default: all cores)")
    parser.add_argument("--max-running-jobs", type=int, default=2,
                        help="jobs of one project that run at once; workers leave its others queued")
    parser.add_argument("--allow-python-graders", action="store_true",
                        help="accept reinforcement jobs with python graders, run in hone's sandbox (bubblewrap; "
                             "see docs/sandbox.md)")


def _service_settings(args):
    from pathlib import Path

    from hone.jobs.service import ServiceSettings
    from hone.jobs.store import Store

    os.umask(0o077)  # the service's data (database, uploads, runs, logs, feedback) is private: 0700 / 0600
    data_dir = args.data_dir or str(hone_home() / "service")
    db = args.db or str(Path(data_dir) / "hone.db")
    overrides = {"train.threads": args.job_threads} if args.job_threads else {}
    settings = ServiceSettings(data_dir=data_dir, lease_seconds=args.lease, job_overrides=overrides,
                               max_upload_bytes=int(getattr(args, "max_upload_mb", 100.0) * 2**20),
                               max_active_jobs=getattr(args, "max_active_jobs", 4),
                               max_running_jobs=args.max_running_jobs,
                               allow_python_graders=args.allow_python_graders)
    if args.allow_python_graders:
        from hone.rewards.sandbox import check_sandbox

        check_sandbox()  # refuse to start rather than fail every python grader later
    return Store(db), settings, db


def _service(args) -> int:
    import uvicorn

    from hone.jobs.family import WorkerFamily
    from hone.serve.service_app import create_service_app
    from hone.serve.settings import ServeSettings

    store, settings, db = _service_settings(args)
    if args.new_key:
        project = store.project_by_name(args.new_key) or store.create_project(args.new_key)
        print(store.create_key(project["id"]))
        return 0
    if args.max_bases < 1:
    
        raise ConfigError(f"must be at least 1 (the served base), got {args.max_bases}", where="--max-bases")
    extra = ["--lease", str(args.lease), "--max-running-jobs", str(args.max_running_jobs)] + \
        (["--job-threads", str(args.job_threads)] if args.job_threads else []) + \
        (["--allow-python-graders"] if args.allow_python_graders else [])
    serve_settings = ServeSettings(host=args.host, port=args.port,
                                   feedback_file=str(settings.data_dir / "feedback.jsonl"),
                                   max_bases=args.max_bases, metrics_models=args.metrics_models,
                                   **({"model": args.model} if args.model else {}))
    workers = WorkerFamily(args.workers, db, settings.data_dir, extra)  # started and stopped by the app
    app = create_service_app(store, settings, serve_settings=serve_settings, workers=workers)  # loads the base
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def _worker(args) -> int:
    from hone.jobs.worker import Worker

    store, settings, _ = _service_settings(args)
    worker = Worker(store, settings, poll_seconds=args.poll)
    print(f"worker {worker.id} on {store.url}", flush=True)
    worker.run(exit_when_idle=args.exit_when_idle)
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
    from hone.demo import run_demo, run_shapes_demo

    if args.task == "shapes":
        run_shapes_demo(args.output_dir, args.overrides, language_model=args.language_model)
    elif args.language_model:
        raise ConfigError("--language-model is for --task shapes", where="--language-model",
                          hint="the pizza demo's model is set with model=NAME")
    else:
        run_demo(args.output_dir, args.overrides)
    return 0


def _quiet_libraries() -> None:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    silence_library_noise()
    try:
        from transformers.utils import logging

        logging.set_verbosity_error()
        logging.disable_progress_bar()
    except ImportError:
        pass


if __name__ == "__main__":
    sys.exit(main())
