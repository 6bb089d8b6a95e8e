"""`make mutate`: run mutmut (with tests/mutation_ops.py's operators) over the modules asked for, then report.

    python -m tests.mutation [--files PATH...] [--changed [BASE]] [--children N]   run, then report
    python -m tests.mutation --report [--files PATH...]                          report the last run only

With neither --files nor --changed, every module in [tool.mutmut] only_mutate (pyproject.toml) is run; --changed
takes the files changed against BASE (main by default: committed, staged and not) that are in that scope. Each run
tries the last run's survivors of its modules again (mutmut keeps a verdict until the mutated file changes, and a
survivor is what a new test was written for); killed mutants keep their verdict. mutmut's own output goes to
mutants/mutmut-run.log. The report has a score per module, every survivor with its file:line, the
line and the mutated code, and the equivalent mutants with their reasons; the exit status is 1 when a module scores
under TARGET or a mutant survives where none may.
"""
from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import subprocess
import sys
import time
import tomllib
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

TARGET = 0.90
# Security, delivery, validation and the settling writes: no surviving mutant at all.
NONE_MAY_SURVIVE = ("handlers.failures", "handlers.contracts", "handlers.limits", "handlers.intake", "handlers.records",
                    "handlers.preflight", "infra.iam", "infra.policies")
KILLED = {"killed", "timeout"}
UNTESTED = {"skipped", "not checked", "caught by type check"}
# Mutants that cannot change behaviour, each with the reason, keyed by (file, the original line, the mutated code):
# a mutant keeps its key when other mutants are added or other lines move, and loses it when its own line changes
# (then it is reported as a survivor until someone looks at it again).
EQUIVALENT = {
    ("handlers/sniff.py", 'width, height = struct.unpack("<HH", data[26:30])', '"<hh"'):
        "<hh for <HH: only the low 14 bits are kept, the same in two's complement",
    ("handlers/sniff.py", 'bits = int.from_bytes(data[21:25], "little")', "26"):
        "data[21:26]: a fifth byte adds bits above 32; only bits 0-27 are used",
    ("handlers/intake.py", "if found.width is not None and found.height is not None:",
     "found.width is not None or found.height is not None"):
        "`or`: sniff gives a width and a height together or neither",
    ("handlers/intake.py", """return {"versionId": head.get("VersionId"), "eTag": head["ETag"].strip('"'), "size": head["ContentLength"]}""",
     """'XX"XX'"""): "strip('XX\"XX'): an ETag is hex digits (and -N), never an X",
    ("handlers/upload_api.py", "except (ValueError, UnicodeDecodeError):", "(ValueError,)"):
        "UnicodeDecodeError is a ValueError: the tuple without it catches the same errors",
    ("handlers/imaging.py", 'flags=ImageCms.Flags.COPY_ALPHA if out_mode == "RGBA" else ImageCms.Flags.NONE)', '!= "RGBA"'):
        "Pillow copies the alpha band of an RGBA-to-RGBA transform itself, with or without COPY_ALPHA",
    ("handlers/imaging.py", "except Exception:", "except Exception: pass"):
        "the EXIF reader's fallback and _safe's `return None`: every read after them is guarded by _safe, which gives "
        "None either way",
    ("handlers/failures.py", "super().__init__(reason)", "pass"):
        "BaseException.__new__ keeps the constructor's arguments as args, so str() and args are the reason without it",
    ("handlers/preflight.py", "count, first_scan, ended = 0, -1, False", "2"):
        "first_scan starts at -2 for -1: only its sign is read (no scan found) before a scan's offset replaces it",
    ("handlers/records.py", "remove: tuple[str, ...] = ()", "remove: tuple[str, ...] = None"):
        "a rejection removes nothing either way: _update reads `if remove:`, and None and () are both false",
    ("handlers/preflight.py", "if first_scan < 0:", "<= 0"):
        "first_scan is an SOS marker's offset, at least 2 (SOI takes 0 and 1), or -1: 0 is never there to compare",
    ("handlers/preflight.py", "if first_scan < 0:", "1"):
        "< 1 for < 0: first_scan is -1 or at least 2 (SOI takes offsets 0 and 1), never 0",
    ("handlers/contracts.py", """return "/" + quote(key, safe="/+=!$&'(),;:@")""", '"XX/+=!$&\'(),;:@XX"'):
        "X is an unreserved character: quote() keeps it whether `safe` names it or not",
    ("handlers/imaging.py", "exif = Image.Exif()", "pass"):
        "without the empty EXIF every guarded read fails inside _safe and gives the same defaults",
}


def scope() -> list[str]:
    with open("pyproject.toml", "rb") as f:
        return tomllib.load(f)["tool"]["mutmut"]["only_mutate"]


def in_scope(path: str) -> bool:
    return path.endswith(".py") and any(fnmatch.fnmatch(path, pattern) for pattern in scope())


