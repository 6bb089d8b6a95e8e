"""python -m ops: run the pipeline on day two, against a deployed stack or the local cloud.

  status                          per stage: queued, in flight, dead letters, oldest message, paused; images that
                                  need a person; what the last hour brought
  show KEY                        one image's record, readable
  failures [--kind K] [--since T] what needs a person (failed, rejected, stuck), newest first, with reasons and when
                                  each rejected or failed original expires
  dlq [--stage S]                 what each dead-letter queue holds: key, version, receives, first sent
  redrive [--stage S] [--dry-run] move dead letters back to their stage's queue (SQS's own DLQ redrive)
  reprocess (--all | --prefix P)  make done images' thumbnails with the current settings (resumable, rate-limited)
  backfill (--all | --prefix P | --manifest M)
                                  onboard objects already in the uploads bucket: each through the intake's path
                                  (skipped when already judged at its current version), rate-limited, resumable;
                                  waits for them to settle and reports processed, skipped, rejected, failed
  pause STAGE / resume STAGE      stop or restart a stage taking messages from its queue (they wait there)
  gallery [--out DIR]             write DIR/index.html: every upload's thumbnails, status, reason, labels, camera and
                                  date (thumbnails through the CDN, or presigned GETs valid --expires seconds)
  review list [--out DIR] / review approve KEY / review reject KEY
                                  what a gate stage held back (quarantined), newest first, with its labels and a page
                                  of presigned originals; a person's decision: release it, or delete every version
  capacity --rate R --burst N --mp M [--set KEY=VALUE]…
                                  what the stack takes (needs --stack: reads Pulumi.<stack>.yaml, calls nothing):
                                  per stage the time per image, concurrency, images/s and the limit that binds, the
                                  burst's drain time and oldest message, cost, and the thumbnail memory to choose

Target: --stack NAME (pulumi stack output, the normal AWS credential chain), --outputs FILE (those outputs saved),
or --local (the local cloud `make up` runs, found through the .localcloud/up.json it writes; LOCALCLOUD_HOME=DIR
or --local-file FILE when it is elsewhere). --json prints what a script wants. Exit status: 0 done, 1 failed,
2 usage.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from handlers.backfill import MAX_TASKS
from handlers.names import LABEL_LIST, UPLOADS_PREFIX, StackOutput, Status
from ops import backfill as backfilling
from ops import capacity, gallery, images, queues, render, review
from ops import reprocess as reprocessing
from ops.images import KINDS
from ops.queues import OpsError
from ops.target import Target, TargetError, from_local, from_outputs, from_stack


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m ops", description="Operate a claimcheck stack.",
                                  formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    where = top.add_mutually_exclusive_group(required=True)
    where.add_argument("--stack", help="a deployed stack, by name (reads `pulumi stack output --json`)")
    where.add_argument("--outputs", type=Path, help="that stack's outputs, saved as JSON")
    # A flag, not an option with an optional value: `--local status` must not take the command for a file.
    where.add_argument("--local", action="store_true",
                       help="the local cloud `make up` keeps running (it writes .localcloud/up.json, or "
                            "$LOCALCLOUD_HOME/up.json)")
    where.add_argument("--local-file", type=Path, metavar="FILE", help="the local cloud that wrote this up.json")
    top.add_argument("--json", action="store_true", help="print JSON instead of tables")
    commands = top.add_subparsers(dest="command", required=True)
    commands.add_parser("status", help="queues, dead letters, paused stages, images that need a person, the last hour")
    show = commands.add_parser("show", help="one image's record")
    show.add_argument("key", help="the upload's key (uploads/… or the part after it)")
    failures = commands.add_parser("failures", help="images that need a person, newest first")
    failures.add_argument("--kind", choices=KINDS, action="append", help="failed, rejected or stuck (default: all)")
    failures.add_argument("--since", help="changed since: an age (90m, 6h, 2d) or a date (2026-12-01)")
    failures.add_argument("--limit", type=int, default=50)
    for name, text in (("dlq", "what each dead-letter queue holds"), ("redrive", "move dead letters back to their queue")):
        command = commands.add_parser(name, help=text)
        command.add_argument("--stage", help="one stage (default: every stage)")
        if name == "redrive":
            command.add_argument("--dry-run", action="store_true", help="say what would move, move nothing")
            command.add_argument("--rate", type=int, help="messages a second at most (1-500; default: SQS's pace)")
    again = commands.add_parser("reprocess", help="make done images' thumbnails with the current settings")
    which = again.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true", help="every done image")
    which.add_argument("--prefix", help="done images whose key starts with this")
    again.add_argument("--dry-run", action="store_true", help="count what would be reprocessed, ask for nothing")
    again.add_argument("--rate", type=float, default=reprocessing.DEFAULT_RATE,
                       help="requests a second at most (default %(default)s), so live uploads keep their share")
    again.add_argument("--restart", action="store_true", help="ignore a checkpoint and start from the beginning")
    again.add_argument("--unscreened", action="store_true",
                       help="instead: have the gate screen done images it never saw (done before moderation was on)")
    again.add_argument("--page-size", type=int, default=reprocessing.PAGE_SIZE,
                       help="records each scan page looks at; the checkpoint is written after each (default %(default)s)")
    onboard = commands.add_parser("backfill", help="put objects already in the uploads bucket through the pipeline")
    where_from = onboard.add_mutually_exclusive_group(required=True)
    where_from.add_argument("--all", action="store_true", help="every object under uploads/")
    where_from.add_argument("--prefix", help="objects whose key starts with uploads/PREFIX")
    where_from.add_argument("--manifest", metavar="M",
                            help="an S3 Inventory list: its manifest.json, s3://BUCKET/KEY or a file here (its CSV "
                                 "files beside it)")
    onboard.add_argument("--rate", type=positive_rate, default=backfilling.DEFAULT_RATE,
                         help="objects a second at most (default %(default)s), so live uploads keep their share")
    onboard.add_argument("--batch", type=int, choices=range(1, MAX_TASKS + 1), default=backfilling.BATCH, metavar="N",
                         help=f"objects an invocation of the backfill function, 1-{MAX_TASKS} (default %(default)s)")
    onboard.add_argument("--restart", action="store_true", help="ignore a checkpoint and start from the beginning")
    onboard.add_argument("--wait", type=float, default=600.0,
                         help="seconds to wait at the end for the records to settle (default %(default)s)")
    for name, text in (("pause", "stop a stage taking messages (they wait in its queue)"), ("resume", "start it again")):
        commands.add_parser(name, help=text).add_argument("stage")
    page = commands.add_parser("gallery", help="write a gallery page of the stack's uploads (thumbnails, status, labels)")
    page.add_argument("--out", type=Path, default=Path("out"), help="folder for index.html (default %(default)s)")
    page.add_argument("--prefix", help="only uploads under uploads/PREFIX")
    page.add_argument("--limit", type=int, default=500, help="the newest this many (default %(default)s)")
    page.add_argument("--expires", type=presign_seconds, default=gallery.LINK_SECONDS,
                      help="seconds the presigned thumbnail links stay valid, without a CDN (default %(default)s)")
    judge = commands.add_parser("review", help="images a gate held back (quarantined), and a person's decision on each")
    decisions = judge.add_subparsers(dest="decision", required=True)
    listing = decisions.add_parser("list", help="the quarantined images, newest first, with the labels that held them")
    listing.add_argument("--out", type=Path, help="also write DIR/review.html: the originals through presigned GETs")
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--expires", type=presign_seconds, default=review.LINK_SECONDS,
                         help="seconds the page's presigned links stay valid (default %(default)s)")
    for name, text in (("approve", "release it: the other stages make what they make of it"),
                       ("reject", "delete every version of it; its record says who decided and when")):
        decisions.add_parser(name, help=text).add_argument("key", help="the upload's key (uploads/… or the part after it)")
    plan = commands.add_parser("capacity", help="what the stack takes: throughput, the limit that binds, drain, cost")
    plan.add_argument("--rate", default="10/s", help="steady uploads: 50/s, 3000/min, 100000/h (default %(default)s)")
    plan.add_argument("--burst", type=int, default=100_000, help="uploads at once on top (default %(default)s)")
    plan.add_argument("--mp", type=float, default=12.0, help="megapixels of a photo (default %(default)s)")
    plan.add_argument("--format", default="jpeg", help="the photos' format (default %(default)s)")
    plan.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="a config value on top of the stack's, as `pulumi config set` would set it")
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "capacity":
            if not args.stack:
                raise OpsError("capacity plans a stack from its configuration: give --stack NAME (Pulumi.NAME.yaml)")
            return capacity.run(args.stack, args.set, args.rate, args.burst, args.mp, args.format, args.json)
        target = (from_local(args.local_file) if args.local or args.local_file else from_outputs(args.outputs)
                  if args.outputs else from_stack(args.stack))
        return COMMANDS[args.command](target, args)
    except (TargetError, OpsError) as error:
        print(f"error: {error}", file=sys.stderr)
    except NoCredentialsError:
        print("error: no AWS credentials were found: configure them (`aws configure`, AWS_PROFILE, or `aws sso login`) "
              "and run this again", file=sys.stderr)
    except ClientError as error:
        print(f"error: {explain(error)}", file=sys.stderr)
    except BotoCoreError as error:
        print(f"error: AWS could not be reached: {error}", file=sys.stderr)
    return 1


def explain(error: ClientError) -> str:
    """An AWS refusal in words, naming the permission when that is what is missing."""
    code = error.response.get("Error", {}).get("Code", "")
    message = error.response.get("Error", {}).get("Message", "")
    operation = error.operation_name
    if code in ("AccessDenied", "AccessDeniedException", "AuthorizationError", "UnauthorizedOperation"):
        return (f"AWS refused {operation}: {message or code}. Attach the stack's operator policy (stack output "
                "operatorPolicyArn) to your role or user: it allows exactly what these commands call")
    return f"{operation} failed ({code}): {message}"


def _print(target: Target, args: argparse.Namespace, document: Any, text: str) -> None:
    if args.json:
        print(json.dumps({"target": target.name, "emulated": target.emulated, **document}, indent=2, default=str))
    else:
        print(text)


def run_status(target: Target, args: argparse.Namespace) -> int:
    states, attention, hour = queues.states(target), images.counts(target), queues.last_hour(target)
    rows = [(s.stage, s.waiting, s.in_flight, s.dead_letters, "-" if s.oldest_seconds is None else f"{s.oldest_seconds:.0f} s",
             {True: "running", False: "PAUSED", None: "?"}[s.enabled]) for s in states]
    text = "\n".join([
        render.title(f"claimcheck {target.name}", target.emulated),
        render.table(("STAGE", "QUEUED", "IN FLIGHT", "DEAD LETTERS", "OLDEST", "MAPPING"), rows),
        # Quarantined only when there are some: a stack without a gate never has any.
        "Images that need a person: " + ", ".join(f"{n} {kind}" for kind, n in attention.items()
                                                  if n or kind != Status.QUARANTINED)
        + f" (stuck: accepted over {int(images.STUCK_AFTER.total_seconds() // 60)} min ago)",
        "Last hour: " + ", ".join(f"{label} {n}" for label, n in hour.items()),
    ])
    _print(target, args, {"stages": [asdict(s) for s in states], "attention": attention, "last_hour": hour}, text)
    return 0


def run_show(target: Target, args: argparse.Namespace) -> int:
    record = images.show(target, args.key)
    _print(target, args, {"record": record}, render.record(record, target.emulated))
    return 0


def run_failures(target: Target, args: argparse.Namespace) -> int:
    since = images.since_from(args.since) if args.since else None
    found = images.failures(target, tuple(args.kind or KINDS), since, args.limit)
    rows = [(a.key, a.kind, a.since, a.expires or "-", a.reason) for a in found]
    text = render.table(("KEY", "KIND", "SINCE", "ORIGINAL EXPIRES", "REASON"), rows) if rows else "Nothing needs a person."
    _print(target, args, {"failures": [asdict(a) for a in found]}, text)
    return 0


def run_dlq(target: Target, args: argparse.Namespace) -> int:
    letters = queues.dead_letters(target, args.stage)
    rows = [(d.stage, d.key or "-", d.version or "-", d.event, d.receives, d.first_sent) for d in letters]
    text = (render.table(("STAGE", "KEY", "VERSION", "MESSAGE", "RECEIVES", "FIRST SENT"), rows) if rows
            else "Every dead-letter queue is empty.")
    _print(target, args, {"dead_letters": [asdict(d) for d in letters]}, text)
    return 0


def run_redrive(target: Target, args: argparse.Namespace) -> int:
    moves = queues.redrive(target, args.stage, dry_run=args.dry_run, rate=args.rate)
    if not moves:
        _print(target, args, {"moves": []}, "Nothing to redrive: the dead-letter queue"
               + (f" of {args.stage} is" if args.stage else "s are") + " empty.")
        return 0
    verb = "would move" if args.dry_run else "moved"
    lines = [f"{m.stage}: {verb} {m.waiting if args.dry_run else m.moved} of {m.waiting} dead letter(s)"
             + ("" if args.dry_run else f" back to its queue ({m.status.lower()})") for m in moves]
    _print(target, args, {"moves": [asdict(m) for m in moves]}, "\n".join(lines))
    return 0 if args.dry_run or all(m.status == "COMPLETED" for m in moves) else 1


def run_reprocess(target: Target, args: argparse.Namespace) -> int:
    show, close = render.progress("reprocess", "requested")
    try:
        done = reprocessing.reprocess(target, args.prefix or "", dry_run=args.dry_run, rate=args.rate,
                                      restart=args.restart, show=lambda p: show(p.requested, p.scanned),
                                      page_size=args.page_size, unscreened=args.unscreened)
    finally:
        close()
    settings = target.outputs[StackOutput.THUMBNAIL_SETTINGS]
    resumed = f" (resumed after {done.resumed_from} requested by an earlier run)" if done.resumed_from else ""
    if args.unscreened:
        gate = " and ".join(reprocessing.gates(target))
        text = (f"{done.requested} done image(s) no gate screened would go to {gate} (scanned {done.scanned})"
                if args.dry_run else
                f"Sent {done.requested} done image(s) no gate screened to {gate}{resumed}; scanned {done.scanned} "
                f"records. It screens them in the background: what it holds back loses its thumbnails and waits "
                "in `review list`.")
    else:
        text = (f"{done.requested} image(s) would be reprocessed to thumbnail settings {settings} (scanned {done.scanned})"
                if args.dry_run else
                f"Requested {done.requested} reprocess(es) to thumbnail settings {settings}{resumed}; scanned "
                f"{done.scanned} records. The thumbnail stage makes them in the background (`status` shows its queue).")
    _print(target, args, {"requested": done.requested, "scanned": done.scanned, "resumed_from": done.resumed_from,
                          "settings": settings, "dry_run": args.dry_run, "unscreened": args.unscreened}, text)
    return 0


def positive_rate(text: str) -> float:
    rate = float(text)
    if not rate > 0:
        raise argparse.ArgumentTypeError(f"{text}: a rate is a number of objects a second, more than 0")
    return rate


def run_backfill(target: Target, args: argparse.Namespace) -> int:
    progress, close = render.progress("backfill", "sent", second="settled")
    try:
        run = backfilling.backfill(target, args.prefix or "", manifest=args.manifest, rate=args.rate,
                                   restart=args.restart, wait_seconds=args.wait, batch=args.batch,
                                   show=lambda t, phase: progress(t.sent, t.accounted - len(t.pending)))
    except KeyboardInterrupt:
        # The checkpoint was written after the last whole invocation: say so instead of a traceback.
        print("Stopped. The checkpoint holds where it was: the same command goes on from there (--restart starts "
              "over).", file=sys.stderr)
        return 1
    finally:
        close()
    t = run.tally
    resumed = f" (resumed after {run.resumed_from} sent by an earlier run)" if run.resumed_from else ""
    lines = [render.title(f"Backfill of {run.source}: {t.sent} object(s) sent{resumed}", target.emulated),
             render.table(("PROCESSED", "SKIPPED", "REJECTED", "FAILED", "QUARANTINED", "NOT YET SETTLED"),
                          [(t.processed, t.skipped, t.rejected, t.failed, t.quarantined, len(t.pending))])]
    if t.failures:
        lines += [f"Failed, with their reasons{f' (the first {len(t.failures)})' if t.failed > len(t.failures) else ''}:",
                  render.table(("KEY", "REASON"), [(f["key"], f["reason"]) for f in t.failures])]
    if t.rejected:
        lines.append("Rejected originals and their reasons: `failures --kind rejected`.")
    if t.pending:
        lines.append(f"{len(t.pending)} accepted object(s) had not settled after {args.wait:.0f} s: run the same command "
                     "again to wait for them (`status` shows the queues).")
    _print(target, args, {"source": run.source, "sent": t.sent, "resumed_from": run.resumed_from,
                          "processed": t.processed, "skipped": t.skipped, Status.REJECTED: t.rejected,
                          Status.FAILED: t.failed, Status.QUARANTINED: t.quarantined, "not_settled": t.pending,
                          "failures": t.failures},
           "\n".join(lines))
    return 0 if run.settled and not t.failed else 1


def run_pause(target: Target, args: argparse.Namespace, enabled: bool = False) -> int:
    state = queues.set_enabled(target, args.stage, enabled)
    waiting, _ = queues.depth(target, target.outputs[StackOutput.QUEUE_URLS][args.stage])
    verb = "resumed" if enabled else "paused"
    ok = state == ("Enabled" if enabled else "Disabled")
    text = (f"{args.stage} {verb}: " + ("it takes messages from its queue again" if enabled else
                                        "its messages wait in its queue") + f" ({waiting} waiting)."
            if ok else f"{args.stage}: its event source mapping is {state}, not yet {verb}; look again with `status`")
    _print(target, args, {"stage": args.stage, "state": state, "waiting": waiting}, text)
    return 0 if ok else 1


def run_gallery(target: Target, args: argparse.Namespace) -> int:
    path, count = gallery.write(target, args.out, args.prefix or "", args.limit, args.expires)
    links = ("CDN URLs" if target.outputs.get(StackOutput.THUMBNAILS_URL) else
             f"presigned GETs valid for {args.expires} s")
    _print(target, args, {"path": str(path), "images": count},
           render.title(f"Wrote {path}: {count} upload(s), thumbnails through {links}", target.emulated))
    return 0


def presign_seconds(text: str) -> int:
    """How long a presigned link stays valid: 1 s to 7 days, the most a SigV4 presigned URL may last (S3 User Guide,
    "Sharing objects with presigned URLs": "up to 7 days")."""
    seconds = int(text)
    if not 1 <= seconds <= 604_800:
        raise argparse.ArgumentTypeError(f"{seconds} s: a presigned link lasts 1 s to 7 days (604800 s)")
    return seconds


def run_review(target: Target, args: argparse.Namespace) -> int:
    if args.decision == "list":
        found = review.held(target, args.limit)
        rows = [(h.key, h.since, ", ".join(f"{label['name']} {float(label['confidence']):.1f}%" for label in h.labels) or "-",
                 h.screened, h.expires or "-") for h in found]
        text = (render.table(("KEY", "HELD SINCE", "LABELS", "SCREENED", "ORIGINAL EXPIRES"), rows) if rows
                else "Nothing is held for review.")
        document: dict[str, Any] = {Status.QUARANTINED: [{"key": h.key, "since": h.since, "reason": h.reason, LABEL_LIST: h.labels,
                                              "screened": h.screened, "expires": h.expires} for h in found]}
        if args.out:
            path = review.page(target, found, args.out, args.expires)
            document["page"] = str(path)
            text += f"\nWrote {path}: the originals through presigned GETs valid {args.expires} s, signed with your credentials."
        _print(target, args, document, text)
        return 0
    key = args.key if args.key.startswith(UPLOADS_PREFIX) else UPLOADS_PREFIX + args.key
    if args.decision == "approve":
        decided = review.approve(target, key)
        _print(target, args, {"key": key, "decision": decided},
               f"{key}: approved by {decided['by']} at {decided['at']}; released to the other stages.")
        return 0
    decided, deleted, status = review.reject(target, key)
    shown = Status.DELETED if status == Status.DELETED else f"still {status} (the intake records it deleted once it sees S3's events)"
    _print(target, args, {"key": key, "decision": decided, "versions_deleted": deleted, "status": status},
           f"{key}: rejected by {decided['by']} at {decided['at']}; {deleted} version(s) deleted; its record is {shown}.")
    return 0


COMMANDS = {"gallery": run_gallery, "review": run_review, "status": run_status, "show": run_show, "failures": run_failures, "dlq": run_dlq, "redrive": run_redrive,
            "reprocess": run_reprocess, "backfill": run_backfill, "pause": run_pause,
            "resume": lambda target, args: run_pause(target, args, enabled=True)}


if __name__ == "__main__":
    sys.exit(main())
