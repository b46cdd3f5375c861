"""What a ``torch.export`` program's JSON asks torch to resolve or evaluate, checked as text.

``torch.export.load`` turns three kinds of strings from ``models/NAME.json`` into behaviour
(see docs/formats.md, "torch.export archives"):

- node ``target`` strings: ``torch.X.Y`` / ``_operator.X`` / ``math.X`` are resolved by
  ``getattr`` chains from those modules, and any *callable* found becomes a graph call
  (``torch.os.system`` would be called with the node's arguments when the program runs);
  operator *arguments* (``as_operator``) are resolved the same way and handed to the node's
  operator (``wrap_with_set_grad_enabled(False, fn, *args)`` calls ``fn(*args)``), so they
  are checked as targets;
- symbolic-shape expressions (``expr_str``, range-constraint names) go to ``sympy.sympify``,
  which ``eval``-s Python;
- ``guards_code`` strings become Python source that ``ExportedProgram.module()`` compiles.

Here every target must be an operator of an allowed namespace (``aten``, ``prims``, a few
higher-order operators) or one of a fixed list of ``_operator``/``math``/``torch.sym_*``
functions; every expression must tokenise to sympy constructors, symbol names, numbers and
arithmetic (no attribute access, subscripts or other names); ``guards_code`` must be empty.
Nothing here imports torch.
"""

from __future__ import annotations

import io
import re
import tokenize
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

#: operator namespaces a program may call without ``trust=``: torch's own kernels
OP_NAMESPACES = ("aten", "prims")
#: aten operators refused even so: they read or write files, or re-point tensor storage
DENIED_OPS = frozenset({"from_file", "save", "_print", "set_", "set_data", "wait"})
DENIED_OPS |= {"_cufft_set_plan_cache_max_size"}
#: aten operators that change the state of the whole process running the program
GLOBAL_OPS = frozenset({"manual_seed", "seed", "set_grad_enabled", "_cufft_clear_plan_cache"})
#: aten operators that trust their arguments: views with unchecked sizes and strides, sparse
#: tensors whose indices are not checked (``to_dense`` then writes out of bounds). Crafted
#: arguments crash the process (SIGSEGV, shown in tests/security/test_redteam3.py)
UNCHECKED_OPS = frozenset(
    {"_reshape_alias", "_reshape_alias_copy", "_coalesced_", "sparse_resize_"}
    | {"sparse_resize_and_clear_", "_sparse_coo_tensor_with_dims_and_tensors"}
    | {"sparse_coo_tensor", "_sparse_coo_tensor_unsafe", "_sparse_coo_tensor_with_dims"}
    | {
        f"{p}sparse_{k}_tensor{u}"
        for p in ("", "_")
        for k in ("compressed", "csr", "csc", "bsr", "bsc")
        for u in ("", "_unsafe")
    }
)
#: higher-order operators whose bodies are subgraphs in the same JSON (checked the same way)
HIGHER_ORDER = frozenset(
    {"cond", "while_loop", "map_impl", "scan", "wrap_with_set_grad_enabled", "wrap_with_autocast"}
)
#: plain Python functions torch.export emits for symbolic-shape arithmetic
PLAIN_FUNCTIONS = frozenset(
    {
        f"_operator.{n}"
        for n in [
            "getitem",
            "add",
            "sub",
            "mul",
            "floordiv",
            "truediv",
            "mod",
            "neg",
            "pos",
            "pow",
            "eq",
            "ne",
            "lt",
            "le",
            "gt",
            "ge",
            "and_",
            "or_",
            "not_",
            "abs",
        ]
    }
    | {f"math.{n}" for n in ["ceil", "floor", "trunc", "sqrt"]}
    | {
        f"torch.{n}"
        for n in [
            "sym_int",
            "sym_float",
            "sym_max",
            "sym_min",
            "sym_not",
            "sym_sqrt",
            "sym_ite",
            "sym_sum",
            "sym_float",
            "sym_fresh_size",
        ]
    }
    | {"torch._assert", "torch._check", "torch._check_is_size"}
)
_OP = re.compile(
    r"torch\.ops\.([A-Za-z_][A-Za-z0-9_]*)\.([A-Za-z_][A-Za-z0-9_]*)(?:\.([A-Za-z_][A-Za-z0-9_]*))?"
)

