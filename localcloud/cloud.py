"""The local cloud: emulator + the program deployed into it + pollers running the handlers."""
from __future__ import annotations

import json
import mimetypes
import os
import secrets
import shutil
import threading
import time
import zipfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import boto3
import requests
from botocore.config import Config

from handlers.names import Env, Function, StackOutput
from infra.settings import Settings
from infra.settings import load as load_settings
from localcloud import program
from localcloud.api import FunctionEndpoint, InvokeEndpoint
from localcloud.emulator import Emulator
from localcloud.metrics import Publisher
from localcloud.mocks import CloudMocks
from localcloud.outputs import ACCOUNT_ID
from localcloud.overrides import EMULATED_SERVICES, LOCAL_CONFIG, MAX_LOCAL_CONCURRENCY
from localcloud.pollers import Chaos, FunctionSpec, MappingSpec, Poller, StreamMappingSpec, StreamPoller
from ops.target import DISCOVERY_FILE, local_home

MANAGED_POLICY = "aws:iam/policy:Policy"
DISTRIBUTION = "aws:cloudfront/distribution:Distribution"


@dataclass
class DeadLetter:
    queue: str  # which stage's DLQ
    key: str | None  # the upload it concerns, when the message names one
    body: str
    receive_count: int


@dataclass
class ApiUpload:
    api_status: int  # what the upload API answered
    message: str  # its message, when it refused
    key: str | None  # the key it chose
    s3_status: int | None  # what S3 answered the presigned PUT
    grant: dict[str, Any] | None = None  # the whole grant, to replay it


