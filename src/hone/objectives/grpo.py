"""GRPO: reinforcement fine-tuning against a reward, with group-normalised advantages (Shao et al. 2024).

Each step, for every prompt of the micro-batch, `group_size` completions are sampled with hone's own
decoding loop (`models.generate.sample_groups`: one KV cache, each prompt prefilled once, the whole
group decoded as one batch), scored by a grader spec (`objective.grader`, the RFT path) or a trained
reward model (`objective.reward_model: RUN`, the RLHF path), and turned into advantages
A = (r - mean(group)) / (std(group) + eps). The policy's log-probs of the completions come from one
forward pass in which each prompt is computed once and its KV cache shared by its group
(`group_log_probs`); the reference's from one more without gradients, with the adapter disabled (or
the frozen start adapter, `method.init_from`). The unit the loop normalises by is a completion.

Loss variants (`objective.loss`), each a pure function below with its defaults in `LOSS_DEFAULTS`:
- `grpo` (DeepSeekMath, Shao et al. 2024): per-token clipped ratio, each completion's token mean
  averaged over completions (`loss_normalization: sequence`), so a token of a long completion weighs
  less than one of a short one.
- `dapo` (Yu et al. 2025): clip-higher (`epsilon_high` 0.28 above `epsilon_low` 0.2), token-level
  mean over the micro-batch (`token`; exact per micro-batch, weighted by its completions under
  gradient accumulation), dynamic sampling (groups whose rewards are all equal leave the loss; hone
  does not sample more to refill the batch) and the soft overlong penalty on rewards
  (`overlong_buffer`).
- `dr_grpo` (Liu et al. 2025): no division by the group's std (`scale_rewards: false`) and every
  completion's summed loss divided by `max_new_tokens` (`constant`): no length or difficulty bias.
- `gspo` (Zheng et al. 2025): one ratio per sequence, the geometric mean of its token ratios, clipped
  per sequence in a narrow range (3e-4, 4e-4).
- `cispo` (MiniMax-M1, 2025): the importance weight is clipped and detached and multiplies A log p,
  so no token loses its gradient to the clip.
The std in the advantage is the sample std (Bessel-corrected), as TRL computes it. Training-health
metrics per step: reward (mean), reward_std (mean within-group std), zero_std_fraction (groups with
zero advantage), entropy (of the tempered policy over completion tokens), kl, clip_fraction, and
dropped_groups / overlong_penalty where those are on.
Where hone departs from the papers:
- By default one policy update per sampled batch (`iterations: 1`). pi_old is then the policy itself,
  so old log-probs are the policy's own, detached (as TRL does with one iteration): the ratio is
  exactly 1, nothing is clipped and the gradient is the group-baselined policy gradient plus the KL
  term. (Log-probs recorded while sampling would differ from the training forward by bf16 and
  KV-cache numerics and clip at random.) So at one iteration no variant's clip binds (clip-higher,
  GSPO's range, CISPO's cap): the variants differ there by normalisation, std scaling, dynamic
  sampling and the overlong penalty; at ratio 1 GSPO's gradient is GRPO's with `sequence`
  normalisation and CISPO's the token-mean one (gspo repeats grpo exactly on the pizza example).
  `iterations: mu` > 1 trains each
  sampled batch for mu consecutive optimizer steps, as the papers allow: each micro-batch slot of a
  step (gradient accumulation) keeps its rollout (completions, rewards, advantages, reference
  log-probs and pi_old's log-probs, taken detached from the first update's own forward, before any
  update, so no extra pass) and replays it in the same slot of the next mu - 1 steps; the ratios then
  leave 1 and the clips bind (`clip_fraction`, `ratio_mean`). The prompts of the batches planned for
  those replay steps are skipped, so a run sees 1 / mu of its planned prompts; a resumed run starts
  a fresh rollout.
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
from hone.models.generate import cache_keyword, sample_groups, stop_token_ids
from hone.objectives.base import Objective, ObjectiveKind
from hone.objectives.grpo_rewards import load_reward
from hone.objectives.losses import linear_token_entropy, linear_token_log_probs
from hone.rewards import GraderConfig

ADVANTAGE_EPS = 1e-4
FAILURES_PER_STEP = 5  # grader failures (where, message) a step's metrics record keeps


LOSSES = ("grpo", "dapo", "dr_grpo", "gspo", "cispo")
# Each loss's defaults for the settings it shapes; a setting given in the config wins.
LOSS_DEFAULTS = {
    "grpo": {"loss_normalization": "sequence", "scale_rewards": True, "epsilon_low": 0.2, "epsilon_high": 0.2,
             "dynamic_sampling": False},
    "dapo": {"loss_normalization": "token", "scale_rewards": True, "epsilon_low": 0.2, "epsilon_high": 0.28,
             "dynamic_sampling": True},
    "dr_grpo": {"loss_normalization": "constant", "scale_rewards": False, "epsilon_low": 0.2, "epsilon_high": 0.2,
                "dynamic_sampling": False},
    "gspo": {"loss_normalization": "sequence", "scale_rewards": True, "epsilon_low": 3e-4, "epsilon_high": 4e-4,
             "dynamic_sampling": False},
    "cispo": {"loss_normalization": "token", "scale_rewards": True, "epsilon_low": 1.0, "epsilon_high": 4.0,
              "dynamic_sampling": False},
}


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
    loss: Literal[LOSSES] = Field("grpo", description=(
        "The policy loss and the defaults of the settings below: grpo (the paper: per-token clipped ratio, "
        "each completion's mean), dapo (clip-higher, token-level mean, dynamic sampling, overlong penalty), "
        "dr_grpo (no std scaling, sum / max_new_tokens), gspo (one clipped ratio per sequence, the geometric "
        "mean of its tokens'), cispo (the clipped importance weight, stop-gradient, times A log p)."))
    epsilon_low: float = Field(None, gt=0, le=1, description=(
        "Lower clip of the policy ratio, 1 - epsilon_low (default per loss: 0.2; gspo 3e-4; cispo 1, no lower "
        "bound). `clip_eps: x` sets both bounds."))
    epsilon_high: float = Field(None, gt=0, description=(
        "Upper clip of the policy ratio, 1 + epsilon_high (default per loss: 0.2; dapo 0.28, clip-higher; "
        "gspo 4e-4; cispo 4, the cap of the importance weight)."))
    iterations: int = Field(1, ge=1, description=(
        "Optimizer steps each sampled batch is trained on (the papers' mu): the completions, rewards, "
        "advantages, reference and old log-probs of a micro-batch are kept and replayed for this many "
        "consecutive steps, so the ratio to the sampling policy moves from 1 and the clips bind. The prompts "
        "of the batches that arrive while a rollout is replayed are skipped (1: one update per batch, no replay)."))
    beta: float = Field(0.04, ge=0)
    """Weight of the KL penalty to the reference policy (0: no reference pass at all)."""
    scale_rewards: bool = Field(None, description=(
        "Divide advantages by the group's reward std (default per loss: true; dr_grpo false, r - mean)."))
    loss_normalization: Literal["token", "sequence", "constant"] = Field(None, description=(
        "How per-token losses are averaged (default per loss): token (all completion tokens of the micro-batch; "
        "dapo, cispo), sequence (each completion's mean, then over completions; grpo, gspo) or constant "
        "(sum / (completions x max_new_tokens); dr_grpo)."))
    dynamic_sampling: bool = Field(None, description=(
        "Drop groups whose rewards are all equal (zero advantage, no signal) from the loss (default per loss: "
        "dapo true). hone does not sample more prompts to refill the batch; the kept groups stand for it."))
    overlong_buffer: int = Field(None, ge=0, description=(
        "DAPO's soft overlong punishment: a completion longer than max_new_tokens - overlong_buffer loses "
        "overlong_penalty x (its excess / overlong_buffer) reward, the whole penalty at max_new_tokens "
        "(default: dapo max_new_tokens // 5, else 0: off)."))
    overlong_penalty: float = Field(1.0, ge=0, description="The reward a completion of max_new_tokens loses "
                                                          "under the overlong buffer.")
    loss_chunk_tokens: int = Field(1024, gt=0)
    """Tokens per chunk of output-head logits (bounds the logits' memory)."""
    max_grader_error_rate: float = Field(0.1, ge=0, le=1, description=(
        "Stop the run (a GraderError naming the grader) when more than this share of the last "
        "`grader_error_window` answers could not be graded; 1 never stops."))
    grader_error_window: int = Field(64, ge=1, description=(
        "How many of the latest graded answers `max_grader_error_rate` is measured over."))

    @model_validator(mode="before")
    @classmethod
    def _loss_defaults(cls, data):
        """Settings left out take the chosen loss's defaults, so the saved config shows what ran."""
        if not isinstance(data, dict) or data.get("loss", "grpo") not in LOSS_DEFAULTS:
            return data
        data = dict(data)
        if "clip_eps" in data:  # the earlier spelling of a symmetric clip
            eps = data.pop("clip_eps")
            data.setdefault("epsilon_low", eps)
            data.setdefault("epsilon_high", eps)
        loss, tokens = data.get("loss", "grpo"), data.get("max_new_tokens", 128)
        buffer = tokens // 5 if loss == "dapo" and isinstance(tokens, int) else 0
        return {**LOSS_DEFAULTS[loss], "overlong_buffer": buffer, **data}

    @model_validator(mode="after")
    def _one_reward_and_a_buffer_that_fits(self):
        if (self.grader is None) == (self.reward_model is None):
            raise ValueError("set exactly one of objective.grader (a grader spec) and objective.reward_model "
                             "(a reward run)")
        if self.overlong_buffer > self.max_new_tokens:
            raise ValueError(f"overlong_buffer {self.overlong_buffer} is longer than max_new_tokens "
                             f"{self.max_new_tokens}; it is the last stretch of tokens before the cut")
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


def normalize_tokens(per_token, mask, normalization: str, max_tokens: int | None = None):
    """Reduce (B, T) masked per-token losses to one number: `token` sum / tokens; `sequence` each row's
    token mean, averaged over rows; `constant` sum / (B * max_tokens)."""
    if normalization == "token":
        return per_token.sum() / mask.sum().clamp(min=1)
    if normalization == "sequence":
        return (per_token.sum(dim=1) / mask.sum(dim=1).clamp(min=1)).mean()
    if normalization == "constant":
        return per_token.sum() / (mask.shape[0] * max_tokens)
    raise ValueError(f"unknown loss normalization {normalization!r}; expected token, sequence or constant")


def k3_kl(logprobs, ref_logprobs):
    """The paper's per-token KL estimator exp(ref - logp) - (ref - logp) - 1; (B, T) -> (B, T)."""
    log_ref_ratio = ref_logprobs - logprobs
    return torch.exp(log_ref_ratio) - log_ref_ratio - 1


def grpo_loss(logprobs, old_logprobs, ref_logprobs, advantages, mask, clip_eps: float, beta: float, *,
              normalization: str = "token", max_tokens: int | None = None, clip_high: float | None = None):
    """The clipped-surrogate loss with a k3 KL penalty, normalised over completion tokens (grpo, dapo, dr_grpo).

    logprobs, old_logprobs, ref_logprobs, mask: (B, T) per completion token (mask 1 on real tokens);
    advantages: (B,). Per token: ratio = exp(logp - old), surrogate = min(ratio A, clip(ratio, 1 - clip_eps,
    1 + clip_high) A) (clip_high defaults to clip_eps; DAPO's clip-higher raises it),
    kl = exp(ref - logp) - (ref - logp) - 1, loss = -(surrogate - beta kl), reduced by `normalize_tokens`.
    Returns (loss (), kl (B, T) detached, clipped (B, T) bool: where the clipped term was taken).
    """
    mask = mask.to(logprobs.dtype)
    ratio = torch.exp(logprobs - old_logprobs)
    adv = advantages[:, None]
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1 - clip_eps, 1 + (clip_eps if clip_high is None else clip_high)) * adv
    surrogate = torch.minimum(unclipped, clipped)
    kl = k3_kl(logprobs, ref_logprobs)
    per_token = -(surrogate - beta * kl) * mask
    return (normalize_tokens(per_token, mask, normalization, max_tokens), (kl * mask).detach(),
            (clipped < unclipped) & mask.bool())


