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
def sharp_model_dir(tmp_path_factory):
    """The tiny model with embeddings (and so the tied output head) scaled up 4x: its next-token
    distributions are peaked enough that a LoRA can move them within a few steps."""
    import torch

    from hone.models.tiny import tiny_model, tiny_tokenizer

    tokenizer = tiny_tokenizer()
    model = tiny_model(tokenizer)
    with torch.no_grad():
        model.get_input_embeddings().weight.mul_(4)
    path = tmp_path_factory.mktemp("sharp-tiny")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def default_tokenizer():
    """The real default model's tokenizer (SmolLM2-135M-Instruct)."""
    from hone.models.load import load_tokenizer

    return load_tokenizer("smollm2-135m-instruct")