class LocalCloud:
    """Use as a context manager; nothing is left running after it exits."""

    def __init__(self, config: dict[str, Any] | None = None, faults: dict[str, list[dict[str, Any]]] | None = None,
                 workdir: Path | None = None, port: int = 0, chaos: Chaos | dict[str, Chaos] | None = None,
                 stack: str = "local", cdn: dict[str, Any] | None = None):
        self.config = merge(LOCAL_CONFIG, config or {})
        self.faults = faults or {}  # stage -> rules for runtime.install_faults
        self.chaos = chaos or Chaos()  # for every stage, or per stage
        self.stack = stack
        self.cdn = cdn or {}  # the emulated CloudFront's limits, when a test wants them smaller (controls.Invalidations)
        self.workdir = Path(workdir) if workdir is not None else local_home()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.emulator = Emulator(port, log_path=self.workdir / "emulator.log")
        self.pollers: dict[str, Poller] = {}
        self.stream_pollers: dict[str, StreamPoller] = {}  # functions fed by the table's stream (the image events)
        self._stream_checkpoints: dict[str, str | None] = {}  # where each stopped, for the next to resume after
        self.endpoints: dict[str, FunctionEndpoint] = {}
        self.invocations: InvokeEndpoint | None = None
        self._specs: dict[str, FunctionSpec] = {}
        self.deployment: program.Deployment | None = None
        self._saved_environment: dict[str, str | None] = {}
        self._metrics: Publisher | None = None
        self._clients: dict[str, Any] = {}
        self.credentials: dict[str, dict[str, str]] = {}  # each function's and the operator's, drawn at start

    # lifecycle
    def __enter__(self) -> LocalCloud:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> None:
        shutil.rmtree(self.workdir / "logs", ignore_errors=True)  # every local cloud starts with empty logs
        self.emulator.start()
        for name, value in self.emulator.environment().items():
            self._saved_environment.setdefault(name, os.environ.get(name))
            os.environ[name] = value
        _forget_default_credentials()
        try:
            self._mocks = CloudMocks()
            self.deployment = program.run(self._mocks, self.config, stack=self.stack)
            self._deploy_functions()
            self._metrics = Publisher(self.client("cloudwatch"), self.emulator,
                                      [q.state["name"] for q in self.deployed.of_type("aws:sqs/queue:Queue")],
                                      self.workdir / "logs").start()
        except BaseException:
            self.stop()
            raise

    def _deploy_functions(self) -> None:
        """Who may do what, the event source mappings, Lambda's Invoke for every function, and a poller per mapping
        and an endpoint per URL."""
        self.credentials = function_credentials(self.deployed, self.credentials)
        logs = self.workdir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        self._specs = {stage: self._function_spec(fn, stage) for stage, fn in self.deployed.functions().items()}
        self.invocations = InvokeEndpoint({spec.name: (spec, logs / f"{stage}.log")
                                           for stage, spec in self._specs.items()}).start()
        self.emulator.configure(*grants(self.deployed, self.credentials), mappings=mappings(self.deployed),
                                quotas=quotas(self.settings()),
                                cors={c.inputs["bucket"]: c.inputs["corsRules"]
                                      for c in self.deployed.of_type("aws:s3/bucketCorsConfiguration:BucketCorsConfiguration")},
                                cdn={"distributions": [d.id for d in self.deployed.of_type(DISTRIBUTION)], **self.cdn},
                                invoke=self.invocations.address)
        self._mapping_states = MappingStates(self.emulator)
        self._start_pollers()
        self._start_endpoints()

    def settings(self) -> Settings:
        """The settings the program runs with here (the local cloud's config over the defaults)."""
        return load_settings({key: value if isinstance(value, str) else json.dumps(value)
                              for key, value in self.config.items()})

    def update(self, config: dict[str, Any]) -> None:
        """What `pulumi up` after `pulumi config set` does to the functions: run the program with the new config and
        restart every function with its new configuration (a stage's settings are its environment). The stores and
        queues keep what they hold; resources other than functions keep their first configuration here."""
        self._stop_functions()
        self.config = merge(self.config, config)
        self.deployment = program.run(program.RecordingMocks(), self.config, stack=self.stack)
        self._deploy_functions()

    def _stop_functions(self) -> None:
        for poller in self.pollers.values():  # all told first: their last long polls end together
            poller.stop_soon()
        for stream_poller in self.stream_pollers.values():
            stream_poller.stop_soon()
        for poller in self.pollers.values():
            poller.stop()
        for stage, stream_poller in self.stream_pollers.items():
            stream_poller.stop()
            self._stream_checkpoints[stage] = stream_poller.checkpoint
        self.pollers.clear()
        self.stream_pollers.clear()
        for endpoint in self.endpoints.values():
            endpoint.stop()
        self.endpoints.clear()
        if self.invocations is not None:
            self.invocations.stop()
            self.invocations = None

    def stop(self) -> None:
        if self._metrics is not None:
            self._metrics.stop()
            self._metrics = None
        self._stop_functions()
        self.emulator.stop()
        for name, value in self._saved_environment.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_environment.clear()
        _forget_default_credentials()
        self._clients.clear()

    # what was deployed
    @property
    def deployed(self) -> program.Deployment:
        """What the program declared (once started)."""
        if self.deployment is None:
            raise RuntimeError("the local cloud has not been started")
        return self.deployment

    @property
    def outputs(self) -> dict[str, Any]:
        return self.deployed.outputs

    @property
    def endpoint(self) -> str:
        return self.emulator.endpoint

    def endpoint_of(self, service: str) -> str:
        """Where the emulator serves `service` (DynamoDB has a process of its own)."""
        return self.emulator.environment().get(f"AWS_ENDPOINT_URL_{service.upper()}", self.endpoint)

    def _start_pollers(self) -> None:
        assert self.deployment is not None
        stage_of = {fn.state["arn"]: stage for stage, fn in self.deployment.functions().items()}
        queues = {q.state["arn"]: q for q in self.deployment.of_type("aws:sqs/queue:Queue")}
        logs = self.workdir / "logs"
        for mapping in self.deployment.of_type("aws:lambda/eventSourceMapping:EventSourceMapping"):
            stage = stage_of[mapping.inputs["functionName"]]
            if mapping.inputs["eventSourceArn"] not in queues:  # a table's stream
                self._start_stream_poller(stage, mapping, queues)
                continue
            queue = queues[mapping.inputs["eventSourceArn"]]
            spec = self._specs[stage]
            concurrency = min(int(mapping.inputs.get("scalingConfig", {}).get("maximumConcurrency", 2)), MAX_LOCAL_CONCURRENCY)
            uuid = mapping.state["uuid"]
            poller = Poller(spec, MappingSpec(
                queue_url=queue.state["url"], queue_arn=queue.state["arn"],
                batch_size=int(mapping.inputs.get("batchSize", 10)),
                batching_window=float(mapping.inputs.get("maximumBatchingWindowInSeconds", 0)),
                concurrency=concurrency, uuid=uuid), log_path=logs / f"{stage}.log",
                chaos=self.chaos.get(stage, Chaos()) if isinstance(self.chaos, dict) else self.chaos,
                enabled=partial(self._enabled, uuid), local_credentials=self.emulator.credentials)
            poller.start()
            self.pollers[stage] = poller

    def _start_stream_poller(self, stage: str, mapping: program.Registered, queues: dict[str, program.Registered]) -> None:
        """Play the mapping of a function fed by a DynamoDB stream, with its filters, retries and on-failure queue."""
        on_failure = mapping.inputs.get("destinationConfig", {}).get("onFailure", {}).get("destinationArn")
        poller = StreamPoller(self._specs[stage], StreamMappingSpec(
            stream_arn=mapping.inputs["eventSourceArn"], batch_size=int(mapping.inputs.get("batchSize", 100)),
            batching_window=float(mapping.inputs.get("maximumBatchingWindowInSeconds", 0)),
            filters=tuple(json.loads(f["pattern"]) for f in mapping.inputs.get("filterCriteria", {}).get("filters", [])),
            bisect=bool(mapping.inputs.get("bisectBatchOnFunctionError")),
            max_retries=int(mapping.inputs.get("maximumRetryAttempts", 10)),
            on_failure_queue_url=queues[on_failure].state["url"] if on_failure in queues else None,
            endpoint=self.endpoint_of("dynamodb"), uuid=mapping.state["uuid"],
            resume_after=self._stream_checkpoints.get(stage)),
            self.workdir / "logs" / f"{stage}.log", enabled=partial(self._enabled, mapping.state["uuid"]))
        poller.start()
        self.stream_pollers[stage] = poller

    def _start_endpoints(self) -> None:
        """Serve each function the program puts behind an HTTP endpoint (a function URL, or an HTTP API's
        integration with a JWT authorizer) on 127.0.0.1."""
        assert self.deployment is not None
        functions = self.deployment.functions()
        by_name = {fn.state["name"]: stage for stage, fn in functions.items()}
        by_arn = {fn.state["arn"]: stage for stage, fn in functions.items()}
        exposed = [(by_name[url.inputs["functionName"]], False, url.inputs.get("cors"))
                   for url in self.deployment.of_type("aws:lambda/functionUrl:FunctionUrl")]
        apis = self.deployment.of_type("aws:apigatewayv2/api:Api")
        exposed += [(by_arn[integration.inputs["integrationUri"]], True, apis[0].inputs.get("corsConfiguration") if apis else None)
                    for integration in self.deployment.of_type("aws:apigatewayv2/integration:Integration")]
        for stage, jwt, cors in exposed:
            log = open(self.workdir / "logs" / f"{stage}.log", "a", buffering=1)  # noqa: SIM115 - lives with the endpoint
            self.endpoints[stage] = FunctionEndpoint(self._specs[stage], log, jwt=jwt, cors=cors).start()

    @property
    def upload_api_url(self) -> str:
        """Where the local upload API listens (deploy with uploadApi on)."""
        return self.endpoints[Function.UPLOAD_API].url

    def upload_through_api(self, filename: str, data: bytes, content_type: str | None = None,
                           declared_size: int | None = None, caller: str | None = None) -> ApiUpload:
        """Ask the upload API for a grant, then PUT the file to S3 with it, as a client would."""
        from localcloud.api import CALLER_HEADER

        content_type = content_type or mimetypes.guess_type(filename)[0] or "application/octet-stream"
        request: dict[str, Any] = {"filename": filename, "contentType": content_type,
                                   "size": len(data) if declared_size is None else declared_size}
        response = requests.post(f"{self.upload_api_url}/uploads", json=request, timeout=30,
                                 headers={CALLER_HEADER: caller} if caller else {})
        grant = response.json()
        if response.status_code != 201:
            return ApiUpload(response.status_code, grant.get("message", ""), None, None)
        return ApiUpload(response.status_code, "", grant["key"], self.put_with_grant(grant, data), grant)

    @staticmethod
    def put_with_grant(grant: dict[str, Any], data: bytes) -> int:
        """PUT `data` with an upload grant's URL and headers; S3's status code."""
        return requests.put(grant["url"], data=data, headers=grant["headers"], timeout=60).status_code

    def _enabled(self, uuid: str) -> bool:
        return self._mapping_states.enabled(uuid)

    def operator_environment(self) -> dict[str, str]:
        """What someone holding exactly the stack's operator policy needs to reach the emulator (its credentials,
        which the emulator allows what that policy allows)."""
        [policy] = [p.state["name"] for p in self.deployed.of_type(MANAGED_POLICY) if p.name.endswith("-operator")]
        return {**self.emulator.environment(), **self.credentials[policy]}

    def publish_metrics(self) -> None:
        """Put the metrics AWS would have published by now into the emulator's CloudWatch (see metrics.py)."""
        assert self._metrics is not None, "the local cloud has not been started"
        self._metrics.publish()

    def write_discovery(self) -> Path:
        """Say how to reach this local cloud (`python -m ops --local` reads it, in the local cloud's folder; gone when
        `up` stops): endpoints, the operator's credentials and the stack outputs."""
        path = self.workdir / DISCOVERY_FILE
        path.unlink(missing_ok=True)
        # It holds the operator's credentials: readable by this user only, from the moment it exists.
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
            file.write(json.dumps({"environment": self.operator_environment(), "outputs": self.outputs,
                                   "emulated": True}, indent=2, default=str))
        return path

    def _function_spec(self, fn: program.Registered, stage: str) -> FunctionSpec:
        code_dir = self.workdir / "functions" / stage
        shutil.rmtree(code_dir, ignore_errors=True)
        code_dir.mkdir(parents=True)
        with zipfile.ZipFile(fn.inputs["code"].path) as archive:
            archive.extractall(code_dir)
        environment = {
            "PATH": os.environ.get("PATH", ""),
            "PYTHONDONTWRITEBYTECODE": "1",
            "AWS_LAMBDA_FUNCTION_NAME": fn.state["name"],
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(int(fn.inputs["memorySize"])),
            **self.emulator.environment(),
            # The function's own credentials: the emulator allows them exactly what its role allows.
            **self.credentials[fn.state["name"]],
            **fn.inputs.get("environment", {}).get("variables", {}),
            Env.EMULATED: ",".join(EMULATED_SERVICES),
        }
        if self.faults.get(stage):
            environment["LOCALCLOUD_FAULTS"] = json.dumps(self.faults[stage])
        return FunctionSpec(name=fn.state["name"], handler=fn.inputs["handler"], code_dir=code_dir,
                            timeout=float(fn.inputs["timeout"]), memory=int(fn.inputs["memorySize"]),
                            environment=environment)

    # using it
    def client(self, service: str) -> Any:
        """A client for the emulator, made once (the wait loops ask for them many times a second). Its uploads are
        sent as over TLS: without SHA-256 payload signing (botocore signs the payload of every plain-HTTP request
        unless told) and without a streamed CRC trailer, which the emulator would decode in Python. Presigned URLs are
        SigV4 (botocore would presign SigV2 in us-east-1, which S3 no longer accepts and the emulator refuses)."""
        if service not in self._clients:
            config = Config(s3={"payload_signing_enabled": False}, request_checksum_calculation="when_required",
                            signature_version="s3v4")
            self._clients[service] = self._session().client(service, config=config, endpoint_url=self.endpoint_of(service))
        return self._clients[service]

    def _session(self) -> boto3.Session:
        """The local cloud's own (unrestricted) credentials, whatever the process environment says meanwhile."""
        env = self.emulator.environment()
        return boto3.Session(aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
                             region_name=env["AWS_DEFAULT_REGION"])

    def event_consumer(self, name: str, pattern: dict[str, Any]) -> str:
        """A consumer of the stack's image events, as another team would make one: a queue and a rule on the stack's bus
        that sends it what `pattern` matches (the README's "Events"). Returns the queue's URL."""
        sqs, events = self.client("sqs"), self.client("events")
        url = sqs.create_queue(QueueName=name, Attributes={"SqsManagedSseEnabled": "true"})["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        bus = self.outputs[StackOutput.EVENT_BUS_NAME]
        events.put_rule(Name=name, EventBusName=bus, EventPattern=json.dumps(pattern))
        events.put_targets(Rule=name, EventBusName=bus, Targets=[{"Id": name, "Arn": arn}])
        return url

    def consumed(self, url: str) -> list[dict[str, Any]]:
        """Every event the consumer queue holds, taken off it."""
        sqs, found = self.client("sqs"), list[dict[str, Any]]()
        while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
            found.extend(json.loads(m["Body"]) for m in batch)
            sqs.delete_message_batch(QueueUrl=url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)])
        return found

    def wait_for_events(self, timeout: float = 30.0) -> bool:
        """Wait until every stream-fed function (the image events) has read the table's stream to its end, with a read
        that began after this call, and delivered what it read. False if that took longer than `timeout`."""
        began = {stage: p.reads for stage, p in self.stream_pollers.items()}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(p.reads >= began[stage] + 2 and p.caught_up and not p.busy for stage, p in self.stream_pollers.items()):
                return True
            time.sleep(0.1)
        return False

    def upload(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> dict[str, Any]:
        return self.client("s3").put_object(Bucket=self.outputs[StackOutput.UPLOADS_BUCKET], Key=key, Body=data, ContentType=content_type)

    def delete(self, key: str) -> dict[str, Any]:
        return self.client("s3").delete_object(Bucket=self.outputs[StackOutput.UPLOADS_BUCKET], Key=key)

    def records(self, brief: bool = False) -> dict[str, dict[str, Any]]:
        """Every image record, by upload key (`brief`: only its key and status, for the wait loops)."""
        if "table" not in self._clients:
            self._clients["table"] = self._session().resource(
                "dynamodb", endpoint_url=self.endpoint_of("dynamodb")).Table(self.outputs[StackOutput.TABLE_NAME])
        table = self._clients["table"]
        options: dict[str, Any] = {"ConsistentRead": True}
        if brief:
            options.update(ProjectionExpression="#k, #s", ExpressionAttributeNames={"#k": "key", "#s": "status"})
        items: list[dict[str, Any]] = []
        response = table.scan(**options)
        items.extend(response["Items"])
        while "LastEvaluatedKey" in response:
            response = table.scan(ExclusiveStartKey=response["LastEvaluatedKey"], **options)
            items.extend(response["Items"])
        return {item["key"]: item for item in items if "key" in item}

    def queue_depths(self) -> dict[str, tuple[int, int]]:
        """(waiting, in flight) of every work queue and dead-letter queue, by URL: the emulator's own count (what
        GetQueueAttributes answers), in one request for all of them."""
        depths = self.emulator.queue_depths()
        urls = [*self.outputs[StackOutput.QUEUE_URLS].values(), *self.outputs[StackOutput.DEAD_LETTER_QUEUE_URLS].values()]
        return {url: depths[url.rstrip("/").rsplit("/", 1)[-1]] for url in urls}

    def dead_letters(self) -> list[DeadLetter]:
        """What every DLQ holds, left in place (received with a zero visibility timeout)."""
        sqs = self.client("sqs")
        found: list[DeadLetter] = []
        for stage, url in self.outputs[StackOutput.DEAD_LETTER_QUEUE_URLS].items():
            seen: set[str] = set()
            for _ in range(20):
                messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0,
                                               AttributeNames=["All"]).get("Messages", [])
                fresh = [m for m in messages if m["MessageId"] not in seen]
                if not fresh:
                    break
                for message in fresh:
                    seen.add(message["MessageId"])
                    found.append(DeadLetter(stage, _key_of(message["Body"]), message["Body"],
                                            int(message["Attributes"].get("ApproximateReceiveCount", "0"))))
        return found

    def idle(self) -> bool:
        """No message waiting or in flight in any work queue, and no invocation running."""
        depths = self.queue_depths()
        if any(sum(depths[url]) for url in self.outputs[StackOutput.QUEUE_URLS].values()):
            return False
        return not any(p.busy for p in self.pollers.values())

    @property
    def gaps(self) -> list[str]:
        """Declared settings the emulator could not apply (see CloudMocks)."""
        return self._mocks.gaps

    def stats(self) -> dict[str, dict[str, int]]:
        return {stage: dict(p.stats) for stage, p in self.pollers.items()}

    def metrics(self) -> dict[str, dict[str, float]]:
        """EMF metrics the handlers emitted, summed per stage, read from their logs."""
        totals: dict[str, dict[str, float]] = {}
        for stage in self.pollers:
            path = self.workdir / "logs" / f"{stage}.log"
            sums: dict[str, float] = {}
            for line in path.read_text(errors="replace").splitlines() if path.exists() else []:
                if not line.startswith('{"_aws"'):
                    continue
                document = json.loads(line)
                for directive in document["_aws"]["CloudWatchMetrics"]:
                    for metric in directive["Metrics"]:
                        values = document.get(metric["Name"], [])
                        sums[metric["Name"]] = sums.get(metric["Name"], 0) + sum(values if isinstance(values, list) else [values])
            totals[stage] = sums
        return totals


