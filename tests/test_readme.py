"""Every command the README shows, tried as a new user would try it.

The commands come from the README itself: every fenced block (the `$ ` lines of a transcript, or every line of a
block of commands; a block of neither kind must be named in NOT_COMMANDS) and every inline code span that starts
with a command. Each one is run here exactly as written, through the shell, or listed in NOT_HERE with the reason it
cannot run here; a command that is neither fails test_every_readme_command_is_run_here_or_listed.

They run in a scratch checkout (the project's files linked into it), with the venv's bin first on PATH as for a user
who activated it, so what they write (.localcloud/, out/, dev.json) stays there; LOCALCLOUD_HOME points the local
cloud's folder at the checkout's .localcloud, so a `make up` the user has running is left alone. `make up` runs in
the background, as the README says ("in another terminal"), the operator commands run against it in the README's
order, then it is stopped as a service manager stops it (SIGTERM) and nothing it started may remain. The demos
(minutes together) are marked `readme`: `make test-readme`, and .ci/run after make test.
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import boto3
import pytest

from handlers.names import Status
from localcloud import samples
from ops.target import DISCOVERY_FILE, LOCAL_HOME_VARIABLE

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
VENV_BIN = Path(sys.executable).parent
# The first word of a line (or an inline span) that makes it a command.
COMMAND_WORDS = {"make", "python", "python3", "pytest", "pulumi", "aws", "npm", "apt-get", "export", "pip", "curl"}
# Fenced blocks that hold no command, by their first line: what each is.
NOT_COMMANDS = {
    "uploads bucket (uploads/…) ──S3 event──►": "the pipeline's diagram",
    "  settled 12/12 (uploaded 12)": "what `make demo` prints",
    "POST /uploads": "the upload API's HTTP exchange (tests/test_local_upload.py makes it)",
    "claimcheck dev: 10 images/s steady": "what `ops capacity` prints",
    "Pulumi.yaml  Pulumi.dev.yaml  __main__.py": "the layout of the code",
    "claimcheck:accountConcurrency: 10": "Pulumi.new-account.yaml's settings (tests/test_capacity.py runs that file)",
    "LAMBDA CONCURRENCY": "what `ops capacity` prints",
    "uploadQuota (200 uploads per owner a day)": "what `ops capacity` prints with a quota (tests/test_capacity.py)",
    "@dataclass(frozen=True)": "tests/stage_example.py's declaration (tests/test_adding_a_stage.py holds the copy to it)",
    '{"source": "claimcheck", "detail-type": "image.ready"': "an image event (tests/test_image_events.py makes them)",
    "# A consumer's Pulumi program": "another team's Pulumi program; tests/test_local_events.py makes the same rule",
    '<picture><source type="image/avif"': "the gallery's markup for a record of three formats (tests/test_gallery.py)",
}
PULUMI = "the Pulumi CLI is not installed here (the local cloud runs the program under Pulumi's mocks instead)"
# awscli pins botocore exactly (1.46.3, the newest, needs botocore 1.44.3) and none matches the venv's pinned 1.44.18.
AWS_CLI = "no awscli release matches the pinned botocore; boto3 makes the same calls in the tests"
# Commands that cannot run here, or that something else runs: exact commands, or prefixes ending in a space.
NOT_HERE = {
    "make": "names the tool the commands use",
    ".venv/bin/python -m bench.duplicates": "minutes of measurement, with PDQ only where pdqhash is built; its figures "
                                            "are in the README (Duplicates)",
    "python -m ops": "names the tool; its commands are run below",
    "make test": "the run this test is part of (it would run itself)",
    "python -m localcloud up": "what `make up` runs; run above as `make up`",
    "make test-hostile": ".ci/run runs it after make test (about a minute of hostile images)",
    "make test-library": ".ci/run runs it after make test (minutes of camera photos)",
    "make test-capacity": ".ci/run runs it after make test",
    "make test-soak": ".ci/run runs it after make test",
    "make test-scale": ".ci/run runs it after make test",
    "make test-backfill": ".ci/run runs it after make test (minutes: 2,100 objects through the local cloud); "
                          "tests/test_ops_backfill.py runs the same story with ~100 first",
    "make test-browser": ".ci/run runs it after make test (it installs Chromium)",
    "make test-readme": ".ci/run runs it after make test: the demos below, marked readme",
    "make soak": "minutes long; make test-soak (tests/test_soak.py) runs a small one in .ci/run",
    "make mutate": "mutation testing of the whole product: hours, a target of its own (README, \"Mutation testing\")",
    "make mutate ": "mutation testing of some modules: minutes to hours, a target of its own",
    "make bench": "minutes long, and `npm ci` for sharp reaches the npm registry",
    "npm ci": "make bench runs it for sharp",
    "apt-get install chromium": "make test-browser runs it when Chromium is missing",
    "apt-get install nodejs npm": "make test-scale runs it when Node.js is missing",
    "make layer STACK=dev": "downloads Pillow's wheels from PyPI; tests/test_packaging.py builds the layer (marked network)",
    "python -m infra.settings": "rewrites Pulumi.yaml and this README's table in place; tests/test_project_files.py "
                                "holds both to what it writes",
    ".venv/bin/mutmut show NAME": "NAME stands for a mutant `make mutate` names; mutmut comes with make mutate",
    ".venv/bin/python -m bench --images DIR": "DIR stands for your own photos; make bench takes minutes",
    ".venv/bin/python -m bench.formats": "make bench runs it (minutes: AVIF at four speeds, sharp's at its default)",
    ".venv/bin/python -m ops --stack dev capacity --rate 10/s --burst 100000 --mp 12 [--format jpeg] "
    "[--set KEY=VALUE]… [--json]": "a synopsis ([…] marks what may be left out); tests/test_capacity.py runs it",
    "python -m ops --stack dev status": PULUMI + ", and there is no deployed stack dev",
    "python -m ops --stack dev backfill ": PULUMI + ", and there is no deployed stack dev; tests/test_ops_backfill.py "
                                          "runs both walks (--prefix, --manifest) against the local cloud",
    "export AWS_ENDPOINT_URL=…": "the shape of the line `make up` prints; the --outputs run below uses the printed one",
    "pulumi ": PULUMI,
    "aws ": AWS_CLI,
    "pytest ": "the suites make test runs (pytest.ini); running them again here would double it",
}
# Run against `make up`, in the README's order: what each must print (a regular expression, searched).
AGAINST_UP = {
    # The two images the fixture's emulated moderation held back (poster.png first, so party.webp is the newest).
    "python -m ops --local review list --out review":
        r"^KEY +HELD SINCE +LABELS +SCREENED +ORIGINAL EXPIRES\n"
        r"uploads/team/party\.webp +\S+ +Violence 98\.6%, Weapon Violence 98\.6% +jpeg rendition 1024x768 +\S+\n"
        r"uploads/team/poster\.png +\S+ +Violence 98\.6%, Weapon Violence 98\.6% +jpeg rendition 900x600 +\S+\n"
        r"Wrote review/review\.html: the originals through presigned GETs valid 900 s",
    "python -m ops --local review approve uploads/team/poster.png":
        r"^uploads/team/poster\.png: approved by arn:aws:sts::\d{12}:assumed-role/claimcheck-operator-\w+/localcloud at "
        r"\S+Z; released to the other stages\.$",
    "python -m ops --local review reject uploads/team/party.webp":
        r"^uploads/team/party\.webp: rejected by arn:aws:sts::\d{12}:assumed-role/claimcheck-operator-\w+/localcloud at "
        r"\S+Z; 1 version\(s\) deleted; its record is deleted\.$",
    # Released a moment ago: done once its thumbnails are made, accepted until then; the decision is on it either way.
    "python -m ops --local show uploads/team/poster.png": r"^uploads/team/poster\.png  (ACCEPTED|DONE)\n  format png, "
                                                          r"900x600(.*\n)*  decision: approved by ",
    "python -m ops --local status": r"^claimcheck local \(the local cloud.*\n"
                                    r"STAGE +QUEUED +IN FLIGHT +DEAD LETTERS +OLDEST +MAPPING\n"
                                    r"intake .* running\nduplicates .* running\nmoderation .* running\nthumbnails .* running\nlabels .* running\n",
    "python -m ops --local dlq": r"^Every dead-letter queue is empty\.$",
    "python -m ops --local failures": r"^Nothing needs a person\.$",
    "python -m ops --local redrive": r"^Nothing to redrive: the dead-letter queues are empty\.$",
    "python -m ops --local show incident/harbour.jpg": r"^uploads/incident/harbour\.jpg  DONE\n  format jpeg, 1200x900",
    # harbour.jpg, poster.png (done) and party.webp (deleted): nothing made with other settings
    "python -m ops --local reprocess --all --dry-run": r"^0 image\(s\) would be reprocessed to thumbnail settings \w+ "
                                                       r"\(scanned 3\)$",
    "python -m ops --local reprocess --all": r"^Requested 0 reprocess\(es\) to thumbnail settings \w+; scanned 3 records",
    # make up's bucket has nothing under uploads/archive/ (tests/test_ops_backfill.py fills one)
    "python -m ops --local backfill --prefix archive/ --rate 20":
        r"^Backfill of prefix uploads/archive/: 0 object\(s\) sent \(the local cloud.*\)\n"
        r"PROCESSED +SKIPPED +REJECTED +FAILED +QUARANTINED +NOT YET SETTLED\n0 +0 +0 +0 +0 +0$",
    "python -m ops --local pause thumbnails": r"^thumbnails paused: its messages wait in its queue \(0 waiting\)\.$",
    "python -m ops --local resume thumbnails": r"^thumbnails resumed: it takes messages from its queue again "
                                               r"\(0 waiting\)\.$",
    "python -m ops --outputs dev.json status": r"^claimcheck dev\.json\nSTAGE +QUEUED",
    "python -m ops --local review list": r"^Nothing is held for review\.$",  # both were decided above
    # Every record of make up was screened (its gate was on from the start): nothing to send.
    "python -m ops --local reprocess --all --unscreened": r"^Sent 0 done image\(s\) no gate screened to duplicates and moderation; "
                                                          r"scanned 3 records\.",
}
UP = "make up"
# Run on their own, with no local cloud and no AWS (they read a stack file): what each must print.
OFFLINE = {
    "python -m ops --stack new-account capacity": r"^LAMBDA CONCURRENCY\naccount quota \(accountConcurrency\) +10\n",
}
# Whole local clouds with uploads (a minute or more together): marked readme, run by .ci/run after make test.
DEMOS = {
    # the renamed, re-encoded copy the demo uploads last is recorded as harbour.jpg's duplicate
    "make demo": r"harbour \(copy\)\.jpg\s+done .* a duplicate of uploads/samples/harbour\.jpg \(distance \d\)(?s:.*)"
                 r"Every upload accounted for: 8 done, 1 failed, 1 quarantined, 3 rejected",
    "python -m localcloud demo": r"Every upload accounted for: 8 done, 1 failed, 1 quarantined, 3 rejected",
    ".venv/bin/python -m localcloud demo ~/Pictures/holiday --json summary.json":
        r"Every upload accounted for: 2 done\n",
    ".venv/bin/python -m localcloud upload photo.jpg": r"photo\.jpg: API 201 -> uploads/api/.*; S3 answered the PUT "
                                                       r"with 200\n",
}
STARTED_WITHIN_S = 240
STOPPED_WITHIN_S = 60
# Not linked into the scratch checkout: what the commands write there.
WRITTEN = {".localcloud", ".ops", "out", "dev.json", "summary.json", "review"}


def normal(command: str) -> str:
    """A command as the lists name it: without a trailing comment or repeated spaces."""
    return re.sub(r"\s+", " ", re.sub(r"\s+#\s.*$", "", command)).strip()


def is_command(text: str) -> bool:
    first = text.split(maxsplit=1)[0] if text.strip() else ""
    return first in COMMAND_WORDS or first.startswith(".venv/bin/")


def readme_commands(text: str) -> dict[str, str]:
    """Every command the README shows, in its order: {normal form: as written}. Raises on a fenced block that is
    neither commands nor named in NOT_COMMANDS."""
    found: dict[str, str] = {}
    for block in re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.S | re.M):
        lines = re.sub(r"\\\n\s*", "", block).splitlines()  # a line continued with \ is one command
        if any(line.startswith("$ ") for line in lines):
            commands = [line[2:] for line in lines if line.startswith("$ ")]
        elif is_command(lines[0]):
            commands = [line for line in lines if line.strip()]
        elif any(lines[0].startswith(first) for first in NOT_COMMANDS):
            commands = []
        else:
            raise AssertionError(f"a code block that is neither commands nor in NOT_COMMANDS: {lines[0]!r}")
        for command in commands:
            found.setdefault(normal(command), command)
    prose = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    for span in re.findall(r"`([^`\n]+)`", prose):
        if is_command(span):
            found.setdefault(normal(span), span)
    return found


def not_here(command: str) -> str | None:
    """Why a command cannot run here, when NOT_HERE says."""
    if command in NOT_HERE:
        return NOT_HERE[command]
    return next((why for start, why in NOT_HERE.items() if start.endswith(" ") and command.startswith(start)), None)


COMMANDS = readme_commands(README.read_text())


def test_every_readme_command_is_run_here_or_listed():
    run_here = {*AGAINST_UP, UP, *DEMOS, *OFFLINE}
    neither = [command for command in COMMANDS if command not in run_here and not_here(command) is None]
    assert neither == [], "README commands neither run by tests/test_readme.py nor listed in NOT_HERE with a reason"
    both = [command for command in run_here if not_here(command) is not None]
    assert both == []
    stale = [command for command in [*run_here, *(c for c in NOT_HERE if not c.endswith(" "))] if command not in COMMANDS]
    assert stale == [], "listed in tests/test_readme.py but no longer in the README"


def test_a_new_command_or_block_is_caught():
    found = readme_commands("Try `make frobnicate` or\n```\n$ python -m ops --local frob \\\n    --now  # later\nout\n```\n")
    assert found == {"make frobnicate": "make frobnicate", "python -m ops --local frob --now": "python -m ops --local frob --now  # later"}
    assert not_here("make frobnicate") is None and not_here("pulumi up --yes") == PULUMI
    with pytest.raises(AssertionError, match="neither commands nor in NOT_COMMANDS: 'GET /x'"):
        readme_commands("```\nGET /x\n```\n")


# --- running them ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    """A scratch checkout: every file and folder of the project linked, but for what the commands write."""
    where = tmp_path_factory.mktemp("checkout")
    for entry in ROOT.iterdir():
        if entry.name not in WRITTEN:
            (where / entry.name).symlink_to(entry)
    return where


def shell_environment(checkout: Path, **extra: str) -> dict[str, str]:
    """A user's shell with the venv activated and no AWS settings of the test run's."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}
    return {**env, "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}", LOCAL_HOME_VARIABLE: str(checkout / ".localcloud"),
            **extra}


