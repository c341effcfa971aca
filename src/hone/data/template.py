"""Render examples with the model's chat template and mark which tokens are training targets.

The mask comes from character spans, not from token-level guesses: each assistant turn spans from
the end of the rendered prefix `messages[:i]` + generation prompt to the end of the rendered
`messages[:i+1]` (trailing whitespace dropped), so the end-of-turn token (`<|im_end|>`) is learned
and the newline after it is not. This only works when every prefix rendering is a prefix of the
full rendering; templates that rewrite earlier turns (e.g. drop reasoning from all but the last
reply) break that, and we raise instead of silently training on the wrong tokens. The text is
tokenized with a cut at each reply's start, so the tokens before a reply are exactly the tokens a
generation request for that conversation starts from (`prompt_ids`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from hone.data.formats import Example
from hone.data.tools import hone_rendering, native_messages, renders_tools_natively, template_message, uses_tools
from hone.data.vision import align_labels, example_images, expand_images, processor_for
from hone.errors import HoneError

IGNORE = -100  # label of a token that is not a training target (the Hugging Face convention)


@dataclass
class TokenizedExample:
    """Token ids and labels (labels[t] = input_ids[t] for targets, else -100; not shifted)."""

    input_ids: list[int]
    labels: list[int]
    where: str
    truncated: bool = False
    untrained_replies: int = 0  # weight-1 replies the template re-renders once a later one follows
    images: list = field(default_factory=list)  # the example's pictures (PIL), for the collated pixel inputs
    token_inputs: dict = field(default_factory=dict)  # other per-token model inputs (token type ids), like labels
    image_tokens: int = 0  # tokens the images take (image tokens and their wrappers)
    images_end: int = 0  # index just past the images' last token: truncation may not cut before it
    processor: object = None  # a vision-language model's processor (lays out a batch's pixels; rows of one example)


def tokenize_example(
    example: Example, tokenizer, *, loss_on: str = "assistant", max_length: int | None = None,
    reasoning: str = "train",
) -> TokenizedExample:
    """Tokenize one example; targets are weight-1 assistant turns (`loss_on="assistant"`) or every token ("all").

    Text examples get eos appended and every token is a target. Examples longer than `max_length`
    are cut on the right and marked `truncated`. `reasoning="drop"` leaves assistant reasoning out;
    "train" renders it, and refuses a template that would silently leave it out.
    """
    if loss_on not in ("assistant", "all"):
        raise HoneError(f"loss_on is {loss_on!r}; expected 'assistant' or 'all'", where=example.where)
    if example.messages and reasoning == "drop":
        example = replace(example, messages=[{k: v for k, v in m.items() if k != "reasoning"}
                                             for m in example.messages])
    if example.images:
        return tokenize_with_images(example, tokenizer, loss_on=loss_on, max_length=max_length)
    untrained = 0
    if example.text is not None:
        input_ids = tokenizer(example.text, add_special_tokens=False)["input_ids"] + [eos_id(tokenizer)]
        labels = list(input_ids)
    elif loss_on == "all":
        full = render(example.messages or [], tokenizer, where=example.where, tools=example.tools)
        input_ids = list(tokenizer(full, add_special_tokens=False)["input_ids"])
        labels = list(input_ids)
    else:
        input_ids, labels, untrained = tokenize_chat(example, tokenizer)
    truncated = max_length is not None and len(input_ids) > max_length
    if truncated:
        input_ids, labels = input_ids[:max_length], labels[:max_length]
    return TokenizedExample(input_ids=input_ids, labels=labels, where=example.where, truncated=truncated,
                            untrained_replies=untrained, processor=processor_for(tokenizer))


def tokenize_with_images(example: Example, tokenizer, *, loss_on: str, max_length: int | None) -> TokenizedExample:
    """A conversation with images: masked as text, expanded by the model's processor (`hone.data.vision`).
    Truncation may cut the end of the text, never into an image's tokens."""
    processor = processor_for(tokenizer)
    if processor is None:
        raise HoneError("the example holds images, but the model has no vision tower", where=example.where,
                        hint="use a vision-language model (one whose config has a vision_config), or drop the images")
    if loss_on == "all":
        full = render(example.messages or [], tokenizer, where=example.where, tools=example.tools)
        text_ids = list(tokenizer(full, add_special_tokens=False)["input_ids"])
        text_labels, untrained = list(text_ids), 0
    else:
        text_ids, text_labels, untrained = tokenize_chat(example, tokenizer)
        full = render(example.messages or [], tokenizer, where=example.where, tools=example.tools)
    images = example_images(example)
    ids, token_inputs = expand_images(processor, full, images)
    labels, image_tokens, images_end = align_labels(text_ids, text_labels, ids, example.where)
    truncated = max_length is not None and len(ids) > max_length
    if truncated:
        if images_end > max_length:
            raise HoneError(f"the example's images end at token {images_end}, beyond "
                            f"data.max_length={max_length}; truncating would cut an image", where=example.where,
                            hint="raise data.max_length, or use fewer or smaller images")
        ids, labels = ids[:max_length], labels[:max_length]
        token_inputs = {key: values[:max_length] for key, values in token_inputs.items()}
    return TokenizedExample(ids, labels, example.where, truncated=truncated, untrained_replies=untrained,
                            images=images, token_inputs=token_inputs, image_tokens=image_tokens,
                            images_end=images_end, processor=processor)


