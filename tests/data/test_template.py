import copy

import pytest

from hone.data.formats import Example, parse_record
from hone.data.template import IGNORE, prompt_ids, render, tokenize_example
from hone.errors import HoneError

from .records import chat

MULTI_TURN = chat(
    ("system", "You answer in one word."),
    ("user", "Capital of France?"),
    ("assistant", "Paris."),
    ("user", "Say it wrong."),
    ("assistant", "London.", 0),
    ("user", "And of Italy?"),
    ("assistant", "Rome, of course."),
)


def target_runs(tokenized):
    """Each maximal run of consecutive target tokens, as (first index, label ids)."""
    runs, current, start = [], [], None
    for t, label in enumerate(tokenized.labels + [IGNORE]):
        if label != IGNORE:
            if not current:
                start = t
            current.append(label)
        elif current:
            runs.append((start, current))
            current = []
    return runs


def decoded_targets(tokenized, tokenizer):
    return [tokenizer.decode(ids, skip_special_tokens=False) for _, ids in target_runs(tokenized)]


def check_assistant_mask(tokenizer):
    example = parse_record(MULTI_TURN)
    tokenized = tokenize_example(example, tokenizer)
    # The token ids are exactly the rendered conversation, and labels are ids or -100.
    assert tokenizer.decode(tokenized.input_ids, skip_special_tokens=False) == render(example.messages, tokenizer)
    assert all(label in (token, IGNORE) for token, label in zip(tokenized.input_ids, tokenized.labels))
    # Only weight-1 assistant replies, each with its end-of-turn token and nothing around it.
    assert decoded_targets(tokenized, tokenizer) == ["Paris.<|im_end|>", "Rome, of course.<|im_end|>"]
    # The final reply starts right where a generation request for the conversation so far ends.
    final_start = target_runs(tokenized)[-1][0]
    assert tokenized.input_ids[:final_start] == prompt_ids(example.messages[:-1], tokenizer)
    assert tokenized.truncated is False


def test_assistant_mask_on_tiny_tokenizer(tiny_tokenizer):
    check_assistant_mask(tiny_tokenizer)


@pytest.mark.smoke
def test_assistant_mask_on_default_tokenizer(default_tokenizer):
    check_assistant_mask(default_tokenizer)


# Replies whose first characters BPE would merge with the newline that ends the generation prompt.
LEADING_WHITESPACE_REPLIES = ["  two spaces first", "\n\n```py\nprint(1)\n```", " one space", "\nnewline"]


def check_reply_starts_after_the_prompt(tokenizer):
    for reply in LEADING_WHITESPACE_REPLIES:
        example = parse_record(chat(("user", "Show me."), ("assistant", reply)))
        tokenized = tokenize_example(example, tokenizer)
        assert decoded_targets(tokenized, tokenizer) == [reply + "<|im_end|>"]
        first = target_runs(tokenized)[0][0]
        assert tokenized.input_ids[:first] == prompt_ids(example.messages[:-1], tokenizer)


def test_reply_with_leading_whitespace_on_tiny_tokenizer(tiny_tokenizer):
    check_reply_starts_after_the_prompt(tiny_tokenizer)


@pytest.mark.smoke
def test_reply_with_leading_whitespace_on_default_tokenizer(default_tokenizer):
    # SmolLM2's BPE merges "\n" + "\n" and "\n" + "  ": without cutting at the reply's start, the
    # reply's first character would hide inside a prompt token and training would see other tokens
    # than generation does.
    check_reply_starts_after_the_prompt(default_tokenizer)


def test_system_and_user_tokens_are_never_targets(tiny_tokenizer):
    example = parse_record(chat(("user", "Order a large pizza"), ("assistant", "Done")))
    tokenized = tokenize_example(example, tiny_tokenizer)
    first_target = target_runs(tokenized)[0][0]
    prompt = tiny_tokenizer.decode(tokenized.input_ids[:first_target], skip_special_tokens=False)
    assert prompt.endswith("<|im_start|>user\nOrder a large pizza<|im_end|>\n<|im_start|>assistant\n")
    assert "You are a helpful AI assistant" in prompt  # the template's default system prompt
    assert all(label == IGNORE for label in tokenized.labels[:first_target])
    assert decoded_targets(tokenized, tiny_tokenizer) == ["Done<|im_end|>"]
    assert tokenized.labels[-1] == IGNORE  # the newline after <|im_end|>