def shell(command: str, checkout: Path, timeout: float, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", command], cwd=checkout, env=shell_environment(checkout, **extra),
                          capture_output=True, text=True, timeout=timeout)


class Background:
    """A README command left running (`make up`), its output read as it comes."""

    def __init__(self, command: str, checkout: Path):
        self.process = subprocess.Popen(["bash", "-c", command], cwd=checkout, env=shell_environment(checkout),
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, self.output, flags=re.M)
            if found:
                return found
            if self.process.poll() is not None:
                break
            time.sleep(0.5)
        raise AssertionError(f"{pattern!r} not printed within {timeout:.0f} s:\n{self.output[-3000:]}")

    def end(self) -> None:
        """Whatever a test left running (the whole session, hard)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


def descendants(pid: int) -> dict[int, str]:
    """Every process under `pid`, with its command line (from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    found: dict[int, str] = {}
    waiting = [pid]
    while waiting:
        for child in children.get(waiting.pop(), []):
            try:
                found[child] = (Path("/proc") / str(child) / "cmdline").read_text().replace("\0", " ").strip()
            except OSError:
                continue
            waiting.append(child)
    return found


def alive(pid: int) -> bool:
    """Running (a zombie has ended: only its exit status is left for its new parent to collect)."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def wait_until_gone(pids: dict[int, str], ports: list[int], within: float) -> tuple[dict[int, str], list[int]]:
    """What is still running, and still listening, after `within` seconds at most."""
    deadline = time.monotonic() + within
    while True:
        left = {pid: command for pid, command in pids.items() if alive(pid)}
        open_ports = [port for port in ports if listening(port)]
        if (not left and not open_ports) or time.monotonic() > deadline:
            return left, open_ports
        time.sleep(0.5)


def up_and_children(shell_pid: int) -> tuple[int, dict[int, str]]:
    """`python -m localcloud up` under a shell's pid (bash, make), and every other process there."""
    started = descendants(shell_pid) | {shell_pid: (Path("/proc") / str(shell_pid) / "cmdline").read_text().replace("\0", " ")}
    [up_pid] = [pid for pid, command in started.items() if command.strip().endswith("-m localcloud up")]
    children = {pid: command for pid, command in started.items() if pid != up_pid}
    assert sum("localcloud.emulator" in command for command in children.values()) == 2, children
    return up_pid, children


def ports_of(output: str) -> list[int]:
    """The emulator's two ports and the gallery's, from what `up` printed."""
    return [int(port) for port in re.findall(r"(?:is up at |AWS_ENDPOINT_URL_DYNAMODB=|live, with uploads from the "
                                             r"browser: )http://127\.0\.0\.1:(\d+)", output)]


@pytest.fixture(scope="module")
def up(checkout):
    """`make up`, as written, kept running for the operator commands; the harbour photo uploaded with the admin
    credentials it printed, and done; then two images the emulated moderation holds back (its marker painted on
    them), one after the other, for the review commands."""
    running = Background(COMMANDS[UP], checkout)
    try:
        running.wait_for(r"^The gallery, live", STARTED_WITHIN_S)
        exported = dict(re.findall(r"(AWS_\w+)=(\S+)", running.wait_for(r"^  export (.*)$", 1).group(1)))
        outputs = json.loads((checkout / ".localcloud" / DISCOVERY_FILE).read_text())["outputs"]
        session = boto3.Session(aws_access_key_id=exported["AWS_ACCESS_KEY_ID"],
                                aws_secret_access_key=exported["AWS_SECRET_ACCESS_KEY"], region_name=exported["AWS_REGION"])
        session.client("s3", endpoint_url=exported["AWS_ENDPOINT_URL"]).put_object(
            Bucket=outputs["uploadsBucket"], Key="uploads/incident/harbour.jpg", Body=samples.jpeg(1200, 900))
        running.wait_for(r"^  uploads/incident/harbour\.jpg: done$", 120)
        for key, data in (("uploads/team/poster.png", samples.marked("png", 900, 600)),
                          ("uploads/team/party.webp", samples.marked("webp", 1024, 768))):
            session.client("s3", endpoint_url=exported["AWS_ENDPOINT_URL"]).put_object(
                Bucket=outputs["uploadsBucket"], Key=key, Body=data)
            running.wait_for(rf"^  {re.escape(key)}: quarantined ", 120)
        # `pulumi stack output --json > dev.json`, as the README has it, and the credentials `make up` printed
        (checkout / "dev.json").write_text(json.dumps(outputs))
        yield running, exported
    finally:
        running.end()


@pytest.mark.parametrize("command", [c for c in COMMANDS if c in OFFLINE])
def test_a_command_that_needs_no_cloud_runs_as_written(command, checkout):
    ran = shell(COMMANDS[command], checkout, timeout=120)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert re.search(OFFLINE[command], ran.stdout, flags=re.M), ran.stdout


@pytest.mark.parametrize("command", [c for c in COMMANDS if c in AGAINST_UP])
def test_an_operator_command_runs_as_written_against_make_up(command, up, checkout):
    _, exported = up
    ran = shell(COMMANDS[command], checkout, timeout=120, **exported)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert re.search(AGAINST_UP[command], ran.stdout, flags=re.M), ran.stdout


def test_make_up_stopped_with_sigterm_leaves_nothing_behind(up, checkout):
    """What a service manager, `kill` or a CI step's timeout does: SIGTERM to `python -m localcloud up` alone."""
    running, _ = up
    up_pid, children = up_and_children(running.process.pid)
    ports = ports_of(running.output)
    assert len(ports) == 3 and all(listening(port) for port in ports)
    os.kill(up_pid, signal.SIGTERM)
    assert running.process.wait(timeout=STOPPED_WITHIN_S) == 0, running.output[-2000:]
    assert re.search(r"^Stopping …$", running.output, flags=re.M)
    assert wait_until_gone(children, ports, within=5) == ({}, [])
    assert not (checkout / ".localcloud" / DISCOVERY_FILE).exists()


# What a process that started an emulator does, then dies of SIGKILL (which gives it no chance to stop anything).
STARTS_AN_EMULATOR = """
import json, time
from localcloud.emulator import Emulator
print(json.dumps(Emulator().start().environment()), flush=True)
time.sleep(600)
"""


def test_the_emulator_s_processes_exit_when_the_process_that_started_them_is_killed():
    """`up`, or a test, killed outright: the emulator's processes notice their parent is gone and exit (the
    functions' environments end with their input), so no port stays taken."""
    parent = subprocess.Popen([sys.executable, "-c", STARTS_AN_EMULATOR], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        environment = json.loads(parent.stdout.readline())
        children = descendants(parent.pid)
        ports = [int(environment[name].rsplit(":", 1)[1]) for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB")]
        assert sum("localcloud.emulator" in command for command in children.values()) == 2, children
        assert all(listening(port) for port in ports)
        parent.kill()
        parent.wait()
        assert wait_until_gone(children, ports, within=10) == ({}, [])
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


@pytest.mark.readme
@pytest.mark.parametrize("command", [c for c in COMMANDS if c in DEMOS])
def test_a_demo_runs_as_written(command, checkout, tmp_path):
    home = tmp_path / "home"
    holiday = home / "Pictures" / "holiday"
    holiday.mkdir(parents=True)
    (holiday / "harbour.jpg").write_bytes(samples.jpeg(1200, 900))
    (holiday / "sunset.webp").write_bytes(samples.webp(800, 600))
    (checkout / "photo.jpg").write_bytes(samples.jpeg(640, 480))
    ran = shell(COMMANDS[command], checkout, timeout=600, HOME=str(home))
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    assert re.search(DEMOS[command], ran.stdout, flags=re.M), ran.stdout[-3000:]
    if "--json summary.json" in command:
        summary = json.loads((checkout / "summary.json").read_text())
        assert {image["key"]: image["status"] for image in summary["images"]} == {
            "uploads/holiday/harbour.jpg": Status.DONE, "uploads/holiday/sunset.webp": Status.DONE}
