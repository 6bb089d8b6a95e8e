"""Each shared name lives once (handlers/names.py): renaming a prefix, a status, a function, a variable or a
metric is a one-line change. Product code (infra/, handlers/, localcloud/, bench/, ops/ and the program) holds no
string literal equal to one of them, so nothing can be renamed in one place and missed in another."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from handlers import environment, names
from localcloud import program

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = [ROOT / "__main__.py", *(p for folder in ("infra", "handlers", "localcloud", "bench", "ops")
                                   for p in sorted((ROOT / folder).rglob("*.py")))]
SHARED = {
    names.UPLOADS_PREFIX: "UPLOADS_PREFIX", names.API_UPLOADS_PREFIX: "API_UPLOADS_PREFIX",
    names.THUMBNAILS_PREFIX: "THUMBNAILS_PREFIX", names.PROJECT: "PROJECT",
    **{member.value: f"{enum.__name__}.{member.name}"
       for enum in (names.Status, names.StageStatus, names.Function, names.Env, names.Metric, names.ClaimEvent,
                    names.UploadApiKind)
       for member in enum},
}

# The same letters with another meaning, each with the reason.
HOMONYMS = {
    ("infra/edges.py", "thumbnails"): "CloudFront's origin id, a label inside the distribution's own configuration",
    ("ops/__main__.py", "reprocess"): "the command's own name on the command line",
    ("ops/__main__.py", "pause"): "the command's own name on the command line",
    ("ops/__main__.py", "backfill"): "the command's own name on the command line",
    ("handlers/intake.py", "intake"): "its resources' names (claimcheck-intake-queue, …), as every release named them",
}


def literals(path: Path) -> list[tuple[int, str]]:
    """(line, value) of every string constant in the file but docstrings."""
    tree = ast.parse(path.read_text(), str(path))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]


@pytest.mark.source
def test_no_shared_name_is_spelled_out_outside_names_py():
    stray = [f"{path.relative_to(ROOT)}:{line}: {value!r} is names.{SHARED[value]}"
             for path in PRODUCT if path != ROOT / "handlers" / "names.py"
             for line, value in literals(path)
             if value in SHARED and (str(path.relative_to(ROOT)), value) not in HOMONYMS]
    assert not stray, "\n".join(stray)


def test_the_check_finds_a_stray_literal(tmp_path):
    stray = tmp_path / "stray.py"
    stray.write_text('"""uploads/ in a docstring is prose."""\nPREFIX = "uploads/"\nstatus = "rejected"\n')
    assert [value for _, value in literals(stray) if value in SHARED] == ["uploads/", "rejected"]


def test_every_variable_the_handlers_read_is_one_the_program_sets():
    """The program and the handlers agree on every variable, because both take it from one declaration: names.Env
    for where the stack's resources are, a settings field's `env` for a setting (handlers/settings.py, encoded and
    decoded by one codec). Each Env member the handlers' Environment reads is set on some function (but the one the
    local cloud sets, to say what it emulates), and the program sets no variable that neither declares."""
    import dataclasses

    from handlers import stages, upload_api

    read = {node.args[0].attr for node in ast.walk(ast.parse(Path(environment.__file__).read_text()))
            if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Attribute)
            and isinstance(node.args[0].value, ast.Name) and node.args[0].value.id == "Env"}
    deployment = program.run(program.RecordingMocks(), {"cdn": True, "uploadApi": True, "uploadQuota": {"uploads": 1},
                                                        "duplicates": "record"})
    set_somewhere = {name for fn in deployment.of_type("aws:lambda/function:Function")
                     for name in fn.inputs["environment"]["variables"]}
    lambda_own = {"AWS_LAMBDA_FUNCTION_MEMORY_SIZE"}
    local_cloud_own = {names.Env.EMULATED}
    declared_settings = {spec.metadata["env"] for cls in [*(s.settings for s in stages.declared()), upload_api.UploadSettings]
                         for spec in dataclasses.fields(cls) if spec.metadata.get("env")}
    assert {names.Env[member] for member in read} - local_cloud_own <= set_somewhere
    assert set_somewhere <= {member.value for member in names.Env} | declared_settings | lambda_own


@pytest.mark.parametrize("function", list(names.Function))
def test_each_function_is_declared_once_with_its_own_handler(function):
    deployment = program.run(program.RecordingMocks(), {"uploadApi": True, "cdn": True})
    assert deployment.functions()[function].inputs["handler"] == f"handlers.{function.value}.handler"
