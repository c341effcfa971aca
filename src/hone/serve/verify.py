"""`hone verify RUN`: greedy outputs from the server, from `hone generate` and (for methods that merge)
from the merged export must be identical on the run's evaluation prompts."""

from __future__ import annotations

import concurrent.futures
import tempfile
from pathlib import Path

from hone.data.images import image_data_url, load_image
from hone.errors import DataError
from hone.evaluate.task import read_task
from hone.export import merge
from hone.methods import method_for
from hone.methods.tuned import load_for_inference
from hone.models.artifact import adapter_dir, read_manifest
from hone.models.generate import generate_batch
from hone.models.load import load_model
from hone.jobs.images import is_path
from hone.serve.app import create_app
from hone.serve.images import openai_messages
from hone.serve.run import running_server
from hone.serve.settings import ServeSettings


def verify_run(run: str | Path, *, file: str | None = None, limit: int = 16, max_new_tokens: int = 64) -> dict:
    """Compare the three paths prompt by prompt; the report says how many agree and shows the first mismatch."""
    directory = adapter_dir(run)
    manifest = read_manifest(directory)
    conversations = [item.messages for item in _prompt_items(run, file)][:limit]
    reference = _generated(directory, conversations, max_new_tokens)
    report = {"run": str(run), "prompts": len(conversations), "max_new_tokens": max_new_tokens}
    served = _served(manifest["base_model"]["id"], directory, conversations, max_new_tokens)
    report["server"] = _compare(reference, served)
    if method_for(manifest["method"]["type"]).mergeable:
        report["merged"] = _compare(reference, _merged(directory, conversations, max_new_tokens))
    else:
        report["merged"] = f"not checked: method {manifest['method']['type']} cannot be merged"
    report["identical"] = all(isinstance(v, str) or v["identical"] for k, v in report.items()
                              if k in ("server", "merged"))
    return report


def _generated(directory: Path, conversations: list[list[dict]], max_new_tokens: int) -> list[str]:
    """Greedy answers as `hone generate` gives them (the model is freed before the server loads its own)."""
    model, tokenizer = load_for_inference(adapter=directory)
    return generate_batch(model, tokenizer, conversations, max_new_tokens=max_new_tokens)


def _prompt_items(run, file: str | None):
    import yaml

    if file is None:
        config_path = Path(run) / "config.yaml"
        config = yaml.safe_load(config_path.read_text()) if config_path.is_file() else {}
        file = (config.get("eval") or {}).get("file") or (config.get("data") or {}).get("validation")
        if file is None:
            raise DataError("no prompts to verify on: the run has no eval.file or data.validation",
                            where=str(run), hint="pass --file with a chat JSONL")
    return read_task(file)


def _served(base: str, directory: Path, conversations: list[list[dict]], max_new_tokens: int) -> list[str]:
    """Greedy answers from a real server on loopback, all prompts sent at once (so they batch)."""
    import httpx

    with tempfile.TemporaryDirectory() as tmp:
        settings = ServeSettings(model=base, adapters={"verify": str(directory)}, keys_file=f"{tmp}/keys.json",
                                 feedback_file=f"{tmp}/feedback.jsonl", max_tokens=max(max_new_tokens, 1))
        with running_server(create_app(settings)) as url, httpx.Client(base_url=url, timeout=600) as client:
            def ask(messages):
                response = client.post("/v1/chat/completions", json={
                    "model": "verify", "messages": messages, "temperature": 0, "max_tokens": max_new_tokens})
                response.raise_for_status()
                return response.json()["choices"][0]["message"]["content"]

            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                return list(pool.map(ask, [request_messages(c) for c in conversations]))


def request_messages(messages: list[dict]) -> list[dict]:
    """A conversation as a chat request sends it: images as OpenAI's parts, a picture on disk inlined as a
    data: URL (the server reads no paths)."""
    return [{**m, "content": [inlined(part) for part in m["content"]]} if isinstance(m["content"], list) else m
            for m in openai_messages(messages)]


def inlined(part: dict) -> dict:
    """A content part; one whose image is a file on disk, with the picture as a data: URL instead."""
    url = part["image_url"]["url"] if part["type"] == "image_url" else None
    if url is None or not is_path(url):
        return part
    return {"type": "image_url", "image_url": {"url": image_data_url(load_image(url, field="image"))}}


def _merged(directory: Path, conversations: list[list[dict]], max_new_tokens: int) -> list[str]:
    """Greedy answers from the merged export (written to a temporary folder, loaded as a plain model)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = merge.merge_artifact(directory, Path(tmp) / "merged").out
        model, tokenizer, _ = load_model(str(out))
        template = read_manifest(directory).get("chat_template")
        if template:
            tokenizer.chat_template = template
        return generate_batch(model, tokenizer, conversations, max_new_tokens=max_new_tokens)


def _compare(reference: list[str], other: list[str]) -> dict:
    same = [a == b.strip() for a, b in zip(reference, other)]
    result = {"identical": all(same), "equal": sum(same), "of": len(same)}
    if not all(same):
        k = same.index(False)
        result["first_mismatch"] = {"index": k, "generate": reference[k], "other": other[k]}
    return result
