"""GRPO: reinforcement fine-tuning against a reward, with group-normalised advantages (Shao et al. 2024).

Each step, for every prompt of the micro-batch, `group_size` completions are sampled with hone's own
decoding loop (`models.generate.sample_groups`: one KV cache, each prompt prefilled once, the whole
group decoded as one batch), scored by a grader spec (`objective.grader`, the RFT path) or a trained
reward model (`objective.reward_model: RUN`, the RLHF path), and turned into advantages
A = (r - mean(group)) / (std(group) + eps). The policy's log-probs of the completions come from one
forward pass in which each prompt is computed once and its KV cache shared by its group
(`group_log_probs`); the reference's from one more without gradients, with the adapter disabled (or
the frozen start adapter, `method.init_from`). The unit the loop normalises by is a completion.

Where hone departs from the GRPO paper (DeepSeekMath, Shao et al. 2024):
- Loss normalisation. The paper averages each completion's per-token losses, then averages over
  completions, so a token of a long completion weighs less than one of a short one.
  `loss_normalization: token` (the default, as DAPO) averages over all completion tokens of the
  micro-batch instead; `sequence` is the paper's; `constant` divides every completion's summed loss
  by `max_new_tokens` (Dr. GRPO, Liu et al. 2025), which has no length bias at all. `sequence` and
  `constant` are exact under gradient accumulation; `token` is exact per micro-batch (its mean is
  weighted by the micro-batch's completions when several are accumulated).
- `scale_rewards: false` drops the division by the group's std (Dr. GRPO), so groups whose rewards
  barely differ are not blown up. The std is the sample std (Bessel-corrected), as TRL computes it.
- One policy update per sampled batch (the paper allows several, mu). pi_old is then the policy
  itself, so old log-probs are the policy's own, detached (as TRL does with one iteration): the ratio
  is exactly 1, nothing is clipped and the gradient is the group-baselined policy gradient plus the
  KL term. (Log-probs recorded while sampling would differ from the training forward by bf16 and
  KV-cache numerics and clip at random.)
- The KL penalty uses the paper's k3 estimator, exp(ref - logp) - (ref - logp) - 1, per token; the
  reference is the starting policy without a copy of its weights. Log-probs (policy and reference)
  are taken under the sampling temperature (logits / T), as TRL does; top_p's truncation of the
  sampling distribution is not reflected in them.
- Outcome rewards only (one scalar per completion); no process supervision, no iterative retraining
  of a reward model.
Validation generates greedily for each validation prompt and reports the mean reward (`val_reward`);
`val_loss` is its negative, since GRPO has no held-out loss.

A grader's errors are not silent: each step records the share of answers it could not grade
(`grader_errors`) and the first few failures (`grader_failures`: where, message); the grader is
checked on training items before training and too many errors stop the run (`grpo_rewards`).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, model_validator

from hone.config.base import Section
from hone.data.batching import Batching
from hone.data.prompts import PROMPT_FORMATS as FORMATS
from hone.data.prompts import prepare_prompts
from hone.methods import METHODS, reference_policy
from hone.models.generate import sample_groups, stop_token_ids
from hone.objectives.base import Objective, ObjectiveKind
from hone.objectives.grpo_rewards import load_reward
from hone.objectives.losses import linear_token_log_probs
from hone.rewards import GraderConfig

ADVANTAGE_EPS = 1e-4
FAILURES_PER_STEP = 5  # grader failures (where, message) a step's metrics record keeps


class Config(Section):
    type: Literal["grpo"] = "grpo"
    grader: GraderConfig | None = None
    """A grader spec (`hone.rewards`) that scores each completion against its prompt's item (RFT)."""
    reward_model: str | None = None
    """A run directory trained with `objective: reward` whose head scores each completion (RLHF)."""
    group_size: int = Field(8, ge=2)
    """Completions sampled per prompt; advantages are relative to the group."""
    temperature: float = Field(1.0, gt=0)
    """Sampling temperature of the replies (the log-probs are taken under it too)."""
    top_p: float = Field(1.0, gt=0, le=1)
    """Nucleus sampling: replies draw from the smallest set of tokens with this much probability."""
    max_new_tokens: int = Field(128, gt=0)
    """The longest reply sampled per prompt."""
    clip_eps: float = Field(0.2, gt=0, lt=1)
    """PPO clip range of the policy ratio."""
    beta: float = Field(0.04, ge=0)
    """Weight of the KL penalty to the reference policy (0: no reference pass at all)."""
    scale_rewards: bool = True
    """Divide advantages by the group's reward std (the paper); false keeps r - mean (Dr. GRPO)."""
    loss_normalization: Literal["token", "sequence", "constant"] = "token"
    """Divide the loss by all reply tokens of the batch (DAPO), per reply then by replies (the paper), or
    by max_new_tokens (Dr. GRPO)."""
    loss_chunk_tokens: int = Field(1024, gt=0)
    """Tokens per chunk of output-head logits (bounds the logits' memory)."""
    max_grader_error_rate: float = Field(0.1, ge=0, le=1, description=(
        "Stop the run (a GraderError naming the grader) when more than this share of the last "
        "`grader_error_window` answers could not be graded; 1 never stops."))
    grader_error_window: int = Field(64, ge=1, description=(
        "How many of the latest graded answers `max_grader_error_rate` is measured over."))

    @model_validator(mode="after")
    def _one_reward(self):
        if (self.grader is None) == (self.reward_model is None):
            raise ValueError("set exactly one of objective.grader (a grader spec) and objective.reward_model "
                             "(a reward run)")
        return self


