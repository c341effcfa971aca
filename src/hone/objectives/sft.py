"""Supervised fine-tuning: next-token cross-entropy on the target tokens of each example."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field

from hone.config.base import Section
from hone.data.batching import Batching
from hone.data.prepare import SFT_FORMATS as FORMATS
from hone.data.pack import collate, images_alone, pack_rows
from hone.data.prepare import prepare_data
from hone.models.vision import multimodal_body
from hone.objectives.base import Objective, ObjectiveKind
from hone.objectives.losses import linear_cross_entropy_and_hits


class Config(Section):
    type: Literal["sft"] = "sft"
    loss_chunk_tokens: int = Field(1024, gt=0)
    """Target tokens per chunk of output-head logits (bounds the logits' memory)."""


def build(config: Config) -> "SFT":
    return SFT(config.loss_chunk_tokens)


def hidden_states(model, batch):
    """The decoder's final hidden states (R, L, H) for a collated batch; no logits are computed.

    A batch collated without a mask is meant for segment attention (`hone.models.attention`). A
    method that changes how hidden states are computed (virtual tokens) sets `model.hone_hidden_states`.
    """
    custom = getattr(model, "hone_hidden_states", None)
    if custom is not None:
        return custom(batch)
    if "model_inputs" in batch:  # images: the vision tower, the projector and the language model together
        return multimodal_body(model)(input_ids=batch["input_ids"], use_cache=False,
                                      **batch["model_inputs"]).last_hidden_state
    if batch["attention_mask"] is None:
        attention = {"hone_segments": batch["segments"]}
    else:
        attention = {"attention_mask": batch["attention_mask"]}
    out = model.get_decoder()(input_ids=batch["input_ids"], position_ids=batch["position_ids"],
                              use_cache=False, **attention)
    return out.last_hidden_state


def collate_packed(examples, batching: Batching) -> dict:
    """One micro-batch of tokenized examples: with packing and segment attention one row holding them
    all (no padding); with packing alone rows of `max_length` under a block-diagonal mask; without
    packing one padded row per example."""
    rows = None
    if batching.packing:
        capacity = None if batching.segmented else batching.max_length
        lengths = [len(e.input_ids) for e in examples]
        rows = images_alone(examples, pack_rows(lengths, capacity) if capacity else [list(range(len(examples)))])
    return collate(examples, rows, batching.pad_id, mask=not batching.segmented)


def validation_rows(examples, batching: Batching, rows_per_batch: int = 8) -> list[dict]:
    """Collate validation examples once: rows of max_length (packed when packing is on), a few per batch."""
    if not examples:
        return []
    capacity = batching.max_length if batching.packing else None
    lengths = [len(e.input_ids) for e in examples]
    rows = images_alone(examples, pack_rows(lengths, capacity) if capacity else [[i] for i in range(len(examples))])
    batches = []
    for start in range(0, len(rows), rows_per_batch):
        chunk = rows[start:start + rows_per_batch]
        flat = [i for row in chunk for i in row]
        local = {i: n for n, i in enumerate(flat)}
        batches.append(collate([examples[i] for i in flat], [[local[i] for i in row] for row in chunk],
                               batching.pad_id, mask=not batching.segmented))
    return batches


class SFT(Objective):
    """The default data path (chat, prompt/completion, alpaca, text records) and next-token CE."""

    name = "sft"

    def __init__(self, chunk_tokens: int) -> None:
        self.chunk_tokens = chunk_tokens

    def prepare(self, data_config, tokenizer, seed: int):
        return prepare_data(data_config, tokenizer, seed=seed)

    def length(self, unit) -> int:
        return len(unit.input_ids)

    def collate(self, units, batching: Batching) -> dict:
        return collate_packed(units, batching)

    def validation_batches(self, units, batching: Batching) -> list[dict]:
        return validation_rows(units, batching)

    def units(self, batch) -> int:
        return int(batch["n_targets"])

    def loss(self, model, batch):
        """Summed CE over target tokens; output-head logits only at target positions, in chunks."""
        hidden = hidden_states(model, batch)
        targets = batch["targets"]  # (R, L), already shifted: the next token of the same example
        keep = targets.ne(-100)
        head = model.get_output_embeddings().weight
        # the head's matmuls in autocast's dtype, softmax and loss in fp32 (also for an fp32 head)
        loss_sum, hits = linear_cross_entropy_and_hits(hidden[keep], head, targets[keep], self.chunk_tokens,
                                                       getattr(model.config, "final_logit_softcapping", None))
        return loss_sum, {"loss_sum": loss_sum.detach().item(), "targets": int(keep.sum()), "hits": hits}

    def report(self, parts: list[dict], loss: float, *, validation: bool) -> dict:
        """Token accuracy (the share of target tokens predicted by argmax), and perplexity on validation."""
        accuracy = {"mean_token_accuracy": sum(p["hits"] for p in parts) / max(sum(p["targets"] for p in parts), 1)}
        return {"ppl": math.exp(min(loss, 50.0)), **accuracy} if validation else accuracy


KIND = ObjectiveKind("sft", Config, build, FORMATS)