def function_credentials(deployment: program.Deployment, known: dict[str, dict[str, str]] | None = None
                         ) -> dict[str, dict[str, str]]:
    """Credentials of each function's role (as Lambda hands a function its execution role's), by function name, and
    of each customer-managed policy (the operator's), by policy name: someone holding exactly that policy. Drawn at
    random for each run (an access key derived from a name anyone can read would be anyone's), and kept across a
    settings change (`known`), as a role's holders keep theirs."""
    found = {}
    principals = [r.state["name"] for r in deployment.of_type("aws:lambda/function:Function")]
    principals += [p.state["name"] for p in deployment.of_type(MANAGED_POLICY)]
    for name in principals:
        found[name] = (known or {}).get(name) or {"AWS_ACCESS_KEY_ID": "LOCAL" + secrets.token_hex(8).upper()[:15],
                                                  "AWS_SECRET_ACCESS_KEY": secrets.token_hex(20)}
    return found


def grants(deployment: program.Deployment, credentials: dict[str, dict[str, str]]
           ) -> tuple[dict[str, dict[str, Any]], dict[str, list[dict[str, Any]]], dict[str, str]]:
    """What the emulator judges requests by, from what the program declared: each function's credentials with its
    role's inline statements, each managed policy's holder with its statements, every bucket policy as declared, and
    each encrypted topic's key."""
    roles = {r.state["arn"]: r.state["name"] for r in deployment.of_type("aws:iam/role:Role")}
    statements: dict[str, list[dict[str, Any]]] = {}
    for policy in deployment.of_type("aws:iam/rolePolicy:RolePolicy"):
        statements.setdefault(policy.inputs["role"], []).extend(json.loads(policy.inputs["policy"])["Statement"])
    identities = {}
    for fn in deployment.of_type("aws:lambda/function:Function"):
        creds = credentials[fn.state["name"]]
        identities[creds["AWS_ACCESS_KEY_ID"]] = {"name": fn.state["name"], "secret": creds["AWS_SECRET_ACCESS_KEY"],
                                                  "statements": statements.get(roles[fn.inputs["role"]], []),
                                                  "principal_arn": fn.inputs["role"]}
    for policy in deployment.of_type(MANAGED_POLICY):
        creds = credentials[policy.state["name"]]
        identities[creds["AWS_ACCESS_KEY_ID"]] = {"name": policy.state["name"], "secret": creds["AWS_SECRET_ACCESS_KEY"],
                                                  "statements": json.loads(policy.inputs["policy"])["Statement"],
                                                  "principal_arn": f"arn:aws:iam::{ACCOUNT_ID}:user/{policy.state['name']}"}
    bucket_policies = {p.inputs["bucket"]: json.loads(p.inputs["policy"])["Statement"]
                       for p in deployment.of_type("aws:s3/bucketPolicy:BucketPolicy")}
    topics = {t.state["arn"]: t.inputs["kmsMasterKeyId"] for t in deployment.of_type("aws:sns/topic:Topic")
              if t.inputs.get("kmsMasterKeyId")}
    return identities, bucket_policies, topics


