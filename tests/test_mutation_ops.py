"""The mutation operators `make mutate` adds to mutmut (tests/mutation_ops.py): each makes exactly the mutant it
promises on a tiny source, through mutmut's own file mutation, and a mutant of a lifted module-level value takes
effect in a process that imported the module before the mutant was chosen."""
from __future__ import annotations

import importlib
import json
import sys
import textwrap

import pytest

from tests import mutation_ops

mutation_ops.install()


def mutants(source: str, tmp_path, monkeypatch) -> dict[str, str]:
    """Mutant name -> its mutated code (the lines that differ from the original function's), as mutmut makes them."""
    from mutmut.mutation.file_mutation import mutate_file_contents

    monkeypatch.chdir(tmp_path)
    code = textwrap.dedent(source)
    mutated = mutate_file_contents("tiny.py", code)
    listing = json.loads((tmp_path / "mutants" / "tiny.py.lines.json").read_text())["mutants"]
    assert sorted(listing) == sorted(mutated.mutant_names)
    return {name: entry["mutated"] for name, entry in listing.items()}


def made(source: str, tmp_path, monkeypatch) -> set[str]:
    return set(mutants(source, tmp_path, monkeypatch).values())


def test_a_policy_effect_is_flipped(tmp_path, monkeypatch):
    found = made('''
        def statement():
            return {"Effect": "Allow", "Action": "s3:GetObject"}
    ''', tmp_path, monkeypatch)
    assert '"Deny"' in found and '"XXAllowXX"' in found  # mutmut's own string mutant is still made


@pytest.mark.parametrize("expression, swapped", [
    ("#seq = :seq AND #status = :accepted", {"#seq = :seq OR #status = :accepted", "#seq <> :seq AND #status = :accepted",
                                             "#seq = :seq AND #status <> :accepted"}),
    ("attribute_not_exists(#seq) OR #seq < :seq", {"attribute_exists(#seq) OR #seq < :seq",
                                                   "attribute_not_exists(#seq) AND #seq < :seq",
                                                   "attribute_not_exists(#seq) OR #seq <= :seq"}),
    ("attribute_exists(#k) AND #n >= :n", {"attribute_not_exists(#k) AND #n >= :n", "attribute_exists(#k) OR #n >= :n",
                                          "attribute_exists(#k) AND #n > :n"}),
])
def test_each_operator_of_a_condition_expression_is_swapped_one_at_a_time(expression, swapped, tmp_path, monkeypatch):
    found = made(f'''
        def write(table):
            return table.update_item(ConditionExpression="{expression}")
    ''', tmp_path, monkeypatch)
    assert {f'"{s}"' for s in swapped} <= found


def test_a_joined_and_and_an_f_string_condition_are_swapped_too(tmp_path, monkeypatch):
    found = made('''
        def condition(made):
            return " AND ".join(["#a = :a", f"#seq = :seq AND {made}"])
    ''', tmp_path, monkeypatch)
    assert {'" OR "', 'f"#seq = :seq OR {made}"', 'f"#seq <> :seq AND {made}"'} <= found


def test_prose_is_no_expression():
    assert not mutation_ops._is_expression("the image is 3 < 4 AND over") and not mutation_ops._is_expression("arn:aws:s3")


def test_a_statement_is_removed_but_not_a_log_line_or_a_docstring(tmp_path, monkeypatch):
    monkeypatch.setattr("mutmut.mutation.pragma_handling.config",
                        lambda: type("C", (), {"do_not_mutate_patterns": [r"^\s*logger\.info\("]})())
    found = mutants('''
        def check(size, logger):
            """Refuse what is too large."""
            logger.info("checking")
            if size > 10:
                raise ValueError("too large")
            return size
    ''', tmp_path, monkeypatch)
    lines = json.loads((tmp_path / "mutants" / "tiny.py.lines.json").read_text())["mutants"]
    removed = {lines[name]["line"] for name, code in found.items() if code == "pass"}
    assert removed == {6}  # the raise; not the docstring (3), not the log line (4)


