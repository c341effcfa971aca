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


def test_gguf_special_tokens_follow_the_ids_the_file_names():
    """A GGUF tokenizer read with its eos as its bos and no pad (as some transformers releases read
    them) is put right from the ids of the file's metadata, which the model config carries."""
    from transformers import LlamaConfig

    from hone.models.load import align_special_tokens
    from hone.models.tiny import tiny_tokenizer

    tokenizer = tiny_tokenizer()
    tokenizer.eos_token, tokenizer.pad_token = tokenizer.bos_token, None
    config = LlamaConfig(bos_token_id=1, eos_token_id=2, pad_token_id=2)
    assert align_special_tokens(tokenizer, config) == ["eos", "pad"]
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) == ("<|im_start|>", "<|im_end|>", "<|im_end|>")
    assert (tokenizer.eos_token_id, tokenizer.pad_token_id) == (2, 2)
    assert align_special_tokens(tokenizer, config) == []


def test_a_cached_gguf_conversion_with_misread_special_tokens_loads_mended(tiny_model_dir, tmp_path, monkeypatch):
    """A model converted and cached before the fix keeps a tokenizer whose eos is its bos; hone's
    loading gives it the file's ids again, without converting once more."""
    from transformers import AutoTokenizer

    from hone.export.gguf import write_gguf
    from hone.models.load import load_tokenizer

    monkeypatch.setenv("HONE_HOME", str(tmp_path / "home"))
    path = write_gguf(tiny_model_dir, tmp_path / "tiny.gguf", dtype="f32")
    cached = resolve_model(str(path)).path
    damaged = AutoTokenizer.from_pretrained(cached)
    damaged.eos_token = damaged.bos_token
    damaged.save_pretrained(cached)
    assert AutoTokenizer.from_pretrained(cached).eos_token == "<|im_start|>"
    tokenizer = load_tokenizer(str(path))
    assert (tokenizer.eos_token, tokenizer.eos_token_id, tokenizer.pad_token_id) == ("<|im_end|>", 2, 2)