def check_run(run) -> None:
    """Run-level check: the KL reference is the start policy with its adapter disabled. Methods without
    an adapter have none, and unlike DPO's the reference log-probs cannot be computed before training:
    they score completions sampled during it. `beta: 0` needs no reference."""
    if run.objective.beta > 0 and not METHODS[run.method.type].adapter:
        adapters = ", ".join(name for name, method in METHODS.items() if method.adapter)
        raise ValueError(f"objective.beta: grpo's KL penalty needs a reference policy, the base with the adapter "
                         f"disabled, and method {run.method.type} has no adapter to disable; use an adapter method "
                         f"({adapters}) or objective.beta=0 (no KL penalty)")


def build(config: Config) -> "GRPO":
    return GRPO(config)


def group_advantages(rewards, scale: bool = True, eps: float = ADVANTAGE_EPS):
    """(P, G) rewards -> (P, G) advantages: r - group mean, divided by (group std + eps) when `scale`."""
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    if not scale:
        return centred
    return centred / (rewards.std(dim=1, keepdim=True) + eps)


def grpo_loss(logprobs, old_logprobs, ref_logprobs, advantages, mask, clip_eps: float, beta: float, *,
              normalization: str = "token", max_tokens: int | None = None):
    """The clipped-surrogate loss with a k3 KL penalty, normalised over completion tokens.

    logprobs, old_logprobs, ref_logprobs, mask: (B, T) per completion token (mask 1 on real tokens);
    advantages: (B,). Per token: ratio = exp(logp - old), surrogate = min(ratio A, clip(ratio) A),
    kl = exp(ref - logp) - (ref - logp) - 1, loss = -(surrogate - beta kl). Then `token`: sum / tokens;
    `sequence`: each row's token mean, averaged over rows; `constant`: sum / (B * max_tokens).
    Returns (loss (), kl (B, T) detached, clipped (B, T) bool: where the clipped term was taken).
    """
    mask = mask.to(logprobs.dtype)
    ratio = torch.exp(logprobs - old_logprobs)
    adv = advantages[:, None]
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps) * adv
    surrogate = torch.minimum(unclipped, clipped)
    log_ref_ratio = ref_logprobs - logprobs
    kl = torch.exp(log_ref_ratio) - log_ref_ratio - 1
    per_token = -(surrogate - beta * kl) * mask
    if normalization == "token":
        loss = per_token.sum() / mask.sum().clamp(min=1)
    elif normalization == "sequence":
        loss = (per_token.sum(dim=1) / mask.sum(dim=1).clamp(min=1)).mean()
    elif normalization == "constant":
        loss = per_token.sum() / (mask.shape[0] * max_tokens)
    else:
        raise ValueError(f"unknown loss normalization {normalization!r}; expected token, sequence or constant")
    return loss, (kl * mask).detach(), (clipped < unclipped) & mask.bool()