#: names a symbolic-shape expression may use: sympy constructors and torch's sympy functions
#: (those torch.export.load passes to sympify); powers are left out (``10**10**10`` hangs)
SYMPY_NAMES = frozenset(
    [
        "Symbol",
        "Integer",
        "Rational",
        "Float",
        "Add",
        "Mul",
        "Max",
        "Min",
        "Abs",
        "Eq",
        "Ne",
        "Lt",
        "Le",
        "Gt",
        "Ge",
        "And",
        "Or",
        "Not",
        "true",
        "false",
        "True",
        "False",
        "None",
        "oo",
        "zoo",
        "nan",
        "int_oo",
        "positive",
        "negative",
        "nonnegative",
        "nonpositive",
        "integer",
        "real",
        "finite",
        "nonzero",
        "zero",
        "FloorDiv",
        "ModularIndexing",
        "Where",
        "PythonMod",
        "Mod",
        "CleanDiv",
        "CeilToInt",
        "FloorToInt",
        "CeilDiv",
        "IntTrueDiv",
        "FloatTrueDiv",
        "TruncToFloat",
        "TruncToInt",
        "RoundToInt",
        "RoundDecimal",
        "ToFloat",
        "Identity",
        "IsNonOverlappingAndDenseIndicator",
    ]
)
_SYMBOL = re.compile(r"[a-z]{1,8}\d{1,9}")
_SYMBOL_STRING = re.compile(r"'[A-Za-z_][A-Za-z0-9_]{0,40}'|\"[A-Za-z_][A-Za-z0-9_]{0,40}\"")
_EXPR_OPS = frozenset(
    [
        "(",
        ")",
        ",",
        "+",
        "-",
        "*",
        "/",
        "//",
        "%",
        "=",
        "<",
        ">",
        "<=",
        ">=",
        "==",
        "!=",
        "&",
        "|",
        "~",
    ]
)
MAX_EXPR = 10_000
MAX_DIGITS = 30
MAX_NODES = 2_000_000


@dataclass
class GraphCheck:
    """What the program's JSON references: operator counts, and problems (subject, reason,
    trustable: False for code torch would run that no ``trust=[...]`` list may allow)."""

    ops: Counter[str] = field(default_factory=Counter)
    problems: list[tuple[str, str, bool]] = field(default_factory=list)

    def refuse(self, subject: str, reason: str, trustable: bool = False) -> None:
        if len(self.problems) < 100 and (subject, reason, trustable) not in self.problems:
            self.problems.append((subject, reason, trustable))


def check_target(target: str, out: GraphCheck) -> None:
    """One node target: an allowed operator or function, else a problem."""
    if target in PLAIN_FUNCTIONS:
        out.ops[target] += 1
        return
    m = _OP.fullmatch(target)
    if m is None:
        if target.startswith("#"):
            out.refuse(
                target,
                "an extension operator: torch resolves it through a registry of "
                "handlers outside the file",
            )
        else:
            out.refuse(
                target[:200],
                "a Python callable the graph would call when the program runs (not a torch "
                "operator)",
            )
        return
    namespace, name, overload = m.groups()
    out.ops[target] += 1
    if namespace == "higher_order":
        if overload is not None or name not in HIGHER_ORDER:
            out.refuse(target, "a higher-order operator modelstore does not allow")
        elif name == "while_loop":
            out.refuse(
                target,
                "a loop whose condition the file decides: running the program may never end; "
                "trust it by name if you accept that",
                trustable=True,
            )
        return
    if overload is None:
        out.refuse(target, "an operator packet without an overload")
        return
    if namespace in OP_NAMESPACES:
        if name in DENIED_OPS:
            out.refuse(target, "an operator that reads or writes files or re-points storage")
        elif name in GLOBAL_OPS:
            out.refuse(
                target,
                "an operator that changes process-wide state (the random generator's seed, "
                "grad mode, library caches) of the program that runs it",
            )
        elif name in UNCHECKED_OPS:
            out.refuse(
                target,
                "an operator that does not check its sizes, strides or indices (crafted "
                "arguments make it read or write outside its memory)",
            )
        return
    out.refuse(
        f"torch.ops.{namespace}",
        f"a custom operator namespace ({target}): its kernels come from a library loaded "
        f"outside the file; trust it by name only if you load that library yourself",
        trustable=True,
    )