def tokenize_chat(example: Example, tokenizer) -> tuple[list[int], list[int], int]:
    """Token ids of the rendered conversation, labels that keep only weight-1 assistant turns, and how
    many weight-1 replies stay untrained because the template re-renders them (`assistant_spans`)."""
    messages = example.messages or []
    full = render(messages, tokenizer, where=example.where, tools=example.tools)
    check_rendered(messages, full, example.where)
    spans = assistant_spans(messages, full, tokenizer, where=example.where, tools=example.tools)
    input_ids, starts = tokenize_cut(full, [start for _, (start, _) in spans], tokenizer)
    trained = [span for i, span in spans if messages[i]["weight"] == 1]
    labels = [
        token if any(start <= offset < end for start, end in trained) else IGNORE
        for token, offset in zip(input_ids, starts)
    ]
    located = {i for i, _ in spans}
    untrained = sum(1 for i, m in enumerate(messages) if m["role"] == "assistant" and m["weight"] == 1
                    and i not in located)
    return input_ids, labels, untrained


def tokenize_cut(text: str, cuts: list[int], tokenizer) -> tuple[list[int], list[int]]:
    """Token ids and start offsets of `text`, tokenized so that no token crosses a cut (a reply's start).

    BPE can merge the generation prompt's last character with a reply's first ones (SmolLM2 merges
    "\n" + "\n" or "\n" + "  "), which would give training a token that generation never sees after
    the prompt and would drop the reply's first characters from the loss. Cutting there makes the
    tokens before each reply exactly the generation prompt's tokens. If cutting changes the text
    itself (a tokenizer that prepends a space to every piece), the uncut tokenization is used.
    """
    whole = tokenize_pieces(text, [], tokenizer)
    cut = tokenize_pieces(text, cuts, tokenizer)
    if cut[0] == whole[0] or tokenizer.decode(cut[0]) == tokenizer.decode(whole[0]):
        return cut
    return whole


def tokenize_pieces(text: str, cuts: list[int], tokenizer) -> tuple[list[int], list[int]]:
    """Token ids and start offsets of `text` tokenized piece by piece between the given cut positions."""
    bounds = [0, *sorted(set(cuts)), len(text)]
    ids: list[int] = []
    starts: list[int] = []
    for begin, end in zip(bounds, bounds[1:]):
        if begin == end:
            continue
        try:
            encoded = tokenizer(text[begin:end], add_special_tokens=False, return_offsets_mapping=True)
        except NotImplementedError as error:  # slow (pure Python) tokenizers have no offsets
            raise HoneError(
                "the tokenizer cannot report character offsets, which the loss mask needs",
                hint="use the model's fast tokenizer (tokenizer.json), or set loss_on='all'",
            ) from error
        ids += encoded["input_ids"]
        starts += [begin + offset[0] for offset in encoded["offset_mapping"]]
    return ids, starts


