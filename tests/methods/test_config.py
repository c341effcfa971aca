"""Invalid method settings fail in the config validator, naming the setting, before any model loads;
what only the model can tell (depth, tied head) fails in `apply` with the same kind of error."""

import pytest
import torch

from hone.config.load import load_config
from hone.errors import ConfigError

MODEL = "/nonexistent/model"  # never loaded: every case must fail before that


@pytest.mark.parametrize("overrides, where, what", [
    (["method=prompt_tuning"], "data.packing", "one example per row"),
    (["method=prefix_tuning", "data.packing=true"], "data.packing", "data.packing=false"),
    (["method=prompt_tuning", "data.packing=false", "method.init=text"], "method", "init_text"),
    (["method=prompt_tuning", "data.packing=false", "method.init_text=hello"], "method", "init=text"),
    (["method=prompt_tuning", "data.packing=false", "method.num_virtual_tokens=0"], "method.num_virtual_tokens",
     "greater than 0"),
    (["method=prefix_tuning", "data.packing=false", "method.projection_hidden=32"], "method", "projection=true"),
    (["method=layers", "method.top_k=2", "method.indices=[0]"], "method", "top_k or indices"),
    (["method=layers", "method.modules=[]"], "method.modules", "at least one pattern"),
    (["method=layers", "method.modules=everything"], "method.modules", "all"),
    (["method=lora", "method.layers_to_transform=[-1]"], "method.layers_to_transform", "start at 0"),
    (["method=lora", "method.target_modules=[]"], "method.target_modules", "at least one module"),
    (["method=qlora", "method.dora=true"], "method.dora", "unknown setting"),
    (["method=qlora", "method.quantizer=bitsandbytes", "train.distributed=fsdp"], "method.quantizer",
     "FSDP2 cannot shard bitsandbytes"),
    (["method=full", "method.rank=8"], "method.rank", "unknown setting"),
    (["method=adapters", "method.reduction_factor=0"], "method.reduction_factor", "greater than 0"),
    (["method=adapters", "method.style=lora"], "method.style", "houlsby"),
    (["method=ia3", "method.feedforward_modules=[down_proj]"], "method", "needs target_modules"),
    (["method=ia3", "method.target_modules=[k_proj]", "method.feedforward_modules=[down_proj]"], "method",
     "not in target_modules"),
    (["method=sledgehammer"], "method", "unknown type"),
    (["train.optimizer=sgd"], "train.optimizer", "adamw"),
])
def test_invalid_settings_are_rejected_by_the_validator(overrides, where, what):
    with pytest.raises(ConfigError) as error:
        load_config(None, [f"model={MODEL}", *overrides])
    text = str(error.value)
    assert f"{where}:" in text and what in text, text


@pytest.mark.parametrize("distributed, chosen", [("none", "bitsandbytes"), ("ddp", "bitsandbytes"),
                                                 ("fsdp", "torchao")])
def test_qlora_auto_quantizer_is_resolved_by_the_run(distributed, chosen):
    config = load_config(None, [f"model={MODEL}", "method=qlora", f"train.distributed={distributed}"])
    assert config.method.quantizer == chosen


def test_valid_settings_of_every_method_pass():
    for overrides in (["method=full", "train.optimizer=adamw_8bit"], ["method=layers", "method.indices=[0,-1]"],
                      ["method=lora", "method.dora=true", "method.rslora=true", "method.layers_to_transform=[0]"],
                      ["method=qlora", "method.double_quant=false"], ["method=adapters", "method.style=pfeiffer"],
                      ["method=prompt_tuning", "data.packing=false", "method.init=text", "method.init_text=Be brief"],
                      ["method=prefix_tuning", "data.packing=false", "method.projection=true"], ["method=ia3"]):
        config = load_config(None, [f"model={MODEL}", *overrides])
        assert config.method.type == overrides[0].split("=")[1]


@pytest.mark.parametrize("case, extra, where", [
    ("layers", ["method.top_k=3"], "method.top_k"),
    ("layers", ["method.top_k=null", "method.indices=[2]"], "method.indices"),
    ("layers", ["method.head=true"], "method.head"),  # tied to the embeddings, which stay frozen
    ("layers", ["method.modules=[self_attn.nothing*]"], "method.modules"),
    ("lora", ["method.layers_to_transform=[5]"], "method.layers_to_transform"),
    ("adapters", ["method.layers=[4]"], "method.layers"),
])
def test_what_only_the_model_can_tell_fails_in_apply_with_a_config_error(tuned, case, extra, where):
    with pytest.raises(ConfigError) as error:
        tuned(case, *extra)
    assert error.value.where == where


def test_under_bf16_trainable_weights_stay_fp32_masters_and_frozen_ones_go_bf16(tuned):
    from hone.train.precision import prepare_for_precision

    for case in ("full", "layers"):
        t = tuned(case)
        prepare_for_precision(t.model, "bf16")
        for name, p in t.model.named_parameters():
            assert p.dtype == (torch.float32 if p.requires_grad else torch.bfloat16), name
        assert any(not p.requires_grad for p in t.model.parameters()) == (case == "layers")


@pytest.mark.parametrize("name", ["adamw", "adamw_fused", "adamw_foreach", "adamw_8bit"])
def test_every_optimizer_choice_steps_full_fine_tuning(tuned, name):
    from hone.config.schema import TrainConfig
    from hone.train.optim import build_optimizer

    t = tuned("full")
    optimizer = build_optimizer(t.model.parameters(), TrainConfig(optimizer=name, lr=1e-3))
    embed = t.model.get_input_embeddings().weight
    before = embed.detach().clone()
    loss, _ = t.objective.loss(t.model, t.batch)
    (loss / t.objective.units(t.batch)).backward()
    optimizer.step()
    assert not torch.equal(before, embed.detach())
    state = optimizer.state[embed]
    moment = state["state1"] if name == "adamw_8bit" else state["exp_avg"]
    assert moment.dtype == (torch.uint8 if name == "adamw_8bit" else torch.float32)
