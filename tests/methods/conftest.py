"""A tiny model with one method applied, a fixed batch, and a few optimizer steps on it."""

from dataclasses import dataclass

import pytest
import torch

from hone.examples import pizza

# Each case: config overrides for `method.*` (and the run), and which parameter names must train.
CASES = {
    "lora": (["method=lora"], lambda n: "lora_" in n),
    "dora": (["method=lora", "method.dora=true", "method.rslora=true", "method.layers_to_transform=[1]"],
             lambda n: ("lora_" in n) and ".layers.1." in n),
    "qlora": (["method=qlora", "method.rank=4"], lambda n: "lora_" in n),
    "qlora_torchao": (["method=qlora", "method.rank=4", "method.quantizer=torchao"], lambda n: "lora_" in n),
    "full": (["method=full"], lambda n: True),
    "layers": (["method=layers", "method.top_k=1", "method.modules=attention"],
               lambda n: ".layers.1.self_attn." in n),
    "adapters": (["method=adapters", "method.style=pfeiffer", "method.reduction_factor=8"],
                 lambda n: "hone_adapter_mlp" in n),
    "houlsby": (["method=adapters", "method.style=houlsby"], lambda n: "hone_adapter_" in n),
    "prompt_tuning": (["method=prompt_tuning", "method.num_virtual_tokens=4", "data.packing=false"],
                      lambda n: "prompt_encoder" in n),
    "prefix_tuning": (["method=prefix_tuning", "method.num_virtual_tokens=4", "data.packing=false"],
                      lambda n: "prompt_encoder" in n),
    "ia3": (["method=ia3"], lambda n: "ia3_" in n),
}
MERGEABLE = ["lora", "dora", "qlora", "qlora_torchao", "ia3", "full", "layers"]
LR = {"ia3": 0.3, "prompt_tuning": 0.3, "prefix_tuning": 0.1, "full": 3e-3}


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """Two cores shared by many processes: one thread per test process is the fastest here."""
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def pizza_data(tmp_path_factory):
    return pizza.write_dataset(tmp_path_factory.mktemp("pizza"), train=24, heldout=4)


@dataclass
class Tuned:
    config: object
    model: object
    tokenizer: object
    source: object
    batch: dict
    objective: object


@pytest.fixture
def tuned(tiny_model_dir, pizza_data):
    """tuned(case) -> Tuned: the tiny base loaded as `hone train` loads it, the case's method applied."""
    from hone.config.load import load_config
    from hone.data.pack import collate
    from hone.data.prepare import prepare_data
    from hone.methods import method_for
    from hone.models.attention import use_segment_attention
    from hone.models.load import load_model
    from hone.objectives import build_objective

    def build(case, *extra):
        torch.manual_seed(0)
        overrides, _ = CASES[case]
        config = load_config(None, [f"model={tiny_model_dir}", f"data.train={pizza_data[0]}", "data.max_length=128",
                                    *overrides, *extra])
        model, tokenizer, source = load_model(str(tiny_model_dir))
        segmented = use_segment_attention(model)
        model = method_for(config.method.type).apply(model, config.method)
        data = prepare_data(config.data, tokenizer, seed=0)
        rows = None if not config.data.packing else [list(range(6))]
        batch = collate(data.train[:6], rows, tokenizer.pad_token_id, mask=not segmented)
        return Tuned(config, model, tokenizer, source, batch, build_objective(config.objective))

    return build


def train_steps(t: Tuned, steps: int, lr: float) -> list[float]:
    """`steps` AdamW steps on the fixed batch; the per-token losses."""
    params = [p for p in t.model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    t.model.train()
    losses = []
    for _ in range(steps):
        loss, parts = t.objective.loss(t.model, t.batch)
        (loss / t.objective.units(t.batch)).backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(parts["loss_sum"] / t.objective.units(t.batch))
    t.model.eval()
    return losses


def head_logits(t: Tuned, model=None) -> torch.Tensor:
    """Logits at every position of the fixed batch, computed the way training computes them."""
    from hone.objectives.sft import hidden_states

    model = model if model is not None else t.model
    with torch.no_grad():
        hidden = hidden_states(model, t.batch)
        return hidden @ model.get_output_embeddings().weight.float().T
