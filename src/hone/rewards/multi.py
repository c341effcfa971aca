"""`multi`: named graders combined by a formula (`calculate_output`, OpenAI's grader of the same name).

`{"type": "multi", "graders": {"fields": {...}, "valid": {...}}, "calculate_output": "0.8 * fields + 0.2 * valid"}`.
The formula is parsed with `ast` and evaluated by walking the tree: numbers, the graders' names,
+ - * /, unary minus, parentheses and min(...), max(...), abs(...). Nothing else is accepted
(no attribute access, subscripts, other calls, or `**`), and raw text is never `eval`ed. A
division by zero scores 0 with the reason; results outside [0, 1] are clipped.
"""

from __future__ import annotations

import ast
import operator
from typing import TYPE_CHECKING, Literal

from pydantic import Field, ValidationInfo, field_validator

from hone.rewards.grade import Grade, Grader, GraderBase, bounded, failed, grade_safely

if TYPE_CHECKING:
    from hone.rewards import GraderConfig

MAX_FORMULA = 1000
BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}
FUNCTIONS = {"min": lambda *a: min(a), "max": lambda *a: max(a), "abs": abs}


class Config(GraderBase):
    type: Literal["multi"] = "multi"
    graders: dict[str, "GraderConfig"] = Field(min_length=1)
    """Graders by the name the formula uses (identifiers such as `fields` or `json_ok`)."""
    calculate_output: str
    """The formula over the graders' names, e.g. `0.7 * fields + 0.3 * valid`."""

    @field_validator("graders")
    @classmethod
    def _names_are_identifiers(cls, graders: dict) -> dict:
        for name in graders:
            if not name.isidentifier() or name in FUNCTIONS:
                raise ValueError(f"grader name {name!r} cannot appear in a formula; use an identifier "
                                 "other than min/max/abs")
        return graders

    @field_validator("calculate_output")
    @classmethod
    def _formula_uses_the_graders(cls, formula: str, info: ValidationInfo) -> str:
        tree = parse_formula(formula)
        graders = info.data.get("graders")
        unknown = sorted(formula_names(tree) - set(graders)) if graders is not None else []
        if unknown:
            raise ValueError(f"uses {', '.join(unknown)}, which {'is' if len(unknown) == 1 else 'are'} not among "
                             f"the graders ({', '.join(graders)})")
        return formula


def parse_formula(text: str) -> ast.Expression:
    """Parse and check a formula; ValueError naming the first construct that is not allowed."""
    if len(text) > MAX_FORMULA:
        raise ValueError(f"longer than {MAX_FORMULA} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"not a formula: {exc.msg} (column {exc.offset})") from None
    for node in ast.walk(tree):
        if not _allowed(node):
            raise ValueError(f"{_describe(node)} is not allowed; use numbers, grader names, "
                             "+ - * /, parentheses and min/max/abs")
    return tree


def _allowed(node: ast.AST) -> bool:
    if isinstance(node, (ast.Expression, ast.Name, ast.Load)) or type(node) in BINARY or type(node) in UNARY:
        return True
    if isinstance(node, ast.Constant):
        return isinstance(node.value, (int, float)) and not isinstance(node.value, bool)
    if isinstance(node, ast.BinOp):
        return type(node.op) in BINARY
    if isinstance(node, ast.UnaryOp):
        return type(node.op) in UNARY
    if isinstance(node, ast.Call):
        return (isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS and not node.keywords
                and bool(node.args) and not any(isinstance(a, ast.Starred) for a in node.args)
                and (node.func.id != "abs" or len(node.args) == 1))
    return False


def _describe(node: ast.AST) -> str:
    if isinstance(node, ast.Attribute):
        return f"attribute access .{node.attr}"
    if isinstance(node, ast.Call):
        name = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
        return f"calling {name}()"
    if isinstance(node, ast.Constant):
        return f"the constant {node.value!r}"
    if isinstance(node, (ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare)):
        operator_node = getattr(node, "op", None) or getattr(node, "ops", [None])[0]
        return f"the operator {type(operator_node).__name__} in {ast.unparse(node)}"
    return f"{type(node).__name__} ({ast.unparse(node) if hasattr(node, 'lineno') else type(node).__name__})"


def formula_names(tree: ast.Expression) -> set[str]:
    """The names a formula reads (not the functions it calls)."""
    called = {id(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
    return {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and id(node) not in called}


def evaluate_formula(node: ast.AST, values: dict[str, float]) -> float:
    """The formula's value for `values` (ZeroDivisionError is the caller's to report)."""
    if isinstance(node, ast.Expression):
        return evaluate_formula(node.body, values)
    if isinstance(node, ast.Constant):
        return float(node.value)
    if isinstance(node, ast.Name):
        return values[node.id]
    if isinstance(node, ast.BinOp):
        return BINARY[type(node.op)](evaluate_formula(node.left, values), evaluate_formula(node.right, values))
    if isinstance(node, ast.UnaryOp):
        return UNARY[type(node.op)](evaluate_formula(node.operand, values))
    if isinstance(node, ast.Call):
        return float(FUNCTIONS[node.func.id](*[evaluate_formula(a, values) for a in node.args]))
    raise ValueError(f"unexpected {type(node).__name__}")  # parse_formula admits nothing else


class MultiGrader(Grader):
    def __init__(self, config: Config, graders: dict) -> None:
        self.config = config
        self.name = config.name or config.type
        self.graders = graders
        self.formula = parse_formula(config.calculate_output)

    def grade(self, samples: list[dict], items: list[dict]) -> list[Grade]:
        parts = {name: grade_safely(grader, samples, items) for name, grader in self.graders.items()}
        grades = []
        for i in range(len(samples)):
            sub = {name: parts[name][i] for name in self.graders}
            values = {name: grade.score for name, grade in sub.items()}
            details = {name: grade.to_dict() for name, grade in sub.items()}
            summary = "; ".join(f"{name}={grade.score:.3g} ({grade.reason})" for name, grade in sub.items())
            try:
                value = evaluate_formula(self.formula, values)
            except ZeroDivisionError:
                grades.append(failed(f"division by zero in {self.config.calculate_output} with {summary}", **details))
                continue
            grades.append(bounded(value, f"{self.config.calculate_output} = {value:.3g}: {summary}", **details))
        return grades


def build(config: Config, build_part) -> MultiGrader:
    """The formula over its parts; `build_part(spec)` builds each one (the registry in `hone.rewards` passes it)."""
    return MultiGrader(config, {name: build_part(spec) for name, spec in config.graders.items()})