def module_of_path(path: str) -> str:
    return path.removesuffix(".py").replace("/", ".")


def changed_files(base: str) -> list[str]:
    """Files changed against `base` (since the commit this branch shares with it), committed or not, in scope."""
    fork = subprocess.run(["git", "merge-base", base, "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    names = subprocess.run(["git", "diff", "--name-only", fork], capture_output=True, text=True, check=True).stdout
    untracked = subprocess.run(["git", "ls-files", "--others", "--exclude-standard"], capture_output=True, text=True,
                               check=True).stdout
    return sorted({n for n in (names + untracked).split() if in_scope(n) and Path(n).exists()})


def equivalent_names(path: str) -> set[str]:
    """The names of `path`'s mutants listed in EQUIVALENT, from the listing tests/mutation_ops.py wrote."""
    listing = Path(f"mutants/{path}.lines.json")
    if not listing.exists() or not Path(path).exists():
        return set()
    source = Path(path).read_text().splitlines()
    return {f"{module_of_path(path)}.{key}" for key, entry in json.loads(listing.read_text())["mutants"].items()
            if 0 < entry["line"] <= len(source) and (path, source[entry["line"] - 1].strip(), entry["mutated"]) in EQUIVALENT}


def retest_survivors(files: list[str]) -> int:
    """Forget the last run's verdict on every survivor of `files` (all of the scope when empty), so this run tries
    them again: mutmut keeps a verdict until the mutated file changes, and a survivor is what a test was just written
    for. Killed and equivalent mutants keep theirs (an equivalent one survives every test it meets, so trying it again
    costs the most). Returns how many were forgotten."""
    forgotten = 0
    for meta in Path("mutants").rglob("*.py.meta"):
        path = meta.relative_to("mutants").as_posix().removesuffix(".meta")
        if not in_scope(path) or (files and path not in files):
            continue
        data = json.loads(meta.read_text())
        listed = equivalent_names(path)
        survivors = [name for name, code in data.get("exit_code_by_key", {}).items() if code == 0 and name not in listed]
        for name in survivors:
            data["exit_code_by_key"][name] = None
        if survivors:
            meta.write_text(json.dumps(data, indent=4))
            forgotten += len(survivors)
    return forgotten


OPERATORS_STAMP = Path("mutants") / "operators.sha256"


def forget_mutants_of_other_operators() -> int:
    """When tests/mutation_ops.py changed since mutants/ was made, drop every mutated copy and its verdicts, so this
    run makes and judges them again. mutmut keeps a function's verdicts while its source is unchanged and names its
    mutants by number: made by other operators, a number can name another mutant. (mutmut's map of which tests reach
    which function is kept: it does not depend on the operators.) Returns how many files were dropped."""
    digest = hashlib.sha256(Path("tests/mutation_ops.py").read_bytes()).hexdigest()
    if OPERATORS_STAMP.exists() and OPERATORS_STAMP.read_text().strip() == digest:
        return 0
    dropped = 0
    for copy in Path("mutants").rglob("*.py"):
        path = copy.relative_to("mutants").as_posix()
        if in_scope(path):
            for made in (copy, Path(f"{copy}.meta"), Path(f"{copy}.lines.json")):
                made.unlink(missing_ok=True)
            dropped += 1
    OPERATORS_STAMP.parent.mkdir(exist_ok=True)
    OPERATORS_STAMP.write_text(digest + "\n")
    return dropped


def run(files: list[str], children: int) -> int:
    """mutmut run over `files` (all of the scope when empty); mutmut's output goes to mutants/mutmut-run.log."""
    globs = [f"{module_of_path(f)}.*" for f in files]
    dropped = forget_mutants_of_other_operators()
    if dropped:
        print(f"the operators changed since the last run: {dropped} module(s) mutated and judged again")
    forgotten = retest_survivors(files)
    if forgotten:
        print(f"{forgotten} survivor(s) of the last run tried again")
    Path("mutants").mkdir(exist_ok=True)
    started = time.monotonic()
    with open("mutants/mutmut-run.log", "w") as log:
        status = subprocess.run([sys.executable, "-m", "tests.mutation_ops", "run", "--max-children", str(children), *globs],
                                stdout=log, stderr=subprocess.STDOUT).returncode
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else []
    print(f"mutmut ran {len(files) or 'every'} module(s) in {time.monotonic() - started:,.0f} s "
          f"(load at the end {' '.join(load)}); its output: mutants/mutmut-run.log")
    return status


def results() -> dict[str, str]:
    """mutant name -> status, as `mutmut results --all true` lists them."""
    listing = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"], capture_output=True,
                             text=True, check=True).stdout
    found = {}
    for line in listing.splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep and "__mutmut_" in name:
            found[name] = status
    return found


@dataclass(frozen=True)
class Mutant:
    name: str
    status: str
    path: str
    line: int
    original: str  # the original line, stripped
    mutated: str  # the mutated code (the node mutmut or tests/mutation_ops.py changed)

    @property
    def module(self) -> str:
        return module_of_path(self.path)

    @property
    def equivalent(self) -> str | None:
        return EQUIVALENT.get((self.path, self.original, self.mutated))


def mutants(statuses: dict[str, str]) -> list[Mutant]:
    """Every mutant with where it is, from the listings tests/mutation_ops.py writes as it makes them."""
    found = []
    for listing in sorted(Path("mutants").rglob("*.py.lines.json")):
        path = listing.relative_to("mutants").as_posix().removesuffix(".lines.json")
        if not Path(path).exists() or not in_scope(path):
            continue
        source = Path(path).read_text().splitlines()
        for key, entry in json.loads(listing.read_text())["mutants"].items():
            name = f"{module_of_path(path)}.{key}"
            if name in statuses:
                line = entry["line"]
                original = source[line - 1].strip() if 0 < line <= len(source) else ""
                found.append(Mutant(name, statuses[name], path, line, original, entry["mutated"]))
    return found


def seconds(module: str) -> float:
    """The time mutmut's workers spent on the module's mutants (their runs, one after another)."""
    meta = Path("mutants") / (module.replace(".", "/") + ".py.meta")
    return sum(json.loads(meta.read_text()).get("durations_by_key", {}).values()) if meta.exists() else 0.0


def report(only: list[str]) -> int:
    statuses = results()
    every = [m for m in mutants(statuses) if not only or m.path in only]
    if not every:
        print("no mutants found: run `make mutate` first", file=sys.stderr)
        return 2
    by_module: dict[str, Counter] = defaultdict(Counter)
    for m in every:
        by_module[m.module]["equivalent" if m.equivalent and m.status not in KILLED else m.status] += 1
    print(f"{'module':30} {'killed':>7} {'of':>6} {'score':>6} {'equivalent':>11} {'no tests':>9} {'unrun':>6} {'time':>8}")
    failing = []
    for module, counts in sorted(by_module.items()):
        tried = sum(n for s, n in counts.items() if s not in UNTESTED | {"equivalent"})
        done = sum(counts[s] for s in KILLED)
        score = done / tried if tried else 1.0
        if score < TARGET:
            failing.append(module)
        print(f"{module:30} {done:7} {tried:6} {score:6.0%} {counts['equivalent']:11} {counts['no tests']:9} "
              f"{counts['not checked']:6} {seconds(module):7,.0f}s")
    total = Counter(m.status for m in every)
    killed = sum(total[s] for s in KILLED)
    tried = sum(1 for m in every if m.status not in UNTESTED and not (m.equivalent and m.status not in KILLED))
    print(f"{'all':30} {killed:7} {tried:6} {killed / tried if tried else 1:6.0%}   (target {TARGET:.0%} in every module; "
          f"{dict(total)})")
    equivalent = [m for m in every if m.equivalent and m.status not in KILLED]
    survivors = [m for m in every if m.status not in KILLED | UNTESTED and not m.equivalent]
    if equivalent:
        print("\nequivalent (not counted):")
        for m in sorted(equivalent, key=lambda m: (m.path, m.line)):
            print(f"  {m.path}:{m.line}  {m.mutated}: {m.equivalent}")
    if survivors:
        print("\nsurvivors (`.venv/bin/mutmut show NAME` shows one):")
        for m in sorted(survivors, key=lambda m: (m.path, m.line)):
            print(f"  {m.path}:{m.line}  {m.original}\n      -> {m.mutated}   [{m.status}] {m.name}")
    forbidden = [m for m in survivors if m.module.startswith(NONE_MAY_SURVIVE)]
    if failing:
        print(f"\nunder {TARGET:.0%}: {', '.join(failing)}")
    if forbidden:
        print(f"\n{len(forbidden)} survivor(s) where none may survive ({', '.join(NONE_MAY_SURVIVE)})")
    return 1 if failing or forbidden else 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.mutation", description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", nargs="*", default=[], help="the modules to run, by path (default: the whole scope)")
    parser.add_argument("--changed", nargs="?", const="main", metavar="BASE",
                        help="run the files changed against BASE (default main)")
    parser.add_argument("--children", type=int, default=2, help="mutants run at once (default 2)")
    parser.add_argument("--report", action="store_true", help="report the last run only")
    args = parser.parse_args(argv)
    outside = [f for f in args.files if not in_scope(f)]
    if outside:
        parser.error(f"not in [tool.mutmut] only_mutate: {', '.join(outside)}")
    files = args.files + (changed_files(args.changed) if args.changed else [])
    if args.changed and not files:
        print(f"no file in the mutation scope changed against {args.changed}")
        return 0
    if not args.report and run(files, args.children) != 0:
        print("mutmut failed: see mutants/mutmut-run.log", file=sys.stderr)
        return 2
    return report(files)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
