"""Virtual tokens (prompt and prefix tuning) as a learned KV-cache prefix, on hone's own forward paths.

PEFT injects virtual tokens inside `PeftModel.forward`, which hone's SFT path (the decoder's hidden
states, then a chunked loss) and its cached decoding loop both bypass. Both methods are, to the base
model, a prefix of V positions that every token can attend to: prefix tuning learns those keys and
values directly; prompt tuning learns V input embeddings, whose keys and values come from running
them through the frozen model (causal attention: they never see the real tokens, so this equals
PEFT's concatenation). Real tokens sit at positions V.., as in PEFT. So both expose:

- `hone_hidden_states(batch)`: decoder hidden states of one-example-per-row batches on top of the
  prefix (packing is refused by the config validator: every example needs its own prefix);
- `hone_decoding_start()`: (plain model, prefix cache, V) for `hone.models.generate`.

The trainable parameters, saving and loading stay PEFT's (its adapter format).
"""

from __future__ import annotations

from functools import partial

import torch

from hone.models.generate import cache_keyword


def prefix_cache(model, batch: int):
    """The learned prefix as a DynamicCache for `batch` rows (with gradients when training)."""
    from peft.utils import PeftType
    from transformers import DynamicCache

    config = model.active_peft_config
    if config.peft_type == PeftType.PREFIX_TUNING:
        return model.get_prompt(batch_size=batch)
    base = model.get_base_model()
    prompts = model.get_prompt(batch_size=1).to(base.get_input_embeddings().weight.dtype)  # (1, V, H)
    cache = DynamicCache(config=base.config)
    positions = torch.arange(prompts.shape[1])[None]
    base.get_decoder()(inputs_embeds=prompts, position_ids=positions, **{cache_keyword(): cache}, use_cache=True)
    if batch > 1:
        cache.batch_repeat_interleave(batch)
    return cache


def hidden_states(model, batch):
    """(R, L, H) hidden states of the real tokens; rows must hold one example each (plus padding)."""
    ids = batch["input_ids"]
    rows, virtual = ids.shape[0], model.active_peft_config.num_virtual_tokens
    if int(batch["segment_ids"].max(dim=1).values.max()) > 1:
        raise ValueError("virtual-token methods need one example per row (data.packing=false)")
    real = (batch["segment_ids"] > 0).long()
    mask = torch.cat([torch.ones(rows, virtual, dtype=torch.long), real], dim=1)
    decoder = model.get_base_model().get_decoder()
    out = decoder(input_ids=ids, position_ids=batch["position_ids"] + virtual, attention_mask=mask,
                  **{cache_keyword(): prefix_cache(model, rows)}, use_cache=True)
    return out.last_hidden_state


@torch.no_grad()
def decoding_start(model):
    return model.get_base_model(), prefix_cache(model, 1), model.active_peft_config.num_virtual_tokens


def attach(model):
    """Give a PEFT prompt-learning model hone's two entry points; returns it."""
    model.hone_hidden_states = partial(hidden_states, model)
    model.hone_decoding_start = partial(decoding_start, model)
    return model


def check_unpacked(config) -> None:
    """Run-level check: every example needs its own virtual tokens, so rows cannot be packed."""
    if config.data.packing:
        raise ValueError(f"data.packing: method {config.method.type} needs one example per row (each example "
                         "gets its own virtual tokens); set data.packing=false")


def save(model, directory) -> None:
    model.save_pretrained(directory)


def load(base, directory):
    from peft import PeftModel

    return attach(PeftModel.from_pretrained(base, directory).eval())
