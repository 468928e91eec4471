"""``mvsep-watch jobs list | show | retry | cancel | forget``.

``list`` and ``show`` read the journal read-only (they work while the daemon runs). The
others never write jobs themselves: each writes a request row into the journal, which the
running daemon carries out (``daemon.engine.requests``) and answers; the command waits for
the answer (``--wait-s``, ``--no-wait`` to skip) and prints it. With no daemon running the
request stays queued, and the daemon carries it out when it starts: the command says so.
Exit codes: 0 done (or queued), 1 refused or not answered in time, 2 usage or config.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from daemon.commands import EXIT_FAIL, EXIT_OK, SubParsers, load_config
from daemon.jobs import JobState
from daemon.journal import Journal, RequestRow, daemon_pid, post_request, request_outcomes

DEFAULT_WAIT_S = 10.0
_STATES = [s.value for s in JobState]


def register(sub: SubParsers) -> None:
    jobs = sub.add_parser("jobs")
    verbs = jobs.add_subparsers(dest="jobs_command", required=True, metavar="ACTION")
    listing = verbs.add_parser("list", help="jobs, newest first")
    listing.add_argument("--state", action="append", choices=_STATES, help="only this state")
    listing.add_argument("--inbox", help="only this inbox (its name)")
    listing.add_argument("--limit", type=int, default=100, help="at most this many")
    listing.set_defaults(handler=run_list)
    show = verbs.add_parser("show", help="one job and its event history")
    show.add_argument("job_id", type=int, metavar="ID")
    show.set_defaults(handler=run_show)
    retry = verbs.add_parser(
        "retry", help="put failed inputs back and start their jobs again (never paid twice)"
    )
    retry.add_argument("job_ids", type=int, nargs="*", metavar="ID")
    retry.add_argument("--failed", action="store_true", help="every failed job")
    retry.set_defaults(handler=run_request, action="retry")
    for name, text in (
        ("cancel", "cancel a job (at MVSEP too, refunded while it waits)"),
        ("forget", "delete a finished job and its history from the journal"),
    ):
        verb = verbs.add_parser(name, help=text)
        verb.add_argument("job_ids", type=int, nargs="+", metavar="ID")
        verb.set_defaults(handler=run_request, action=name, failed=False)
    from daemon.commands import add_global_options  # `jobs retry 3 --config X` works too

    for verb in verbs.choices.values():
        verb.add_argument("--json", action="store_true", help="machine-readable output")
        add_global_options(verb, top=False)
    for verb in (retry, verbs.choices["cancel"], verbs.choices["forget"]):
        verb.add_argument("--no-wait", action="store_true", help="do not wait for the answer")
        verb.add_argument(
            "--wait-s",
            type=float,
            default=DEFAULT_WAIT_S,
            metavar="S",
            help=f"wait this long for the daemon (default {DEFAULT_WAIT_S:g})",
        )


def _print_json(data: object) -> None:
    json.dump(data, sys.stdout, indent=2)
    sys.stdout.write("\n")


def run_list(args: argparse.Namespace) -> int:
    from daemon.status import JOB_HEADER, job_lines, summaries

    settings, _ = load_config(args)
    with Journal(settings.journal.path, read_only=True) as journal:
        found = journal.find_jobs(states=args.state or (), inbox=args.inbox, limit=args.limit)
        rows = summaries(journal, found)
    if args.json:
        _print_json(rows)
        return EXIT_OK
    if not rows:
        print("no jobs" + (" matching" if args.state or args.inbox else ""))
        return EXIT_OK
    print(JOB_HEADER)
    for row in rows:
        print("\n".join(job_lines(row)))
    return EXIT_OK


def run_show(args: argparse.Namespace) -> int:
    from daemon.status import job_lines, summaries, utc_text

    settings, _ = load_config(args)
    with Journal(settings.journal.path, read_only=True) as journal:
        found = journal.jobs_by_id([args.job_id])
        if not found:
            print(f"error: no job {args.job_id} in {settings.journal.path}", file=sys.stderr)
            return EXIT_FAIL
        (summary,) = summaries(journal, list(found.values()))
        events = journal.events(args.job_id, limit=1_000_000)
    history = [{"at": utc_text(e.at), "kind": e.kind, "from": e.from_state, "to": e.to_state,
                "reason": e.reason, "data": e.data} for e in events]  # fmt: skip
    if args.json:
        _print_json({**summary, "events": history})
        return EXIT_OK
    print("\n".join(job_lines(summary)))
    print(f"\n{len(history)} event(s):")
    for e in history:
        move = e["to"] if e["from"] in (None, e["to"]) else f"{e['from']} -> {e['to']}"
        detail = f"  {e['reason']}" if e["reason"] else ""
        data = f"  {json.dumps(e['data'], sort_keys=True)}" if e["data"] else ""
        print(f"  {e['at']}  {e['kind']:<16} {move:<26}{detail}{data}")
    return EXIT_OK


def _targets(args: argparse.Namespace, journal: Journal) -> tuple[list[int], list[int]]:
    """``(ids to ask about, ids not in the journal)``."""
    if args.failed:
        if args.job_ids:
            raise SystemExit("error: give job ids or --failed, not both")
        return [j.id for j in journal.find_jobs(states=["failed"], limit=1_000_000)], []
    if not args.job_ids:
        raise SystemExit("error: give the job id(s) to retry, or --failed")
    known = journal.jobs_by_id(args.job_ids)
    return [i for i in args.job_ids if i in known], [i for i in args.job_ids if i not in known]


def run_request(args: argparse.Namespace) -> int:
    settings, _ = load_config(args)
    path = settings.journal.path
    with Journal(path, read_only=True) as journal:
        ids, unknown = _targets(args, journal)
    for job_id in unknown:
        print(f"error: no job {job_id} in {path}", file=sys.stderr)
    if not ids:
        if args.failed:
            print("no failed jobs")
        return EXIT_FAIL if unknown else EXIT_OK
    request_ids = post_request(path, args.action, ids)
    pid = daemon_pid(path)
    if pid is None or args.no_wait:
        who = f"the daemon (pid {pid})" if pid else "the daemon when it starts"
        note = "" if pid else f"no daemon is running on {path}: "
        text = f"{note}{args.action} of job(s) {_ids(ids)} queued; {who} carries it out"
        _answer(args, text, [], queued=request_ids)
        return EXIT_FAIL if unknown else EXIT_OK
    outcomes = _wait(path, request_ids, args.wait_s)
    return _report(args, outcomes, unknown=bool(unknown))


def _ids(ids: list[int]) -> str:
    return ", ".join(str(i) for i in ids)


def _wait(path: Any, request_ids: list[int], wait_s: float) -> list[RequestRow]:
    deadline = time.monotonic() + wait_s
    while True:
        outcomes = request_outcomes(path, request_ids)
        if all(o.state != "pending" for o in outcomes) or time.monotonic() >= deadline:
            return outcomes
        time.sleep(0.1)  # another process answers: nothing to wait on but the journal


def _answer(
    args: argparse.Namespace, text: str, outcomes: list[RequestRow], *, queued: list[int]
) -> None:
    if args.json:
        rows = [{"request": o.id, "job_id": o.job_id, "action": o.action, "state": o.state,
                 "result": o.result} for o in outcomes]  # fmt: skip
        _print_json({"note": text or None, "queued": queued, "results": rows})
    elif text:
        print(text)


def _report(args: argparse.Namespace, outcomes: list[RequestRow], *, unknown: bool) -> int:
    pending = [o for o in outcomes if o.state == "pending"]
    refused = [o for o in outcomes if o.state == "refused"]
    if not args.json:
        for o in outcomes:
            if o.state == "done":
                print(o.result)
            elif o.state == "refused":
                print(f"refused: {o.result}")
    note = ""
    if pending:
        note = (f"no answer yet from the daemon for job(s) {_ids([o.job_id for o in pending])} "
                f"after {args.wait_s:g} s: it carries the request out when it can "
                "(see `mvsep-watch jobs show ID`)")  # fmt: skip
    _answer(args, note, outcomes, queued=[o.id for o in pending])
    return EXIT_FAIL if pending or refused or unknown else EXIT_OK
