"""Lambda archives and layers, built reproducibly under build/.

Each function's archive holds exactly the handler modules its handler imports, directly or through each other
(read from the source with `ast`, never listed by hand), and whether a function needs the Pillow layer is read the
same way. Pillow goes in a layer built by pip from manylinux wheels for the target architecture and Python,
checked against the glibc of the runtime's Amazon Linux and cached by a hash of what goes into it: `pulumi up`
builds it only when that cache is cold (`make layer` builds it ahead, for CI). Under Pulumi's mocks (the tests,
the local cloud) nothing reads a layer's archive, so `layers_named_only()` names its path without running pip.
Powertools comes from AWS's public layer, resolved for the version requirements.txt pins.
"""
from __future__ import annotations

import ast
import contextlib
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path

from handlers.names import Function

PROJECT_ROOT = Path(__file__).resolve().parent.parent
HANDLERS_DIR = PROJECT_ROOT / "handlers"
BUILD_DIR = PROJECT_ROOT / "build"
REQUIREMENTS = PROJECT_ROOT / "requirements.txt"
PACKAGE = HANDLERS_DIR.name


def imports_of(path: Path, packages: Iterable[str] = (PACKAGE,)) -> set[str]:
    """Top-level module names, and modules of the project's `packages` ("handlers.x"), that the file at `path`
    imports, anywhere in it (an import inside a function counts: it runs when that function does)."""
    found: set[str] = set()
    ours = tuple(packages)

    def local(module: str) -> bool:
        return module.split(".")[0] in ours and "." in module

    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.add(alias.name if local(alias.name) else alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module in ours:  # from handlers import a, b
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif local(node.module):
                found.add(node.module)
            else:
                found.add(node.module.split(".")[0])
    return found


@dataclass(frozen=True)
class FunctionPackage:
    name: str
    handler: str  # module.function, as Lambda's `handler` setting

    @property
    def module(self) -> str:
        return self.handler.rsplit(".", 1)[0]

    @cached_property
    def _closure(self) -> tuple[tuple[str, ...], frozenset[str]]:
        """(the project's files the handler imports, directly or through each other, with their packages'
        __init__.py; the other top-level modules they import). The handler's module may be outside handlers/ (a
        test's own stage): its package is followed the same way."""
        packages = {PACKAGE, self.module.split(".")[0]}
        files: set[str] = set()
        others: set[str] = set()
        todo = [self.module]
        while todo:
            module = todo.pop()
            file = module.replace(".", "/") + ".py"
            if file in files:
                continue
            files.add(file)
            files.add(f"{module.split('.')[0]}/__init__.py")
            for name in imports_of(PROJECT_ROOT / file, packages):
                (todo.append(name) if name.split(".")[0] in packages and "." in name else others.add(name))
        return tuple(sorted(files)), frozenset(others)

    @property
    def files(self) -> tuple[str, ...]:
        """The project's files the archive holds, by their path in the project."""
        return self._closure[0]

    @property
    def needs_pillow(self) -> bool:
        """Whether the handler's code imports Pillow: then its function gets the Pillow layer."""
        return "PIL" in self._closure[1]


# The project's own functions; a declared stage's is packaged by `package`.
FUNCTIONS: dict[str, FunctionPackage] = {
    function: FunctionPackage(function, f"{PACKAGE}.{function}.handler") for function in Function
}


@cache
def package(name: str, handler: str) -> FunctionPackage:
    """The archive's contents of the function `name`, whose handler is `handler` (module.function)."""
    known = FUNCTIONS.get(name)
    return known if known is not None and known.handler == handler else FunctionPackage(name, handler)


def pinned(name: str) -> str:
    """The exact version requirements.txt pins for `name` (one place for every pin)."""
    for line in REQUIREMENTS.read_text().splitlines():
        match = re.fullmatch(r"\s*([A-Za-z0-9_.-]+)\s*==\s*([^\s;#]+).*", line)
        if match and match.group(1).lower().replace("_", "-") == name.lower():
            return match.group(2)
    raise LookupError(f"requirements.txt does not pin {name}")


PILLOW_REQUIREMENT = f"pillow=={pinned('pillow')}"
HEIF_REQUIREMENT = f"pillow-heif=={pinned('pillow-heif')}"  # iPhone photos (HEIC); only when the allowed formats include it
# The saliency point's library and its numpy (smartcrop declares numpy unpinned: the pin keeps the layer reproducible).
SALIENCY_REQUIREMENTS = (f"smartcrop=={pinned('smartcrop')}", f"numpy=={pinned('numpy')}")
MACHINES = {"arm64": "aarch64", "x86_64": "x86_64"}
# The lambda layer size limits (Lambda quotas page): 50 MB zipped for a direct upload, 250 MB unzipped for the
# function and all its layers together.
LAYER_ZIPPED_LIMIT = 50 * 1000**2
UNZIPPED_LIMIT = 250 * 1000**2


def powertools_parameter(runtime: str, architecture: str) -> str:
    """The public SSM parameter AWS publishes for the Powertools layer of the pinned version
    (/aws/service/powertools/python/{arch}/{runtime}/{version}, Powertools docs, "Lambda Layer")."""
    return f"/aws/service/powertools/python/{architecture}/{runtime}/{pinned('aws-lambda-powertools')}"


def platform_tags(architecture: str, glibc: tuple[int, int]) -> list[str]:
    """Every manylinux tag a runtime with `glibc` loads (pip takes only the tags it is given, without expanding)."""
    machine = MACHINES[architecture]
    major, minor = glibc
    return [*(f"manylinux_{major}_{m}_{machine}" for m in range(minor, 16, -1)), f"manylinux2014_{machine}"]


def _glibc_of(tag: str) -> tuple[int, int] | None:
    legacy = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
    match = re.match(r"manylinux_(\d+)_(\d+)_", tag)
    if match:
        return int(match.group(1)), int(match.group(2))
    return next((v for k, v in legacy.items() if tag.startswith(k + "_")), None)


def check_wheels(site: Path, architecture: str, runtime: str, glibc: tuple[int, int]) -> None:
    """Stop with a clear message unless every installed wheel loads on `runtime`'s Amazon Linux."""
    python = "cp" + runtime.removeprefix("python").replace(".", "")
    machine = MACHINES[architecture]
    problems = []
    for wheel in sorted(site.glob("*.dist-info/WHEEL")):
        tags = [line.split(":", 1)[1].strip() for line in wheel.read_text().splitlines() if line.startswith("Tag:")]

        def loads(tag: str) -> bool:
            interpreter, _, platform = tag.split("-", 2)
            if platform == "any":
                return True
            needed = _glibc_of(platform)
            return (interpreter in (python, "py3") and platform.endswith("_" + machine)
                    and needed is not None and needed <= glibc)

        if not any(loads(tag) for tag in tags):
            problems.append(f"{wheel.parent.name}: {', '.join(tags)}")
    if problems:
        raise RuntimeError(
            f"the layer for {runtime} on {architecture} needs wheels for {python} and glibc {glibc[0]}.{glibc[1]} "
            f"(Amazon Linux of {runtime}), but pip installed: " + "; ".join(problems))


def write_zip(destination: Path, files: dict[str, Path]) -> Path:
    """Write `files` (archive name -> source) with fixed timestamps, so equal inputs give equal bytes."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=destination.parent, suffix=".zip.tmp")
    os.close(fd)
    with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, files[name].read_bytes())
    os.replace(temporary, destination)
    return destination


def function_archive(name: str, handler: str | None = None) -> Path:
    """build/functions/<name>.zip holding the project's files its handler imports (a project's function by its
    name alone; a declared stage's with its handler)."""
    found = package(name, handler) if handler else FUNCTIONS[name]
    return write_zip(BUILD_DIR / "functions" / f"{name}.zip", {f: PROJECT_ROOT / f for f in found.files})


_build_layers = [True]


@contextlib.contextmanager
def layers_named_only() -> Iterator[None]:
    """Inside, pillow_layer names the cached archive's path and builds nothing: for running the program under mocks,
    which record the path and never read the file."""
    _build_layers.append(False)
    try:
        yield
    finally:
        _build_layers.pop()


def pillow_layer(architecture: str, runtime: str, glibc: tuple[int, int], heif: bool = False) -> Path:
    """A zip with python/PIL, smartcrop and numpy (and pillow_heif when `heif`) for Lambda's `architecture` and `runtime`,
    built by pip once, checked against the runtime's glibc, and cached."""
    python_version = runtime.removeprefix("python")
    tags = platform_tags(architecture, glibc)
    requirements = [PILLOW_REQUIREMENT, *SALIENCY_REQUIREMENTS, *([HEIF_REQUIREMENT] if heif else [])]
    digest = hashlib.sha256(json.dumps([requirements, architecture, python_version, tags]).encode()).hexdigest()[:16]
    name = "pillow-heif" if heif else "pillow"
    destination = BUILD_DIR / "layers" / f"{name}-{architecture}-py{python_version}-{digest}.zip"
    if destination.exists() or not _build_layers[-1]:
        return destination
    destination.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=destination.parent) as work:
        target = Path(work) / "python"
        command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
                   "--target", str(target), "--implementation", "cp", "--python-version", python_version,
                   "--only-binary=:all:", *(f"--platform={tag}" for tag in tags), *requirements]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"building the Pillow layer for {architecture}/{runtime} (glibc {glibc[0]}.{glibc[1]}) "
                               f"failed: no wheel of {', '.join(requirements)} fits it:\n{result.stderr.strip()[-2000:]}")
        check_wheels(target, architecture, runtime, glibc)
        files = {str(path.relative_to(work)): path for path in target.rglob("*")
                 if path.is_file() and "__pycache__" not in path.parts}
        write_zip(destination, files)
    return destination


def main(argv: list[str] | None = None) -> int:
    """python -m infra.packaging [--stack NAME]: build every archive and the Pillow layer a stack deploys, ahead of
    `pulumi up` (CI, or a machine that will deploy offline); `pulumi up` then finds them cached."""
    import argparse

    from infra.settings import RUNTIME_GLIBC, Settings, load_stack

    parser = argparse.ArgumentParser(prog="python -m infra.packaging", description=main.__doc__)
    parser.add_argument("--stack", help="read Pulumi.<stack>.yaml (default: the defaults)")
    args = parser.parse_args(argv)
    s = load_stack(PROJECT_ROOT / f"Pulumi.{args.stack}.yaml") if args.stack else Settings()
    for name in FUNCTIONS:
        print(f"{function_archive(name).relative_to(PROJECT_ROOT)}")
    layer = pillow_layer(s.architecture, s.runtime, RUNTIME_GLIBC[s.runtime], heif=s.needs_heif)
    print(f"{layer.relative_to(PROJECT_ROOT)} ({layer.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
