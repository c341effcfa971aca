"""Distillation from a teacher: on-policy GKD with a hone model, or sequence-level on any endpoint's answers.

- `on_policy` (Agarwal et al. 2024, GKD with lambda = 1): each step the student samples a reply to
  every prompt; the teacher, a hone model loaded beside it (a shipped name, a model directory or a
  run directory), scores the same tokens, and the loss is the generalised Jensen-Shannon divergence
  between their next-token distributions on each reply token (`generalized_jsd`), averaged per
  reply. The student learns on its own samples, so it is corrected where it actually goes.
- `sequence`: the teacher answers every training prompt once, before the first step, and the
  student is fine-tuned on those answers (plain next-token cross-entropy, like SFT). The teacher is
  any OpenAI-compatible endpoint (`teacher: http://host/v1`, `teacher_model`; the key is
  OPENAI_API_KEY) or a hone model.
`mode: auto` is on_policy for a hone teacher whose tokenizer is the student's and sequence otherwise:
token distributions over different vocabularies cannot be compared, so a teacher with another
tokenizer is said so in the data report and taught at the sequence level.
Where hone departs from GKD: one reply per prompt per step, always the student's (lambda = 1); the
teacher's distribution is taken at the sampling temperature, as the student's.
Not yet: the sequence path's answers are not kept in the run directory, so a resumed run asks the
teacher again (the same answers only at temperature 0). `hone distill` is the offline version: it writes
an endpoint's answers to a training file, with their provenance, and trains on that file.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field, model_validator

from hone.config.base import Section
from hone.data.batching import Batching
from hone.data.collate import to_device
from hone.data.formats import Example
from hone.data.pack import collate
from hone.data.prepare import PreparedData
from hone.data.prompts import PROMPT_FORMATS as FORMATS
from hone.data.prompts import prepare_prompts
from hone.data.template import IGNORE, TokenizedExample, tokenize_example
from hone.errors import ConfigError, DataError
from hone.models.generate import sample_groups, stop_token_ids
from hone.objectives.base import Objective, ObjectiveKind
from hone.objectives.losses import head_matmul_dtype
from hone.objectives.sft import SFT, collate_packed, hidden_states, validation_rows
from hone.objectives.teacher import endpoint_answers, load_teacher, model_answers, teacher_tokenizer


class Config(Section):
    type: Literal["distill"] = "distill"
    teacher: str = Field(description="The teacher: a shipped model name, a model directory or a run directory "
                                     "(a hone model), or the base URL of an OpenAI-compatible endpoint "
                                     "(http(s)://host/v1).")
    teacher_model: str | None = Field(None, description="The endpoint's model name (a URL teacher only).")
    mode: Literal["auto", "on_policy", "sequence"] = Field("auto", description=(
        "on_policy: generalised JSD to the teacher's token distributions on the student's own samples (a "
        "hone teacher with the student's tokenizer); sequence: fine-tune on the teacher's answers; auto: "
        "on_policy where it can, else sequence."))
    beta: float = Field(0.5, ge=0, le=1, description=(
        "The generalised JSD's interpolation: 0 is KL(teacher || student) (forward), 1 is KL(student || "
        "teacher) (reverse), between them the JSD against the mixture beta teacher + (1 - beta) student."))
    temperature: float = Field(1.0, ge=0, description="Sampling temperature of the student's replies (on_policy, "
                                                      "> 0) or of the teacher's answers (sequence; 0: greedy).")
    max_new_tokens: int = Field(128, gt=0, description="The longest reply sampled, from student or teacher.")
    loss_chunk_tokens: int = Field(1024, gt=0, description="Target tokens per chunk of output-head logits.")

    @model_validator(mode="after")
    def _teacher_fits_mode(self):
        if is_endpoint(self.teacher):
            if self.mode == "on_policy":
                raise ValueError("mode on_policy needs the teacher's token distributions, and an endpoint returns "
                                 "text; use mode sequence (or auto) with an endpoint, or a hone model as teacher")
            if not self.teacher_model:
                raise ValueError("an endpoint teacher needs objective.teacher_model, the model name it serves")
        elif self.teacher_model:
            raise ValueError("teacher_model names an endpoint's model; the teacher here is a hone model")
        return self


def build(config: Config) -> "Distill":
    return Distill(config)


def is_endpoint(teacher: str) -> bool:
    return teacher.startswith(("http://", "https://"))


def generalized_jsd(student_logits, teacher_logits, beta: float):
    """Per-token generalised JSD (GKD's eq. 1); logits (N, V) -> (N,).

    S = softmax(student), T = softmax(teacher), M = beta T + (1 - beta) S:
    beta KL(T || M) + (1 - beta) KL(S || M); at beta = 0 KL(T || S), at beta = 1 KL(S || T).
    """
    s = torch.log_softmax(student_logits.float(), dim=-1)
    t = torch.log_softmax(teacher_logits.float(), dim=-1)
    if beta == 0:
        return (t.exp() * (t - s)).sum(-1)
    if beta == 1:
        return (s.exp() * (s - t)).sum(-1)
    m = torch.logsumexp(torch.stack([s + math.log(1 - beta), t + math.log(beta)]), dim=0)
    return beta * (t.exp() * (t - m)).sum(-1) + (1 - beta) * (s.exp() * (s - m)).sum(-1)


def reply_logits(model, batch, vocab: int, temperature: float):
    """The output-head logits (N, vocab) / temperature at every reply token of a collated batch, in fp32;
    the matmul runs in `head_matmul_dtype` (autocast's where it is on)."""
    hidden = hidden_states(model, batch)
    keep = batch["targets"].ne(IGNORE)
    head = model.get_output_embeddings().weight[:vocab]
    device = hidden.device.type
    dtype = head_matmul_dtype(device, hidden.dtype)
    with torch.autocast(device, enabled=False):
        return (hidden[keep].to(dtype) @ head.to(dtype).T).float() / temperature


class Distill(Objective):
    """Prompts in; the student's samples scored against the teacher (on_policy), or SFT on the teacher's
    answers (sequence). The unit is a reply (on_policy) or a target token (sequence)."""

    name = "distill"

    def __init__(self, config: Config) -> None:
        self.config = config
        self.mode = None if config.mode == "auto" else config.mode
        self.tokenizer = None
        self.teacher = None
        self.sft = SFT(config.loss_chunk_tokens)

    def prepare(self, data_config, tokenizer, seed: int):
        c, notes = self.config, []
        self.tokenizer = tokenizer
        if not is_endpoint(c.teacher):
            same = teacher_tokenizer(c.teacher).get_vocab() == tokenizer.get_vocab()
            if not same and self.mode == "on_policy":
                raise ConfigError(f"the teacher {c.teacher} has another tokenizer than the student, so their token "
                                  "distributions cannot be compared", where="objective.mode",
                                  hint="use objective.mode=sequence (or auto): the student learns the teacher's answers")
            if not same:
                notes.append(f"teacher {c.teacher} has another tokenizer than the student: distilling on its "
                             "answers (sequence level) instead of its token distributions")
            self.mode = self.mode or ("on_policy" if same else "sequence")
        self.mode = self.mode or "sequence"
        if self.mode == "on_policy" and c.temperature == 0:
            raise ConfigError("on-policy distillation compares distributions at the sampling temperature, and 0 has "
                              "none", where="objective.temperature", hint="set objective.temperature > 0, e.g. 1")
        prompts = prepare_prompts(data_config, tokenizer, seed=seed, objective=self.name)
        if self.mode == "on_policy":
            prompts.notes += notes
            prompts.describe += f"; on-policy distillation from {c.teacher}"
            return prompts
        train, validation = (self.teacher_examples(units, data_config, tokenizer, seed)
                             for units in (prompts.train, prompts.validation))
        notes += prompts.notes + [f"{len(train) + len(validation)} teacher answers from {c.teacher}"
                                  + (f" ({c.teacher_model})" if c.teacher_model else "")]
        return PreparedData(train, validation, notes)

    def teacher_examples(self, units, data_config, tokenizer, seed: int) -> list[TokenizedExample]:
        """The teacher's answer to each prompt, tokenized as an SFT example (loss on the answer)."""
        if not units:
            return []
        c = self.config
        conversations = [u.messages for u in units]
        if is_endpoint(c.teacher):
            answers = endpoint_answers(c.teacher, c.teacher_model, conversations, max_new_tokens=c.max_new_tokens,
                                       temperature=c.temperature, api_key=None)
        else:
            answers = model_answers(c.teacher, conversations, max_new_tokens=c.max_new_tokens,
                                    temperature=c.temperature, seed=seed)
        examples = [Example(format="chat", messages=[*u.messages, {"role": "assistant", "content": a, "weight": 1}],
                            where=u.where) for u, a in zip(units, answers) if a]
        if not examples:
            raise DataError(f"the teacher answered none of the {len(units)} prompts (every answer was empty)",
                            where=c.teacher, hint="check the teacher (objective.teacher_model), or raise "
                            "objective.max_new_tokens")
        return [tokenize_example(e, tokenizer, max_length=data_config.max_length) for e in examples]

    @property
    def samples(self) -> bool:
        return self.mode == "on_policy"

    def length(self, unit) -> int:
        return len(unit.ids) + self.config.max_new_tokens if self.mode == "on_policy" else len(unit.input_ids)

    def collate(self, units, batching: Batching) -> dict:
        if self.mode == "sequence":
            return collate_packed(units, batching)
        return {"prompts": list(units), "validation": False,
                "n_tokens": sum(len(u.ids) for u in units) + len(units) * self.config.max_new_tokens}

    def validation_batches(self, units, batching: Batching, per_batch: int = 16) -> list[dict]:
        if self.mode == "sequence":
            return validation_rows(units, batching)
        return [{**self.collate(units[i:i + per_batch], batching), "validation": True}
                for i in range(0, len(units), per_batch)]

    def attach(self, model, data):
        """On-policy: load the teacher beside the student (frozen); the sequence path needs none now."""
        if self.mode == "on_policy":
            self.teacher = load_teacher(self.config.teacher)[0]
        return model

    def units(self, batch) -> int:
        return self.sft.units(batch) if self.mode == "sequence" else len(batch["prompts"])

    def sample(self, model, prompts, temperature: float):
        """The student's replies (token lists, through the stop token), sampled in eval mode."""
        training = model.training
        model.eval()
        try:
            return sample_groups(model, [u.ids for u in prompts], 1, pad_id=self.tokenizer.pad_token_id,
                                 stop=stop_token_ids(model, self.tokenizer), max_new_tokens=self.config.max_new_tokens,
                                 temperature=temperature, top_p=1.0)
        finally:
            model.train(training)

    def loss(self, model, batch):
        if self.mode == "sequence":
            return self.sft.loss(model, batch)
        c, prompts = self.config, batch["prompts"]
        replies = self.sample(model, prompts, 0.0 if batch["validation"] else c.temperature)
        sequences = [TokenizedExample(u.ids + r, [IGNORE] * len(u.ids) + r, u.where) for u, r in zip(prompts, replies)]
        device = next(model.parameters()).device
        tensors = to_device(collate(sequences, None, self.tokenizer.pad_token_id), device)
        batch["n_tokens"] = sum(len(s.input_ids) for s in sequences)
        vocab = len(self.tokenizer)
        if next(self.teacher.parameters()).device != device:
            self.teacher.to(device)
        with torch.no_grad():
            teacher = reply_logits(self.teacher, tensors, vocab, c.temperature)
        per_token = generalized_jsd(reply_logits(model, tensors, vocab, c.temperature), teacher, c.beta)
        owner = tensors["targets"].ne(IGNORE).nonzero()[:, 0]  # one reply per row
        counts = torch.bincount(owner, minlength=len(replies)).clamp(min=1)
        per_reply = per_token.new_zeros(len(replies)).index_add(0, owner, per_token) / counts
        loss_sum = per_reply.sum()
        return loss_sum, {"loss_sum": loss_sum.item(), "replies": len(replies),
                          "tokens": sum(len(r) for r in replies)}

    def report(self, parts: list[dict], loss: float, *, validation: bool) -> dict:
        if self.mode == "sequence":
            return self.sft.report(parts, loss, validation=validation)
        return {"reply_length": sum(p["tokens"] for p in parts) / max(sum(p["replies"] for p in parts), 1)}


KIND = ObjectiveKind("distill", Config, build, FORMATS)
