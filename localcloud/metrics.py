"""CloudWatch's part, played locally: the metrics AWS publishes by itself, put into the emulator's CloudWatch so
that `python -m ops status` reads them there as it reads them from a deployed stack.

  AWS/SQS     ApproximateAgeOfOldestMessage and the visible and in-flight counts of every queue, from the emulator's
              queues (SQS publishes them every minute; here every PERIOD_S seconds)
  claimcheck  every metric the handlers emitted in Embedded Metric Format, with its dimensions, from their logs
              (CloudWatch Logs extracts EMF from the log group; here from the local cloud's log files)

What is put here is emulated: the emulator's CloudWatch takes namespaces AWS reserves for itself.
"""
from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PERIOD_S = 10.0
SQS_NAMESPACE = "AWS/SQS"


class Publisher:
    def __init__(self, cloudwatch: Any, emulator: Any, queue_names: list[str], log_dir: Path):
        self._cloudwatch, self._emulator, self._queues, self._logs = cloudwatch, emulator, queue_names, log_dir
        self._offsets: dict[Path, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="localcloud-metrics")
        self._lock = threading.Lock()

    def start(self) -> Publisher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=PERIOD_S + 5)

    def _run(self) -> None:
        while not self._stop.wait(PERIOD_S):
            try:
                self.publish()
            except Exception:
                pass

    def publish(self) -> None:
        """Put what happened since the last call (callers may ask for it at once, the thread does every period)."""
        with self._lock:
            now = datetime.now(UTC)
            depths, ages = self._emulator.queue_depths(), self._emulator.oldest_ages()
            data = []
            for name in self._queues:
                waiting, flying = depths.get(name, (0, 0))
                for metric, value, unit in (("ApproximateAgeOfOldestMessage", ages.get(name, 0.0), "Seconds"),
                                            ("ApproximateNumberOfMessagesVisible", waiting, "Count"),
                                            ("ApproximateNumberOfMessagesNotVisible", flying, "Count")):
                    data.append({"MetricName": metric, "Dimensions": [{"Name": "QueueName", "Value": name}],
                                 "Value": float(value), "Unit": unit, "Timestamp": now})
            self._put(SQS_NAMESPACE, data)
            for namespace, metrics in self._emf().items():
                self._put(namespace, metrics)

    def _put(self, namespace: str, data: list[dict[str, Any]]) -> None:
        for start in range(0, len(data), 500):  # PutMetricData takes at most 1,000 metrics a call
            self._cloudwatch.put_metric_data(Namespace=namespace, MetricData=data[start:start + 500])

    def _emf(self) -> dict[str, list[dict[str, Any]]]:
        found: dict[str, list[dict[str, Any]]] = {}
        for path in sorted(self._logs.glob("*.log")):
            with open(path, "rb") as log:
                log.seek(self._offsets.get(path, 0))
                chunk = log.read()
            complete = chunk[: chunk.rfind(b"\n") + 1]  # a line still being written waits for the next period
            self._offsets[path] = self._offsets.get(path, 0) + len(complete)
            for line in complete.splitlines():
                if line.startswith(b'{"_aws"'):
                    document = json.loads(line)
                    for namespace, metric in _metrics_of(document):
                        found.setdefault(namespace, []).append(metric)
        return found


def _metrics_of(document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(namespace, MetricDatum) for every metric of one EMF document (Embedded Metric Format specification)."""
    meta = document["_aws"]
    when = datetime.fromtimestamp(meta["Timestamp"] / 1000, UTC)
    found = []
    for directive in meta["CloudWatchMetrics"]:
        dimensions = [{"Name": name, "Value": str(document[name])} for group in directive.get("Dimensions", [])
                      for name in group if name in document]
        for metric in directive["Metrics"]:
            values = document.get(metric["Name"], [])
            for value in values if isinstance(values, list) else [values]:
                found.append((directive["Namespace"], {"MetricName": metric["Name"], "Dimensions": dimensions,
                                                       "Value": float(value), "Unit": metric.get("Unit", "None"),
                                                       "Timestamp": when}))
    return found
