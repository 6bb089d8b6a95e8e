"""Lambda archives and layers, built reproducibly under build/.

Each function's archive is made from an explicit list of handler files, so it
holds exactly what that function imports. Pillow goes in a layer built by pip
from manylinux wheels for the target architecture and Python; the layer is
cached by a hash of what goes into it, so repeated runs do not rebuild.
Powertools comes from AWS's public layer.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
HANDLERS_DIR = PROJECT_ROOT / "handlers"
BUILD_DIR = PROJECT_ROOT / "build"

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
    "thumbnails": FunctionPackage("thumbnails", "handlers.thumbnails.handler", (*_COMMON, "stage.py", "thumbnails.py", "imaging.py"), True),
    "labels": FunctionPackage("labels", "handlers.labels.handler", (*_COMMON, "stage.py", "labels.py"), False),
    "upload_api": FunctionPackage("upload_api", "handlers.upload_api.handler",
                                  ("__init__.py", "aws.py", "environment.py", "observability.py", "upload_api.py"), False),
}

PILLOW_REQUIREMENT = "pillow==13.0.0"
HEIF_REQUIREMENT = "pillow-heif==1.8.1"  # iPhone photos (HEIC); only when the allowed formats include it
# Pillow 13 publishes manylinux_2_28 wheels only; the older tag is accepted too in case a pin moves back.
PLATFORM_TAGS = {
    "arm64": ("manylinux_2_28_aarch64", "manylinux2014_aarch64"),
    "x86_64": ("manylinux_2_28_x86_64", "manylinux2014_x86_64"),
}

# Powertools for AWS Lambda (Python) v3, AWS's public layer; version pinned here, bumped deliberately.
POWERTOOLS_ACCOUNT = "017000801446"
POWERTOOLS_LAYER_VERSION = 27


def powertools_layer_arn(partition: str, region: str, runtime: str, architecture: str) -> str:
    python = runtime.replace(".", "")  # python3.13 -> python313
    return (f"arn:{partition}:lambda:{region}:{POWERTOOLS_ACCOUNT}:layer:"
            f"AWSLambdaPowertoolsPythonV3-{python}-{architecture}:{POWERTOOLS_LAYER_VERSION}")


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


def pillow_layer(architecture: str, runtime: str, heif: bool = False) -> Path:
    """A zip with python/PIL (and pillow_heif when `heif`) for Lambda's `architecture` and `runtime`,
    built by pip once and cached."""
    python_version = runtime.removeprefix("python")
    tags = PLATFORM_TAGS[architecture]
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
            raise RuntimeError(f"building the Pillow layer for {architecture}/{runtime} failed:\n{result.stderr.strip()}")
        files = {str(path.relative_to(work)): path for path in target.rglob("*")
                 if path.is_file() and "__pycache__" not in path.parts}
        write_zip(destination, files)
    return destination
