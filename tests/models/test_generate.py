"""hone's decoding loop against the plainest possible reference: one prompt, no cache, argmax."""

import pytest
import torch

from hone.data.template import prompt_ids
from hone.models import generate as gen
from hone.models.tiny import tiny_model

SYSTEM = {"role": "system", "content": "You are a helpful assistant. Answer the question in one word. " * 2}
QUESTIONS = ["Order a large pizza", "What is the capital of France?", "1 2 3", "The quick brown fox jumps"]


@pytest.fixture(scope="module")
def model(tiny_tokenizer):
    model = tiny_model(tiny_tokenizer, seed=1)
    # A random untied output head: greedy decoding then wanders through the vocabulary instead of
    # repeating the last token (what a tied random model does), so there is text to compare.
    head = torch.randn(len(tiny_tokenizer), model.config.hidden_size, generator=torch.Generator().manual_seed(0))
    head[tiny_tokenizer.eos_token_id] = 0.0
    model.lm_head.weight = torch.nn.Parameter(head)
    return model


def reference_greedy(model, ids, stop, steps):
    ids = list(ids)
    out = []
    for _ in range(steps):
        with torch.no_grad():
            token = int(model(torch.tensor([ids])).logits[0, -1].argmax())
        if token in stop:
            break
        out.append(token)
        ids.append(token)
    return out


@pytest.mark.parametrize("with_system", [True, False])
def test_batched_cached_greedy_equals_one_by_one_without_cache(model, tiny_tokenizer, with_system):
    conversations = [([SYSTEM] if with_system else []) + [{"role": "user", "content": q}] for q in QUESTIONS]
    encoded = [prompt_ids(c, tiny_tokenizer) for c in conversations]
    assert (gen.shared_prefix_length(encoded) > 0) == with_system or not with_system
    stop = gen.stop_token_ids(model, tiny_tokenizer)
    expected = [tiny_tokenizer.decode(reference_greedy(model, ids, stop, 12), skip_special_tokens=True).strip()
                for ids in encoded]
    got = gen.generate_batch(model, tiny_tokenizer, conversations, max_new_tokens=12, batch_size=3)
    assert got == expected
    assert any(got)


def test_shared_prefix_is_used_and_leaves_a_token_per_prompt():
    prompts = [list(range(40)) + [7], list(range(40)) + [8, 9], list(range(40))]
    assert gen.shared_prefix_length(prompts) == 39
    assert gen.shared_prefix_length([list(range(10)) + [1], list(range(10)) + [2]]) == 0  # too short to matter
    assert gen.shared_prefix_length([list(range(40))]) == 0


def test_sampling_is_reproducible_with_a_seed_and_top_p_zero_is_greedy(model, tiny_tokenizer):
    conversations = [[{"role": "user", "content": q}] for q in QUESTIONS]
    a = gen.generate_batch(model, tiny_tokenizer, conversations, max_new_tokens=8, temperature=1.5, seed=4)
    b = gen.generate_batch(model, tiny_tokenizer, conversations, max_new_tokens=8, temperature=1.5, seed=4)
    assert a == b
    greedy = gen.generate_batch(model, tiny_tokenizer, conversations, max_new_tokens=8)
    nucleus = gen.generate_batch(model, tiny_tokenizer, conversations, max_new_tokens=8, temperature=1.0,
                                 top_p=1e-6, seed=0)
    assert nucleus == greedy


def test_pick_next_by_hand():
    logits = torch.tensor([[0.0, 3.0, 1.0], [2.0, 0.0, 0.0]])
    assert gen.pick_next(logits, 0.0, 1.0).tolist() == [1, 0]
    # top_p 0.5 keeps only the most likely token of each row
    assert gen.pick_next(logits, 1.0, 0.5, torch.Generator().manual_seed(0)).tolist() == [1, 0]
