"""Random LoRA adapters written as hone artifacts, for serving tests and benchmarks.

Each adapter is a valid artifact (PEFT files + hone.json naming the base and its weights hash),
with LoRA B initialised to random values instead of zeros so that each adapter changes the
model's outputs differently.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from hone.models.load import load_model


def save_random_adapters(base_spec: str, directory: str | Path, count: int, *, rank: int = 8,
                         scale: float = 0.5, seed: int = 0, target_modules="all-linear") -> list[Path]:
    """Write `count` random LoRA adapters for `base_spec` into `directory/adapter-000`, ...; returns their paths."""
    import torch
    from peft import LoraConfig, get_peft_model

    model, tokenizer, source = load_model(base_spec)
    config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=target_modules, task_type="CAUSAL_LM")
    peft = get_peft_model(model, config)
    paths = []
    for k in range(count):
        generator = torch.Generator().manual_seed(seed * 100_003 + k)
        with torch.no_grad():
            for name, param in peft.named_parameters():
                if "lora_" in name:
                    param.copy_(torch.randn(param.shape, generator=generator) * scale / param.shape[-1] ** 0.5)
        path = Path(directory) / f"adapter-{k:03d}"
        peft.save_pretrained(path)
        manifest = {
            "format": "hone-artifact/1",
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "base_model": {"id": source.id, "kind": source.kind, "sha256": source.sha256},
            "chat_template": tokenizer.chat_template,
            "method": {"type": "lora", "rank": rank, "alpha": 2.0 * rank},
            "objective": {"type": "random"},
            "metrics": {},
        }
        (path / "hone.json").write_text(json.dumps(manifest, indent=2))
        paths.append(path)
    return paths
