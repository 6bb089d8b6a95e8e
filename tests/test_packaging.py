"""Function archives hold exactly their handler files; the Pillow layer is built for the Lambda architecture."""
from __future__ import annotations

import subprocess
import sys
import zipfile

import pytest

from infra import packaging


@pytest.mark.parametrize("name, extra", [
    ("intake", {"intake.py", "sniff.py"}),
    ("thumbnails", {"stage.py", "thumbnails.py", "imaging.py", "isolation.py", "preflight.py", "sniff.py"}),
    ("labels", {"stage.py", "labels.py"}),
    ("upload_api", {"upload_api.py"}),
])
def test_archives_contain_exactly_the_expected_files(name, extra):
    common = {"__init__.py", "aws.py", "environment.py", "observability.py"}
    if name != "upload_api":
        common |= {"contracts.py", "failures.py", "limits.py", "records.py"}
    names = set(zipfile.ZipFile(packaging.function_archive(name)).namelist())
    assert names == {f"handlers/{f}" for f in common | extra}


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
