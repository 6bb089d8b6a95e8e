"""Mutations that change what the code means, added to mutmut 3.8.1; `make mutate` runs mutmut through this module.

    python -m tests.mutation_ops run [--max-children N] [MUTANT_GLOB...]    mutmut's `run`, with the additions below

mutmut has no hooks for operators. Its own mostly wrap strings ("XXAllowXX", which the policy grammar check
kills) and swap Python operators (`and`/`or`, `<`/`<=`, `==`/`!=`, `in`/`not in`). Appended to its operator table:
  - policy effects: "Allow" <-> "Deny";
  - DynamoDB condition and update expressions (a string with a #name or :value, or " AND " / " OR " alone):
    AND <-> OR, < <-> <=, > <-> >=, = <-> <>, attribute_exists <-> attribute_not_exists, one at a time;
  - a statement removed (a call, an assignment, a raise; log lines excepted by do_not_mutate_patterns);
  - an `except` body replaced by `pass`, or by a bare `raise` (the error goes out as it came in);
  - one entry dropped from a dict, list, set or parenthesised tuple.
And two of its limits lifted:
  - it mutates no decorated function (a decorator may act as it is defined); the ones in WRAPPING only wrap, so
    their functions are mutated too, the trampoline decorated and the copies bare;
  - it mutates function bodies only. A module-level value made of literals (a format table, the permanent error
    codes, a limit) is lifted into a function `_value_of_NAME` that the module calls where it assigned it, so it
    gets mutants like any function. A test session under such a mutant evaluates it again and puts the new value
    wherever the old one is bound (`activate`, from tests/conftest.py); its tests are those of the functions of
    its module that read it (`assign_value_tests`).
Each mutant's line in the original file and its mutated code are written beside mutmut's own files
(mutants/PATH.lines.json), for the report (tests/mutation.py).
"""
from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import libcst as cst

VALUE_PREFIX = "_value_of_"
WRAPPING = {"property", "cached_property", "contextmanager", "contextlib.contextmanager"}
# Names a lifted value may call: builtins that build a value and do nothing else.
PURE_CALLS = {"frozenset", "set", "tuple", "range", "dict", "list"}

# --- the operators ------------------------------------------------------------------------------------------

_EXPRESSION = re.compile(r"(?<![\w:#])[#:][A-Za-z_]\w*|attribute_(?:not_)?exists\(")
_SWAPS = [(" AND ", " OR "), (" OR ", " AND "), ("attribute_not_exists(", "attribute_exists("),
          ("attribute_exists(", "attribute_not_exists("), (" <= ", " < "), (" >= ", " > "), (" < ", " <= "),
          (" > ", " >= "), (" <> ", " = "), (" = ", " <> ")]


def _swapped(text: str) -> Iterator[str]:
    """`text` with one expression operator swapped, for each operator in it."""
    for old, new in _SWAPS:
        start = text.find(old)
        while start >= 0:
            # "attribute_exists(" also ends "attribute_not_exists(": swap whole function names only.
            if not (old == "attribute_exists(" and text[max(0, start - 4):start] == "not_"):
                yield text[:start] + new + text[start + len(old):]
            start = text.find(old, start + 1)


def _is_expression(text: str) -> bool:
    return text.strip() in ("AND", "OR") or bool(_EXPRESSION.search(text))


def operator_expression(node: cst.CSTNode) -> Iterable[cst.CSTNode]:
    """DynamoDB condition and update expressions: one boolean, comparison or function swapped."""
    if isinstance(node, cst.SimpleString):
        text = node.evaluated_value
        if isinstance(text, str) and not node.value.startswith(('"""', "'''")) and _is_expression(text):
            quote = len(node.prefix) + len(node.quote)
            inner = node.value[quote:-len(node.quote)]
            for text in _swapped(inner):
                yield node.with_changes(value=node.value[:quote] + text + node.value[-len(node.quote):])
    elif isinstance(node, cst.FormattedString):
        whole = "".join(p.value for p in node.parts if isinstance(p, cst.FormattedStringText))
        if not _is_expression(whole):
            return
        for i, part in enumerate(node.parts):
            if isinstance(part, cst.FormattedStringText):
                for text in _swapped(part.value):
                    yield node.with_changes(parts=[*node.parts[:i], part.with_changes(value=text), *node.parts[i + 1:]])