def gspo_loss(logprobs, old_logprobs, ref_logprobs, advantages, mask, clip_eps: float, beta: float, *,
              normalization: str = "sequence", max_tokens: int | None = None, clip_high: float | None = None):
    """GSPO (Zheng et al. 2025): one importance ratio per sequence, clipped per sequence.

    Shapes as `grpo_loss`. s_i = exp(mean over i's tokens of (logp - old)), the geometric mean of the
    token ratios; surrogate_i = min(s_i A_i, clip(s_i, 1 - clip_eps, 1 + clip_high) A_i), the same on
    every token of i, minus beta times each token's k3 KL; with `sequence` normalisation the loss is the
    paper's mean over sequences. Returns (loss, kl (B, T) detached, clipped (B, T): every token of a
    clipped sequence).
    """
    mask = mask.to(logprobs.dtype)
    log_ratio = ((logprobs - old_logprobs) * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)  # (B,)
    ratio = torch.exp(log_ratio)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1 - clip_eps, 1 + (clip_eps if clip_high is None else clip_high)) * advantages
    surrogate = torch.minimum(unclipped, clipped)  # (B,)
    kl = k3_kl(logprobs, ref_logprobs)
    per_token = -(surrogate[:, None] - beta * kl) * mask
    return (normalize_tokens(per_token, mask, normalization, max_tokens), (kl * mask).detach(),
            (clipped < unclipped)[:, None] & mask.bool())


