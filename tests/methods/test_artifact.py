"""Save -> load through hone's artifact path gives identical outputs; the files are the documented ones;
`hone export --merge` writes a standalone model that generates what base + tuning generates."""

import json

import pytest
import torch

from hone.export.merge import merge_artifact
from hone.methods import method_for
from hone.methods.tuned import load_tuned
from hone.models.artifact import write_artifact
from hone.models.attention import use_segment_attention
from hone.models.generate import generate_batch
from tests.methods.conftest import CASES, LR, MERGEABLE, head_logits, train_steps

FILES = {
    "lora": {"adapter_config.json", "adapter_model.safetensors"},
    "qlora": {"adapter_config.json", "adapter_model.safetensors"},
    "ia3": {"adapter_config.json", "adapter_model.safetensors"},
    "prompt_tuning": {"adapter_config.json", "adapter_model.safetensors"},
    "prefix_tuning": {"adapter_config.json", "adapter_model.safetensors"},
    "full": {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
             "chat_template.jinja"},
    "layers": {"trained.safetensors"},
    "adapters": {"adapters.safetensors", "adapters.json"},
}
PROMPTS = [[{"role": "user", "content": q}] for q in
           ("Order a large pizza", "What is the capital of France?", "1 2 3 4", "The quick brown fox")]


def trained_artifact(t, case, directory):
    train_steps(t, 4, LR.get(case, 1e-2))
    write_artifact(directory, t.model, method_for(t.config.method.type), t.config, t.source, t.tokenizer, {})
    return directory


@pytest.mark.parametrize("case", list(CASES))
def test_save_then_load_gives_identical_outputs(tuned, case, tmp_path):
    t = tuned(case)
    directory = trained_artifact(t, case, tmp_path / "adapter")
    expected_files = FILES["lora" if case == "dora" else "adapters" if case == "houlsby" else
                           t.config.method.type] | {"hone.json"}
    files = {p.name for p in directory.iterdir()}
    assert expected_files <= files and files - expected_files <= {"README.md"}  # PEFT adds a model card
    manifest = json.loads((directory / "hone.json").read_text())
    assert manifest["method"]["type"] == t.config.method.type

    loaded, _, _ = load_tuned(directory)
    use_segment_attention(loaded)
    assert torch.equal(head_logits(t, loaded), head_logits(t))
    assert generate_batch(loaded, t.tokenizer, PROMPTS, max_new_tokens=6) == \
        generate_batch(t.model, t.tokenizer, PROMPTS, max_new_tokens=6)


@pytest.mark.parametrize("case", MERGEABLE)
def test_merged_model_generates_what_base_plus_tuning_generates(tuned, case, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t = tuned(case)
    directory = trained_artifact(t, case, tmp_path / "adapter")
    report = merge_artifact(directory, tmp_path / "merged")
    assert "fp32" in report.precision
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "merged")
    assert tokenizer.chat_template == t.tokenizer.chat_template
    assert json.loads((tmp_path / "merged" / "hone-merge.json").read_text())["method"]["type"] == t.config.method.type
    assert not any("lora" in n or "ia3" in n for n, _ in merged.named_parameters())

    tuned_model, _, _ = load_tuned(directory)
    ids = torch.tensor([t.tokenizer.encode("Order a large pizza with olives")])
    with torch.no_grad():
        torch.testing.assert_close(merged(ids).logits, tuned_model(ids).logits, atol=2e-4, rtol=1e-4)
    assert generate_batch(merged, tokenizer, PROMPTS, max_new_tokens=8) == \
        generate_batch(tuned_model, t.tokenizer, PROMPTS, max_new_tokens=8)


@pytest.mark.parametrize("case", ["adapters", "prompt_tuning", "prefix_tuning"])
def test_methods_that_cannot_merge_say_so_before_loading(tuned, case, tmp_path):
    from hone.errors import ConfigError

    t = tuned(case)
    write_artifact(tmp_path / "adapter", t.model, method_for(t.config.method.type), t.config, t.source,
                   t.tokenizer, {})
    with pytest.raises(ConfigError, match=f"{t.config.method.type} cannot be merged"):
        merge_artifact(tmp_path / "adapter", tmp_path / "merged")
    assert not (tmp_path / "merged").exists()


def test_a_full_runs_artifact_is_a_complete_transformers_directory(tuned, tmp_path):
    """Config, weights, tokenizer and the training chat template: transformers alone loads it."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t = tuned("full")
    directory = trained_artifact(t, "full", tmp_path / "adapter")
    tokenizer = AutoTokenizer.from_pretrained(directory)
    model = AutoModelForCausalLM.from_pretrained(directory)
    assert tokenizer.chat_template == t.tokenizer.chat_template
    assert tokenizer.encode("Order a large pizza") == t.tokenizer.encode("Order a large pizza")
    ids = torch.tensor([t.tokenizer.encode("Order a large pizza with olives")])
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, t.model(ids).logits.float(), atol=1e-5, rtol=1e-5)
