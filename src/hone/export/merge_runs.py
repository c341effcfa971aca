"""`hone merge RUN_A RUN_B ...`: several runs on the same base combined into one adapter or model.

Every method works on task vectors, the change a run made to each weight of the base (for LoRA the
delta B @ A * scaling of each adapted layer, for a full fine-tune tuned - base):
- `linear`: sum_t w_t delta_t (task arithmetic, Ilharco et al. 2023);
- `ties` (Yadav et al. 2023): trim each delta to its `density` largest magnitudes, elect each entry's
  sign by the sum of the trimmed deltas, and average, weighted, only the deltas that agree with it;
- `dare` (Yu et al. 2024): drop each entry with probability 1 - density (a seeded mask), rescale the
  survivors by 1 / density, then sum weighted;
- `slerp`: spherical interpolation of two deltas per tensor, `weights` [1 - t, t] (t is the second
  run's share), linear where the two are (nearly) parallel.
LoRA runs give one LoRA adapter: each layer's merged delta is factored again by SVD at `rank`
(default: the sum of the runs' ranks, exact for `linear`; ties, dare and slerp make the delta
full-rank, and the report gives the relative error of the truncation). Full runs give one model.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from hone.errors import ConfigError
from hone.models.artifact import adapter_dir, read_manifest
from hone.models.load import load_model

MERGE_METHODS = ("linear", "ties", "dare", "slerp")
LORA_METHODS = ("lora", "qlora")
FULL_METHODS = ("full",)
MERGE_NOTE = "merged_from"


def linear_merge(deltas: list, weights: list[float]):
    """sum_t w_t delta_t; deltas: T tensors of one shape."""
    return sum(w * d for w, d in zip(weights, deltas))


def trim_to_density(delta, density: float):
    """Keep the int(density * numel) entries of largest magnitude, zero the rest (TIES' trim)."""
    k = int(density * delta.numel())
    if density >= 1:
        return delta
    flat = delta.flatten()
    keep = torch.zeros_like(flat, dtype=torch.bool)
    if k > 0:
        keep[flat.abs().topk(k).indices] = True
    return (flat * keep).view_as(delta)


def ties_merge(deltas: list, weights: list[float], density: float):
    """TIES: trim each delta, elect the sign of sum_t trimmed_t per entry, then the weighted mean of the
    trimmed entries of that sign (entries of the other sign, or zero, count for nothing)."""
    trimmed = torch.stack([trim_to_density(d, density) for d in deltas])  # (T, ...)
    sign = torch.sign(trimmed.sum(dim=0))
    agree = torch.sign(trimmed) == sign
    w = torch.tensor(weights, dtype=trimmed.dtype).view(-1, *[1] * (trimmed.dim() - 1))
    return (trimmed * w * agree).sum(dim=0) / agree.sum(dim=0).clamp(min=1)


def dare_merge(deltas: list, weights: list[float], density: float, generator: torch.Generator):
    """DARE: each delta keeps an entry with probability `density` (a mask drawn from `generator`, delta by
    delta), the kept entries scaled by 1 / density so the expectation is unchanged; then summed weighted."""
    out = None
    for w, d in zip(weights, deltas):
        mask = torch.bernoulli(torch.full(d.shape, density, dtype=torch.float32), generator=generator).to(d.dtype)
        term = w * d * mask / density
        out = term if out is None else out + term
    return out


def slerp(a, b, t: float, eps: float = 1e-6):
    """Spherical interpolation from a (t = 0) to b (t = 1) along the angle between them, with each
    endpoint's own length: sin((1-t) W)/sin W a + sin(t W)/sin W b, W = the angle; linear when W ~ 0."""
    cos = torch.dot(a.flatten().double(), b.flatten().double()) / (a.double().norm() * b.double().norm() + 1e-12)
    omega = math.acos(float(cos.clamp(-1, 1)))
    if math.sin(omega) < eps:
        return (1 - t) * a + t * b
    return (math.sin((1 - t) * omega) * a + math.sin(t * omega) * b) / math.sin(omega)


def merge_deltas(method: str, deltas: list, weights: list[float], density: float, generator):
    if method == "linear":
        return linear_merge(deltas, weights)
    if method == "ties":
        return ties_merge(deltas, weights, density)
    if method == "dare":
        return dare_merge(deltas, weights, density, generator)
    return slerp(deltas[0], deltas[1], weights[1] / (weights[0] + weights[1]))


def factor_low_rank(delta, rank: int):
    """(B (out, r), A (r, in)) with B @ A the best rank-r approximation of delta (out, in), split evenly."""
    u, s, vh = torch.linalg.svd(delta.double(), full_matrices=False)
    r = min(rank, len(s))
    root = s[:r].sqrt()
    return (u[:, :r] * root).to(delta.dtype), (root[:, None] * vh[:r]).to(delta.dtype)


@dataclass
class MergedRuns:
    out: Path
    method: str
    kind: str  # "adapter" or "model"
    runs: list[str]
    weights: list[float]
    rank: int | None = None
    error: float = 0.0
    """The relative Frobenius error of refactoring the merged LoRA deltas at `rank` (0: exact)."""

    def render(self) -> str:
        what = f"one LoRA adapter of rank {self.rank}" if self.kind == "adapter" else "one model"
        line = (f"merged {len(self.runs)} runs ({self.method}, weights {', '.join(f'{w:g}' for w in self.weights)}) "
                f"into {what}; wrote {self.out}")
        if self.kind == "adapter":
            line += f"\n  refactoring error {self.error:.2%} of the merged deltas' norm"
        return line


def merge_runs(runs: list, out, *, method: str = "linear", weights: list[float] | None = None,
               density: float = 0.5, rank: int | None = None, seed: int = 0) -> MergedRuns:
    """Merge the artifacts of `runs` (run directories or their adapter/) into `out`, written atomically."""
    directories = [adapter_dir(r) for r in runs]
    manifests = [read_manifest(d) for d in directories]
    weights = check_merge(runs, manifests, method, weights, density)
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ConfigError("the output directory exists and is not empty", where=str(out),
                          hint="give a new --out directory")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    generator = torch.Generator().manual_seed(seed)
    if manifests[0]["method"]["type"] in LORA_METHODS:
        result = merge_lora(directories, tmp, method, weights, density, rank, generator)
    else:
        result = merge_full(directories, manifests[0], tmp, method, weights, density, generator)
    manifest = {**manifests[0], "metrics": {},
                MERGE_NOTE: {"runs": [str(r) for r in runs], "method": method, "weights": weights,
                             "density": density if method in ("ties", "dare") else None, "seed": seed}}
    if result.rank is not None:
        manifest["method"] = {**manifest["method"], "rank": result.rank, "alpha": result.rank, "rslora": False,
                              "init_from": None}
    (tmp / "hone.json").write_text(json.dumps(manifest, indent=2))
    shutil.rmtree(out, ignore_errors=True)
    os.rename(tmp, out)
    result.out, result.runs = out, [str(r) for r in runs]
    return result


def check_merge(runs, manifests, method, weights, density) -> list[float]:
    """Refuse what cannot merge, with the reason; the weights (default: 1 each for ties, whose merge already
    averages the agreeing entries; else 1 / n each, an average of the runs)."""
    if method not in MERGE_METHODS:
        raise ConfigError(f"unknown merge method {method!r}", where="--method", hint=f"one of {', '.join(MERGE_METHODS)}")
    if len(runs) < 2:
        raise ConfigError("give at least two runs to merge", where="hone merge")
    if method == "slerp" and len(runs) != 2:
        raise ConfigError(f"slerp interpolates between two runs, got {len(runs)}", where="--method",
                          hint="use linear, ties or dare for more runs")
    weights = list(weights) if weights else [1.0 if method == "ties" else 1 / len(runs)] * len(runs)
    if len(weights) != len(runs):
        raise ConfigError(f"{len(weights)} weights for {len(runs)} runs", where="--weights",
                          hint="give one weight per run, e.g. --weights 0.5,0.5")
    if method == "slerp" and (min(weights) < 0 or sum(weights) <= 0):
        raise ConfigError("slerp's weights are the two runs' shares, >= 0 and not both 0", where="--weights")
    if not 0 < density <= 1:
        raise ConfigError(f"density must be in (0, 1], got {density}", where="--density")
    bases = {(m["base_model"]["id"], m["base_model"].get("sha256")) for m in manifests}
    if len(bases) > 1:
        raise ConfigError("the runs were trained on different base models: " + ", ".join(sorted(b[0] for b in bases)),
                          where="hone merge", hint="merge runs of one base model")
    kinds = [m["method"]["type"] for m in manifests]
    lora = all(k in LORA_METHODS for k in kinds)
    if not lora and not all(k in FULL_METHODS for k in kinds):
        raise ConfigError(f"can merge LoRA runs (lora, qlora) or full fine-tunes, not {', '.join(sorted(set(kinds)))}",
                          where="hone merge", hint="other methods' weights are not deltas of the base's")
    if lora and any(m["method"].get("dora") for m in manifests):
        raise ConfigError("DoRA's magnitude vectors do not add up as deltas", where="hone merge",
                          hint="merge plain LoRA runs, or export each DoRA run merged (hone export --merge)")
    return [float(w) for w in weights]


def lora_deltas(directory: Path) -> dict[str, torch.Tensor]:
    """{module key: B @ A * scaling} of a PEFT LoRA adapter directory."""
    from safetensors.torch import load_file

    config = json.loads((directory / "adapter_config.json").read_text())
    tensors = load_file(directory / "adapter_model.safetensors")
    extra = sorted(k for k in tensors if ".lora_A." not in k and ".lora_B." not in k)
    if extra:
        raise ConfigError(f"the adapter holds weights other than LoRA's ({extra[0]}...)", where=str(directory),
                          hint="merge adapters with LoRA matrices only")
    deltas = {}
    for key in (k for k in tensors if ".lora_A." in k):
        module = key.split(".lora_A.")[0]
        a, b = tensors[key].float(), tensors[key.replace(".lora_A.", ".lora_B.")].float()
        short = module.rpartition(".")[2]
        alpha = config.get("alpha_pattern", {}).get(short, config["lora_alpha"])
        r = config.get("rank_pattern", {}).get(short, config["r"])
        deltas[module] = (b @ a) * alpha / (math.sqrt(r) if config.get("use_rslora") else r)
    return deltas


def merge_lora(directories, tmp: Path, method, weights, density, rank, generator) -> MergedRuns:
    from safetensors.torch import save_file

    per_run = [lora_deltas(d) for d in directories]
    configs = [json.loads((d / "adapter_config.json").read_text()) for d in directories]
    rank = rank or sum(c["r"] for c in configs)
    tensors, error, norm = {}, 0.0, 0.0
    for module in sorted(set().union(*per_run)):
        shape = next(run[module].shape for run in per_run if module in run)
        deltas = [run.get(module, torch.zeros(shape)) for run in per_run]
        merged = merge_deltas(method, deltas, weights, density, generator)
        b, a = factor_low_rank(merged, rank)
        if b.shape[1] < rank:  # a layer narrower than the rank: pad with zero directions
            b = torch.cat([b, b.new_zeros(b.shape[0], rank - b.shape[1])], 1)
            a = torch.cat([a, a.new_zeros(rank - a.shape[0], a.shape[1])], 0)
        error += float((merged - b @ a).pow(2).sum())
        norm += float(merged.pow(2).sum())
        tensors[f"{module}.lora_A.weight"] = a.contiguous()
        tensors[f"{module}.lora_B.weight"] = b.contiguous()
    tmp.mkdir(parents=True)
    save_file(tensors, tmp / "adapter_model.safetensors")
    config = {**configs[0], "r": rank, "lora_alpha": rank, "use_rslora": False, "rank_pattern": {},
              "alpha_pattern": {}, "target_modules": sorted(set().union(*(_targets(c) for c in configs)))}
    if len({json.dumps(c.get("layers_to_transform")) for c in configs}) > 1:
        config["layers_to_transform"] = None  # layers a run did not adapt hold zero deltas
    (tmp / "adapter_config.json").write_text(json.dumps(config, indent=2))
    return MergedRuns(tmp, method, "adapter", [], weights, rank, math.sqrt(error / max(norm, 1e-30)))


def _targets(config: dict) -> set[str]:
    targets = config.get("target_modules") or []
    return {targets} if isinstance(targets, str) else set(targets)


def merge_full(directories, manifest, tmp: Path, method, weights, density, generator) -> MergedRuns:
    """Full fine-tunes: merge tuned - base per tensor and write base + merged in the first run's files."""
    from safetensors.torch import load_file, save_file

    base = load_model(manifest["base_model"]["id"])[0].state_dict()
    shutil.copytree(directories[0], tmp)
    for path in sorted(directories[0].glob("*.safetensors")):
        runs = [load_file(d / path.name) for d in directories]
        merged = {}
        for key, first in runs[0].items():
            if key not in base:
                raise ConfigError(f"{key} is not a weight of the base model", where=str(path))
            origin = base[key].to(torch.float32)
            deltas = [run[key].to(torch.float32) - origin for run in runs]
            merged[key] = (origin + merge_deltas(method, deltas, weights, density, generator)).to(first.dtype)
        save_file(merged, tmp / path.name, metadata={"format": "pt"})
    return MergedRuns(tmp, method, "model", [], weights)
