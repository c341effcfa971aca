"""GGUF export: read back with transformers' own GGUF loader, same logits and the same tokenizer."""

import json
import os
import subprocess
import sys
from pathlib import Path

import gguf
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import hone
from hone.api import export_gguf
from hone.errors import HoneError, ModelError
from hone.export.gguf import write_gguf
from hone.models.load import load_tokenizer

TEXTS = ["Order a large pizza with mushrooms", "<|im_start|>user\nhi there<|im_end|>\n", "ünïcödé 12345 {\"a\": [1]}"]


def logits(model, tokenizer):
    ids = tokenizer(TEXTS[0] + " " + TEXTS[2], return_tensors="pt").input_ids
    with torch.no_grad():
        return model(ids).logits


def read_back(path: Path):
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    return model, AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)


@pytest.mark.parametrize("dtype, tolerance", [("f32", 1e-5), ("f16", 2e-3), ("q8_0", 3e-2)])
def test_gguf_reloads_with_the_same_logits_and_tokenizer(tiny_model_dir, tmp_path, monkeypatch, dtype, tolerance):
    path = write_gguf(tiny_model_dir, tmp_path / f"tiny-{dtype}.gguf", dtype=dtype)
    model, tokenizer = read_back(path)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    base_tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    reference = logits(base, base_tokenizer)
    difference = (logits(model, base_tokenizer) - reference).abs().max().item()
    assert difference <= tolerance * reference.abs().max().item()
    assert model.config.tie_word_embeddings  # no output.weight written for a tied head

    for text in TEXTS:
        ids = base_tokenizer(text).input_ids
        assert tokenizer(text).input_ids == ids
        assert tokenizer.decode(ids) == text
    assert tokenizer.chat_template == base_tokenizer.chat_template
    fields = gguf.GGUFReader(path).fields
    for kind, key in (("bos", "bos"), ("eos", "eos"), ("pad", "padding")):
        field = fields[f"tokenizer.ggml.{key}_token_id"]
        assert int(field.parts[field.data[0]][0]) == getattr(base_tokenizer, f"{kind}_token_id")
    monkeypatch.setenv("HONE_HOME", str(tmp_path / "home"))
    converted = load_tokenizer(str(path))  # as hone reads a .gguf model: its own special tokens
    for attr in ("bos_token_id", "eos_token_id", "pad_token_id"):
        assert getattr(converted, attr) == getattr(base_tokenizer, attr)
    messages = [{"role": "user", "content": "Two pizzas please"}]
    assert (tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            == base_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))


def test_an_untied_head_is_written_as_output(tmp_path, tiny_tokenizer):
    from hone.models.tiny import tiny_model

    model = tiny_model(tiny_tokenizer, layers=1)
    model.config.tie_word_embeddings = False
    model.lm_head.weight = torch.nn.Parameter(torch.randn_like(model.lm_head.weight) * 0.05)
    model.save_pretrained(tmp_path / "untied")
    tiny_tokenizer.save_pretrained(tmp_path / "untied")
    path = write_gguf(tmp_path / "untied", tmp_path / "untied.gguf", dtype="f32")
    loaded, _ = read_back(path)
    assert not loaded.config.tie_word_embeddings
    assert torch.equal(loaded.lm_head.weight, model.lm_head.weight)
    assert not torch.equal(loaded.lm_head.weight, loaded.model.embed_tokens.weight)


def test_what_cannot_be_exported_says_why(tmp_path, tiny_model_dir):
    other = tmp_path / "gpt2"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(ModelError, match="model type 'gpt2'"):
        write_gguf(other, tmp_path / "x.gguf")
    with pytest.raises(ModelError, match="unknown GGUF dtype"):
        write_gguf(tiny_model_dir, tmp_path / "x.gguf", dtype="q4_k")
    adapter = tmp_path / "run" / "adapter"
    adapter.mkdir(parents=True)
    (adapter / "hone.json").write_text("{}")
    with pytest.raises(HoneError, match="merge it"):
        export_gguf(tmp_path / "run", tmp_path / "x.gguf")
    assert not (tmp_path / "x.gguf").exists()


def test_cli_export_gguf(tiny_model_dir, tmp_path):
    src = str(Path(hone.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": src}
    out = subprocess.run([sys.executable, "-m", "hone", "export", str(tiny_model_dir), "--gguf",
                          str(tmp_path / "m.gguf"), "--dtype", "f32"], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert "wrote" in out.stdout and (tmp_path / "m.gguf").stat().st_size > 0
    missing = subprocess.run([sys.executable, "-m", "hone", "export", str(tiny_model_dir)],
                             capture_output=True, text=True, env=env)
    assert missing.returncode == 2 and "--gguf" in missing.stderr and "Traceback" not in missing.stderr