def check_expr(expr: str) -> str | None:
    """Why ``expr`` (handed to ``sympy.sympify``, i.e. ``eval``) is refused, or None."""
    if len(expr) > MAX_EXPR:
        return f"a symbolic expression of {len(expr)} characters"
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(expr).readline))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return "a symbolic expression that is not an expression"
    for tok in tokens:
        kind, text = tok.type, tok.string
        if kind in (tokenize.NEWLINE, tokenize.NL, tokenize.ENDMARKER):
            continue
        if kind == tokenize.NAME:
            if text not in SYMPY_NAMES and not _SYMBOL.fullmatch(text):
                return f"a symbolic expression naming {text[:40]!r}"
        elif kind == tokenize.NUMBER:
            if len(text) > MAX_DIGITS or not re.fullmatch(r"[0-9.eE+-]+", text):
                return f"a symbolic expression with the number {text[:40]!r}"
        elif kind == tokenize.STRING:
            if not _SYMBOL_STRING.fullmatch(text):
                return f"a symbolic expression with the string {text[:40]!r}"
        elif kind == tokenize.OP:
            if text not in _EXPR_OPS:
                return f"a symbolic expression using {text!r}"
        else:
            return f"a symbolic expression with {tokenize.tok_name[kind]} {text[:20]!r}"
    return None


_META_TARGET = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){0,8}")


def check_program(program: Any, out: GraphCheck) -> None:
    """Walk a whole ``models/NAME.json`` document (every nested graph included)."""
    if not isinstance(program, dict) or not isinstance(program.get("graph_module"), dict):
        out.refuse("<program>", "the program JSON has no graph_module")
        return
    guards = program.get("guards_code")
    if guards:
        out.refuse(
            "guards_code",
            "guard code: ExportedProgram.module() compiles these strings as Python",
        )
    ranges = program.get("range_constraints")
    if isinstance(ranges, dict):
        for name in ranges:
            why = check_expr(str(name))
            if why:
                out.refuse("range_constraints", why)
    seen = 0
    stack: list[Any] = [program]
    while stack:
        node = stack.pop()
        seen += 1
        if seen > MAX_NODES:
            out.refuse("<program>", f"a program JSON of more than {MAX_NODES} values")
            return
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        target = node.get("target")
        if isinstance(target, str) and "inputs" in node and "outputs" in node:
            check_target(target, out)
            _check_metadata(node.get("metadata"), out)
        elif target is not None and "inputs" in node:
            out.refuse("<node>", "a node whose target is not a string")
        # an operator passed as an argument (``as_operator``) is resolved like a target, and
        # a higher-order operator such as wrap_with_set_grad_enabled calls it: same rules
        operator = node.get("as_operator")
        if isinstance(operator, str):
            check_target(operator, out)
        elif operator is not None:
            out.refuse("<node>", "an operator argument that is not a string")
        expr = node.get("expr_str")
        if expr is not None:
            why = check_expr(expr) if isinstance(expr, str) else "a non-text symbolic expression"
            if why:
                out.refuse("expr_str", why)
        stack.extend(v for v in node.values() if isinstance(v, (dict, list)))


def _check_metadata(meta: Any, out: GraphCheck) -> None:
    """``source_fn_stack`` targets are resolved by getattr chains from torch: names only."""
    if not isinstance(meta, dict):
        return
    stack = meta.get("source_fn_stack")
    if isinstance(stack, str):
        for item in stack.split(";"):
            _, _, target = item.partition(",")
            if (target and not _META_TARGET.fullmatch(target)) or "__" in target:
                out.refuse("source_fn_stack", f"node metadata names {target[:80]!r}")


__all__ = ["GraphCheck", "check_expr", "check_program", "check_target"]