# DynamoDB reads an expression's keywords in any case ("Reserved words in DynamoDB": "This list isn't
# case-sensitive"); its #names, :values and function names are read exactly.
_KEYWORDS = {"AND", "OR", "NOT", "BETWEEN", "IN", "SET", "REMOVE", "ADD", "DELETE"}


def keyword_case_only(original: str, mutated: str) -> bool:
    """True when the DynamoDB expression `mutated` differs from `original` only in its keywords' case."""
    before, after = re.findall(r"[#:]?\w+|\S", original), re.findall(r"[#:]?\w+|\S", mutated)
    return before != after and len(before) == len(after) and all(
        a == b or (a.upper() == b.upper() and a.upper() in _KEYWORDS) for a, b in zip(before, after, strict=True))


def string_cases_that_mean_something(mutate: Any) -> Any:
    """mutmut's string operator without the mutants DynamoDB reads as the original expression (its lower-case copy
    of "#seq = :seq AND #status = :done" is the same condition; its upper-case one names no placeholder and stays)."""
    def operator(node: cst.CSTNode) -> Iterable[cst.CSTNode]:
        text = node.evaluated_value if isinstance(node, cst.SimpleString) else None
        for mutant in mutate(node):
            if isinstance(text, str) and _is_expression(text) and isinstance(mutant, cst.SimpleString) and \
                    isinstance(mutant.evaluated_value, str) and keyword_case_only(text, mutant.evaluated_value):
                continue
            yield mutant
    return operator


def operator_effect(node: cst.SimpleString) -> Iterable[cst.SimpleString]:
    """A policy statement's Effect flipped."""
    text = node.evaluated_value
    flipped = {"Allow": "Deny", "Deny": "Allow"}.get(text) if isinstance(text, str) else None
    if flipped:
        yield node.with_changes(value=node.value.replace(node.evaluated_value, flipped))


_REMOVABLE = (cst.Expr, cst.Assign, cst.AugAssign, cst.AnnAssign, cst.Raise, cst.Del)
# The names a nested function of the module being mutated declares `nonlocal` (create_mutations sets them): without
# the assignment that binds one, the `nonlocal` has no binding and the module does not compile, so no test runs.
_nonlocal_names: set[str] = set()


def _binds_a_nonlocal(statement: cst.BaseSmallStatement) -> bool:
    targets = [t.target for t in statement.targets] if isinstance(statement, cst.Assign) else (
        [statement.target] if isinstance(statement, cst.AnnAssign) else [])
    return any(isinstance(n, cst.Name) and n.value in _nonlocal_names for t in targets for n in _walk(t))


def operator_remove_statement(node: cst.SimpleStatementLine) -> Iterable[cst.SimpleStatementLine]:
    """A statement removed: what the code would do without it."""
    if len(node.body) != 1 or not isinstance(node.body[0], _REMOVABLE):
        return
    statement = node.body[0]
    if isinstance(statement, cst.Expr) and isinstance(statement.value, (cst.BaseString, cst.Ellipsis)):
        return  # a docstring or `...`
    if isinstance(statement, cst.AnnAssign) and statement.value is None:
        return
    if _binds_a_nonlocal(statement):
        return
    yield node.with_changes(body=[cst.Pass()])


def operator_except_body(node: cst.ExceptHandler) -> Iterable[cst.ExceptHandler]:
    """An `except` body replaced by `pass` (the error swallowed) or by `raise` (the error not handled)."""
    if not isinstance(node.body, cst.IndentedBlock):
        return
    body = [statement for line in node.body.body if isinstance(line, cst.SimpleStatementLine) for statement in line.body]
    only = body[0] if len(body) == 1 and len(node.body.body) == 1 else None
    for replacement in (cst.Pass(), cst.Raise()):
        if isinstance(replacement, cst.Pass) and only is not None and any(operator_remove_statement(node.body.body[0])):
            continue  # removing the one statement makes this mutant already
        if only is None or type(only) is not type(replacement) or (isinstance(only, cst.Raise) and only.exc is not None):
            yield node.with_changes(body=node.body.with_changes(body=[cst.SimpleStatementLine(body=[replacement])]))


