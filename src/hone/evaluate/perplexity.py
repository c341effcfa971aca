"""Perplexity: the summed negative log-likelihood of target tokens, per example, under a model.

For a held-out chat item the targets are the reference answer's tokens given its prompt; for raw
text every token is a target. Perplexity over a set is exp(total NLL / total target tokens), so
long examples weigh by their length (the usual corpus perplexity).
"""

from __future__ import annotations

import math

from hone.data.formats import Example
from hone.data.pack import collate
from hone.data.template import tokenize_example
from hone.objectives.sft import hidden_states


def reference_example(messages: list[dict], reference: str, where: str = "") -> Example:
    """A chat Example whose only target is the reference answer (earlier assistant turns weigh 0)."""
    turns = [{"role": m["role"], "content": m["content"], "weight": 0 if m["role"] == "assistant" else 1}
             for m in messages]
    return Example(format="chat", messages=turns + [{"role": "assistant", "content": reference, "weight": 1}],
                   where=where)


def example_nll(model, tokenizer, examples: list[Example], *, max_length: int = 1024,
                batch_size: int = 8, chunk_tokens: int = 1024) -> list[tuple[float, int]]:
    """(summed NLL in nats, target tokens) for each example, in order; truncated to `max_length` tokens."""
    import torch

    tokenized = [tokenize_example(e, tokenizer, max_length=max_length) for e in examples]
    head = model.get_output_embeddings().weight
    softcap = getattr(model.config, "final_logit_softcapping", None)
    out: list[tuple[float, int]] = []
    model.eval()
    with torch.no_grad():
        for start in range(0, len(tokenized), batch_size):
            batch = collate(tokenized[start:start + batch_size], None, tokenizer.pad_token_id)
            hidden = hidden_states(model, batch)
            targets = batch["targets"]  # (R, L), one example per row
            keep = targets.ne(-100)
            rows = keep.nonzero()[:, 0]
            h, t = hidden[keep].float(), targets[keep]
            nll = torch.cat([torch.nn.functional.cross_entropy(capped(h[i:i + chunk_tokens] @ head.float().T, softcap),
                                                               t[i:i + chunk_tokens], reduction="none")
                             for i in range(0, len(t), chunk_tokens)]) if len(t) else torch.zeros(0)
            sums = torch.zeros(targets.shape[0]).index_add_(0, rows, nll)
            counts = keep.sum(1)
            out.extend((float(s), int(c)) for s, c in zip(sums, counts))
    return out


def perplexity(nll: list[tuple[float, int]]) -> float:
    """exp(total NLL / total tokens); inf when there are no tokens."""
    total, tokens = sum(s for s, _ in nll), sum(n for _, n in nll)
    return math.exp(min(total / tokens, 50.0)) if tokens else float("inf")


def capped(logits, softcap: float | None):
    """Logits soft-capped as the model's own head caps them (Gemma 2), else as they are."""
    import torch

    return torch.tanh(logits / softcap) * softcap if softcap else logits