def cispo_loss(logprobs, old_logprobs, ref_logprobs, advantages, mask, clip_eps: float, beta: float, *,
               normalization: str = "token", max_tokens: int | None = None, clip_high: float | None = None):
    """CISPO (MiniMax-M1, 2025): REINFORCE with the clipped importance weight, no token dropped by the clip.

    Shapes as `grpo_loss`. Per token: w = stop_gradient(clip(exp(logp - old), 1 - clip_eps, 1 + clip_high)),
    loss = -(w A logp - beta kl). Unlike PPO's clip, a token whose ratio leaves the range keeps its gradient
    (scaled by the capped weight) instead of losing it. Returns (loss, kl detached, clipped: where w was capped).
    """
    mask = mask.to(logprobs.dtype)
    ratio = torch.exp(logprobs - old_logprobs).detach()
    weight = torch.clamp(ratio, 1 - clip_eps, 1 + (clip_eps if clip_high is None else clip_high))
    kl = k3_kl(logprobs, ref_logprobs)
    per_token = -(weight * advantages[:, None] * logprobs - beta * kl) * mask
    return (normalize_tokens(per_token, mask, normalization, max_tokens), (kl * mask).detach(),
            (weight != ratio) & mask.bool())


POLICY_LOSSES = {"grpo": grpo_loss, "dapo": grpo_loss, "dr_grpo": grpo_loss, "gspo": gspo_loss, "cispo": cispo_loss}


