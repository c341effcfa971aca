import json

import pytest

from hone.errors import ModelError
from hone.models.artifact import adapter_dir, read_manifest
from hone.models.load import load_model, resolve_model, weights_sha256


def test_a_model_directory_loads_frozen_with_its_weights_hash(tiny_model_dir):
    source = resolve_model(str(tiny_model_dir))
    assert source.kind == "dir" and source.path == str(tiny_model_dir)
    assert source.sha256 == weights_sha256(tiny_model_dir)  # cached beside the weights, same answer
    model, tokenizer, _ = load_model(source)
    assert not any(p.requires_grad for p in model.parameters())
    assert tokenizer.pad_token_id is not None and tokenizer.chat_template


def test_the_hash_follows_the_weights(tmp_path, tiny_model_dir):
    import shutil

    from hone.models.tiny import save_tiny_model

    copy = tmp_path / "copy"
    shutil.copytree(tiny_model_dir, copy)
    assert weights_sha256(copy) == weights_sha256(tiny_model_dir)
    other = save_tiny_model(tmp_path / "other", seed=7)
    assert weights_sha256(other) != weights_sha256(tiny_model_dir)


def test_bad_model_specs_say_what_to_use(tmp_path):
    with pytest.raises(ModelError, match="unknown model 'no-such-model'") as err:
        resolve_model("no-such-model")
    assert "smollm2-135m-instruct" in err.value.hint
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="without config.json"):
        resolve_model(str(tmp_path / "empty"))
    with pytest.raises(ModelError, match="does not exist"):
        resolve_model(str(tmp_path / "missing.gguf"))
    assert resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct").kind == "hub"


def test_not_an_adapter_directory(tmp_path):
    with pytest.raises(ModelError, match="not a hone run or adapter directory"):
        adapter_dir(tmp_path)
    (tmp_path / "hone.json").write_text("{broken")
    with pytest.raises(ModelError, match="not valid JSON"):
        read_manifest(tmp_path)
    (tmp_path / "hone.json").write_text(json.dumps({"format": "hone-artifact/1"}))
    assert adapter_dir(tmp_path) == tmp_path
