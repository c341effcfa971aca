import pytest
import torch

from hone.data.formats import Example, parse_record
from hone.data.pack import block_causal_mask, collate, pack_rows, plan_batches, split_validation
from hone.data.template import IGNORE, TokenizedExample, tokenize_example
from hone.errors import HoneError

from .records import chat

PAD = 0


def example(ids, labels):
    return TokenizedExample(input_ids=list(ids), labels=list(labels), where="t:1")


A = example([11, 12, 13, 14], [IGNORE, IGNORE, 13, 14])
B = example([21, 22, 23], [21, 22, 23])
C = example([31, 32], [IGNORE, 32])


def test_collate_packed_row_shifts_targets_within_each_example():
    batch = collate([A, B, C], [[0, 1], [2]], PAD)
    assert batch["input_ids"].tolist() == [[11, 12, 13, 14, 21, 22, 23], [31, 32, PAD, PAD, PAD, PAD, PAD]]
    # Token t predicts the label of t+1 in the same example; an example's last token predicts nothing,
    # so 14 never predicts 21 across the boundary.
    assert batch["targets"].tolist() == [
        [IGNORE, 13, 14, IGNORE, 22, 23, IGNORE],
        [32, IGNORE, IGNORE, IGNORE, IGNORE, IGNORE, IGNORE],
    ]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 0, 1, 2], [0, 1, 0, 0, 0, 0, 0]]
    assert batch["segment_ids"].tolist() == [[1, 1, 1, 1, 2, 2, 2], [1, 1, 0, 0, 0, 0, 0]]
    assert int(batch["n_tokens"]) == 9
    assert int(batch["n_targets"]) == 5
    assert batch["input_ids"].dtype == batch["targets"].dtype == torch.long


def test_collate_without_rows_puts_one_example_per_row():
    batch = collate([C, A], None, PAD)
    assert batch["input_ids"].tolist() == [[31, 32, PAD, PAD], [11, 12, 13, 14]]
    assert batch["targets"].tolist() == [[32, IGNORE, IGNORE, IGNORE], [IGNORE, 13, 14, IGNORE]]
    assert batch["attention_mask"].shape == (2, 1, 4, 4)


def test_block_causal_mask_is_block_diagonal_and_causal():
    segments = torch.tensor([[1, 1, 1, 2, 2, 0, 0]])
    mask = block_causal_mask(segments)
    assert mask.shape == (1, 1, 7, 7) and mask.dtype == torch.bool
    expected = [[False] * 7 for _ in range(7)]
    for q in range(7):
        for k in range(7):
            same = segments[0, q] == segments[0, k] != 0
            expected[q][k] = bool(same and k <= q) or (q == k)
    assert mask[0, 0].tolist() == expected
    assert mask[0, 0, 3].tolist() == [False, False, False, True, False, False, False]  # new example sees only itself
    assert mask[0, 0, 6].tolist() == [False] * 6 + [True]  # padding attends to itself only
    assert mask.any(dim=-1).all()  # no empty row, so no NaN from softmax


def test_packed_row_gives_the_same_loss_as_examples_one_by_one(tiny_tokenizer):
    from hone.models.tiny import tiny_model

    model = tiny_model(tiny_tokenizer)
    records = [
        chat(("user", "Order a large pizza"), ("assistant", "Done, one large pizza.")),
        chat(("user", "Capital of France?"), ("assistant", "Paris.")),
        {"text": "The quick brown fox jumps over the lazy dog."},
    ]
    examples = [tokenize_example(parse_record(r), tiny_tokenizer) for r in records]

    def loss_sum(batch):
        logits = model(
            input_ids=batch["input_ids"], position_ids=batch["position_ids"], attention_mask=batch["attention_mask"]
        ).logits
        return torch.nn.functional.cross_entropy(
            logits.flatten(0, 1), batch["targets"].flatten(), ignore_index=IGNORE, reduction="sum"
        )

    with torch.no_grad():
        packed = loss_sum(collate(examples, [[0, 1, 2]], tiny_tokenizer.pad_token_id))
        padded = loss_sum(collate(examples, None, tiny_tokenizer.pad_token_id))
        alone = sum(loss_sum(collate([e], None, tiny_tokenizer.pad_token_id)) for e in examples)
    assert torch.allclose(packed, alone, rtol=1e-4)
    assert torch.allclose(padded, alone, rtol=1e-4)


