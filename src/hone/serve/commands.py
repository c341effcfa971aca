"""The serving subcommands of `hone`: serve, keys, feedback export, verify (parsers and handlers)."""

from __future__ import annotations

import json

from hone.errors import ConfigError
from hone.models.artifact import adapter_dir, read_manifest
from hone.models.registry import DEFAULT_MODEL
from hone.serve.feedback import export_feedback


def add_commands(commands) -> None:
    serve = commands.add_parser("serve", help="OpenAI-compatible server: one base model, many adapters")
    serve.add_argument("--model", help="the base model (default: the adapters' base, else the default model)")
    serve.add_argument("--adapter", action="append", default=[], metavar="NAME=PATH",
                       help="register an adapter (a run directory or its adapter/) under NAME; repeatable")
    serve.add_argument("--adapters-dir", help="register every adapter in this folder, named after its subfolder")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--api-key", action="append", default=[], help="a key with full access; repeatable")
    serve.add_argument("--keys-file", help="hashed keys (default: HONE_HOME/keys.json)")
    serve.add_argument("--request-log", help="JSON request log: a file, or '-' for stderr")
    serve.add_argument("--log-content", action="store_true", help="include prompts and outputs in the request log")
    serve.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="any other serve setting, e.g. --set max_prompt_tokens=4096")
    serve.set_defaults(run=_serve)

    keys = commands.add_parser("keys", help="API keys for `hone serve`").add_subparsers(metavar="ACTION")
    create = keys.add_parser("create", help="create a key (printed once; only its hash is stored)")
    create.add_argument("name")
    create.add_argument("--model", action="append", dest="models", metavar="MODEL",
                        help="a model the key may use (repeatable; default: all)")
    create.add_argument("--admin", action="store_true", help="may register and unregister adapters")
    create.add_argument("--keys-file")
    create.set_defaults(run=_keys_create)
    listing = keys.add_parser("list", help="list keys (never the keys themselves)")
    listing.add_argument("--keys-file")
    listing.set_defaults(run=_keys_list)
    revoke = keys.add_parser("revoke", help="revoke a key by id or name")
    revoke.add_argument("key")
    revoke.add_argument("--keys-file")
    revoke.set_defaults(run=_keys_revoke)

    feedback = commands.add_parser("feedback", help="feedback collected by `hone serve`").add_subparsers(
        metavar="ACTION")
    export = feedback.add_parser("export", help="corrected and well-rated exchanges as training JSONL")
    export.add_argument("output", help="the JSONL file to write")
    export.add_argument("--file", help="the feedback file (default: HONE_HOME/feedback.jsonl)")
    export.add_argument("--min-rating", type=int, default=4, help="keep uncorrected answers rated at least this")
    export.add_argument("--model", help="only exchanges with this model (adapter name)")
    export.add_argument("--project", help="only this project's exchanges (`hone service`: a job's organization_id)")
    export.set_defaults(run=_feedback_export)

    verify = commands.add_parser("verify", help="check that the server's greedy outputs equal `hone generate`'s")
    verify.add_argument("run_dir", metavar="RUN", help="a run directory (or its adapter/)")
    verify.add_argument("--file", help="chat JSONL of prompts (default: the run's eval.file or validation data)")
    verify.add_argument("--limit", type=int, default=16, help="at most this many prompts")
    verify.add_argument("--max-new-tokens", type=int, default=64)
    verify.set_defaults(run=_verify)


def _serve(args) -> int:
    from hone.serve.run import serve_forever
    from hone.serve.settings import ServeSettings

    adapters = {}
    for item in args.adapter:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:

            raise ConfigError(f"--adapter {item!r} is not NAME=PATH", where="--adapter")
        adapters[name] = path
    values = {"adapters": adapters, "adapters_dir": args.adapters_dir, "host": args.host, "port": args.port,
              "api_keys": args.api_key, "keys_file": args.keys_file, "request_log": args.request_log,
              "log_content": args.log_content, **_overrides(args.set)}
    values["model"] = args.model or _base_of(adapters, args.adapters_dir) or _default_model()
    serve_forever(_settings(ServeSettings, values))
    return 0


def _overrides(items: list[str]) -> dict:
    import yaml


    values = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r} is not KEY=VALUE", where="--set")
        values[key.strip()] = yaml.safe_load(value)
    return values


def _settings(cls, values: dict):
    from pydantic import ValidationError


    try:
        return cls(**values)
    except ValidationError as exc:
        issues = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise ConfigError("invalid serve settings", where="hone serve", issues=issues) from None


def _base_of(adapters: dict, adapters_dir: str | None) -> str | None:
    """The base model recorded in the first adapter's hone.json (so `--model` may be left out)."""
    from pathlib import Path


    paths = list(adapters.values())
    if adapters_dir and Path(adapters_dir).is_dir():
        paths += [str(p) for p in sorted(Path(adapters_dir).iterdir()) if (p / "hone.json").is_file()]
    return read_manifest(adapter_dir(paths[0]))["base_model"]["id"] if paths else None


def _default_model() -> str:

    return DEFAULT_MODEL


def _key_file(args):
    from hone.serve.auth import KeyFile
    from hone.serve.settings import ServeSettings

    return KeyFile(ServeSettings(keys_file=args.keys_file).keys_path())


def _keys_create(args) -> int:
    keys = _key_file(args)
    key, plain = keys.create(args.name, args.models, admin=args.admin)
    print(f"created {key.id} ({key.name}) for models {', '.join(key.models)}{' + admin' if key.admin else ''}")
    print(f"key (shown once, store it now): {plain}")
    return 0


def _keys_list(args) -> int:
    keys = _key_file(args)
    for key in keys.read():
        state = "revoked" if key.revoked else "active"
        print(f"{key.id}  {key.name:<20} {state:<8} {'admin ' if key.admin else ''}models={','.join(key.models)} "
              f"created={key.created}")
    return 0


def _keys_revoke(args) -> int:
    key = _key_file(args).revoke(args.key)
    print(f"revoked {key.id} ({key.name})")
    return 0


def _feedback_export(args) -> int:
    from hone.serve.settings import ServeSettings

    path = ServeSettings(feedback_file=args.file).feedback_path()
    counts = export_feedback(path, args.output, min_rating=args.min_rating, model=args.model,
                             project=args.project)
    print(f"wrote {counts['corrected'] + counts['well_rated']} examples to {args.output} "
          f"({counts['corrected']} corrected, {counts['well_rated']} rated >= {args.min_rating}, "
          f"{counts['skipped']} skipped, from {counts['read']} responses with feedback)")
    return 0


def _verify(args) -> int:
    from hone.serve.verify import verify_run

    report = verify_run(args.run_dir, file=args.file, limit=args.limit, max_new_tokens=args.max_new_tokens)
    print(json.dumps(report, indent=2))
    return 0 if report["identical"] else 1
