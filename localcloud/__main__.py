"""python -m localcloud: run the whole pipeline on this machine.

  demo [PATH ...] [--out DIR] [--json FILE] [--set KEY=VALUE]…   deploy, upload, wait, report
  up [--port N] [--gallery-port N]            deploy, serve the live gallery, keep running for your own uploads (until
                                              Ctrl-C, SIGTERM or SIGHUP, which all stop everything it started)
  soak [--images N] [--fault-rate P] …        uploads under injected faults, then reconcile: lost must be 0
  upload FILE ... [--declared-size N]          upload through the upload API's one-use presigned PUT, then report
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
from pathlib import Path

from handlers.names import UPLOADS_PREFIX, StackOutput
from infra import settings
from localcloud import report, samples, soak, watch
from localcloud.cloud import LocalCloud
from localcloud.live import LiveGallery
from localcloud.overrides import showcase
from localcloud.program import PROJECT_ROOT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localcloud", description="claimcheck's local cloud")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="deploy locally, upload images, wait for every one, report")
    demo.add_argument("paths", nargs="*", type=Path, help="images or folders to upload (default: a generated sample set)")
    demo.add_argument("--out", type=Path, default=Path("out"), help="where thumbnails are written (default: out/)")
    demo.add_argument("--json", type=Path, help="write a JSON summary here")
    demo.add_argument("--timeout", type=float, default=None,
                      help="give up waiting after this many seconds (default: wait while anything is queued or in flight)")
    demo.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="a config value for this run, as `pulumi config set` would set it (e.g. rekognitionTps=50)")
    up = commands.add_parser("up", help="deploy locally and keep running until Ctrl-C (or SIGTERM)")
    up.add_argument("--port", type=int, default=0, help="emulator port on 127.0.0.1 (default: a free one)")
    up.add_argument("--gallery-port", type=int, default=None,
                    help="the live gallery's port on 127.0.0.1 (default: 8000, or a free one if 8000 is taken)")
    soak_parser = commands.add_parser("soak", help="many uploads with faults injected, then reconcile everything")
    defaults = soak.SoakPlan()
    soak_parser.add_argument("--images", type=int, default=defaults.images, help="uploads (default %(default)s)")
    soak_parser.add_argument("--fault-rate", type=float, default=defaults.fault_rate,
                             help="probability that an S3, DynamoDB, SNS or Rekognition call fails (default %(default)s)")
    soak_parser.add_argument("--duplicate-rate", type=float, default=defaults.duplicate_rate)
    soak_parser.add_argument("--delay-rate", type=float, default=defaults.delay_rate)
    soak_parser.add_argument("--kill-rate", type=float, default=defaults.kill_rate)
    soak_parser.add_argument("--seed", type=int, default=defaults.seed)
    soak_parser.add_argument("--timeout", type=float, default=defaults.timeout, help="seconds (default %(default)s)")
    upload = commands.add_parser("upload", help="upload files through the upload API (one-use presigned PUT), then report")
    upload.add_argument("files", nargs="+", type=Path)
    upload.add_argument("--content-type", help="declare this type instead of guessing it from the name")
    upload.add_argument("--declared-size", type=int, help="declare this size to the API instead of the real one")
    upload.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    return {"demo": run_demo, "up": run_up, "soak": run_soak, "upload": run_upload}[args.command](args)


# The upload command switches on the optional edges: the upload API, CloudFront URLs in records, iPhone photos.
UPLOAD_CONFIG = {"uploadApi": True, "cdn": True, "allowedFormats": ["jpeg", "png", "webp", "gif", "heic", "avif"]}


def run_upload(args: argparse.Namespace) -> int:
    with LocalCloud(config=UPLOAD_CONFIG) as cloud:
        print(f"Upload API at {cloud.upload_api_url}/uploads (deployed: an IAM-authenticated function URL; "
              "the local endpoint stands in for IAM and calls you the local user)")
        keys = []
        for path in args.files:
            result = cloud.upload_through_api(path.name, path.read_bytes(), args.content_type, args.declared_size)
            if result.key is None:
                print(f"  {path.name}: refused by the API ({result.api_status}): {result.message}")
                continue
            print(f"  {path.name}: API {result.api_status} -> {result.key}; S3 answered the PUT with {result.s3_status}")
            if result.s3_status == 200:
                keys.append(result.key)
        summary = wait_until_settled(cloud, keys, args.timeout)
        print()
        print(report.table(summary))
        for key in keys:
            for output in report.renditions(summary.records.get(key, {})):
                print(f"  {output.get('url', output['key'])}")
        print(f"(thumbnail URLs point at the CloudFront distribution {cloud.outputs.get(StackOutput.THUMBNAILS_URL)}, "
              "which the local cloud records but does not serve)")
        return 1 if summary.unaccounted() else 0


def run_soak(args: argparse.Namespace) -> int:
    plan = soak.SoakPlan(images=args.images, fault_rate=args.fault_rate, duplicate_rate=args.duplicate_rate,
                         delay_rate=args.delay_rate, kill_rate=args.kill_rate, seed=args.seed, timeout=args.timeout)
    print(f"Soak: {plan.images} uploads, AWS call faults {plan.fault_rate:.0%}, duplicates {plan.duplicate_rate:.0%}, "
          f"delays {plan.delay_rate:.0%}, kills {plan.kill_rate:.0%} (seed {plan.seed}) …", flush=True)

    last = [0.0]

    def progress(cloud, keys):
        if time.monotonic() - last[0] >= 10:
            last[0] = time.monotonic()
            print(f"  {len(keys) - len(soak._unsettled(cloud, keys))}/{len(keys)} keys settled", flush=True)

    result = soak.run(plan, progress=progress)
    print()
    for problem in result.problems:
        print(f"  LOST {problem}")
    print(result.line())
    return 1 if result.lost else 0


def files_to_upload(paths: list[Path]) -> dict[str, Path]:
    """Upload key -> file: a file goes under uploads/ by name, a folder keeps its tree under uploads/<folder>/."""
    found: dict[str, Path] = {}
    for path in paths:
        if path.is_dir():
            # Hidden files (.DS_Store, a tool's markers) are not photos anyone meant to upload.
            for file in sorted(p for p in path.rglob("*") if p.is_file() and not any(
                    part.startswith(".") for part in p.relative_to(path).parts)):
                found[f"{UPLOADS_PREFIX}{path.name}/{file.relative_to(path).as_posix()}"] = file
        elif path.is_file():
            found[f"{UPLOADS_PREFIX}{path.name}"] = path
        else:
            raise SystemExit(f"no such file or folder: {path}")
    return found


def run_demo(args: argparse.Namespace) -> int:
    try:
        config = {**showcase(), **settings.assignments(args.set)}
        settings.load(config)  # refused here, before anything starts, as `pulumi up` would refuse it
    except settings.SettingsError as error:
        print(error, file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as scratch:
        if args.paths:
            files = files_to_upload(args.paths)
        else:
            sample_dir = Path(scratch) / "samples"
            samples.write_sample_set(sample_dir)
            files = files_to_upload([sample_dir])
        print("Starting the local cloud (moto on 127.0.0.1) and deploying __main__.py into it …", flush=True)
        started = time.monotonic()
        with LocalCloud(config=config) as cloud:
            resources = len(cloud.deployment.resources) if cloud.deployment else 0
            print(f"  deployed {resources} resources in {time.monotonic() - started:.1f} s; emulator at {cloud.endpoint}"
                  + "".join(f"; {key} = {value}" for key, value in config.items()))
            for gap in cloud.gaps:
                print(f"  note: {gap}")
            consumer = cloud.event_consumer(report.CONSUMER, report.CONSUMER_PATTERN)
            print(f"Uploading {len(files)} files to s3://{cloud.outputs[StackOutput.UPLOADS_BUCKET]}/uploads/ "
                  f"({watch.UPLOAD_THREADS} at a time, at most {watch.WINDOW} waiting) …", flush=True)
            show, close = watch.live()
            keys = list(files)
            try:
                summary, progress = watch.upload_and_wait(cloud, dict(files), args.timeout, show)
                if not args.paths and config.get("duplicates", "off") != "off":
                    # A renamed copy of one photo, once that one is done: found as its duplicate (duplicate_of).
                    name, data = samples.renamed_copy()
                    copy: dict[str, Path | bytes] = {f"{UPLOADS_PREFIX}{sample_dir.name}/{name}": data}
                    watch.upload_and_wait(cloud, copy, args.timeout, show)
                    keys += list(copy)
                    summary = report.collect(cloud, keys)
            except watch.Stalled as stalled:
                close()
                print(f"STALLED: {stalled}", file=sys.stderr)
                return 1
            close()
            print()
            print(report.table(summary))
            print()
            letters = summary.dead_letters
            print(f"Dead-letter queues: {len(letters)} message(s)")
            for letter in letters:
                print(f"  {report.explain(letter, summary)}")
            written = report.write_thumbnails(cloud, summary, args.out)
            print(f"Wrote {written} thumbnails under {args.out}/ and the gallery, {report.write_gallery(summary, args.out)}")
            if any(image["labels_emulated"] for image in summary.as_json()["images"]):
                print("Labels come from the emulator's canned Rekognition answer: they are marked (emulated).")
            rate = len(files) / progress.elapsed if progress.elapsed else 0.0
            print(f"Throughput: {len(files)} uploads settled in {progress.elapsed:.1f} s ({rate:.2f}/s), "
                  f"{progress.retried} redeliveries")
            if not cloud.wait_for_events():
                print("Events: the image events function had not caught up with the table after 30 s", file=sys.stderr)
            events = cloud.consumed(consumer)
            print(report.events_line(events, keys))
            if args.json:
                document = {**summary.as_json(), "config": config, "elapsed_seconds": round(progress.elapsed, 1),
                            "uploads_per_second": round(rate, 2), "redeliveries": progress.retried,
                            "events": [e["detail"] for e in events]}
                args.json.write_text(json.dumps(document, indent=2) + "\n")
                print(f"Wrote {args.json}")
        missing = summary.unaccounted()
        if missing:
            print(f"UNACCOUNTED for: {', '.join(missing)}", file=sys.stderr)
            return 1
        counts = summary.counts()
        print("Every upload accounted for: " + ", ".join(f"{n} {status}" for status, n in sorted(counts.items())))
        return 0


def wait_until_settled(cloud: LocalCloud, keys: list[str], timeout: float) -> report.Summary:
    """For tests: wait as the demo does, at most `timeout` seconds."""
    return watch.wait(cloud, keys, timeout)


class Stopped(Exception):
    """A signal asked `up` to stop: it stops everything it started, as after Ctrl-C."""


STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _stop_on(signum: int, frame: object) -> None:
    for repeated in STOP_SIGNALS:  # a second one must not cut the stopping short
        signal.signal(repeated, signal.SIG_IGN)
    raise Stopped(signal.Signals(signum).name)


def run_up(args: argparse.Namespace) -> int:
    # A service manager, `kill` or a CI step's timeout sends SIGTERM, a closed terminal SIGHUP: each unwinds through
    # the same `finally`s as Ctrl-C, so the emulator's processes, the functions and the page stop with it.
    for signum in STOP_SIGNALS:
        signal.signal(signum, _stop_on)
    try:
        return _up(args)
    except Stopped as stopped:  # before it was up: LocalCloud.start stopped what it had started
        print(f"\nStopped by {stopped} while starting.", flush=True)
        return 0


def _up(args: argparse.Namespace) -> int:
    page = LiveGallery(args.gallery_port)
    with LocalCloud(port=args.port, config=page.config()) as cloud:
        page.start(cloud)
        out = cloud.outputs
        env = cloud.emulator.environment()
        print(f"The local cloud is up at {cloud.endpoint} (Ctrl-C or SIGTERM stops it).\n")
        print("Stack outputs:")
        for name, value in out.items():
            print(f"  {name}: {json.dumps(value) if isinstance(value, dict) else value}")
        discovery = cloud.write_discovery()
        shown = discovery.relative_to(PROJECT_ROOT) if discovery.is_relative_to(PROJECT_ROOT) else discovery
        print(f"\nOperate it with `python -m ops --local status` (it reads {shown}).")
        print("\nPoint the AWS CLI or boto3 at it, then upload under uploads/:")
        print("  export " + " ".join(f"{k}={v}" for k, v in sorted(env.items()) if k != "AWS_SESSION_TOKEN"))
        print(f"  aws s3 cp photo.jpg s3://{out['uploadsBucket']}/uploads/photo.jpg")
        print(f"  aws dynamodb scan --table-name {out['tableName']}\n")
        print(f"The gallery, live, with uploads from the browser: {page.origin}/\n", flush=True)
        seen: dict[str, str] = {}
        try:
            while True:
                for key, record in sorted(cloud.records().items()):
                    status = record.get("status", "")
                    if seen.get(key) != status:
                        seen[key] = status
                        print(f"  {key}: {status} {record.get('reason') or ''}".rstrip(), flush=True)
                time.sleep(1)
        except (KeyboardInterrupt, Stopped):
            print("\nStopping …", flush=True)
        finally:
            page.stop()
            discovery.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