def group_log_probs(model, prompts: list[list[int]], completions: list[list[int]], temperature: float,
                    chunk_tokens: int, pad_id: int):
    """Per-token log-probs (B, T) of the completions under `temperature`, and their mask (B, T).

    Completion i continues prompt i // G (G = len(completions) // len(prompts)). Each prompt goes through
    the decoder once and its KV cache (with gradients) is repeated for its group, so a group of G costs
    one prompt plus G completions rather than G (prompt + completion); the gradient through the shared
    prompt is the sum over the group, as with G separate copies. Prompts are left-padded and completions
    right-padded under a 2D mask, as in the decoding loop (`models.generate.decode_rows`).
    """
    from transformers import DynamicCache

    group = len(completions) // len(prompts)
    decoder = model.get_decoder()
    width = max(len(p) for p in prompts)
    real = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    positions = (real.cumsum(1) - 1).clamp(min=0)
    cache = DynamicCache()
    out = decoder(input_ids=torch.tensor([[pad_id] * (width - len(p)) + p for p in prompts]), attention_mask=real,
                  position_ids=positions, past_key_values=cache, use_cache=True)
    hidden = out.last_hidden_state[:, -1:].repeat_interleave(group, dim=0)  # (B, 1, H): predicts token 0
    lengths = torch.tensor([len(c) for c in completions])
    steps = torch.arange(int(lengths.max()) - 1)
    if len(steps) > 0:  # each completion but its last token, after its prompt's cache
        cache.batch_repeat_interleave(group)
        inputs = torch.tensor([c[:-1] + [pad_id] * (len(steps) + 1 - len(c)) for c in completions])
        mask = torch.cat([real.repeat_interleave(group, dim=0), (steps[None, :] < lengths[:, None] - 1).long()], 1)
        out = decoder(input_ids=inputs, attention_mask=mask, past_key_values=cache, use_cache=True,
                      position_ids=positions[:, -1:].repeat_interleave(group, dim=0) + 1 + steps)
        hidden = torch.cat([hidden, out.last_hidden_state], dim=1)  # (B, max length, H)
    keep = torch.arange(hidden.shape[1])[None, :] < lengths[:, None]
    targets = torch.tensor([t for c in completions for t in c])
    head = model.get_output_embeddings().weight
    flat = linear_token_log_probs(hidden[keep] / temperature, head, targets, chunk_tokens)
    out = flat.new_zeros(keep.shape)
    out[keep] = flat
    return out, keep