def test_the_assignment_a_nested_function_binds_nonlocal_is_kept_so_every_mutant_compiles(tmp_path, monkeypatch):
    # Without `total = 0` the `nonlocal total` has no binding: a SyntaxError at import, which fails every test.
    from mutmut.mutation.file_mutation import mutate_file_contents

    monkeypatch.chdir(tmp_path)
    mutated = mutate_file_contents("tiny.py", textwrap.dedent('''
        def count(items):
            total = 0
            seen = set()

            def add(item):
                nonlocal total
                total += item
            for item in items:
                add(item)
            return total
    '''))
    compile(mutated.code, "tiny.py", "exec")
    lines = json.loads((tmp_path / "mutants" / "tiny.py.lines.json").read_text())["mutants"]
    assert {lines[name]["line"] for name in mutated.mutant_names if lines[name]["mutated"] == "pass"} == {4, 8, 10}


def test_an_except_body_becomes_pass_and_a_bare_raise(tmp_path, monkeypatch):
    source = '''
        def parse(raw):
            try:
                return int(raw)
            except ValueError:
                log(raw)
                return None
    '''
    from mutmut.mutation.file_mutation import mutate_file_contents

    monkeypatch.chdir(tmp_path)
    code = mutate_file_contents("tiny.py", textwrap.dedent(source)).code
    assert "    except ValueError:\n        pass\n" in code and "    except ValueError:\n        raise\n" in code


def test_a_lone_statement_in_an_except_is_removed_once(tmp_path, monkeypatch):
    found = list(mutants('''
        def parse(raw):
            try:
                return int(raw)
            except ValueError as exc:
                raise KeyError(raw) from exc
    ''', tmp_path, monkeypatch).values())
    assert found.count("pass") == 1 and found.count("except ValueError as exc: raise") == 1


@pytest.mark.parametrize("literal, dropped", [
    ('{"a": 1, "b": 2}', {'{"b": 2}', '{"a": 1}'}),
    ('["x", "y", "z"]', {'["y", "z"]', '["x", "z"]', '["x", "y"]'}),
    ('{"x", "y"}', {'{"y"}', '{"x"}'}),
    ('("x", "y")', {'("y",)', '("x",)'}),
])
def test_each_entry_of_a_container_is_dropped(literal, dropped, tmp_path, monkeypatch):
    found = made(f'''
        def table():
            return {literal}
    ''', tmp_path, monkeypatch)
    assert dropped <= found


def test_a_bare_tuple_target_keeps_its_names(tmp_path, monkeypatch):
    found = made('''
        def pair(values):
            first, second = values
            return first
    ''', tmp_path, monkeypatch)
    assert not [code for code in found if code in ("(second)", "(first)", "second", "first")]


def test_a_property_and_a_context_manager_are_mutated_and_still_work(tmp_path, monkeypatch):
    from mutmut.mutation.file_mutation import mutate_file_contents

    monkeypatch.chdir(tmp_path)
    mutated = mutate_file_contents("tiny.py", textwrap.dedent('''
        from contextlib import contextmanager


        class Record:
            def __init__(self, item):
                self.item = item

            @property
            def first(self):
                return self.item.get("created") == self.item.get("updated")


        @contextmanager
        def classified():
            try:
                yield
            except KeyError as exc:
                raise ValueError(str(exc)) from exc
    '''))
    assert any("first" in n for n in mutated.mutant_names) and any("classified" in n for n in mutated.mutant_names)
    namespace: dict = {"__name__": "tiny"}
    monkeypatch.setenv("MUTANT_UNDER_TEST", "")
    exec(compile(mutated.code, "tiny.py", "exec"), namespace)
    assert namespace["Record"]({"created": 1, "updated": 1}).first is True
    with pytest.raises(ValueError), namespace["classified"]():
        raise KeyError("x")
    [negated] = [n for n in mutated.mutant_names if "first" in n and "!=" in mutants_code(mutated.code, n)]
    monkeypatch.setenv("MUTANT_UNDER_TEST", f"tiny.{negated}")
    assert namespace["Record"]({"created": 1, "updated": 1}).first is False


def mutants_code(code: str, name: str) -> str:
    """The source of the generated function `name` in mutmut's mutated file."""
    start = code.index(f"def {name}(")
    end = code.find("\n    def ", start + 1)
    return code[start:end if end > 0 else None]


