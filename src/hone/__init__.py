"""hone: fine-tune pretrained language models end to end, on your own machine.

    import hone
    result = hone.train("run.yaml", ["train.lr=1e-4"])
    hone.evaluate("heldout.jsonl", adapter=result.run_dir, metric="json").metrics
    print(hone.compare("heldout.jsonl", adapter=result.run_dir, metric="json", shots=3).table())
    hone.generate("Two large pepperoni pizzas, delivered", adapter=result.run_dir)
    hone.merge_runs(["runs/a", "runs/b"], "runs/merged", method="ties")   # `hone merge`
    hone.distill("prompts.jsonl", teacher_base_url="http://host/v1", teacher_model="m")  # `hone distill`
"""

from hone.version import __version__

__all__ = ["train", "distill", "estimate", "evaluate", "compare", "generate", "merge_runs", "load_config"]


def __getattr__(name: str):
    # Lazy: `import hone` stays instant; torch and transformers load with the first real call.
    if name in ("train", "distill", "estimate", "evaluate", "compare", "generate", "merge_runs"):
        from hone import api
        from hone.library_noise import silence_library_noise

        silence_library_noise()  # on first use, not at import

        return getattr(api, name)
    if name == "load_config":
        from hone.config.load import load_config

        return load_config
    raise AttributeError(f"module 'hone' has no attribute {name!r}")
