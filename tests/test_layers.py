"""The import contract: hone's imports point down the layers, form no cycle, and sit at module top.

An AST walk reads every import statement of src/hone, those inside functions too (a lazy import is
still a dependency). `python tests/test_layers.py` prints the current figures; docs/architecture.md
explains the layers.
"""

from __future__ import annotations

import ast
import functools
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

# Bottom -> top. A module belongs to the layer of its longest listed prefix; it may import its own
# layer and the layers below it, never one above. docs/architecture.md says what each layer holds.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("hone.errors", "hone.keys", "hone.paths", "hone.version", "hone.config.base")),
    ("ground", ("hone.data", "hone.models")),
    ("plug-ins", ("hone.methods", "hone.objectives", "hone.rewards")),
    ("run config", ("hone.config",)),
    ("work", ("hone.train", "hone.evaluate", "hone.infer", "hone.export")),
    ("service", ("hone.jobs",)),
    ("http", ("hone.serve",)),
    ("edges", ("hone", "hone.api", "hone.cli", "hone.__main__", "hone.demo", "hone.examples")),
]

# Modules whose hone imports may stay inside functions: the CLI and the serving subcommands it builds
# its parser from, so `hone --help` is instant, and the package's lazy attributes (`hone.train(...)`),
# so `import hone` is. They count towards the limit.
LAZY_MODULES = {"hone.cli", "hone.serve.commands", "hone"}
LAZY_ARROWS = {  # (importer, imported): why it stays inside a function
    ("hone.methods.lora", "hone.methods.fused_lora"): "fused_lora subclasses peft's LoRA layer, so importing it "
                                                      "imports peft (seconds): validating a config must not",
    ("hone.rewards.model_judge", "hone.methods.tuned"): "a judge model needs torch and transformers; the graders "
                                                       "that score text (metrics, JSON, string checks) must not",
    ("hone.rewards.model_judge", "hone.models.generate"): "the judge's decoding loop needs torch, as above",
}
MAX_INSIDE_FUNCTIONS = 40  # hone-internal import statements inside functions, everywhere


@dataclass
class Imports:
    modules: set[str] = field(default_factory=set)
    arrows: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # (importer, imported) -> "file:line"
    typing_arrows: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # under `if TYPE_CHECKING:`
    implied: set[tuple[str, str]] = field(default_factory=set)  # importing hone.p.m runs package hone.p first
    top: int = 0  # hone-internal import statements at module level
    inside: list[tuple[str, str, int]] = field(default_factory=list)  # hone-internal, inside functions
    inside_third_party: int = 0


def module_names(src: Path = SRC) -> dict[str, tuple[Path, bool]]:
    names = {}
    for path in sorted((src / "hone").rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        package = parts[-1] == "__init__"
        names[".".join(parts[:-1] if package else parts)] = (path, package)
    return names


def audit(src: Path = SRC) -> Imports:
    """Every import statement of src/hone: the module-level arrows between hone's modules, and where they sit."""
    names = module_names(src)
    found = Imports(modules=set(names))

    def owner(dotted: str) -> str | None:
        while dotted and dotted not in names:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    for module, (path, package) in names.items():
        tree = ast.parse(path.read_text(), str(path))
        for node, depth, typing_only in _imports(tree):
            targets = _targets(node, module, package, names)
            internal = {t for t in map(owner, targets) if t and t != module}
            if not targets:
                if depth:
                    found.inside_third_party += 1
                continue
            if depth:
                found.inside.extend((module, t, node.lineno) for t in sorted(internal))
                found.inside.extend((module, module, node.lineno) for _ in range(not internal))
            else:
                found.top += 1
            for target in internal:
                where = f"{path.relative_to(src.parent)}:{node.lineno}"
                (found.typing_arrows if typing_only else found.arrows).setdefault((module, target), []).append(where)
                if not typing_only:
                    found.implied |= {(module, p) for p in _packages_above(target, names) if not _inside(module, p)}
    return found


def _imports(tree: ast.AST, depth: int = 0, typing_only: bool = False):
    """(import statement, how many functions enclose it, whether it only serves type checking)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, depth, typing_only
        inner = depth + isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        checking = isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING")
        yield from _imports(node, inner, typing_only or checking)


def _packages_above(module: str, names) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:n]) for n in range(2, len(parts)) if names.get(".".join(parts[:n]), (None, False))[1]]


def _inside(module: str, package: str) -> bool:
    return module.startswith(package + ".")


def _targets(node, module: str, package: bool, names) -> list[str]:
    """The hone modules an import statement names (`from hone.x import y` names hone.x.y if it is a module)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name.split(".")[0] == "hone"]
    base = node.module or ""
    if node.level:
        parent = module.split(".") if package else module.split(".")[:-1]
        base = ".".join(parent[: len(parent) - node.level + 1] + ([node.module] if node.module else []))
    if base.split(".")[0] != "hone":
        return []
    return [f"{base}.{alias.name}" if f"{base}.{alias.name}" in names else base for alias in node.names]


