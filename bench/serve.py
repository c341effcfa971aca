"""Serving throughput and latency with many adapters on one base, over real HTTP on loopback.

For the base alone and for 1, 10 and 100 distinct LoRA adapters in rotation (random weights,
rank 8, all linear layers), a client keeps `--concurrency` chat requests in flight (each asks for
exactly `--max-tokens` tokens: `ignore_eos`) and measures generated tokens/s, requests/s and
p50/p99 request latency. Adapters are loaded (a warm-up pass) before timing, so the figures are
about batching mixed adapters, not about loading them.

Target: 100 adapters keep >= 70 % of the 1-adapter throughput.

    python bench/serve.py --tiny                      # quick check on a tiny random model (~1 min)
    python bench/serve.py                             # the default model (SmolLM2-135M), the real figures
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true", help="a tiny random model (2 layers, hidden 64)")
    parser.add_argument("--model", help="base model (default: the shipped default model)")
    parser.add_argument("--adapters", default="0,1,10,100", help="adapter counts to measure (0 = the base alone)")
    parser.add_argument("--requests", type=int, default=None, help="timed requests per scenario")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    parser.add_argument("--max-tokens", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()
    requests = args.requests or (64 if args.tiny else 96)
    max_tokens = args.max_tokens or (16 if args.tiny else 32)
    counts = [int(c) for c in args.adapters.split(",")]
    results = run_all(args, counts, requests, max_tokens)
    one = next((r for r in results if r["adapters"] == 1), None)
    print(f"\n{'scenario':<14}{'tokens/s':>10}{'req/s':>8}{'p50 s':>8}{'p99 s':>8}{'vs 1 adapter':>14}")
    for r in results:
        ratio = f"{r['tokens_per_s'] / one['tokens_per_s']:.0%}" if one else "-"
        name = "base alone" if r["adapters"] == 0 else f"{r['adapters']} adapter{'s' if r['adapters'] > 1 else ''}"
        print(f"{name:<14}{r['tokens_per_s']:>10.1f}{r['requests_per_s']:>8.2f}{r['p50_s']:>8.3f}{r['p99_s']:>8.3f}"
              f"{ratio:>14}")
    if args.out:
        Path(args.out).write_text(json.dumps({"tiny": args.tiny, "concurrency": args.concurrency,
                                              "max_tokens": max_tokens, "results": results}, indent=2))


def run_all(args, counts: list[int], requests: int, max_tokens: int) -> list[dict]:
    from hone.infer.synthetic import save_random_adapters
    from hone.models.registry import DEFAULT_MODEL
    from hone.models.tiny import save_tiny_model
    from hone.serve.app import create_app
    from hone.serve.run import running_server
    from hone.serve.settings import ServeSettings
    from hone.models.load import set_threads

    set_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        base = str(save_tiny_model(Path(tmp) / "tiny")) if args.tiny else (args.model or DEFAULT_MODEL)
        most = max(counts)
        print(f"writing {most} random adapters on {base} ...", flush=True)
        paths = save_random_adapters(base, Path(tmp) / "adapters", most) if most else []
        settings = ServeSettings(model=base, keys_file=f"{tmp}/keys.json", feedback_file=f"{tmp}/feedback.jsonl",
                                 max_loaded_adapters=max(most, 1), max_adapter_bytes=16 << 30,
                                 max_batch_rows=args.concurrency, max_tokens=max_tokens, threads=args.threads,
                                 adapters={p.name: str(p) for p in paths})
        app = create_app(settings)
        results = []
        with running_server(app) as url:
            for count in counts:
                models = [p.name for p in paths[:count]] or [app.state.hone.base_name]
                asyncio.run(load(url, models, args.concurrency, max_tokens, len(models)))  # warm-up: loads adapters
                started = time.perf_counter()
                latencies, tokens = asyncio.run(load(url, models, args.concurrency, max_tokens, requests))
                wall = time.perf_counter() - started
                latencies.sort()
                results.append({"adapters": count, "requests": requests, "wall_s": wall,
                                "tokens_per_s": tokens / wall, "requests_per_s": requests / wall,
                                "p50_s": statistics.median(latencies),
                                "p99_s": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]})
                print(json.dumps(results[-1]), flush=True)
        return results


async def load(url: str, models: list[str], concurrency: int, max_tokens: int, requests: int):
    """`requests` chat requests, adapters in rotation, at most `concurrency` in flight; (latencies, tokens)."""
    import httpx

    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    tokens = 0

    async def one(client, i: int) -> None:
        nonlocal tokens
        async with gate:
            started = time.perf_counter()
            r = await client.post("/v1/chat/completions", json={
                "model": models[i % len(models)], "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True,
                "messages": [{"role": "user", "content": f"Order {i % 7 + 1} large pizzas with olives, please."}]})
            r.raise_for_status()
            latencies.append(time.perf_counter() - started)
            tokens += r.json()["usage"]["completion_tokens"]

    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        await asyncio.gather(*(one(client, i) for i in range(requests)))
    return latencies, tokens


if __name__ == "__main__":
    main()
