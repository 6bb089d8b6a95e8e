"""Lambda archives and layers, built reproducibly under build/.

Each function's archive is made from an explicit list of handler files, so it
holds exactly what that function imports. Pillow goes in a layer built by pip
from manylinux wheels for the target architecture and Python, checked against
the glibc of the runtime's Amazon Linux; the layer is cached by a hash of what
goes into it, so repeated runs do not rebuild. Powertools comes from AWS's
public layer, resolved for the version requirements.txt pins.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
HANDLERS_DIR = PROJECT_ROOT / "handlers"
BUILD_DIR = PROJECT_ROOT / "build"
REQUIREMENTS = PROJECT_ROOT / "requirements.txt"

_COMMON = ("__init__.py", "aws.py", "contracts.py", "environment.py", "failures.py", "limits.py",
           "observability.py", "records.py")


@dataclass(frozen=True)
class FunctionPackage:
    name: str
    handler: str  # module.function, as Lambda's `handler` setting
    files: tuple[str, ...]  # paths under handlers/
    needs_pillow: bool

    @property
    def module(self) -> str:
        return self.handler.rsplit(".", 1)[0]


FUNCTIONS: dict[str, FunctionPackage] = {
    "intake": FunctionPackage("intake", "handlers.intake.handler", (*_COMMON, "intake.py", "sniff.py"), False),
    "thumbnails": FunctionPackage("thumbnails", "handlers.thumbnails.handler",
                                  (*_COMMON, "stage.py", "thumbnails.py", "imaging.py", "isolation.py",
                                   "preflight.py", "sniff.py"), True),
    "labels": FunctionPackage("labels", "handlers.labels.handler", (*_COMMON, "stage.py", "labels.py"), False),
    "upload_api": FunctionPackage("upload_api", "handlers.upload_api.handler",
                                  ("__init__.py", "aws.py", "environment.py", "observability.py", "upload_api.py"), False),
}


def pinned(name: str) -> str:
    """The exact version requirements.txt pins for `name` (one place for every pin)."""
    for line in REQUIREMENTS.read_text().splitlines():
        match = re.fullmatch(r"\s*([A-Za-z0-9_.-]+)\s*==\s*([^\s;#]+).*", line)
        if match and match.group(1).lower().replace("_", "-") == name.lower():
            return match.group(2)
    raise LookupError(f"requirements.txt does not pin {name}")


PILLOW_REQUIREMENT = f"pillow=={pinned('pillow')}"
HEIF_REQUIREMENT = f"pillow-heif=={pinned('pillow-heif')}"  # iPhone photos (HEIC); only when the allowed formats include it
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


def function_archive(name: str) -> Path:
    """build/functions/<name>.zip holding handlers/<files> for one function."""
    package = FUNCTIONS[name]
    files = {f"handlers/{f}": HANDLERS_DIR / f for f in package.files}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"function {name!r} lists handler files that do not exist: {missing}")
    return write_zip(BUILD_DIR / "functions" / f"{name}.zip", files)


def pillow_layer(architecture: str, runtime: str, glibc: tuple[int, int], heif: bool = False) -> Path:
    """A zip with python/PIL (and pillow_heif when `heif`) for Lambda's `architecture` and `runtime`,
    built by pip once, checked against the runtime's glibc, and cached."""
    python_version = runtime.removeprefix("python")
    tags = platform_tags(architecture, glibc)
    requirements = [PILLOW_REQUIREMENT, *([HEIF_REQUIREMENT] if heif else [])]
    digest = hashlib.sha256(json.dumps([requirements, architecture, python_version, tags]).encode()).hexdigest()[:16]
    name = "pillow-heif" if heif else "pillow"
    destination = BUILD_DIR / "layers" / f"{name}-{architecture}-py{python_version}-{digest}.zip"
    if destination.exists():
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
