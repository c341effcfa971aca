import pytest

from hone.examples import pizza


@pytest.fixture(scope="session")
def pizza_files(tmp_path_factory):
    """A small chat dataset (40 train / 8 held-out pizza orders) in OpenAI's chat format."""
    return pizza.write_dataset(tmp_path_factory.mktemp("pizza"), train=40, heldout=8)


@pytest.fixture
def train_tiny(tmp_path, tiny_model_dir, pizza_files):
    """Train the tiny model with `overrides`; returns hone's TrainResult."""
    from hone.api import train

    def run(*overrides, name="run", resume=None):
        base = [f"model={tiny_model_dir}", f"data.train={pizza_files[0]}", f"output_dir={tmp_path}",
                f"name={name}", "train.lr=5e-3", "train.threads=1", "data.max_length=384"]
        return train(None, base + list(overrides), resume=resume, progress=False, log=lambda *a: None)

    return run