def assistant_spans(messages: list[dict], full: str, tokenizer, *, where: str = "",
                    tools: list[dict] | None = None) -> list[tuple[int, tuple[int, int]]]:
    """(message index, (start, end)) character span in `full` of each assistant turn's reply (its text and
    tool calls) and end token; tool results and the tools listing fall outside every span.

    A reply that the template renders differently once a later reply follows (Qwen3 drops its
    <think> block, GPT-OSS ends it with <|end|> instead of <|return|>) gets no span: what it would
    train is not what the model sees or generates, so it stays context; the last reply must be sound."""
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = render(messages[:i], tokenizer, add_generation_prompt=True, where=where, tools=tools)
        through = render(messages[: i + 1], tokenizer, where=where, tools=tools)
        longer = (lambda: full) if i + 1 < len(messages) else (lambda: continued(messages, tokenizer, tools))
        through = without_closing_eos(through, longer, message["content"], tokenizer)
        mismatch = next((prefix for prefix in (before, through) if not full.startswith(prefix)), None)
        if mismatch is not None and any(m["role"] == "assistant" for m in messages[i + 1:]):
            continue  # re-rendered once a later reply follows: context only (see `untrained_replies`)
        if mismatch is not None:
            raise prefix_error(i, mismatch, full, where)
        start, end = len(before), len(through.rstrip())
        if message["content"].strip() not in full[start:end]:
            raise HoneError(
                f"the chat template does not render assistant message {i} verbatim after the generation prompt",
                where=where,
                hint="use a template whose generation prompt is exactly what precedes each assistant reply",
            )
        spans.append((i, (start, end)))
    return spans


def without_closing_eos(through: str, longer, reply: str, tokenizer) -> str:
    """`through` less the eos a template appends only to a conversation's very end (Phi-3 does), when
    that is what keeps it from being a prefix of a longer conversation (`longer()` renders one) and the
    reply already has its own end-of-turn token before it, so the reply's span ends at that token in
    every turn. (An eos right after the reply is the end of turn itself, as GPT-OSS's <|return|> is.)"""
    eos = tokenizer.eos_token or ""
    trimmed = through.rstrip()
    if not (eos and trimmed.endswith(eos)):
        return through
    rest = trimmed[: -len(eos)]
    if rest.rstrip().endswith(reply.strip()):
        return through
    text = longer()
    return rest if not text.startswith(through) and text.startswith(rest) else through


def continued(messages: list[dict], tokenizer, tools: list[dict] | None = None) -> str:
    """The conversation rendered with one more user turn (or as it is, where the template refuses that)."""
    try:
        return render([*messages, {"role": "user", "content": "..."}], tokenizer, tools=tools)
    except HoneError:
        return render(messages, tokenizer, tools=tools)


def check_rendered(messages: list[dict], full: str, where: str) -> None:
    """Refuse a system prompt or reasoning that the template silently leaves out of the rendering."""
    for i, message in enumerate(messages):
        if message["role"] == "system" and not rendered_system(message["content"], full):
            raise HoneError(f"the chat template silently drops the system prompt (message {i})", where=where,
                            hint="fold the system prompt into the first user message, or use a template that "
                            "renders it (data.chat_template)")
        if message.get("reasoning") and message["reasoning"].strip() not in full:
            raise HoneError(
                f"the chat template does not render the reasoning of message {i}, so it would not be trained",
                where=where,
                hint="set data.reasoning=drop to train without it, or a template that renders reasoning "
                "(data.chat_template=qwen3 or gpt-oss)")


def rendered_system(content: str, full: str) -> bool:
    """Whether a system prompt appears in the rendering, apart from whitespace and the mode switches
    (`/think`, `/no_think`) that templates such as SmolLM3's take out of it."""
    words = " ".join(word for word in content.split() if not word.startswith("/"))
    return words in " ".join(full.split())


def prefix_error(index: int, prefix: str, full: str, where: str) -> HoneError:
    """The error for a template whose rendering of the first turns is not a prefix of the whole."""
    at = next((k for k, (a, b) in enumerate(zip(prefix, full)) if a != b), min(len(prefix), len(full)))
    return HoneError(
        f"the chat template renders the conversation up to message {index} differently from the start of "
        f"the whole conversation (first difference at character {at}: {prefix[at:at + 30]!r} vs {full[at:at + 30]!r}), "
        "so assistant turns cannot be located for the loss mask",
        where=where,
        hint="use a template that renders earlier turns the same whatever follows them, or set loss_on='all'",
    )


