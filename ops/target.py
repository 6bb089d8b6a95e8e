"""Which stack the operator tools act on, and the AWS clients to reach it.

  --stack NAME     a deployed stack: its outputs from `pulumi stack output --json`, the normal AWS credential chain
  --outputs FILE   the same outputs saved earlier (for a machine without the Pulumi CLI), the normal chain
  --local          the local cloud `make up` runs: the endpoints and the operator's credentials it wrote down in
                   .localcloud/up.json (LOCALCLOUD_HOME=DIR: in DIR/up.json; --local-file FILE: in FILE)

Every failure to reach the stack becomes a TargetError whose message names the fix.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from handlers.names import StackOutput

ROOT = Path(__file__).resolve().parent.parent
# Where the local cloud keeps its files (up.json while `make up` runs, the logs, the functions' code); this variable
# moves it (a second local cloud beside a running one, the tests).
LOCAL_HOME_VARIABLE = "LOCALCLOUD_HOME"
DISCOVERY_FILE = "up.json"
# Outputs the tools need; a stack deployed before they existed lacks some: `pulumi up` adds them.
REQUIRED_OUTPUTS = ("tableName", "queueUrls", "deadLetterQueueUrls", "queueArns", "deadLetterQueueArns",
                    "eventSourceMappings", "pauseFunctionName", "claimCheckTopicArn", "thumbnailSettings")
_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=30)
# S3's presigned URLs as SigV4: botocore presigns SigV2 in us-east-1 unless told, and S3 refuses SigV2 from accounts
# made since 2020 (S3 User Guide, "Authenticating Requests (AWS Signature Version 2)": deprecated).
_S3_CONFIG = _CONFIG.merge(Config(signature_version="s3v4"))


def local_home() -> Path:
    """The local cloud's folder: $LOCALCLOUD_HOME, or .localcloud in the project."""
    return Path(os.environ.get(LOCAL_HOME_VARIABLE) or ROOT / ".localcloud")


class TargetError(Exception):
    """The stack cannot be reached; the message says why and what to do."""


@dataclass
class Target:
    name: str  # what the user called it: a stack name, a file, or "local"
    outputs: dict[str, Any]
    emulated: bool = False  # the local cloud: its metrics and labels are emulated
    environment: dict[str, str] = field(default_factory=dict)  # the local cloud's endpoints and credentials
    state_dir: Path = ROOT / ".ops"  # where checkpoints are kept
    _clients: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        missing = [name for name in REQUIRED_OUTPUTS if name not in self.outputs]
        if missing:
            raise TargetError(f"the stack {self.name} has no output {', '.join(missing)}: it was deployed by an earlier "
                              "version; run `pulumi up` to add them")

    def client(self, service: str) -> Any:
        if service not in self._clients:
            config = _S3_CONFIG if service == "s3" else _CONFIG
            if self.environment:
                env = self.environment
                session = boto3.Session(aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                                        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
                                        region_name=env.get("AWS_DEFAULT_REGION", "us-east-1"))
                endpoint = env.get(f"AWS_ENDPOINT_URL_{service.upper()}", env.get("AWS_ENDPOINT_URL"))
                self._clients[service] = session.client(service, endpoint_url=endpoint, config=config)
            else:
                self._clients[service] = boto3.client(service, config=config)
        return self._clients[service]

    def stage_of_queue(self, url: str) -> str:
        return next(stage for stage, queue in self.outputs[StackOutput.QUEUE_URLS].items() if queue == url)


def from_stack(stack: str, cwd: Path = ROOT) -> Target:
    """A deployed stack, by name: its outputs through the Pulumi CLI."""
    pulumi = shutil.which("pulumi")
    if pulumi is None:
        raise TargetError("the Pulumi CLI is not on PATH: install it (https://www.pulumi.com/docs/install/), or save "
                          "the outputs where it is (`pulumi stack output --json --stack NAME > outputs.json`) and pass "
                          "--outputs outputs.json")
    answer = subprocess.run([pulumi, "stack", "output", "--json", "--stack", stack], cwd=cwd, capture_output=True,
                            text=True, timeout=120)
    if answer.returncode != 0:
        detail = (answer.stderr or answer.stdout).strip().splitlines()
        raise TargetError(f"the stack {stack!r} cannot be read: {detail[-1] if detail else 'pulumi failed'} "
                          "(`pulumi stack ls` lists the stacks here)")
    return Target(stack, json.loads(answer.stdout))


def from_outputs(path: Path) -> Target:
    """Outputs saved with `pulumi stack output --json`."""
    try:
        outputs = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise TargetError(f"{path} does not exist (save it with `pulumi stack output --json > {path}`)") from None
    except ValueError as exc:
        raise TargetError(f"{path} is not the JSON `pulumi stack output --json` writes: {exc}") from None
    return Target(str(path), outputs)


def from_local(discovery: Path | None = None) -> Target:
    """The local cloud `make up` keeps running, found through the file it writes while it runs (by default in
    local_home())."""
    discovery = discovery or local_home() / DISCOVERY_FILE
    try:
        document = json.loads(discovery.read_text())
    except (FileNotFoundError, ValueError):
        raise TargetError("the local cloud is not running: start it with `make up` (in another terminal), "
                          "then run this again") from None
    target = Target("local", document["outputs"], emulated=True, environment=document["environment"],
                    state_dir=discovery.parent / "ops")
    try:
        dlq = next(iter(target.outputs[StackOutput.DEAD_LETTER_QUEUE_URLS].values()))
        target.client("sqs").get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])
    except Exception:  # any failure here means the same thing
        raise TargetError("the local cloud is not answering (was `make up` stopped?): start it with `make up`") from None
    return target
