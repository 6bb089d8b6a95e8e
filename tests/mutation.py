"""The mutation score and the survivors, from mutmut's results (run after `mutmut run`; `make mutate` does both).

    python -m tests.mutation      prints the score per module and overall, and every surviving mutant's diff name

Exits non-zero when the score is under TARGET or a mutant survives in a module that must have none.
"""
from __future__ import annotations

import subprocess
import sys
from collections import Counter, defaultdict

TARGET = 0.90
# Security, delivery and validation code: no surviving mutant at all.
NONE_MAY_SURVIVE = ("handlers.failures", "handlers.contracts", "handlers.limits", "handlers.intake", "infra.iam",
                    "infra.policies")
KILLED = {"killed", "timeout"}
# Mutants that cannot change behaviour, each with the reason (mutmut names them by function and number; a
# change to the function renames them, and then they count as survivors again until looked at).
EQUIVALENT = {
    "handlers.sniff.x__webp_size__mutmut_49": "<hh for <HH: only the low 14 bits are kept, the same in two's "
                                              "complement",
    "handlers.sniff.x__webp_size__mutmut_72": "data[21:26]: a fifth byte adds bits above 32; only bits 0-27 are used",
    "handlers.intake.x__created__mutmut_115": "`or True`: a DUPLICATE outcome always carries the stored record "
                                              "(records.record_event)",
    "handlers.intake.x__inspect__mutmut_28": "`or`: sniff gives a width and a height together or neither",
    "handlers.intake.x__current_version__mutmut_26": "strip('XX\"XX'): an ETag is hex digits (and -N), never an X",
}
UNTESTED = {"skipped", "not checked", "equivalent"}


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


def module_of(mutant: str) -> str:
    return mutant.split(".x", 1)[0] if ".x" in mutant else mutant.rsplit(".", 1)[0]


def main() -> int:
    found = results()
    if not found:
        print("no mutants found: run `mutmut run` first", file=sys.stderr)
        return 2
    by_module: dict[str, Counter] = defaultdict(Counter)
    for name, status in found.items():
        by_module[module_of(name)]["equivalent" if name in EQUIVALENT and status not in KILLED else status] += 1
    total = Counter(found.values())
    tested = sum(n for s, n in total.items() if s not in UNTESTED) - sum(1 for n in found if n in EQUIVALENT)
    killed = sum(total[s] for s in KILLED)
    print(f"{'module':28} {'killed':>7} {'of':>5} {'score':>6}")
    for module, counts in sorted(by_module.items()):
        tried = sum(n for s, n in counts.items() if s not in UNTESTED)
        done = sum(counts[s] for s in KILLED)
        print(f"{module:28} {done:7} {tried:5} {done / tried if tried else 1:6.0%}")
    score = killed / tested if tested else 1.0
    print(f"{'all':28} {killed:7} {tested:5} {score:6.0%}   (target {TARGET:.0%}; {dict(total)})")
    equivalent = sorted(n for n, s in found.items() if s not in KILLED | UNTESTED and n in EQUIVALENT)
    survivors = sorted(n for n, s in found.items() if s not in KILLED | UNTESTED and n not in EQUIVALENT)
    if equivalent:
        print("\nequivalent (not counted):")
        for name in equivalent:
            print(f"  {name}: {EQUIVALENT[name]}")
    if survivors:
        print("\nsurvivors (see each with `.venv/bin/mutmut show NAME`):")
        for name in survivors:
            print(f"  {found[name]:10} {name}")
    forbidden = [n for n in survivors if module_of(n).startswith(NONE_MAY_SURVIVE)]
    if forbidden:
        print(f"\n{len(forbidden)} survivor(s) where none may survive ({', '.join(NONE_MAY_SURVIVE)})")
    return 0 if score >= TARGET and not forbidden else 1


if __name__ == "__main__":
    raise SystemExit(main())
