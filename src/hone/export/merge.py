"""`hone export --merge`: fold a tuned artifact into its base and write a standalone transformers model.

The output directory loads with `AutoModelForCausalLM.from_pretrained(DIR)` alone: config.json,
safetensors weights, the tokenizer with the chat template used in training, generation_config.json,
and `hone-merge.json` (the source artifact, its method, and the precision of the merge).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from hone.errors import ConfigError
from hone.methods import method_for
from hone.methods.tuned import load_tuned
from hone.models.artifact import adapter_dir, read_manifest
from hone.models.vision import save_tokenizer

MERGE_NOTE = "hone-merge.json"


@dataclass
class MergeReport:
    out: Path
    method: str
    precision: str
    params: int

    def render(self) -> str:
        return (f"merged {self.method} into {self.params / 1e6:.1f}M parameters ({self.precision}); "
                f"wrote {self.out}")


def merge_artifact(run, out) -> MergeReport:
    """Merge the artifact of `run` (a run directory or its adapter/) into `out`, written atomically."""
    directory = adapter_dir(run)
    name = read_manifest(directory)["method"]["type"]
    method = method_for(name)
    if not method.mergeable:
        raise ConfigError(f"method {name} cannot be merged into the base weights", where=str(directory),
                          hint=f"method {name} adds computation the base model does not have; serve the artifact "
                               "with its base instead (hone generate --adapter)")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} exists and is not empty", where="--out", hint="choose a new directory")
    model, tokenizer, manifest = load_tuned(directory)
    merged = method.merge(model).float().eval()
    merged.requires_grad_(False)
    if hasattr(merged.config, "quantization_config"):
        delattr(merged.config, "quantization_config")
    precision = method.merge_precision
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    merged.save_pretrained(tmp)
    save_tokenizer(tokenizer, tmp)
    params = sum(p.numel() for p in merged.parameters())
    (tmp / MERGE_NOTE).write_text(json.dumps({
        "source": str(directory), "base_model": manifest["base_model"], "method": manifest["method"],
        "precision": precision, "parameters": params,
    }, indent=2))
    if out.exists():
        out.rmdir()
    os.rename(tmp, out)
    return MergeReport(out, name, precision, params)