class GRPO(Objective):
    """Prompts in; sample, score, and the clipped policy-gradient loss out. The unit is a completion."""

    name = "grpo"

    def __init__(self, config: Config) -> None:
        self.config = config
        self.tokenizer = None
        self.reward = None

    def prepare(self, data_config, tokenizer, seed: int):
        self.tokenizer = tokenizer
        return prepare_prompts(data_config, tokenizer, seed=seed, objective=self.name)

    def length(self, unit) -> int:
        return self.config.group_size * (len(unit.ids) + self.config.max_new_tokens)

    def collate(self, units, batching: Batching) -> dict:
        """No tensors yet: the completions are sampled in `loss`, with the model as it is at that step."""
        return {"prompts": list(units), "pad_id": batching.pad_id, "segmented": batching.segmented, "validation": False,
                "n_tokens": sum(len(u.ids) for u in units) * self.config.group_size}

    def validation_batches(self, units, batching: Batching, per_batch: int = 16) -> list[dict]:
        return [{**self.collate(units[i:i + per_batch], batching), "validation": True}
                for i in range(0, len(units), per_batch)]

    def attach(self, model, data):
        self.reward = load_reward(self.config)
        self.reward.check(data.train)  # a grader that fails on the training items fails before training
        return model

    def units(self, batch) -> int:
        return len(batch["prompts"]) * (1 if batch["validation"] else self.config.group_size)

    def sample(self, model, prompts, group_size: int, temperature: float):
        """Completions (token lists, through the stop token), sampled in eval mode."""
        training = model.training
        model.eval()
        try:
            return sample_groups(model, [u.ids for u in prompts], group_size, pad_id=self.tokenizer.pad_token_id,
                                 stop=stop_token_ids(model, self.tokenizer), max_new_tokens=self.config.max_new_tokens,
                                 temperature=temperature, top_p=self.config.top_p)
        finally:
            model.train(training)

    def texts(self, completions) -> list[str]:
        return [self.tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in completions]

    def loss(self, model, batch):
        if batch["validation"]:
            return self.validate(model, batch)
        c, prompts = self.config, batch["prompts"]
        completions = self.sample(model, prompts, c.group_size, c.temperature)
        owners = [u for u in prompts for _ in range(c.group_size)]
        scores, failures = self.reward(self.texts(completions), owners)
        rewards = torch.tensor(scores, dtype=torch.float32).view(len(prompts), c.group_size)
        advantages = group_advantages(rewards, c.scale_rewards).view(-1)

        ids = [u.ids for u in prompts]
        batch["n_tokens"] = sum(map(len, ids)) + sum(map(len, completions))  # what the step processed, for tokens/s
        logprobs, mask = self.log_probs(model, ids, completions)
        if c.beta > 0:
            with torch.no_grad(), reference_policy(model):
                ref, _ = self.log_probs(model, ids, completions)
        else:
            ref = logprobs.detach()
        # One update per sampled batch: the policy that sampled is this one, so pi_old is its own log-probs
        # (detached), from the same forward: the ratio is exactly 1 and the gradient the policy gradient.
        loss, kl, clipped = grpo_loss(logprobs, logprobs.detach(), ref, advantages.to(logprobs.dtype), mask,
                                      c.clip_eps, c.beta, normalization=c.loss_normalization,
                                      max_tokens=c.max_new_tokens)
        loss_sum = loss * len(completions)
        stds = rewards.std(dim=1)
        return loss_sum, {"loss_sum": loss_sum.item(), "completions": len(completions), "reward_sum": sum(scores),
                          "reward_std_sum": stds.sum().item(), "groups": len(prompts),
                          "zero_std_groups": int((stds == 0).sum()), "kl_sum": kl.sum().item(),
                          "clipped": int(clipped.sum()), "tokens": int(mask.sum()), "failures": failures}

    def validate(self, model, batch):
        """Greedy completions of the validation prompts and their mean reward (loss = -reward)."""
        completions = self.sample(model, batch["prompts"], 1, 0.0)
        scores, failures = self.reward(self.texts(completions), batch["prompts"])
        total = sum(scores)
        return torch.tensor(-total), {"loss_sum": -total, "reward_sum": total,
                                      "completions": len(scores), "failures": failures,
                                      "tokens": sum(len(ids) for ids in completions)}

    def log_probs(self, model, prompts, completions):
        return group_log_probs(model, prompts, completions, self.config.temperature, self.config.loss_chunk_tokens,
                               self.tokenizer.pad_token_id)

    def report(self, parts: list[dict], loss: float, *, validation: bool) -> dict:
        completions = max(sum(p["completions"] for p in parts), 1)
        out = {"reward": sum(p["reward_sum"] for p in parts) / completions,
               "completion_length": sum(p["tokens"] for p in parts) / completions}
        if self.config.grader is not None:
            failures = [f for p in parts for f in p["failures"]]
            out["grader_errors"] = len(failures) / completions
            if failures and not validation:  # the worker turns them into job events
                out["grader_failures"] = failures[:FAILURES_PER_STEP]
        if validation:
            return out
        groups = max(sum(p["groups"] for p in parts), 1)
        tokens = max(sum(p["tokens"] for p in parts), 1)
        return {**out, "reward_std": sum(p["reward_std_sum"] for p in parts) / groups,
                "zero_std_fraction": sum(p["zero_std_groups"] for p in parts) / groups,
                "kl": sum(p["kl_sum"] for p in parts) / tokens,
                "clip_fraction": sum(p["clipped"] for p in parts) / tokens}


KIND = ObjectiveKind("grpo", Config, build, FORMATS, check_run=check_run)
