"""What a tuning method declares: its config, its three required steps, its traits and its optional hooks.

Each method module ends with `METHOD = Method(...)`; the registry (`hone.methods.METHODS`), the
training loop, the config validator, `hone export --merge`, `hone verify` and the server read what a
method is from that declaration alone: nothing elsewhere lists method names or probes for hooks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


def accept_any_run(run) -> None:
    """The default run check (of a method or an objective): it works with every setting of the rest of the run."""


def nothing_to_say(model) -> str:
    """The default description: the training log prints no extra line after `apply`."""
    return ""


def only_with_its_own_base(config) -> bool:
    """The default serving answer: the artifact is not plain LoRA weights, so it cannot share a batch."""
    return False


@dataclass(frozen=True)
class Method:
    """A tuning method: which parameters train, how they are written and read back, and what it is.

    Required: `apply(model, config)` returns the model with exactly the intended parameters trainable;
    `save(model, directory)` writes the method's artifact; `load(base, directory)` restores it.
    Traits:
    - `adapter`: the method wraps the base in a PEFT adapter, so `model.disable_adapter()` is the start
      model (the free reference policy of DPO and GRPO); otherwise the base weights themselves move
      or the method's modules cannot be switched off.
    - `merge(model)`, when given, returns a plain transformers model with the method folded in
      (`hone export --merge`); `merge_precision` says how. None: the method adds computation the base
      model does not have, so it cannot be merged.
    - `side_by_side(config)`: whether an artifact made with this method config is plain LoRA weights
      on linear layers, which `hone serve` batches with other adapters on one shared base.
    - `needs_weights`: `hone estimate` must build the model with real weights, not meta tensors.
    - `whole_model`: the artifact is a complete transformers model directory, so it carries the
      tokenizer and chat template too (`AutoModelForCausalLM` and `AutoTokenizer` load it as it is).
    Optional hooks (defaults above): `check_run(run)` rejects settings of the rest of the run the
    method cannot work with (raise ValueError naming the key); `describe(model)` returns a line the
    training log prints after `apply` (empty: none).
    """

    name: str
    Config: type
    apply: Callable
    save: Callable[..., None]
    load: Callable
    adapter: bool = False
    merge: Callable | None = None
    merge_precision: str = "fp32"
    side_by_side: Callable[..., bool] = only_with_its_own_base
    needs_weights: bool = False
    whole_model: bool = False
    check_run: Callable[..., None] = accept_any_run
    describe: Callable[..., str] = nothing_to_say

    @property
    def mergeable(self) -> bool:
        return self.merge is not None

    def serving_hint(self) -> str:
        """How to serve an artifact that cannot share a batch with other adapters."""
        if self.mergeable:
            return "merge it into the base with `hone export --merge` and serve that"
        return f"method {self.name} runs only on its own base: use `hone generate --adapter`"