LOOK_EVERY_S = 1.0  # below controls.TRANSITION_S less a long poll: a paused stage has stopped when it says so


class MappingStates:
    """Whether each event source mapping is enabled, read from the emulator (which answers Lambda's API for them) at
    most once a second, however many pollers ask."""

    def __init__(self, emulator: Emulator):
        self._emulator, self._lock = emulator, threading.Lock()
        self._states: dict[str, bool] = {}
        self._read = 0.0

    def enabled(self, uuid: str) -> bool:
        with self._lock:
            if time.monotonic() - self._read >= LOOK_EVERY_S:
                try:
                    self._states = self._emulator.mapping_states()
                except OSError:
                    pass  # the emulator is stopping; keep what was read
                self._read = time.monotonic()
            return self._states.get(uuid, True)


def mappings(deployment: program.Deployment) -> list[dict[str, Any]]:
    """The event source mappings the program declared, as Lambda's API describes them."""
    return [{"UUID": m.state["uuid"], "EventSourceMappingArn": m.state["arn"], "FunctionArn": m.inputs["functionName"],
             "EventSourceArn": m.inputs["eventSourceArn"], "BatchSize": int(m.inputs.get("batchSize", 10)),
             "MaximumBatchingWindowInSeconds": int(m.inputs.get("maximumBatchingWindowInSeconds", 0)),
             "FunctionResponseTypes": m.inputs.get("functionResponseTypes", []),
             "ScalingConfig": {"MaximumConcurrency": int(m.inputs.get("scalingConfig", {}).get("maximumConcurrency", 2))}}
            for m in deployment.of_type("aws:lambda/eventSourceMapping:EventSourceMapping")]


def _forget_default_credentials() -> None:
    """boto3's default session keeps the credentials it read first, and each run's are its own: the next plain
    boto3.client() (the mocks', a test's) reads the environment again (moto's mock_aws does the same)."""
    boto3.DEFAULT_SESSION = None


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`override` on top of `base`, merging per-function objects field by field."""
    merged = dict(base)
    for key, value in override.items():
        merged[key] = {**base[key], **value} if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return merged


def _key_of(body: str) -> str | None:
    """The upload key a dead letter concerns: from an S3 event (URL-encoded) or a claim check (decoded)."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if isinstance(data, dict) and isinstance(data.get("Records"), list) and data["Records"]:
        try:
            return unquote_plus(data["Records"][0]["s3"]["object"]["key"])
        except (KeyError, TypeError):
            return None
    if isinstance(data, dict) and isinstance(data.get("key"), str):
        return data["key"]
    return None


def quotas(s: Settings) -> dict[str, float]:
    """The calls a second each service quota the deployed stages declare allows (the emulator refuses the rest)."""
    return {limit.operation: limit.per_second for c in s.deployed if c.stage.capacity
            for limit in c.stage.capacity.limits(c) if limit.operation}