def operator_drop_entry(node: cst.CSTNode) -> Iterable[cst.CSTNode]:
    """One entry of a dict, list, set or parenthesised tuple dropped."""
    if isinstance(node, cst.Tuple) and not node.lpar:
        return  # a bare tuple may be an assignment's or a loop's target
    if not isinstance(node, (cst.Dict, cst.List, cst.Set, cst.Tuple)):
        return
    elements = list(node.elements)
    if isinstance(node, cst.Set) and len(elements) < 2:
        return  # `{}` would be a dict
    for i in range(len(elements)):
        kept = elements[:i] + elements[i + 1:]
        if isinstance(node, cst.Tuple) and len(kept) == 1:
            kept = [kept[0].with_changes(comma=cst.Comma())]  # (a,) stays a tuple
        elif kept and i == len(elements) - 1:
            kept[-1] = kept[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
        yield node.with_changes(elements=kept)


OPERATORS: list[tuple[type, Any]] = [
    (cst.SimpleString, operator_effect),
    (cst.SimpleString, operator_expression),
    (cst.FormattedString, operator_expression),
    (cst.SimpleStatementLine, operator_remove_statement),
    (cst.ExceptHandler, operator_except_body),
    (cst.Dict, operator_drop_entry),
    (cst.List, operator_drop_entry),
    (cst.Set, operator_drop_entry),
    (cst.Tuple, operator_drop_entry),
]


# --- decorated functions and module-level values ----------------------------------------------------------

def _decorator_name(decorator: cst.Decorator) -> str:
    node = decorator.decorator
    parts = []
    while isinstance(node, cst.Attribute):
        parts.append(node.attr.value)
        node = node.value
    return ".".join([node.value, *reversed(parts)]) if isinstance(node, cst.Name) else ""


def only_wrapped(function: cst.FunctionDef) -> bool:
    return bool(function.decorators) and all(_decorator_name(d) in WRAPPING for d in function.decorators)


def _pure(node: cst.CSTNode) -> bool:
    """Whether evaluating `node` again only builds a value: literals, names, attributes, operators, PURE_CALLS."""
    if isinstance(node, cst.Call):
        if not (isinstance(node.func, cst.Name) and node.func.value in PURE_CALLS):
            return False
        return all(_pure(child) for arg in node.args for child in [arg.value])
    if isinstance(node, (cst.Lambda, cst.FormattedString, cst.Subscript, cst.Await, cst.Yield, cst.NamedExpr,
                         cst.ListComp, cst.SetComp, cst.DictComp, cst.GeneratorExp)):
        return False
    return all(_pure(child) for child in node.children)


def liftable(statement: cst.CSTNode) -> tuple[str, cst.BaseExpression] | None:
    """(name, value) of a module-level `NAME = value` (annotated or not) that a function can build again."""
    if not isinstance(statement, cst.SimpleStatementLine) or len(statement.body) != 1:
        return None
    assign = statement.body[0]
    if isinstance(assign, cst.Assign) and len(assign.targets) == 1 and isinstance(assign.targets[0].target, cst.Name):
        name, value = assign.targets[0].target.value, assign.value
    elif isinstance(assign, cst.AnnAssign) and assign.value is not None and isinstance(assign.target, cst.Name):
        name, value = assign.target.value, assign.value
    else:
        return None
    if name.startswith("__") or not _pure(value):
        return None
    return name, value


def _walk(node: cst.CSTNode) -> Iterator[cst.CSTNode]:
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(current.children)


def _lift(module: cst.Module, mutations: list[Any]) -> tuple[cst.Module, dict[str, list[str]]]:
    """Lift each module-level value that has mutants into a function; returns the new module and, per lifted value,
    the functions (mangled names) that read it."""
    from mutmut.mutation.trampoline_templates import mangle_function_name

    # Several mutants share one original node (a dict's dropped entries, a string's three): keep every one.
    unowned: dict[int, list[Any]] = {}
    for m in mutations:
        if m.contained_by_top_level_function is None:
            unowned.setdefault(id(m.original_node), []).append(m)
    readers = {}
    for statement in module.body:
        functions = [(statement, None)] if isinstance(statement, cst.FunctionDef) else [
            (m, statement.name.value) for m in statement.body.body if isinstance(m, cst.FunctionDef)
        ] if isinstance(statement, cst.ClassDef) and isinstance(statement.body, cst.IndentedBlock) else []
        for function, class_name in functions:
            names = {n.value for n in _walk(function) if isinstance(n, cst.Name)}
            readers[mangle_function_name(name=function.name.value, class_name=class_name)] = names
    body: list[Any] = []
    lifted: dict[str, list[str]] = {}
    for statement in module.body:
        found = liftable(statement) if isinstance(statement, cst.SimpleStatementLine) else None
        mine = [m for n in _walk(found[1]) for m in unowned.get(id(n), [])] if found else []
        if not found or not mine:
            body.append(statement)
            continue
        name, value = found
        function = cst.FunctionDef(
            name=cst.Name(VALUE_PREFIX + name), params=cst.Parameters(),
            body=cst.IndentedBlock(body=[cst.SimpleStatementLine(body=[cst.Return(value=value)])]),
            leading_lines=statement.leading_lines)
        for mutation in mine:
            mutation.contained_by_top_level_function = function
        call = cst.Call(func=cst.Name(VALUE_PREFIX + name))
        body += [function, statement.with_changes(body=[statement.body[0].with_changes(value=call)], leading_lines=[])]
        lifted[mangle_function_name(name=VALUE_PREFIX + name, class_name=None)] = sorted(
            key for key, names in readers.items() if name in names)
    return module.with_changes(body=body), lifted


def _mutant_names(module: cst.Module, mutations: list[Any]) -> Iterator[tuple[str, Any]]:
    """(mangled mutant name, mutation), named as mutmut names them: per function, in the order they were made."""
    from mutmut.mutation.trampoline_templates import mangle_function_name

    owners: dict[int, str] = {}
    for statement in module.body:
        if isinstance(statement, cst.FunctionDef):
            owners[id(statement)] = mangle_function_name(name=statement.name.value, class_name=None)
        elif isinstance(statement, cst.ClassDef) and isinstance(statement.body, cst.IndentedBlock):
            for method in statement.body.body:
                if isinstance(method, cst.FunctionDef):
                    owners[id(method)] = mangle_function_name(name=method.name.value, class_name=statement.name.value)
    counts: dict[str, int] = {}
    for mutation in mutations:
        owner = owners.get(id(mutation.contained_by_top_level_function))
        if owner is not None:
            counts[owner] = counts.get(owner, 0) + 1
            yield f"{owner}__mutmut_{counts[owner]}", mutation


def install() -> None:
    """Patch mutmut 3.8.1 in this process (mutant generation forks from it, so its workers have the patches)."""
    import mutmut
    from libcst.metadata import MetadataWrapper, PositionProvider
    from mutmut.mutation import file_mutation, mutators
    from mutmut.mutation.file_mutation import MutationVisitor, get_ignored_lines

    if mutmut.__version__ != "3.8.1":
        raise SystemExit(f"tests/mutation_ops.py patches mutmut 3.8.1, not {mutmut.__version__}: see requirements-mutate.txt")
    table = mutators.mutation_operators
    if not any(op is operator_effect for _, op in table):
        table[:] = [(kind, string_cases_that_mean_something(op) if op is mutators.operator_string else op)  # type: ignore[index]
                    for kind, op in table]
        table.extend(OPERATORS)  # type: ignore[attr-defined]  # the list file_mutation iterates

    skip = MutationVisitor._skip_node_and_children
    should = MutationVisitor._should_mutate_node

    def skip_node_and_children(self: Any, node: cst.CSTNode) -> bool:
        if isinstance(node, cst.FunctionDef) and only_wrapped(node):
            position = self.get_metadata(PositionProvider, node, None)
            if position and position.start.line in self._ignored_node_lines:
                return skip(self, node)
            return node in self._enum_creation_hooks or node.name.value in file_mutation.NEVER_MUTATE_FUNCTION_NAMES
        return skip(self, node)

    def should_mutate_node(self: Any, node: cst.CSTNode) -> bool:
        # A log line is words for people (do_not_mutate_patterns): removing it is no change to test either.
        if isinstance(node, cst.SimpleStatementLine):
            position = self.get_metadata(PositionProvider, node, None)
            if position and position.start.line in self._ignored_pattern_lines:
                return False
        return should(self, node)

    MutationVisitor._skip_node_and_children = skip_node_and_children  # type: ignore[method-assign]
    MutationVisitor._should_mutate_node = should_mutate_node  # type: ignore[method-assign]

    arrange = file_mutation.function_trampoline_arrangement

    def function_trampoline_arrangement(function: cst.FunctionDef, mutants: Any, class_name: str | None) -> Any:
        declared, nodes, assigned, names = arrange(function, mutants, class_name)
        if only_wrapped(function):  # the trampoline keeps the decorators; the copies it calls are bare functions
            nodes = [nodes[0], *(n.with_changes(decorators=[]) for n in nodes[1:])]
        return declared, nodes, assigned, names

    file_mutation.function_trampoline_arrangement = function_trampoline_arrangement

    def create_mutations(filename: str, code: str, covered_lines: set[int] | None = None,
                         coverage_excluded_lines: set[int] | None = None) -> Any:
        wrapper = MetadataWrapper(cst.parse_module(code))
        _nonlocal_names.clear()
        _nonlocal_names.update(n.name.value for node in _walk(wrapper.module) if isinstance(node, cst.Nonlocal)
                               for n in node.names)
        visitor = MutationVisitor(table, get_ignored_lines(filename, code, wrapper, coverage_excluded_lines), covered_lines)
        module = wrapper.visit(visitor)
        positions = wrapper.resolve(PositionProvider)
        module, lifted = _lift(module, visitor.mutations)
        mutations = [m for m in visitor.mutations if m.contained_by_top_level_function is not None]
        lines = {}
        for name, mutation in _mutant_names(module, mutations):
            position = positions.get(mutation.original_node)
            lines[name] = {"line": position.start.line if position else 0,
                           "mutated": " ".join(module.code_for_node(mutation.mutated_node).split())[:200]}
        out = Path("mutants") / f"{filename}.lines.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"values": lifted, "mutants": lines}, indent=1))
        return module, mutations, visitor.ignored_classes, visitor.ignored_functions

    file_mutation.create_mutations = create_mutations

    import mutmut.__main__ as main

    collect = main.collect_or_load_stats

    def collect_or_load_stats(*args: Any, **kwargs: Any) -> None:
        collect(*args, **kwargs)
        assign_value_tests(main.state().tests_by_mangled_function_name)

    main.collect_or_load_stats = collect_or_load_stats


def assign_value_tests(tests_by_function: dict[str, set[str]]) -> None:
    """A lifted value's tests: those of the functions of its module that read it (or, if none does, of the module)."""
    for listing in Path("mutants").rglob("*.lines.json"):
        path = listing.relative_to("mutants").as_posix().removesuffix(".lines.json")
        module = path.removesuffix(".py").replace("/", ".")
        for value, readers in json.loads(listing.read_text())["values"].items():
            found = set().union(*(tests_by_function.get(f"{module}.{r}", set()) for r in readers))
            if not found:
                found = set().union(*(t for k, t in tests_by_function.items()
                                      if k.rpartition(".")[0] == module and VALUE_PREFIX not in k))
            tests_by_function[f"{module}.{value}"] = found


def activate(mutant: str) -> None:
    """Under a mutant of a lifted value, evaluate the value again and put it wherever the module's value is bound.

    The test process imported the module before the mutant was chosen (mutmut's fork server collects the tests
    first), so the value in it is the original. A container is swapped by identity wherever it is bound; a string or
    a number only where it is bound under its own name (an import of it: the same small object may mean something
    else under another name). A value another module computed from it at import keeps the original.
    """
    module_name, _, function = mutant.rpartition(".")
    key = function.partition("__mutmut_")[0]
    if not key.startswith("x_" + VALUE_PREFIX) or module_name not in sys.modules:
        return  # not a value, or not imported yet: its import evaluates the mutant itself
    module = sys.modules[module_name]
    name = key.removeprefix("x_" + VALUE_PREFIX)
    old, new = getattr(module, name), getattr(module, VALUE_PREFIX + name)()
    container = isinstance(old, (dict, list, set, frozenset)) or (isinstance(old, tuple) and len(old) > 0)
    for other in list(sys.modules.values()):
        for attr, bound in list(getattr(other, "__dict__", {}).items()):
            if bound is old and (container or attr == name):
                setattr(other, attr, new)


def main(argv: list[str]) -> None:
    install()
    from mutmut.__main__ import cli

    # mutmut runs pytest in processes forked from this one, in mutants/, whose tests/ must be imported from there:
    # this package, imported from the project to get here, would be taken for it (pytest's import mismatch, which
    # mutmut waives itself only while it gathers stats).
    for name in [n for n in sys.modules if n == "tests" or n.startswith("tests.")]:
        del sys.modules[name]
    os.environ["PY_IGNORE_IMPORTMISMATCH"] = "1"

    cli(argv, prog_name="mutmut")


if __name__ == "__main__":
    main(sys.argv[1:])
