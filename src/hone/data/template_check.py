"""Chat-template problems found before training: each would silently train the wrong tokens.

`template_problems` renders probe conversations with the tokenizer's template and reports: a
template that cannot yield a sound loss mask, one that drops the system prompt, one that puts BOS
twice at the start, and one whose full rendering differs from its incremental prefixes.
"""

from __future__ import annotations

from hone.data.formats import Example
from hone.data.template import render, tokenize_example
from hone.errors import HoneError

_SYSTEM = "Answer in one word."
_TURNS = [{"role": "user", "content": "Name a colour.", "weight": 1},
          {"role": "assistant", "content": "Blue.", "weight": 1},
          {"role": "user", "content": "Another one?", "weight": 1},
          {"role": "assistant", "content": "Green.", "weight": 1}]


def template_problems(tokenizer, *, system: bool = True, multi_turn: bool = True) -> list[str]:
    """What is wrong with the tokenizer's chat template (an empty list when nothing is)."""
    if not getattr(tokenizer, "chat_template", None):
        return ["the tokenizer has no chat template (set data.chat_template to a family name or a Jinja file)"]
    problems = []
    single = _mask_problem(tokenizer, _TURNS[:2])
    if single:
        return [f"it cannot yield a sound loss mask: {single}"]
    if multi_turn and (multi := _mask_problem(tokenizer, _TURNS)):
        problems.append(f"its full rendering differs from its incremental prefixes: {multi}")
    if system:
        try:
            text = render([{"role": "system", "content": _SYSTEM}, *_TURNS[:2]], tokenizer)
        except HoneError:
            text = None  # a template that refuses a system role says so itself
        if text is not None and _SYSTEM not in text:
            problems.append("it silently drops the system prompt of a conversation")
    ids = tokenizer(render(_TURNS[:2], tokenizer), add_special_tokens=False)["input_ids"]
    if tokenizer.bos_token_id is not None and ids[:2] == [tokenizer.bos_token_id] * 2:
        problems.append("it adds BOS twice at the start")
    return problems


def _mask_problem(tokenizer, messages: list[dict]) -> str | None:
    try:
        tokenized = tokenize_example(Example(format="chat", messages=messages), tokenizer)
    except HoneError as error:
        return error.what
    if not any(label != -100 for label in tokenized.labels):
        return "no token of the reply is a training target"
    if tokenized.untrained_replies:
        return "earlier replies render differently once a later one follows, so only the last reply trains"
    return None


def check_template(tokenizer, model: str, *, system: bool) -> None:
    """Raise a HoneError naming the model when its template would train the wrong tokens.

    Only single-turn soundness, system prompts (when the data has them) and BOS are fatal: multi-turn
    conversations are checked one by one as they are tokenized."""
    if not getattr(tokenizer, "chat_template", None):
        return  # text data needs none; chat data is refused as it is rendered
    problems = template_problems(tokenizer, system=system, multi_turn=False)
    if problems:
        raise HoneError(f"the chat template of {model}: {'; '.join(problems)}", where="data.chat_template",
                        hint="set data.chat_template to a family template (hone models lists them) or a Jinja file")
