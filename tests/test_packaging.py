"""Function archives hold exactly their handler files; the Pillow layer is built for the Lambda architecture."""
from __future__ import annotations

import subprocess
import sys
import zipfile

import pytest

from infra import packaging


@pytest.mark.parametrize("name", sorted(packaging.FUNCTIONS))
def test_an_archive_holds_its_handler_and_what_that_imports_and_nothing_else(name):
    names = set(zipfile.ZipFile(packaging.function_archive(name)).namelist())
    files = {n.removeprefix("handlers/") for n in names}
    assert all(n.startswith("handlers/") for n in names) and {"__init__.py", f"{name}.py", "names.py"} <= files
    imported = {module.removeprefix("handlers.") + ".py" for f in files
                for module in packaging.imports_of(packaging.HANDLERS_DIR / f) if module.startswith("handlers.")}
    assert imported <= files  # complete: whatever an archived module imports is archived too
    assert files - imported <= {"__init__.py", f"{name}.py"}  # minimal: nothing nobody imports


def test_the_intake_and_the_api_never_carry_the_image_engine():
    assert "imaging.py" not in packaging.FUNCTIONS["intake"].files
    assert not {"imaging.py", "records.py"} & set(packaging.FUNCTIONS["upload_api"].files)
    assert {name for name, package in packaging.FUNCTIONS.items() if package.needs_pillow} == {"thumbnails"}


def test_imports_are_read_wherever_they_stand(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("import os.path\nfrom handlers import a, b\nfrom handlers.c import d\nimport handlers.e\n"
                      "def f():\n    from PIL import Image\n    from . import local\n")
    assert packaging.imports_of(module) == {"os", "handlers.a", "handlers.b", "handlers.c", "handlers.e", "PIL"}


def test_archives_are_reproducible():
    first = packaging.function_archive("intake").read_bytes()
    assert packaging.function_archive("intake").read_bytes() == first


@pytest.mark.parametrize("name", sorted(packaging.FUNCTIONS))
def test_handler_setting_resolves_to_a_function_inside_the_archive(name, tmp_path):
    package = packaging.FUNCTIONS[name]
    zipfile.ZipFile(packaging.function_archive(name)).extractall(tmp_path)
    module, function = package.handler.rsplit(".", 1)
    code = (f"import importlib, sys; sys.path.insert(0, {str(tmp_path)!r}); m = importlib.import_module({module!r}); "
            f"assert m.__file__.startswith({str(tmp_path)!r}), m.__file__; print(callable(getattr(m, {function!r})))")
    # -I: isolated from the project directory, so only the archive can provide the module.
    out = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True"


@pytest.mark.network
def test_pillow_layer_for_arm64_holds_an_aarch64_extension():
    layer = packaging.pillow_layer("arm64", "python3.13", (2, 34))
    names = zipfile.ZipFile(layer).namelist()
    assert any(n.startswith("python/PIL/_imaging.cpython-313-aarch64-linux-gnu") and n.endswith(".so") for n in names)
    assert not any("__pycache__" in n for n in names)
    assert packaging.pillow_layer("arm64", "python3.13", (2, 34)) == layer  # cached: the same file, not rebuilt


def test_running_the_program_under_mocks_never_runs_pip(tmp_path, monkeypatch):
    """The mocks record a layer's archive path and never read the file, so no package index is reached (a real
    `pulumi up` builds the layer there, once, when its cache is cold)."""
    from localcloud import program

    monkeypatch.setattr(packaging, "BUILD_DIR", tmp_path)

    def no_pip(*args, **kwargs):
        raise AssertionError(f"pip was run: {args}")

    monkeypatch.setattr(packaging.subprocess, "run", no_pip)
    stack = program.run(program.RecordingMocks(), {"allowedFormats": ["jpeg", "heic"]})
    [layer] = stack.of_type("aws:lambda/layerVersion:LayerVersion")
    path = layer.inputs["code"].path
    assert path.startswith(str(tmp_path / "layers" / "pillow-heif-arm64-py3.13-")) and not (tmp_path / "layers").exists()
    with pytest.raises(AssertionError, match="pip was run"):
        packaging.pillow_layer("arm64", "python3.13", (2, 34))  # outside the mocks, a cold cache builds