def overlong_penalty(lengths, max_tokens: int, buffer: int, penalty: float = 1.0):
    """DAPO's soft overlong punishment (eq. 13), (B,) completion lengths -> (B,) rewards to add:
    0 up to max_tokens - buffer, then falling linearly to -penalty at max_tokens (and below past it)."""
    if buffer <= 0:
        return torch.zeros(len(lengths))
    excess = (torch.as_tensor(lengths, dtype=torch.float32) - (max_tokens - buffer)).clamp(min=0)
    return -penalty * torch.clamp(excess / buffer, max=1.0)


def varied_groups(rewards):
    """(P, G) rewards -> (P,) bool: groups whose rewards are not all equal (DAPO's dynamic sampling keeps these)."""
    return (rewards != rewards[:, :1]).any(dim=1)


def group_log_probs(model, prompts: list[list[int]], completions: list[list[int]], temperature: float,
                    chunk_tokens: int, pad_id: int, *, entropy: bool = False):
    """Per-token log-probs (B, T) of the completions under `temperature`, and their mask (B, T); with
    `entropy`, also each token's entropy (B, T) of the tempered next-token distribution, without gradients.

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
                  position_ids=positions, **{cache_keyword(): cache}, use_cache=True)
    hidden = out.last_hidden_state[:, -1:].repeat_interleave(group, dim=0)  # (B, 1, H): predicts token 0
    lengths = torch.tensor([len(c) for c in completions])
    steps = torch.arange(int(lengths.max()) - 1)
    if len(steps) > 0:  # each completion but its last token, after its prompt's cache
        cache.batch_repeat_interleave(group)
        inputs = torch.tensor([c[:-1] + [pad_id] * (len(steps) + 1 - len(c)) for c in completions])
        mask = torch.cat([real.repeat_interleave(group, dim=0), (steps[None, :] < lengths[:, None] - 1).long()], 1)
        out = decoder(input_ids=inputs, attention_mask=mask, **{cache_keyword(): cache}, use_cache=True,
                      position_ids=positions[:, -1:].repeat_interleave(group, dim=0) + 1 + steps)
        hidden = torch.cat([hidden, out.last_hidden_state], dim=1)  # (B, max length, H)
    keep = torch.arange(hidden.shape[1])[None, :] < lengths[:, None]
    targets = torch.tensor([t for c in completions for t in c])
    head = model.get_output_embeddings().weight
    h = hidden[keep] / temperature
    flat = linear_token_log_probs(h, head, targets, chunk_tokens)
    if entropy:
        entropies = flat.new_zeros(keep.shape)
        entropies[keep] = linear_token_entropy(h.detach(), head.detach(), chunk_tokens)
    out = flat.new_zeros(keep.shape)
    out[keep] = flat
    return (out, keep, entropies) if entropy else (out, keep)


class GRPO(Objective):
    """Prompts in; sample, score, and the clipped policy-gradient loss out. The unit is a completion."""

    name = "grpo"
    samples = True

    def __init__(self, config: Config) -> None:
        self.config = config
        self.tokenizer = None
        self.reward = None
        self.slots = 1  # micro-batches per optimizer step (`accumulate`): each slot replays its own rollout
        self.calls = 0  # training micro-batches seen, which place the next one in its slot and turn
        self.rollouts: dict[int, dict] = {}

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

    def accumulate(self, micro_batches: int) -> None:
        """A new run of steps: `micro_batches` slots, each sampling a fresh rollout on its first call."""
        self.slots, self.calls, self.rollouts = micro_batches, 0, {}

    def loss(self, model, batch):
        if batch["validation"]:
            return self.validate(model, batch)
        c = self.config
        slot, turn = self.calls % self.slots, (self.calls // self.slots) % c.iterations
        self.calls += 1
        if turn == 0:  # a fresh rollout for this micro-batch slot, replayed by the same slot of the next steps
            self.rollouts[slot] = self.rollout(model, batch["prompts"])
        rollout = self.rollouts[slot]
        ids, completions = rollout["ids"], rollout["completions"]
        batch["n_tokens"] = sum(map(len, ids)) + sum(map(len, completions))  # what the step processed, for tokens/s
        logprobs, mask, entropy = self.log_probs(model, ids, completions, entropy=True)
        if turn == 0:
            # The policy that sampled is this one, before any update on the rollout: pi_old is its own
            # log-probs (detached), from the same forward, so the first update's ratio is exactly 1.
            rollout["old"] = logprobs.detach()
            if c.beta > 0:
                with torch.no_grad(), reference_policy(model):
                    rollout["ref"], _ = self.log_probs(model, ids, completions)
        old = rollout["old"]
        ref = rollout["ref"] if c.beta > 0 else logprobs.detach()
        rows = rollout["kept"].repeat_interleave(c.group_size)
        # Dropped groups (dynamic sampling) leave the loss; the kept ones stand for the whole batch.
        if rows.any():
            loss, kl, clipped = POLICY_LOSSES[c.loss](
                logprobs[rows], old[rows], ref[rows], rollout["advantages"][rows].to(logprobs.dtype), mask[rows],
                c.epsilon_low, c.beta, normalization=c.loss_normalization, max_tokens=c.max_new_tokens,
                clip_high=c.epsilon_high)
        else:
            loss, kl, clipped = logprobs.sum() * 0.0, torch.zeros(1), torch.zeros(1, dtype=torch.bool)
        ratio = torch.exp(logprobs.detach() - old)[rows] * mask[rows]
        loss_sum = loss * self.units(batch)  # the slot weighs what the step planned for it
        shaped, kept, penalty = rollout["shaped"], rollout["kept"], rollout["penalty"]
        return loss_sum, {"loss_sum": loss_sum.item(), "completions": len(completions),
                          "reward_sum": sum(rollout["scores"]), "reward_std_sum": shaped.std(dim=1).sum().item(),
                          "groups": len(ids), "zero_std_groups": int((~varied_groups(shaped)).sum()),
                          "kl_sum": kl.sum().item(), "dropped_groups": int((~kept).sum()),
                          "penalty_sum": penalty.sum().item(), "entropy_sum": (entropy * mask).sum().item(),
                          "trained_tokens": int(mask[rows].sum()), "clipped": int(clipped.sum()),
                          "ratio_sum": ratio.sum().item(), "tokens": int(mask.sum()),
                          "failures": rollout["failures"] if turn == 0 else []}

    def rollout(self, model, prompts) -> dict:
        """Sample the group of each prompt, score it and turn the scores into advantages."""
        c = self.config
        completions = self.sample(model, prompts, c.group_size, c.temperature)
        owners = [u for u in prompts for _ in range(c.group_size)]
        scores, failures = self.reward(self.texts(completions), owners)
        rewards = torch.tensor(scores, dtype=torch.float32).view(len(prompts), c.group_size)
        penalty = overlong_penalty([len(t) for t in completions], c.max_new_tokens, c.overlong_buffer,
                                   c.overlong_penalty)
        shaped = rewards + penalty.view_as(rewards)
        kept = varied_groups(shaped) if c.dynamic_sampling else torch.ones(len(prompts), dtype=torch.bool)
        return {"ids": [u.ids for u in prompts], "completions": completions, "scores": scores, "failures": failures,
                "penalty": penalty, "shaped": shaped, "kept": kept,
                "advantages": group_advantages(shaped, c.scale_rewards).view(-1)}

    def validate(self, model, batch):
        """Greedy completions of the validation prompts and their mean reward (loss = -reward)."""
        completions = self.sample(model, batch["prompts"], 1, 0.0)
        scores, failures = self.reward(self.texts(completions), batch["prompts"])
        total = sum(scores)
        return torch.tensor(-total), {"loss_sum": -total, "reward_sum": total,
                                      "completions": len(scores), "failures": failures,
                                      "tokens": sum(len(ids) for ids in completions)}

    def log_probs(self, model, prompts, completions, entropy: bool = False):
        return group_log_probs(model, prompts, completions, self.config.temperature, self.config.loss_chunk_tokens,
                               self.tokenizer.pad_token_id, entropy=entropy)

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
        trained = max(sum(p["trained_tokens"] for p in parts), 1)
        out = {**out, "reward_std": sum(p["reward_std_sum"] for p in parts) / groups,
               "zero_std_fraction": sum(p["zero_std_groups"] for p in parts) / groups,
               "entropy": sum(p["entropy_sum"] for p in parts) / tokens,
               "kl": sum(p["kl_sum"] for p in parts) / trained,
               "clip_fraction": sum(p["clipped"] for p in parts) / trained}
        if self.config.iterations > 1:
            out["ratio_mean"] = sum(p["ratio_sum"] for p in parts) / trained
        if self.config.dynamic_sampling:
            out["dropped_groups"] = sum(p["dropped_groups"] for p in parts) / groups
        if self.config.overlong_buffer:
            out["overlong_penalty"] = sum(p["penalty_sum"] for p in parts) / completions
        return out


KIND = ObjectiveKind("grpo", Config, build, FORMATS, check_run=check_run)
