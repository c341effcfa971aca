"""Every method declares what it is, and the paths that read the declaration follow it: the adapter
trait is a PEFT adapter that switches off, `mergeable` merges, `side_by_side` is what the server takes."""

import pytest
import torch

from hone.data.template import prompt_ids
from hone.errors import ModelError
from hone.export.merge import merge_artifact
from hone.infer.engine import Engine, Job
from hone.models.generate import generate_batch
from hone.methods import METHODS, method_for
from hone.methods.base import Method
from hone.models.artifact import write_artifact
from hone.models.load import load_model
from tests.methods.conftest import CASES, LR, train_steps

PROMPT = [{"role": "user", "content": "Order a large pizza"}]


def test_every_registered_method_is_a_declared_method_under_its_own_name():
    for name, method in METHODS.items():
        assert isinstance(method, Method) and method.name == name
        assert method.Config().type == name  # the config the registry validates is the method's own
        assert isinstance(method.adapter, bool) and isinstance(method.needs_weights, bool)
        assert method.mergeable == (method.merge is not None)
        assert callable(method.describe) and callable(method.check_run) and callable(method.side_by_side)
    assert {n for n, m in METHODS.items() if m.adapter} == {"lora", "qlora", "prompt_tuning", "prefix_tuning", "ia3"}
    assert {n for n, m in METHODS.items() if m.mergeable} == {"lora", "qlora", "ia3", "full", "layers"}
    assert {n for n, m in METHODS.items() if m.side_by_side(m.Config())} == {"lora", "qlora"}
    assert not METHODS["lora"].side_by_side(METHODS["lora"].Config(dora=True))


@pytest.mark.parametrize("case", list(CASES))
def test_the_adapter_trait_is_a_peft_adapter_that_switches_off(tuned, case):
    from peft import PeftModel

    t = tuned(case)
    method = method_for(t.config.method.type)
    assert isinstance(t.model, PeftModel) == method.adapter
    if method.adapter and case not in ("prompt_tuning", "prefix_tuning"):  # virtual tokens: no weights to move
        ids = torch.tensor([t.tokenizer.encode("Order a large pizza")])
        with torch.no_grad():
            start = t.model(ids).logits
        train_steps(t, 2, LR.get(case, 1e-2))
        with torch.no_grad():
            assert not torch.allclose(t.model(ids).logits, start, atol=1e-4)
            with t.model.disable_adapter():  # the start model, for free
                torch.testing.assert_close(t.model(ids).logits, start, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("case", list(CASES))
def test_the_server_takes_exactly_what_the_method_says_it_can_serve_side_by_side(tuned, case, tmp_path):
    t = tuned(case)
    method = method_for(t.config.method.type)
    train_steps(t, 2, LR.get(case, 1e-2))
    write_artifact(tmp_path / "adapter", t.model, method, t.config, t.source, t.tokenizer, {})
    base, tokenizer, source = load_model(str(t.source.path))
    engine = Engine(base, tokenizer, source)
    if not method.side_by_side(t.config.method):
        with pytest.raises(ModelError, match="cannot be served side by side") as caught:
            engine.register("tuned", tmp_path / "adapter")
        assert ("hone export --merge" in caught.value.hint) == method.mergeable
        return
    engine.register("tuned", tmp_path / "adapter")
    ids = prompt_ids(PROMPT, tokenizer, chat_template=engine.chat_template("tuned"))
    served = engine.run([Job(ids, adapter="tuned", max_tokens=6)])[0][0]
    assert served.tokens > 0
    if t.config.method.type == "lora":  # the served base is the trained one (qlora's was quantized)
        assert served.text.strip() == generate_batch(t.model, t.tokenizer, [PROMPT], max_new_tokens=6)[0]


@pytest.mark.parametrize("case", ["dora", "ia3", "adapters"])
def test_merging_follows_the_mergeable_trait(tuned, case, tmp_path):
    from hone.errors import ConfigError

    t = tuned(case)
    method = method_for(t.config.method.type)
    write_artifact(tmp_path / "adapter", t.model, method, t.config, t.source, t.tokenizer, {})
    if method.mergeable:
        assert merge_artifact(tmp_path / "adapter", tmp_path / "merged").precision == method.merge_precision
    else:
        with pytest.raises(ConfigError, match="cannot be merged"):
            merge_artifact(tmp_path / "adapter", tmp_path / "merged")


def test_an_artifact_naming_an_unknown_method_is_refused_with_where(tuned, tmp_path):
    import json

    t = tuned("lora")
    write_artifact(tmp_path / "adapter", t.model, method_for("lora"), t.config, t.source, t.tokenizer, {})
    manifest = json.loads((tmp_path / "adapter" / "hone.json").read_text())
    (tmp_path / "adapter" / "hone.json").write_text(json.dumps({**manifest, "method": {"type": "lorax"}}))
    base, tokenizer, source = load_model(str(t.source.path))
    with pytest.raises(ModelError, match="method 'lorax'") as caught:
        Engine(base, tokenizer, source).register("x", tmp_path / "adapter")
    assert caught.value.where == str(tmp_path / "adapter")