@pytest.mark.parametrize(
    "record",
    [{"prompt": "2+2?", "completion": "4"}, {"instruction": "Add.", "input": "2+2", "output": "4"}],
)
def test_prompt_completion_and_alpaca_train_only_the_reply(tiny_tokenizer, record):
    tokenized = tokenize_example(parse_record(record), tiny_tokenizer)
    assert decoded_targets(tokenized, tiny_tokenizer) == ["4<|im_end|>"]


def test_loss_on_all_makes_every_token_a_target(tiny_tokenizer):
    tokenized = tokenize_example(parse_record(MULTI_TURN), tiny_tokenizer, loss_on="all")
    assert tokenized.labels == tokenized.input_ids


def test_text_example_appends_eos_and_targets_everything(tiny_tokenizer):
    tokenized = tokenize_example(Example(format="text", text="The quick brown fox."), tiny_tokenizer)
    assert tokenized.input_ids[-1] == tiny_tokenizer.eos_token_id
    assert tiny_tokenizer.decode(tokenized.input_ids, skip_special_tokens=False) == "The quick brown fox.<|im_end|>"
    assert tokenized.labels == tokenized.input_ids


def test_truncation_keeps_the_left_and_marks_it(tiny_tokenizer):
    example = parse_record(MULTI_TURN)
    full = tokenize_example(example, tiny_tokenizer)
    cut = tokenize_example(example, tiny_tokenizer, max_length=20)
    assert cut.truncated is True
    assert cut.input_ids == full.input_ids[:20]
    assert cut.labels == full.labels[:20]
    exact = tokenize_example(example, tiny_tokenizer, max_length=len(full.input_ids))
    assert exact.truncated is False


def test_prompt_ids_end_with_the_generation_prompt(tiny_tokenizer):
    ids = prompt_ids([{"role": "user", "content": "hi", "weight": 1}], tiny_tokenizer)
    text = tiny_tokenizer.decode(ids, skip_special_tokens=False)
    assert text.endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
    assert ids[0] == tiny_tokenizer.convert_tokens_to_ids("<|im_start|>")


# Like templates that drop reasoning from earlier replies: earlier assistant turns render differently
# from the last one, so `messages[:i+1]` is not a prefix of the whole conversation.
LAST_TURN_ONLY_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' and not loop.last %}"
    "{{ '<|im_start|>assistant\\n(earlier reply)<|im_end|>\\n' }}"
    "{% else %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def test_a_reply_the_template_rewrites_once_a_later_one_follows_stays_context(tiny_tokenizer):
    tokenizer = copy.deepcopy(tiny_tokenizer)
    tokenizer.chat_template = LAST_TURN_ONLY_TEMPLATE
    example = parse_record(chat(("user", "a"), ("assistant", "b"), ("user", "c"), ("assistant", "d")))
    tokenized = tokenize_example(example, tokenizer)
    assert tokenized.untrained_replies == 1
    assert tokenizer.decode([t for t in tokenized.labels if t != IGNORE]) == "d<|im_end|>"


def test_template_whose_generation_prompt_is_not_what_precedes_the_last_reply_raises(tiny_tokenizer):
    tokenizer = copy.deepcopy(tiny_tokenizer)
    tokenizer.chat_template = tokenizer.chat_template.replace("'<|im_start|>assistant\\n'", "'<|im_start|>bot\\n'")
    example = parse_record(chat(("user", "a"), ("assistant", "b")))
    example.where = "train.jsonl:4"
    with pytest.raises(HoneError) as caught:
        tokenize_example(example, tokenizer)
    error = caught.value
    assert error.where == "train.jsonl:4"
    assert "chat template renders the conversation up to message 1 differently" in error.what
    assert "loss_on='all'" in error.hint
    # With every token a target the mask does not depend on the template, so it still works.
    assert tokenize_example(example, tokenizer, loss_on="all").labels


def test_template_that_drops_the_reply_raises(tiny_tokenizer):
    tokenizer = copy.deepcopy(tiny_tokenizer)
    tokenizer.chat_template = (
        "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' }}"
        "{% if message['role'] != 'assistant' %}{{ message['content'] }}{% endif %}{{ '<|im_end|>\\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    )
    with pytest.raises(HoneError, match="does not render assistant message 1 verbatim"):
        tokenize_example(parse_record(chat(("user", "a"), ("assistant", "b"))), tokenizer)


def test_tokenizer_without_chat_template_raises(tiny_tokenizer):
    tokenizer = copy.deepcopy(tiny_tokenizer)
    tokenizer.chat_template = None
    with pytest.raises(HoneError, match="no chat template") as caught:
        tokenize_example(parse_record(chat(("user", "a"), ("assistant", "b"))), tokenizer)
    assert "text" in caught.value.hint