def test_a_module_level_value_is_lifted_and_its_mutant_takes_effect_after_import(tmp_path, monkeypatch):
    from mutmut.mutation.file_mutation import mutate_file_contents

    monkeypatch.chdir(tmp_path)
    source = textwrap.dedent('''
        CODES: dict[str, str] = {"NoSuchKey": "gone", "PreconditionFailed": "changed"}


        def reason(code):
            return CODES.get(code)
    ''')
    mutated = mutate_file_contents("tiny_values.py", source)
    listing = json.loads((tmp_path / "mutants" / "tiny_values.py.lines.json").read_text())
    assert listing["values"] == {"x__value_of_CODES": ["x_reason"]}
    [dropped] = [n for n, e in listing["mutants"].items() if e["mutated"] == '{"NoSuchKey": "gone"}']
    assert listing["mutants"][dropped]["line"] == 2
    (tmp_path / "tiny_values.py").write_text(mutated.code)
    (tmp_path / "reader.py").write_text("from tiny_values import CODES\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("MUTANT_UNDER_TEST", "")
    tiny, reader = importlib.import_module("tiny_values"), importlib.import_module("reader")
    try:
        assert tiny.reason("PreconditionFailed") == "changed"
        monkeypatch.setenv("MUTANT_UNDER_TEST", f"tiny_values.{dropped}")
        mutation_ops.activate(f"tiny_values.{dropped}")
        assert tiny.reason("PreconditionFailed") is None and "PreconditionFailed" not in reader.CODES
    finally:
        sys.modules.pop("tiny_values", None)
        sys.modules.pop("reader", None)


def test_a_lifted_value_is_tested_by_the_tests_of_the_functions_that_read_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mutants" / "pkg").mkdir(parents=True)
    (tmp_path / "mutants" / "pkg" / "mod.py.lines.json").write_text(json.dumps(
        {"values": {"x__value_of_A": ["x_reads"], "x__value_of_B": []}, "mutants": {}}))
    tests = {"pkg.mod.x_reads": {"t1"}, "pkg.mod.x_other": {"t2"}, "other.x_reads": {"t3"}}
    mutation_ops.assign_value_tests(tests)
    assert tests["pkg.mod.x__value_of_A"] == {"t1"} and tests["pkg.mod.x__value_of_B"] == {"t1", "t2"}


def test_a_condition_differing_only_in_its_keywords_case_is_not_made_other_strings_keep_both_cases(tmp_path, monkeypatch):
    # DynamoDB reads "and" as AND: that mutant is the same condition, so it is not made. The upper-case copy names no
    # placeholder (#SEQ is not #seq) and is made; a string that is no expression keeps both of mutmut's case mutants.
    found = made('''
        def write(table):
            return table.update_item(ConditionExpression="#seq = :seq AND attribute_not_exists(#g)", Note="Some Words")
    ''', tmp_path, monkeypatch)
    assert '"#seq = :seq and attribute_not_exists(#g)"' not in found
    assert '"#SEQ = :SEQ AND ATTRIBUTE_NOT_EXISTS(#G)"' in found and '"#seq = :seq OR attribute_not_exists(#g)"' in found
    assert {'"some words"', '"SOME WORDS"'} <= found


@pytest.mark.parametrize("original, mutated, same", [
    ("#seq = :seq AND #s = :s", "#seq = :seq and #s = :s", True),
    ("SET #a = :a REMOVE #b", "set #a = :a remove #b", True),
    ("#seq = :seq AND #s = :s", "#SEQ = :SEQ AND #S = :S", False),
    ("attribute_exists(#a)", "ATTRIBUTE_EXISTS(#a)", False),
    ("#seq = :seq AND #s = :s", "#seq = :seq OR #s = :s", False),
])
def test_keyword_case_only_is_true_for_keywords_alone(original, mutated, same):
    assert mutation_ops.keyword_case_only(original, mutated) is same


def test_a_run_tries_the_survivors_of_its_modules_again_and_keeps_every_other_verdict(tmp_path, monkeypatch):
    from tests import mutation

    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[tool.mutmut]\nonly_mutate = ["handlers/*.py"]\n')
    metas = {}
    for module in ("records", "preflight"):
        meta = tmp_path / "mutants" / "handlers" / f"{module}.py.meta"
        meta.parent.mkdir(parents=True, exist_ok=True)
        meta.write_text(json.dumps({"exit_code_by_key": {f"a__mutmut_{n}": code for n, code in enumerate((0, 1, 0, None, 36))},
                                    "durations_by_key": {}}))
        metas[module] = meta
    assert mutation.retest_survivors(["handlers/records.py"]) == 2
    codes = json.loads(metas["records"].read_text())["exit_code_by_key"]
    assert list(codes.values()) == [None, 1, None, None, 36]  # survivors forgotten; killed, unrun and timeout kept
    assert list(json.loads(metas["preflight"].read_text())["exit_code_by_key"].values()) == [0, 1, 0, None, 36]
    assert mutation.retest_survivors([]) == 2  # the whole scope: the other module's survivors too


def test_an_equivalent_survivor_is_not_tried_again(tmp_path, monkeypatch):
    from tests import mutation

    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[tool.mutmut]\nonly_mutate = ["handlers/*.py"]\n')
    (tmp_path / "handlers").mkdir()
    (tmp_path / "handlers" / "failures.py").write_text("class PermanentFailure(Exception):\n    def __init__(self, reason):\n"
                                                       "        super().__init__(reason)\n        self.reason = reason\n")
    meta = tmp_path / "mutants" / "handlers" / "failures.py.meta"
    meta.parent.mkdir(parents=True)
    meta.write_text(json.dumps({"exit_code_by_key": {"handlers.failures.x_a__mutmut_1": 0, "handlers.failures.x_a__mutmut_2": 0}}))
    (tmp_path / "mutants" / "handlers" / "failures.py.lines.json").write_text(json.dumps({"mutants": {
        "x_a__mutmut_1": {"line": 3, "mutated": "pass"}, "x_a__mutmut_2": {"line": 4, "mutated": "pass"}}}))
    assert mutation.retest_survivors([]) == 1  # line 3's `pass` is listed as equivalent (tests/mutation.py)
    assert json.loads(meta.read_text())["exit_code_by_key"] == {"handlers.failures.x_a__mutmut_1": 0,
                                                                "handlers.failures.x_a__mutmut_2": None}


def test_a_lifted_module_level_value_gets_every_mutant_of_each_of_its_nodes(tmp_path, monkeypatch):
    # Several mutants share one node (a dict's dropped entries; a string's three): lifting once kept only the last,
    # so dropping "PreconditionFailed" from failures.PERMANENT_ERRORS was never made.
    found = mutants('''
        ERRORS = {"NoSuchKey": "gone", "PreconditionFailed": "changed", "412": "changed"}

        def reason(code):
            return ERRORS.get(code)
    ''', tmp_path, monkeypatch)
    lifted = {name: code for name, code in found.items() if name.startswith("x__value_of_ERRORS__")}
    assert {'{"PreconditionFailed": "changed", "412": "changed"}', '{"NoSuchKey": "gone", "412": "changed"}',
            '{"NoSuchKey": "gone", "PreconditionFailed": "changed"}'} <= set(lifted.values())
    assert {'"XXPreconditionFailedXX"', '"preconditionfailed"', '"PRECONDITIONFAILED"'} <= set(lifted.values())
    assert len(lifted) == 3 + 13  # three drops; each string XX-wrapped and in whichever other case differs from it


def test_mutants_made_by_other_operators_are_made_and_judged_again(tmp_path, monkeypatch):
    from tests import mutation

    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[tool.mutmut]\nonly_mutate = ["handlers/*.py"]\n')
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "mutation_ops.py").write_text("OPERATORS = []\n")
    made = [tmp_path / "mutants" / "handlers" / f"records.py{end}" for end in ("", ".meta", ".lines.json")]
    kept = [tmp_path / "mutants" / "tests" / "test_records.py", tmp_path / "mutants" / "mutmut-stats.json"]
    for f in made + kept:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text("{}")
    assert mutation.forget_mutants_of_other_operators() == 1  # made before any stamp: by unknown operators
    assert not any(f.exists() for f in made) and all(f.exists() for f in kept)
    for f in made:
        f.write_text("{}")
    assert mutation.forget_mutants_of_other_operators() == 0 and all(f.exists() for f in made)  # the same operators
    (tmp_path / "tests" / "mutation_ops.py").write_text("OPERATORS = ['another']\n")
    assert mutation.forget_mutants_of_other_operators() == 1 and not any(f.exists() for f in made)