def prompt_ids(messages: list[dict], tokenizer, *, chat_template: str | None = None,
               tools: list[dict] | None = None) -> list[int]:
    """Token ids a generation request starts from: the conversation (and `tools`) plus the assistant
    generation prompt (rendered with `chat_template` when given, e.g. an adapter's recorded one, else the
    tokenizer's). Conversations with images are prompted with their pixels
    (`hone.models.generate.generate_with_images`), never as ids alone."""
    if any(m.get("images") for m in messages):
        raise HoneError("this path prompts with token ids alone, and the conversation holds images",
                        where="messages", hint="objectives that sample replies (grpo, distill) take text prompts "
                        "only; train on images with sft, dpo or kto")
    text = render(messages, tokenizer, add_generation_prompt=True, chat_template=chat_template, tools=tools)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def text_prompt_ids(text: str, tokenizer) -> list[int]:
    """Token ids of a plain-text prompt (no chat template), with the special tokens the tokenizer adds
    to a text of its own (a base model's BOS): how a base model is prompted."""
    return list(tokenizer(text)["input_ids"])


def plain_prompt(messages: list[dict]) -> str:
    """A conversation as plain text for a model without a chat template (a base model continues it):
    each message's content as a paragraph, ending with a newline so the answer starts on its own line."""
    return "\n\n".join(m["content"] for m in messages if m["content"]) + "\n"


def render(messages: list[dict], tokenizer, *, add_generation_prompt: bool = False, where: str = "",
           chat_template: str | None = None, tools: list[dict] | None = None) -> str:
    """The chat template applied to role, content and reasoning (hone's other keys never reach it).

    Reasoning goes in under both names templates read: `reasoning_content` and `thinking`. A
    conversation with `tools`, tool calls or tool results goes to a template that renders tools itself
    in its own shape, and to any other template in hone's rendering (`hone.data.tools`).
    """
    template = chat_template or getattr(tokenizer, "chat_template", None)
    if not template:
        raise HoneError(
            "the tokenizer has no chat template, so chat examples cannot be rendered",
            where=where,
            hint="use an instruct/chat model, or give the data as {\"text\": ...} records",
        )

    def apply(conversation: list[dict], listed: list[dict] | None) -> str:
        return tokenizer.apply_chat_template(conversation, tools=listed, tokenize=False,
                                             add_generation_prompt=add_generation_prompt, chat_template=chat_template)

    native = None
    if uses_tools(messages, tools):
        native = template_renders_tools(template, tokenizer)
    try:
        if native:
            return apply(native_messages(messages), tools or None)
        if native is False:
            return apply(hone_rendering(messages, tools), None)
        return apply([template_message(m, template_content(m)) for m in messages], None)
    except Exception as error:  # jinja raises arbitrary exceptions (e.g. raise_exception in the template)
        raise HoneError(
            f"the chat template failed to render this conversation: {error}",
            where=where,
            hint="check the message roles and order against what the model's template accepts"
            + ("; hone renders tool results as 'tool' turns, which this template may not take" if native is False
               else ""),
        ) from error


def template_content(message: dict) -> str | list[dict]:
    """What a template reads as a message's content: its text, or its parts in order where it holds images
    (`{"type": "image"}` where each image goes, which the template renders as the model's placeholder)."""
    if "parts" not in message:
        return message["content"]
    return [{"type": "image"} if part["type"] == "image" else {"type": "text", "text": part["text"]}
            for part in message["parts"]]


NATIVE_TOOLS: dict[str, bool] = {}  # template text -> whether it renders tools itself


def template_renders_tools(template: str, tokenizer) -> bool:
    """Whether `template` renders tools itself (probed once per template, see `renders_tools_natively`)."""
    if template not in NATIVE_TOOLS:
        NATIVE_TOOLS[template] = renders_tools_natively(
            lambda conversation, listed: tokenizer.apply_chat_template(conversation, tools=listed, tokenize=False,
                                                                       chat_template=template))
    return NATIVE_TOOLS[template]


def eos_id(tokenizer) -> int:
    """The tokenizer's end-of-sequence id, or a HoneError when it has none."""
    if tokenizer.eos_token_id is None:
        raise HoneError("the tokenizer has no eos token", hint="set tokenizer.eos_token before tokenizing text records")
    return tokenizer.eos_token_id