def layer_of(module: str) -> int:
    best, level = -1, None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, level = len(prefix), index
    if level is None:
        raise AssertionError(f"{module} has no layer: add it to LAYERS in tests/test_layers.py")
    return level


def upward(found: Imports) -> dict[tuple[str, str], list[str]]:
    arrows = sorted({**found.typing_arrows, **found.arrows}.items())
    return {arrow: where for arrow, where in arrows if layer_of(arrow[1]) > layer_of(arrow[0])}


def cycles(found: Imports) -> list[set[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative). Importing hone.p.m
    runs package hone.p's __init__ first, so that counts as an arrow too (unless the importer is inside
    hone.p, which is then already importing); imports made only for type checking never run."""
    graph: dict[str, list[str]] = {m: [] for m in found.modules}
    for a, b in set(found.arrows) | found.implied:
        graph[a].append(b)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(graph[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        components.append(component)
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(graph[child])))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return components


def figures(found: Imports) -> str:
    found_cycles = cycles(found)
    lines = [
        f"hone-internal import statements: {found.top} at module top, {len({(m, n) for m, _, n in found.inside})} "
        f"inside functions; third-party imports inside functions: {found.inside_third_party}",
        f"import cycles: {len(found_cycles)}" + "".join(f"\n  {len(c)}: {', '.join(sorted(c))}" for c in found_cycles),
        f"upward arrows: {len(upward(found))}",
    ]
    by_module = Counter(m for m, _ in {(m, n) for m, _, n in found.inside})
    lines.append("hone-internal imports inside functions, by module: "
                 + ", ".join(f"{m} {n}" for m, n in by_module.most_common()))
    return "\n".join(lines)


@functools.cache
def current() -> Imports:
    return audit()


def test_every_module_has_a_layer():
    for module in module_names():
        layer_of(module)


def test_imports_point_down():
    found = current()
    wrong = {arrow: where for arrow, where in upward(found).items()}
    assert not wrong, "imports that point up the layers:\n" + "\n".join(
        f"  {a} ({LAYERS[layer_of(a)][0]}) -> {b} ({LAYERS[layer_of(b)][0]}) at {', '.join(w)}"
        for (a, b), w in wrong.items()) + "\n" + figures(found)


def test_no_import_cycles():
    found = current()
    new = cycles(found)
    assert not new, "import cycles:\n" + "\n".join(
        f"  {sorted(c)}; arrows: "
        + "; ".join(f"{a} -> {b} ({', '.join(w)})" for (a, b), w in found.arrows.items() if a in c and b in c)
        for c in new) + "\n" + figures(found)


def test_hone_imports_sit_at_module_top():
    found = current()
    lazy = sorted({(m, t, n) for m, t, n in found.inside
                   if m != t and m not in LAZY_MODULES and (m, t) not in LAZY_ARROWS})
    assert not lazy, "hone imports inside functions (move them to the module top):\n" + "\n".join(
        f"  {m}:{n} imports {t}" for m, t, n in lazy) + "\n" + figures(found)


def test_few_imports_inside_functions():
    found = current()
    total = len({(m, n) for m, _, n in found.inside})
    assert total < MAX_INSIDE_FUNCTIONS, (
        f"{total} hone imports inside functions (the limit is {MAX_INSIDE_FUNCTIONS}); keep `hone --help` "
        f"instant by loading torch lazily, not hone's own modules\n" + figures(found))


def test_the_checker_sees_an_upward_arrow_and_a_cycle(tmp_path):
    (tmp_path / "hone" / "data").mkdir(parents=True)
    (tmp_path / "hone" / "__init__.py").write_text("")
    (tmp_path / "hone" / "data" / "__init__.py").write_text("")
    (tmp_path / "hone" / "data" / "read.py").write_text("def f():\n    from hone.train import loop\n")
    (tmp_path / "hone" / "train").mkdir()
    (tmp_path / "hone" / "train" / "__init__.py").write_text("")
    (tmp_path / "hone" / "train" / "loop.py").write_text("from hone.data.read import f\n")
    found = audit(tmp_path)
    assert set(upward(found)) == {("hone.data.read", "hone.train.loop")}
    assert cycles(found) == [{"hone.data.read", "hone.train.loop"}]
    assert found.top == 1 and [(m, t) for m, t, _ in found.inside] == [("hone.data.read", "hone.train.loop")]


if __name__ == "__main__":
    print(figures(audit(Path(sys.argv[1]) if len(sys.argv) > 1 else SRC)))
