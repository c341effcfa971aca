import pytest

from hone.examples import preferences


@pytest.fixture(scope="session")
def preference_files(tmp_path_factory):
    """Concise-style pairs: 32 train (OpenAI's preference format) and 8 held out (chosen/rejected)."""
    out = tmp_path_factory.mktemp("pairs")
    return (preferences.write_jsonl(out / "train.jsonl", preferences.concise_pairs(32, 0, openai=True)),
            preferences.write_jsonl(out / "heldout.jsonl", preferences.concise_pairs(8, 1)))


@pytest.fixture
def train_objective(tmp_path, tiny_model_dir):
    """Train the tiny model on `train`/`validation` files with `overrides`; returns hone's TrainResult."""
    from hone.api import train

    def run(train_file, validation_file, *overrides, name="run"):
        base = [f"model={tiny_model_dir}", f"data.train={train_file}", f"data.validation={validation_file}",
                f"output_dir={tmp_path}", f"name={name}", "train.lr=5e-3", "train.threads=1", "data.max_length=384"]
        return train(None, base + list(overrides), progress=False, log=lambda *a: None)

    return run


def records(run_dir, key):
    import json

    return [r for r in map(json.loads, open(run_dir / "metrics.jsonl")) if key in r]


@pytest.fixture(scope="session")
def pizza_files(tmp_path_factory):
    from hone.examples import pizza

    return pizza.write_dataset(tmp_path_factory.mktemp("pizza"), train=8, heldout=4)