def test_pack_rows_first_fit_decreasing():
    assert pack_rows([5, 4, 3, 3, 2, 1], 8) == [[0, 2], [1, 3, 5], [4]]


def test_pack_rows_respects_capacity_and_uses_every_index_once():
    lengths = [(i * 37) % 50 + 1 for i in range(200)]
    rows = pack_rows(lengths, 64)
    assert sorted(i for row in rows for i in row) == list(range(200))
    assert all(sum(lengths[i] for i in row) <= 64 for row in rows)
    assert len(rows) <= sum(lengths) / 64 * 1.25 + 1  # FFD wastes little on this mix


def test_pack_rows_rejects_an_example_longer_than_a_row():
    with pytest.raises(HoneError, match="example 1 has 9 tokens, more than the row capacity of 8"):
        pack_rows([3, 9], 8)


def test_plan_batches_is_deterministic_per_seed_and_epoch():
    lengths = [10] * 50
    first = plan_batches(lengths, batch_size=8, seed=1, epoch=0)
    assert first == plan_batches(lengths, batch_size=8, seed=1, epoch=0)
    assert first != plan_batches(lengths, batch_size=8, seed=1, epoch=1)
    assert first != plan_batches(lengths, batch_size=8, seed=2, epoch=0)
    assert [len(b) for b in first] == [8] * 6 + [2]
    assert sorted(i for b in first for i in b) == list(range(50))


def test_plan_batches_by_tokens_fills_up_to_the_budget():
    lengths = [30, 50, 20, 200, 10, 40, 60, 25]
    batches = plan_batches(lengths, batch_tokens=100, seed=0, epoch=3)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        assert sum(lengths[i] for i in batch) <= 100 or batch == [3]
    assert [3] in batches  # longer than the budget: alone
    # Greedy: no batch could have taken the first example of the next one.
    for batch, following in zip(batches, batches[1:]):
        assert sum(lengths[i] for i in batch) + lengths[following[0]] > 100


def test_plan_batches_needs_exactly_one_size():
    with pytest.raises(HoneError, match="exactly one"):
        plan_batches([1, 2], seed=0, epoch=0)
    with pytest.raises(HoneError, match="exactly one"):
        plan_batches([1, 2], batch_size=1, batch_tokens=5, seed=0, epoch=0)


def texts(n, start=0):
    return [Example(format="text", text=f"document number {i}") for i in range(start, start + n)]


def test_split_is_deterministic_and_near_the_fraction():
    examples = texts(1000)
    train, validation = split_validation(examples, 0.1, seed=0)
    assert (train, validation) == split_validation(examples, 0.1, seed=0)
    assert len(train) + len(validation) == 1000
    assert 60 <= len(validation) <= 140
    other_seed = split_validation(examples, 0.1, seed=1)[1]
    assert {e.text for e in other_seed} != {e.text for e in validation}


def test_split_is_stable_when_lines_are_appended():
    before = split_validation(texts(300), 0.2, seed=5)[1]
    after = split_validation(texts(300) + texts(100, start=300), 0.2, seed=5)[1]
    old = {e.text for e in texts(300)}
    assert {e.text for e in after if e.text in old} == {e.text for e in before}


def test_split_keeps_duplicates_on_one_side():
    examples = texts(50) + texts(50)
    train, validation = split_validation(examples, 0.3, seed=0)
    assert not {e.text for e in train} & {e.text for e in validation}


def test_split_always_has_one_validation_and_one_train_example():
    train, validation = split_validation(texts(2), 0.01, seed=0)
    assert (len(train), len(validation)) == (1, 1)
    train, validation = split_validation(texts(2), 0.99, seed=0)
    assert (len(train), len(validation)) == (1, 1)
    assert split_validation(texts(5), 0.0, seed=0) == (texts(5), [])


def test_split_rejects_a_bad_fraction():
    with pytest.raises(HoneError, match="validation fraction is 1.0"):
        split_validation(texts(3), 1.0, seed=0)
