import pytest


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from hone.models.tiny import tiny_tokenizer as build

    return build()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny random Llama saved as a transformers directory (loadable by path like any base model)."""
    from hone.models.tiny import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def default_tokenizer():
    """The real default model's tokenizer (SmolLM2-135M-Instruct)."""
    from hone.models.load import load_tokenizer

    return load_tokenizer("smollm2-135m-instruct")
