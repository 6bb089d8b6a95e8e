# The two commands: `make demo` runs the pipeline locally, `make test` runs the tests.
# Each creates .venv and installs the pinned requirements first; nothing else is needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-hostile test-library test-capacity test-browser test-readme test-scale test-backfill test-soak up soak bench layer mutate clean

$(STAMP): requirements.txt requirements-dev.txt requirements-bench.txt requirements-mutate.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "claimcheck needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m localcloud demo

up: $(STAMP)
	$(BIN)/python -m localcloud up

bench: $(STAMP)
	$(BIN)/python -m bench

# The function archives and the Pillow layer, built ahead of `pulumi up` (which otherwise builds them when its cache is
# cold); STACK=dev reads Pulumi.dev.yaml.
layer: $(STAMP)
	$(BIN)/python -m infra.packaging $(if $(STACK),--stack $(STACK))

soak: $(STAMP)
	$(BIN)/python -m localcloud soak

# Lint and type-check the code that ships or runs the pipeline (settings in pyproject.toml), then the tests.
# The tests in two workers (pytest-xdist), each test file whole in one of them (its module-wide local cloud or
# Pulumi stack is built once): most of a test's time is waiting on a local cloud, so two share the two cores. The
# longest files go first (tests/conftest.py, SLOWEST_FIRST; --no-loadscope-reorder keeps that order, where xdist would
# put the files with the most tests first and leave the one-test files of minutes, the soak and the bench, to the end).
# 1,006 tests took 14 min 36 s in one process and 8 min 39 s in two here (2 cores, load 1-3); 1,214 took 9 min 27 s in
# two (load 2.5-4.5, 2026-12-07). On a shared machine, the longest files first and the quicker local cloud stop: 22 min
# 27 s (load 7-14), against 29 min 43 s before them (load 6-17), the tests' summed time 2,583 s against 3,460 s.
# 1,276 tests (with the duplicates gate, crops and output formats) took 9 min 7 s alone on the machine (load 3.6 to 2.4).
# 1,321 took 9 min 58 s (load 1.4-3.1), 287 s of it the small soak beside the other worker (78 s alone): it moved to
# make test-soak (.ci/run), and the other 1,320 took 8 min 23 s (load 0.9-3.1, 2026-12-07).
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -n 2 --dist loadfile --no-loadscope-reorder

# Every truncation of a few small files, thousands of mutations and the named hostile cases, through the
# thumbnail engine within the stage's CPU and memory (a minute or so; .ci/run runs it after make test).
test-hostile: $(STAMP)
	$(BIN)/python -m pytest -m hostile -s tests/test_hostile.py

# 112 generated camera photos (8-24 MP, EXIF orientations, some PNG and WebP) through `python -m localcloud demo`,
# idle and with four busy loops beside it: every upload done, nothing dead-lettered, half the engine's speed or more.
test-library: $(STAMP)
	$(BIN)/python -m pytest -m library -s tests/test_library.py

# The small soak: 24 uploads through the local cloud at high fault, duplicate, delay and kill rates; nothing lost.
test-soak: $(STAMP)
	$(BIN)/python -m pytest -m soak -s tests/test_soak.py

# A burst of 120 uploads over an emulated Rekognition quota of 4 calls a second: every one labelled, nothing
# dead-lettered, drained within twice what `python -m ops capacity`'s model predicts for this machine.
test-capacity: $(STAMP)
	$(BIN)/python -m pytest -m capacity -s tests/test_capacity_local.py

# A bucket of 2,100 objects that were there before the pipeline (tiny images of four formats, some not images, some
# already processed) backfilled by `python -m ops backfill`, killed halfway and resumed: every object accounted for.
test-backfill: $(STAMP)
	$(BIN)/python -m pytest -m backfill -s tests/test_ops_backfill.py tests/test_backfill_bulk.py

# The README's demos run exactly as written (make demo, python -m localcloud demo and upload), each a whole local cloud
# with uploads: a few minutes together; .ci/run runs it after make test (tests/test_readme.py runs the rest of the README).
test-readme: $(STAMP)
	$(BIN)/python -m pytest -m readme -s tests/test_readme.py

# The engine against sharp at every scale factor: source widths 1025-4700 px to 1024, 512 and 128, each size within
# 0.2 dB of sharp's PSNR. sharp comes from bench/sharp/package-lock.json with `npm ci` (as make bench installs it);
# Node.js from apt-get when it is missing (that needs root or sudo).
test-scale: $(STAMP)
	command -v node >/dev/null && command -v npm >/dev/null || { apt-get update -qq && apt-get install -y -qq nodejs npm; }
	$(BIN)/python -m pytest -m scale -s tests/test_scale_factors.py

# The gallery in a real browser: Debian's Chromium (installed with apt-get when it is missing; that needs root or
# sudo) driven by Playwright (requirements-browser.txt, pinned), against the demo's page and the live one.
BROWSER_STAMP := $(VENV)/.browser-installed
$(BROWSER_STAMP): $(STAMP) requirements-browser.txt
	command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium; }
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-browser.txt
	@touch $(BROWSER_STAMP)

test-browser: $(BROWSER_STAMP)
	$(BIN)/python -m pytest -m browser -s tests/test_browser.py

# Mutation testing (README, "Mutation testing"): every module of [tool.mutmut] only_mutate in pyproject.toml, with the
# operators tests/mutation_ops.py adds to mutmut; prints the score per module and every survivor with its line.
# FILES="handlers/records.py ..." runs those modules only, CHANGED=1 the ones changed against BASE (main unless
# given); CHILDREN mutants run at once (2). mutmut comes with requirements-dev.txt (make test checks the operators).
# Not part of make test.
mutate: $(STAMP)
	$(BIN)/python -m tests.mutation --children $(or $(CHILDREN),2) $(if $(FILES),--files $(FILES)) $(if $(CHANGED),--changed $(or $(BASE),main))

clean:
	rm -rf $(VENV) build out .localcloud .pytest_cache mutants
