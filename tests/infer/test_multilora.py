"""hone's batched multi-LoRA layers against PEFT, the reference, adapter by adapter."""

import pytest
import torch


@pytest.fixture(scope="module")
def two_adapters(tiny_model_dir, tmp_path_factory):
    """Adapters of different ranks and target modules (padding and missing layers both happen)."""
    from hone.infer.synthetic import save_random_adapters

    out = tmp_path_factory.mktemp("multilora")
    a = save_random_adapters(str(tiny_model_dir), out / "a", 1, rank=4, seed=1)[0]
    b = save_random_adapters(str(tiny_model_dir), out / "b", 1, rank=8, seed=2, target_modules=["q_proj", "v_proj"])[0]
    return a, b


def peft_logits(tiny_model_dir, adapter, ids):
    from peft import PeftModel

    from hone.models.load import load_model

    model, _, _ = load_model(str(tiny_model_dir))
    with torch.no_grad():
        if adapter is not None:
            model = PeftModel.from_pretrained(model, str(adapter)).eval()
        return model(input_ids=ids).logits


def test_mixed_rows_equal_peft_one_adapter_at_a_time(tiny_model_dir, two_adapters):
    from hone.infer.multilora import MultiLora
    from hone.models.load import load_model

    model, _, _ = load_model(str(tiny_model_dir))
    lora = MultiLora(model)
    lora.add("a", two_adapters[0])
    lora.add("b", two_adapters[1])
    ids = torch.randint(0, 400, (1, 12), generator=torch.Generator().manual_seed(0))
    names = ["b", None, "a", "b"]
    lora.use(names)
    with torch.no_grad():
        mixed = model(input_ids=ids.repeat(len(names), 1)).logits
    reference = {"a": peft_logits(tiny_model_dir, two_adapters[0], ids),
                 "b": peft_logits(tiny_model_dir, two_adapters[1], ids),
                 None: peft_logits(tiny_model_dir, None, ids)}
    for row, name in enumerate(names):
        torch.testing.assert_close(mixed[row:row + 1], reference[name], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(reference["a"], reference["b"])  # the adapters do change the model
    lora.use(["a"])  # one adapter for every row: PEFT's own operations, bit for bit
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, reference["a"])
    lora.remove("a")
    lora.use([None])
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, reference[None])


def test_an_adapter_for_layers_the_base_lacks_is_refused(tiny_model_dir, two_adapters, tmp_path):
    import shutil

    from hone.errors import ModelError
    from hone.infer.multilora import MultiLora
    from hone.models.load import load_model
    from safetensors.torch import load_file, save_file

    broken = tmp_path / "broken"
    shutil.copytree(two_adapters[1], broken)
    tensors = {k.replace("q_proj", "nope_proj"): v for k, v in load_file(broken / "adapter_model.safetensors").items()}
    save_file(tensors, broken / "adapter_model.safetensors")
    model, _, _ = load_model(str(tiny_model_dir))
    with pytest.raises(ModelError, match="nope_proj"):
        MultiLora(model).add("broken", broken)
