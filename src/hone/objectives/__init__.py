"""Training objectives: the data they take, how it batches, and the loss. Each is a module that
declares `KIND`, an `ObjectiveKind` (`Config`, `build(config) -> Objective`, the record `formats` it
trains on, which `hone data check --objective` checks by file:line, and the optional `check_run`
hook); the built `Objective` subclasses `hone.objectives.base.Objective`.

The loop is objective-agnostic; an objective owns its whole data path:
- `prepare(data_config, tokenizer, seed)` reads the files (rejecting records of other formats with
  file:line errors) and returns a `PreparedData` of training *units* (an SFT example, a DPO pair,
  a labelled text, later a GRPO prompt);
- `length(unit)` is what the batch planner budgets (tokens of a forward pass);
- `collate(units, batching)` (a `hone.data.batching.Batching`) turns one micro-batch of units into tensors, and
  `validation_batches(...)` collates the validation units once;
- `attach(model, data)` adds what the objective trains beside the method's parameters (a reward or
  class head; nothing for SFT); `save(model, directory)` writes it into the artifact, and
  `manifest(data)` what hone.json must remember (class labels);
- optional `begin(model, data, batching, method)` runs once with the start model on
  its device, before a checkpoint is restored or any step taken (DPO without an adapter scores its
  reference log-probs there);
- `loss(model, batch)` returns the batch's *summed* loss and its parts; the loop divides by
  `units(batch)` summed over every micro-batch of the optimizer step, so gradient accumulation
  gives the same gradient as one big batch; `report(parts, validation)` turns the parts of a step or
  of a validation pass into metrics.
An objective that generates (GRPO) takes prompt-only units, keeps the tokenizer it was given in
`prepare`, and samples inside `loss` (the KL reference is `model.disable_adapter()`, so it needs an
adapter method unless `beta` is 0).
"""

from __future__ import annotations

from hone.objectives import classify, distill, dpo, grpo, kto, orpo, reward, sft, simpo
from hone.objectives.base import Objective, ObjectiveKind

OBJECTIVES: dict[str, ObjectiveKind] = {
    module.KIND.name: module.KIND for module in (sft, dpo, kto, orpo, simpo, reward, classify, grpo, distill)}
OBJECTIVE_CONFIGS = {name: kind.Config for name, kind in OBJECTIVES.items()}


def build_objective(config) -> Objective:
    return OBJECTIVES[config.type].build(config)
