"""The ``cfanalytics`` command: thin — parse arguments, call the package, print.

Exit codes: 0 ok (also with quarantined rows), 1 an input failed, 2 usage,
3 a ``--fail-on`` threshold breached, 4 store busy after retries, 130
interrupted, 141 the reader of the output went away (``cfanalytics … | head``:
the command ends quietly), 143 terminated (SIGTERM unwinds like Ctrl-C, so that
temporary files are removed).

Every error is one line on stderr, ``cfanalytics: <problem>``, redacted; an
unexpected one too (exit 1; set ``CFANALYTICS_TRACEBACK=1`` to see its
traceback). Everything printed goes through :func:`cfanalytics.redaction.redact`.
Dates are checked before any work: a real calendar date between 1970-01-01 and
2199-12-31, ``--from`` not after ``--to``; a range without rows gets one line
that says so and gives the stored span.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import math
import os
import signal
import sys
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import Any, Final

from cfanalytics.exceptions import CfError, UsageError
from cfanalytics.redaction import redact

EXIT_OK, EXIT_INPUT, EXIT_USAGE, EXIT_THRESHOLD, EXIT_BUSY = 0, 1, 2, 3, 4
EXIT_INTERRUPTED, EXIT_PIPE, EXIT_TERMINATED = 130, 141, 143
#: Set to any value to get the traceback of an unexpected error instead of its one line.
TRACEBACK_ENV: Final = "CFANALYTICS_TRACEBACK"
#: The dates a log can hold (the same window as the stored times; docs/contract.md §3).
FIRST_DATE: Final = date(1970, 1, 1)
LAST_DATE: Final = date(2199, 12, 31)
_PREFIX: Final = "cfanalytics: "
_REPORT_HELP: Final = """\
Writes FILE.html and, beside it, FILE.json: the summary printed by --json
({"period": {"from", "to", "timezone"}, "previous_period": {"from", "to"},
"current": {...}, "previous": {...}, "breached": [...]}, with the postbacks,
errors, error_rate, conversions, not_posted, incidents and new_incidents of
each period). An existing FILE.html or FILE.json that cfanalytics did not
write is never overwritten: pass --force to replace it.

New incidents are those no earlier report of the store listed: once FILE.html
and FILE.json are written, the period's incidents count as reported, so a
second run over the same data finds none new (--fail-on 'new_incidents>=1'
exits 0). With a webhook (--notify URL, or the store's `config --notify`),
each new incident and each breached --fail-on rule gets one Slack-compatible
notice; a notice that fails is sent by the next run, one delivered never again.
--json adds "notify": what the webhook was sent (shown by its origin only).

Money at stake (conversions posted but all failed, or never posted) is kept
per currency, never summed across currencies: "at_stake" is {"USD": 120.5, ...}
("unknown": conversions without a currency). --fail-on 'at_stake>=100' breaches
when the payout at stake in any one currency is 100 or more (0 when nothing is
at stake); --fail-on 'at_stake[USD]>=100' looks at US dollars only.
"""


class _Parser(argparse.ArgumentParser):
    """argparse that exits with code 2 and a one-line message."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        import re

        command = self.prog.removeprefix("cfanalytics").strip()
        where = f"{command}: " if command else ""
        message = re.sub(r"^argument (-[-\w]+)(?:/-[-\w]+)*: ", r"\1 ", message)  # "--from '…': …"
        raise UsageError(f"{where}{message} (see {self.prog} --help)")


def _store_arg(value: str) -> str:
    """``--store``: a folder (existing or not), never a regular file nor inside one; or ``s3://bucket/prefix``."""
    if value.lower().startswith(("s3://", "s3a://")):
        return value
    if os.path.exists(value) and not os.path.isdir(value):
        raise argparse.ArgumentTypeError(f"{_shown(value)}: is a file, not a store folder")
    parent = Path(value).absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise argparse.ArgumentTypeError(f"{_shown(value)}: {_shown(str(parent))} is a file, not a folder")
    return value


def _date_arg(value: str) -> date:
    """A real calendar date ``YYYY-MM-DD`` between :data:`FIRST_DATE` and :data:`LAST_DATE`."""
    import re
    from datetime import datetime

    match = re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})", value.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"{_shown(value)!r}: expected a date YYYY-MM-DD")
    try:
        day = datetime(*map(int, match.groups())).date()
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{value}: no such date ({e})") from None
    if not FIRST_DATE <= day <= LAST_DATE:
        raise argparse.ArgumentTypeError(f"{value}: outside the dates a log can hold ({FIRST_DATE} to {LAST_DATE})")
    return day


_MAX_HOURS: Final = 24 * 365 * 100


def _number_arg(
    parse: type[int] | type[float],
    what: str,
    unit: str,
    *,
    above_zero: bool = False,
    most: float | None = None,
    most_text: str = "",
) -> Callable[[str], int | float]:
    """An argparse ``type=`` for a count or a duration: finite, 0 or more (or above 0), at most ``most``.

    >>> _number_arg(int, "a whole number of hours", "hours", most=10)("-1")
    Traceback (most recent call last):
    argparse.ArgumentTypeError: -1: negative; give 0 or more hours
    """

    def check(value: str) -> int | float:
        try:
            number = parse(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{_shown(value)!r}: expected {what}") from None
        low = "more than 0" if above_zero else "0 or more"
        if not math.isfinite(number) or number < 0 or (above_zero and number == 0):
            negative = "negative; " if parse is int else ""
            raise argparse.ArgumentTypeError(f"{value}: {negative}give {low} {unit}")
        if most is not None and number > most:
            raise argparse.ArgumentTypeError(f"{number}: {most_text or f'more than {most:g} {unit}'}")
        return number

    return check


_hours_arg = _number_arg(
    int, "a whole number of hours", "hours", most=_MAX_HOURS, most_text=f"more than {_MAX_HOURS} hours (100 years)"
)
_minutes_arg = _number_arg(float, "a number of minutes", "minutes")
_seconds_arg = _number_arg(float, "a number of seconds", "seconds", above_zero=True)
_retries_arg = _number_arg(int, "a whole number", "retries", most=10, most_text="give 0 to 10 retries")


def _shown(value: str) -> str:
    from cfanalytics.readers import display_name

    return display_name(value)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="cfanalytics", description="ClickFlare logs into answers: load, validate, diagnose.")
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    demo = sub.add_parser("demo", help="generate the sample account, ingest it, print where the store is")
    demo.add_argument(
        "--dir", default="data/sample", help="where the sample exports and store go (default: data/sample)"
    )
    demo.add_argument("--seed", type=int, default=7, help="generator seed (default: 7)")
    demo.add_argument("--visits", type=int, default=20_000, help="visits to generate (default: 20000)")
    demo.add_argument("--no-report", action="store_true", help="skip the HTML report")
    demo.add_argument("--json", action="store_true", help="print one JSON document")
    demo.add_argument(
        "--force", action="store_true", help="replace DIR/exports, DIR/store and DIR/report.html even if not the demo's"
    )

    ing = sub.add_parser("ingest", help="load export files into a store")
    _input_args(ing)
    ing.add_argument("--store", required=True, type=_store_arg, help="store folder (created if absent)")
    ing.add_argument(
        "--force-timezone", action="store_true", help="read local times in --timezone even if the store has another"
    )
    ing.add_argument(
        "--store-ips",
        choices=["raw", "masked", "hashed"],
        help="keep IP addresses raw, masked (/24, /48) or salted-hashed (default: the store's setting)",
    )

    val = sub.add_parser("validate", help="run the ingest checks on files; write nothing")
    _input_args(val)

    fgt = sub.add_parser("forget", help="delete the rows of a batch (e.g. one ingested with a wrong time zone)")
    fgt.add_argument("--store", required=True, type=_store_arg, help=_STORE_HELP)
    who = fgt.add_mutually_exclusive_group(required=True)
    who.add_argument("--batch", help="batch id, or an input's batch prefix (all its kinds)")
    who.add_argument("--ip", help="every row of this IP address (a data-subject request)")
    fgt.add_argument("--json", action="store_true", help=_JSON_HELP)

    dia = sub.add_parser("diagnose", help="postback errors, conversion gaps and incidents with their suspected change")
    dia.add_argument("--store", required=True, type=_store_arg, help=_STORE_HELP)
    _range_args(dia)
    dia.add_argument(
        "--grace",
        type=_minutes_arg,
        default=0,
        metavar="MINUTES",
        help="conversions newer than this before the last postback count as pending (default 0)",
    )
    dia.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    _engine_args(dia)
    _notify_args(dia)

    rec = sub.add_parser("reconcile", help="compare an affiliate network's conversion export with the store")
    rec.add_argument("network_export", metavar="NETWORK_EXPORT", help="the network's conversion export (csv/xlsx)")
    rec.add_argument("--store", required=True, type=_store_arg, help=_STORE_HELP)
    rec.add_argument("--timezone", help="time zone of the export's local times (default: the store's)")
    _range_args(rec)
    rec.add_argument("--click-id-column", help="the export's column holding the click id (sub id)")
    rec.add_argument("--json", action="store_true", help="print one JSON document on stdout")

    rep = sub.add_parser(
        "report",
        help="run the report notebook and write one self-contained HTML file (and its JSON summary)",
        description="Run the report notebook and write one self-contained HTML file.",
        epilog=_REPORT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rep.add_argument("--store", required=True, type=_store_arg, help=_STORE_HELP)
    _range_args(rep)
    rep.add_argument("--timezone", help="display time zone (default: the store's)")
    rep.add_argument(
        "--grace", type=_minutes_arg, default=0, metavar="MINUTES", help="pending window for conversions (default 0)"
    )
    rep.add_argument(
        "--fail-on",
        action="append",
        default=[],
        metavar="EXPR",
        help="exit 3 when e.g. 'error_rate>0.05' holds (several allowed; see the README); money at stake is "
        "per currency: 'at_stake>=100' holds when any one currency reaches 100, 'at_stake[USD]>=100' looks at USD only",
    )
    rep.add_argument(
        "--out", required=True, metavar="FILE.html", help="where the HTML goes; FILE.json is written beside it"
    )
    rep.add_argument(
        "--force", action="store_true", help="replace FILE.html / FILE.json even if cfanalytics did not write them"
    )
    rep.add_argument("--png", metavar="DIR", help="also write every chart as PNG here (uses chromium)")
    rep.add_argument("--json", action="store_true", help="print the summary (the content of FILE.json) as JSON")
    _engine_args(rep)
    _notify_args(rep)

    cfg = sub.add_parser("config", help="show or change a store's settings (column map, PII)")
    cfg.add_argument("--store", required=True, type=_store_arg, help=_STORE_HELP)
    cfg.add_argument("--map", action="append", default=[], metavar="HEADER=COLUMN", help="save a header mapping")
    cfg.add_argument("--store-ips", choices=["raw", "masked", "hashed"], help="how later ingests keep IP addresses")
    cfg.add_argument("--mask-ips", choices=["on", "off"], help="show IP addresses masked in every output")
    cfg.add_argument(
        "--notify",
        metavar="URL|off",
        help="the incoming-webhook URL reports notify by default (kept in the store, shown by its origin only); "
        "off removes it",
    )
    cfg.add_argument("--json", action="store_true", help=_JSON_HELP)

    bat = sub.add_parser("batches", help="list the ingest ledger")
    bat.add_argument("--store", required=True, type=_store_arg, help=_STORE_HELP)
    bat.add_argument("--json", action="store_true", help=_JSON_HELP)

    mnt = sub.add_parser("maintain", help="compact, checkpoint and vacuum the store under its lock")
    mnt.add_argument("--store", required=True, type=_store_arg, help=_STORE_HELP)
    mnt.add_argument(
        "--retention-hours",
        type=_hours_arg,
        default=168,
        metavar="HOURS",
        help="keep unreferenced files this long, 0 or more (default 168)",
    )
    mnt.add_argument("--json", action="store_true", help=_JSON_HELP)
    _pull_parser(sub)

    rcv = sub.add_parser("recover", help="write upload files of conversions that never reached their traffic source")
    rcv.add_argument("--store", required=True, type=_store_arg, help=_STORE_HELP)
    _range_args(rcv)
    rcv.add_argument("--now", metavar="TIME", help="time the upload windows are judged at (default: now)")
    rcv.add_argument("--out", required=True, metavar="DIR", help="where the files and manifest.json go")
    rcv.add_argument("--currency", help="currency of conversions that carry none (default: the store's)")
    rcv.add_argument("--fixed", action="append", default=[], metavar="KIND", help="an error kind fixed since (auth)")
    rcv.add_argument("--json", action="store_true", help="print the manifest as JSON")

    rfr = sub.add_parser("refire", help="print, or --send, the S2S postbacks of a recovery file")
    rfr.add_argument("--store", required=True, type=_store_arg, help=_STORE_HELP)
    rfr.add_argument("file", metavar="FILE", help="s2s_postbacks.jsonl written by recover")
    rfr.add_argument("--send", action="store_true", help="send them (default: print what would be sent)")
    rfr.add_argument("--rate", type=float, default=2.0, help="requests per second at most (default 2)")
    rfr.add_argument("--timeout", type=float, default=10.0, help="seconds per request (default 10)")
    rfr.add_argument("--retries", type=int, default=3, help="retries after a 429, 5xx or time-out (default 3)")
    rfr.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    return p


_STORE_HELP: Final = "the store folder"


def _engine_args(parser: argparse.ArgumentParser) -> None:
    """``--engine`` and ``--spark-remote``: where a command's diagnostics read the stored tables."""
    parser.add_argument(
        "--engine",
        choices=("polars", "spark"),
        default="polars",
        help="where the stored tables are read: polars (this process, default) or spark (a Spark Connect server)",
    )
    parser.add_argument(
        "--spark-remote",
        metavar="URL",
        help="Spark Connect URL for --engine spark (sc://HOST:PORT; default: SPARK_REMOTE)",
    )


def _notify_args(p: argparse.ArgumentParser) -> None:
    hook = p.add_mutually_exclusive_group()
    hook.add_argument(
        "--notify",
        metavar="URL",
        help="POST a Slack-compatible notice for each new incident and breached threshold to this incoming "
        "webhook, once (default: the store's `config --notify` URL)",
    )
    hook.add_argument("--no-notify", action="store_true", help="send no notice this run (what is due stays due)")
    p.add_argument(
        "--notify-timeout",
        type=_seconds_arg,
        default=10.0,
        metavar="SECONDS",
        help="seconds to wait for the webhook per try (default 10)",
    )
    p.add_argument(
        "--notify-retries",
        type=_retries_arg,
        default=3,
        metavar="N",
        help="retries after a time-out, 429 or 5xx, with back-off (default 3)",
    )


def _webhook(args: argparse.Namespace) -> str | None:
    """The webhook a command notifies: ``--notify``, else the store's setting (none with ``--no-notify``)."""
    from cfanalytics.alerts import check_webhook, configured_webhook

    if args.notify:
        return check_webhook(args.notify)
    if args.no_notify:
        return None
    return configured_webhook(args.store)


def _print_notified(notified: Any) -> None:
    """One line of what the webhook was sent (failures are the caller's one error line)."""
    if notified is None:
        return
    sent = f"{len(notified.incidents_sent)} incident(s), {len(notified.thresholds_sent)} threshold(s)"
    _print(f"  notified: {sent}" if notified.incidents_sent or notified.thresholds_sent else "  notified: nothing new")


_JSON_HELP: Final = "print one JSON document on stdout"


def _input_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", metavar="FILE", help="CSV, NDJSON, JSON, Parquet or xlsx export (gzip too)")
    p.add_argument(
        "--kind", choices=["visits", "clicks", "conversions", "postbacks", "activity"], help="skip kind inference"
    )
    p.add_argument("--timezone", help="account time zone (IANA) for local times; recorded by a new store")
    p.add_argument(
        "--map", action="append", default=[], metavar="HEADER=COLUMN", help="map an input header to a column"
    )
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")


def _range_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--from", dest="start", type=_date_arg, metavar="DATE", help="first local date (YYYY-MM-DD), inclusive"
    )
    p.add_argument("--to", dest="end", type=_date_arg, metavar="DATE", help="last local date (YYYY-MM-DD), inclusive")


def _check_range(start: date | None, end: date | None) -> None:
    if start is not None and end is not None and start > end:
        raise UsageError(f"--from {start} is after --to {end}: the range is reversed")


def _stored_span(store: Any) -> tuple[date, date] | None:
    """First and last local date of any stored visit, click, conversion or postback (None: no rows)."""
    import polars as pl

    from cfanalytics.schemas import MAIN_TIME

    tz = store.timezone or "UTC"
    bounds = []
    for kind in ("visits", "clicks", "conversions", "postbacks"):
        column = MAIN_TIME[kind]
        t = pl.col(column).dt.convert_time_zone(tz)
        row = store.scan(kind).select(t.min().alias("lo"), t.max().alias("hi")).collect().row(0)
        if row[0] is not None:
            bounds.append(row)
    if not bounds:
        return None
    return min(b[0] for b in bounds).date(), max(b[1] for b in bounds).date()


def _no_rows_note(store: Any, start: date | None, end: date | None, span: Any = False) -> str | None:
    """One line when the range holds no rows: what was asked for and what the store holds."""
    span = _stored_span(store) if span is False else span
    tz = store.timezone or "UTC"
    if span is None:
        return f"{store.uri} holds no rows yet: ingest or pull some logs first"
    lo, hi = span
    if (start is None or start <= hi) and (end is None or end >= lo):
        return None
    asked = f"from {start} to {end}" if start and end else f"from {start} on" if start else f"up to {end}"
    return f"no rows {asked} ({tz}); {store.uri} holds {lo} to {hi}"


def _version() -> str:
    from cfanalytics import __version__

    return __version__


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cfanalytics`` command; returns the exit code.

    Every failure is one redacted line on stderr; nothing raises but ``SystemExit``
    from ``--help`` / ``--version`` (and any error when ``CFANALYTICS_TRACEBACK`` is set).
    """
    previous = _on_sigterm()
    try:
        try:
            args = _parser().parse_args(argv)
            return int(_COMMANDS[args.command](args))
        finally:
            sys.stdout.flush()  # a reader that went away shows up here, not at exit
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
    except _Terminated:
        _error("terminated")
        return EXIT_TERMINATED
    except BrokenPipeError:
        _quiet_stdout()
        return EXIT_PIPE
    except CfError as exc:
        _error(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        _error("interrupted")
        return EXIT_INTERRUPTED
    except BaseException as exc:  # a bug, an environment fault, a library's panic: one line, traceback on request
        if isinstance(exc, SystemExit | GeneratorExit) or os.environ.get(TRACEBACK_ENV):
            raise
        _error(f"{_unexpected(exc)} (set {TRACEBACK_ENV}=1 to see the traceback)")
        return EXIT_INPUT


class _Terminated(KeyboardInterrupt):
    """SIGTERM (``timeout``, a scheduler): unwinds like Ctrl-C, so that temporary files are removed."""


def _terminate(signum: int, frame: Any) -> None:
    raise _Terminated


def _on_sigterm() -> Any:
    """Turn SIGTERM into :class:`_Terminated`; return the handler it replaced (None off the main thread)."""
    try:
        return signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread
        return None


def _unexpected(exc: BaseException) -> str:
    """One line for an exception the kit did not raise on purpose (disk full, a library's error)."""
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    if (isinstance(exc, OSError) and exc.errno == errno.ENOSPC) or "No space left on device" in str(exc):
        return (
            "no space left on device: free some space and run the same command again "
            "(a batch is stored whole or not at all; a stored one is skipped)"
        )
    if isinstance(exc, OSError) and exc.strerror:
        where = f" ({_shown(os.fsdecode(exc.filename))})" if exc.filename is not None else ""
        return f"{exc.strerror}{where}"
    if isinstance(exc, RecursionError):
        return "input nested too deeply to read"
    if isinstance(exc, MemoryError):
        return "not enough memory"
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _quiet_stdout() -> None:
    """The reader of stdout went away: send what is left to /dev/null so that exiting stays quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def _error(message: str) -> None:
    """``cfanalytics: <message>`` on stderr: one line, redacted, never a doubled prefix."""
    lines = str(message).strip().splitlines() or ["error"]
    text = lines[0].removeprefix(_PREFIX).removeprefix("error: ")
    with contextlib.suppress(BrokenPipeError, ValueError):  # stderr closed: nowhere left to say it
        print(_PREFIX + (redact(text) or ""), file=sys.stderr, flush=True)


def _print(text: str = "", **kwargs: Any) -> None:
    """``print`` to stdout, redacted."""
    print(redact(text), **kwargs)


# ------------------------------------------------------------------- commands
def _cmd_ingest(args: argparse.Namespace) -> int:
    from cfanalytics.store import LogStore

    store = LogStore(args.store, timezone=args.timezone, force_timezone=args.force_timezone, create="on_write")
    result = store.ingest(
        args.files,
        kind=args.kind,
        timezone=args.timezone,
        column_map=args.map,
        progress=not args.json,
        store_ips=args.store_ips,
    )
    _print_ingest(result, args.json, store=store.uri)
    return EXIT_OK if result.ok else EXIT_INPUT


def _cmd_validate(args: argparse.Namespace) -> int:
    from cfanalytics.ingest import validate_paths
    from cfanalytics.values import check_timezone

    if args.timezone:
        check_timezone(args.timezone)
    result = validate_paths(args.files, kind=args.kind, timezone=args.timezone or "UTC", column_map=args.map)
    _print_ingest(result, args.json, store=None)
    return EXIT_OK if result.ok else EXIT_INPUT


def _cmd_diagnose(args: argparse.Namespace) -> int:
    from cfanalytics.diagnose import diagnose
    from cfanalytics.engines import on_spark
    from cfanalytics.filters import LogFilter
    from cfanalytics.store import LogStore

    _check_range(args.start, args.end)
    webhook = _webhook(args)
    store = LogStore(args.store, create=False)
    span = _stored_span(store)
    note = _no_rows_note(store, args.start, args.end, span)
    start, end = args.start, args.end
    if span is not None and note is None:  # the period shown is the real one, not "start → end"
        start, end = start or span[0], end or span[1]
    reader = on_spark(store, args.spark_remote) if args.engine == "spark" else store
    doc = diagnose(reader, LogFilter(start=start, end=end), grace_minutes=args.grace)
    if args.json:
        _dump(doc)
        if note:
            _error(note)
    elif note:
        _print(note)
    else:
        from cfanalytics.text import diagnosis_text

        _print(diagnosis_text(doc))
    period = {"from": str(start), "to": str(end)}
    return _notify_diagnosis(store, webhook, doc, period, args) if webhook else EXIT_OK


def _notify_diagnosis(
    store: Any, webhook: str, doc: dict[str, Any], period: dict[str, str], args: argparse.Namespace
) -> int:
    """``diagnose --notify``: one notice per incident never notified (thresholds are the report's)."""
    from cfanalytics.alerts import incident_notices, notify

    zone = store.timezone or "UTC"
    notified = notify(
        store,
        webhook,
        incident_notices(doc["incidents"], zone),
        [],
        {**period, "timezone": zone},
        footer="cfanalytics diagnose",
        timeout=args.notify_timeout,
        retries=args.notify_retries,
    )
    if not args.json:
        _print_notified(notified)
    failed = notified.error_line()
    if failed:
        _error(failed)
    return EXIT_INPUT if failed else EXIT_OK


def _cmd_reconcile(args: argparse.Namespace) -> int:
    from cfanalytics.diagnose.reconcile import reconcile
    from cfanalytics.store import LogStore

    _check_range(args.start, args.end)
    store = LogStore(args.store, create=False)
    result = reconcile(
        store,
        args.network_export,
        timezone=args.timezone,
        start=args.start,
        end=args.end,
        click_id_column=args.click_id_column,
    )
    if args.json:
        _dump(result.summary)
    else:
        from cfanalytics.text import reconcile_text

        _print(reconcile_text(result.summary))
    if (args.start or args.end) and (note := _no_rows_note(store, args.start, args.end)):
        _error(note)
    return EXIT_OK


def _cmd_report(args: argparse.Namespace) -> int:
    from cfanalytics.report import parse_fail_on, run

    parse_fail_on(args.fail_on)  # a bad expression fails before the long run
    _check_range(args.start, args.end)
    webhook = _webhook(args)
    out = Path(args.out)
    if not args.force:
        for path in (out, out.with_suffix(".json")):
            if path.exists() and not _kit_wrote(path):
                raise UsageError(
                    f"{_shown(str(path))} exists and was not written by cfanalytics: "
                    "not overwritten (pass --force to replace it, or choose another --out)"
                )
    from cfanalytics.store import LogStore

    if (args.start or args.end) and (note := _no_rows_note(LogStore(args.store, create=False), args.start, args.end)):
        _error(note)
    result = run(
        args.store,
        args.out,
        start=args.start,
        end=args.end,
        timezone=args.timezone,
        grace_minutes=args.grace,
        fail_on=args.fail_on,
        png_dir=args.png,
        notify=webhook,
        notify_options={"timeout": args.notify_timeout, "retries": args.notify_retries},
        engine=args.engine,
        spark_remote=args.spark_remote,
    )
    notified = result.notified
    if args.json:
        _dump(
            {
                "html": str(result.html),
                **result.summary,
                "breached": result.breached,
                "png": [str(p) for p in result.pngs],
                "notify": notified.to_json(webhook) if notified is not None and webhook else None,
            }
        )
    else:
        cur = result.summary["current"]
        rate = "n/a" if cur["error_rate"] is None else f"{cur['error_rate']:.1%}"
        _print(f"report: {result.html} (summary: {Path(result.html).with_suffix('.json')})")
        _print(
            f"  {cur['postbacks']} postbacks, {cur['errors']} failed ({rate}); {cur['incidents']} incidents "
            f"({cur['new_incidents']} new); {cur['not_posted']} conversions never posted"
        )
        _print_notified(notified)
        for line in result.breached:
            _error(f"threshold breached: {line}")
    failed = notified.error_line() if notified is not None else None
    if failed:
        _error(failed)
    return EXIT_THRESHOLD if result.breached else EXIT_INPUT if failed else EXIT_OK


def _kit_wrote(path: Path) -> bool:
    """True when ``path`` is a report or report summary that cfanalytics wrote (safe to replace)."""
    try:
        with path.open("rb") as f:
            head = f.read(1 << 20)
    except OSError:
        return False
    if path.suffix.lower() == ".json":
        try:
            doc = json.loads(head.decode("utf-8"))
        except ValueError:
            return False
        return isinstance(doc, dict) and {"period", "current", "breached"} <= set(doc)
    summary = path.with_suffix(".json")  # a report is known by its summary, or by its own content
    if summary.exists() and _kit_wrote(summary):
        return True
    return b"jp-Notebook" in head and (b"Postback health report" in head or b"cfanalytics" in head)


def _check_demo_folder(exports: Path, store: Path, report: Path) -> None:
    """The demo replaces its exports, store and report: refuse when they are someone else's."""
    demo = (exports / "truth.json").exists()  # the generator writes it beside every sample account
    theirs = [
        path
        for path, ours in (
            (exports, demo or not (exports.is_dir() and any(exports.iterdir()))),
            (store, demo or not store.exists()),
            (report, not report.exists() or _kit_wrote(report)),
        )
        if not ours
    ]
    if theirs:
        raise UsageError(
            f"{_shown(str(theirs[0]))} exists and is not the demo's: not replaced "
            "(pass --force, or choose another --dir)"
        )


def _cmd_forget(args: argparse.Namespace) -> int:
    from cfanalytics.store import LogStore

    store = LogStore(args.store, create=False)
    if args.ip:
        deleted = store.forget_ip(args.ip)
        what, doc = "IP address", {"ip": "***", "deleted": deleted}
    else:
        deleted = store.forget(args.batch)
        what, doc = f"batch {args.batch}", {"batch": args.batch, "deleted": deleted}
    if args.json:
        _dump(doc)
    elif deleted:
        _print(f"forgot {what}: " + ", ".join(f"{n} {k}" for k, n in sorted(deleted.items())))
    elif not getattr(deleted, "kept", None):
        _print(f"no rows of {what} in {store.uri}")
    if not args.json and getattr(deleted, "kept", None):
        _print(
            "kept (later batches stored them too): " + ", ".join(f"{n} {k}" for k, n in sorted(deleted.kept.items()))
        )
    return EXIT_OK


def _cmd_config(args: argparse.Namespace) -> int:
    from cfanalytics.store import LogStore

    store = LogStore(args.store, create=False)
    if args.map:
        store.set_column_map(args.map)
    if args.store_ips or args.mask_ips:
        store.set_privacy(store_ips=args.store_ips, mask_ips=None if args.mask_ips is None else args.mask_ips == "on")
    from cfanalytics.alerts import configured_webhook, set_webhook, webhook_origin

    if args.notify:
        set_webhook(store, None if args.notify.strip().lower() == "off" else args.notify)
    meta = {k: v for k, v in store.metadata.items() if k != "ip_salt"}
    webhook = configured_webhook(store.location)
    meta["notify"] = webhook_origin(webhook) if webhook else None  # the path of a webhook is its secret
    if args.json:
        _dump(meta)
    else:
        for key, value in sorted(meta.items()):
            _print(f"{key}: {value}")
    return EXIT_OK


def _cmd_batches(args: argparse.Namespace) -> int:
    from cfanalytics.store import LogStore

    ledger = LogStore(args.store, create=False).batches()
    if args.json:
        _dump({"batches": [_jsonable(r) for r in ledger.to_dicts()]})
    else:
        for r in ledger.to_dicts():
            _print(
                f"{r['batch_id']:<34} {r['table']:<11} {r['rows_stored'] or 0:>9} stored  "
                f"{r['quarantined'] or 0:>6} quarantined  {r['source']}"
            )
    return EXIT_OK


def _cmd_maintain(args: argparse.Namespace) -> int:
    from cfanalytics.store import LogStore

    out = LogStore(args.store, create=False).maintain(retention_hours=args.retention_hours)
    if args.json:
        _dump({"tables": out})
    else:
        for table, info in out.items():
            _print(f"{table:<11} compacted {info['compacted']} files, vacuumed {info['vacuumed']}")
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from cfanalytics.diagnose import diagnose
    from cfanalytics.filters import LogFilter
    from cfanalytics.workspace import build_sample_store

    folder = Path(args.dir)
    exports, store_path, report_path = folder / "exports", folder / "store", folder / "report.html"
    if not args.force:
        _check_demo_folder(exports, store_path, report_path)
    if not args.json:
        what = f"the sample account (seed {args.seed}, {args.visits} visits)"
        _print(f"generating {what} in {exports} …", file=sys.stderr)
    store, _, result = build_sample_store(folder, seed=args.seed, visits=args.visits, progress=not args.json)
    span = _stored_span(store)  # the period shown is the real one, not "start → end"
    doc = diagnose(store, LogFilter(start=span[0], end=span[1]) if span else None)
    report = None
    if not args.no_report:
        if not args.json:
            _print(f"rendering the report to {report_path} …", file=sys.stderr)
        from cfanalytics.report import run

        report = str(run(store_path, report_path, record=False).html)  # a first scheduled report still alerts
    if args.json:
        _dump(
            {
                "store": str(store.path),
                "exports": str(exports),
                "report": report,
                **result.to_json(),
                "rows": store.counts(),
                "diagnosis": doc,
            }
        )
        return EXIT_OK if result.ok else EXIT_INPUT
    from cfanalytics.text import diagnosis_text

    _print_ingest(result, False, store=None)
    _print()
    _print(diagnosis_text(doc))
    _print()
    _print(f"exports: {exports.resolve()}  (truth.json lists the injected faults)")
    _print(f"store:   {store.path.resolve()}  (time zone {store.timezone})")
    _print(f"report:  {Path(report).resolve() if report else 'skipped (--no-report)'}")
    return EXIT_OK if result.ok else EXIT_INPUT


def _pull_parser(sub: Any) -> None:
    pul = sub.add_parser(
        "pull",
        help="fetch event logs and postback status from the ClickFlare API into a store",
        description="Pull local days from the ClickFlare API (key: CLICKFLARE_API_KEY); finished days are skipped.",
    )
    pul.add_argument("--store", required=True, type=_store_arg, help="store folder (created if absent)")
    pul.add_argument(
        "--from", dest="start", type=_date_arg, metavar="DATE", help="first local date, inclusive (default: resume)"
    )
    pul.add_argument(
        "--to", dest="end", type=_date_arg, metavar="DATE", help="last local date, inclusive (default: today)"
    )
    pul.add_argument(
        "--kinds", default="events,postbacks", help="events (visits, clicks, conversions), postbacks (default: both)"
    )
    pul.add_argument("--timezone", help="account time zone (IANA) of a new store; the API answers in it")
    pul.add_argument("--base-url", help="API base URL (default: the store's config, else the public API)")
    pul.add_argument("--page-size", type=int, default=1000, metavar="N", help="rows per request, at most 1000")
    pul.add_argument("--rate-limit", type=float, default=2.0, metavar="RPS", help="requests per second (default 2)")
    pul.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS", help="per network operation")
    pul.add_argument("--retries", type=int, default=8, metavar="N", help="attempts per request (default 8)")
    pul.add_argument("--backoff", type=float, default=1.0, metavar="SECONDS", help="first retry delay, then doubled")
    pul.add_argument(
        "--settle",
        action="append",
        default=[],
        metavar="KIND=HOURS",
        help="a window is finished once this old (default events=6, postbacks=48)",
    )
    pul.add_argument("--include-filtered", action="store_true", help="also pull filtered (bot) traffic")
    pul.add_argument("--refresh", action="store_true", help="pull finished windows again too")
    pul.add_argument("--json", action="store_true", help="print one JSON document on stdout")


def _cmd_pull(args: argparse.Namespace) -> int:
    from cfanalytics.pull import PullOptions, parse_settle, pull, window_text
    from cfanalytics.store import LogStore

    options = PullOptions(
        base_url=args.base_url,
        page_size=args.page_size,
        rate_limit=args.rate_limit,
        timeout=args.timeout,
        max_attempts=args.retries,
        backoff=args.backoff,
        settle=parse_settle(args.settle),
        include_filtered=args.include_filtered,
        refresh=args.refresh,
        progress=not args.json,
    )
    options.check()
    _check_range(args.start, args.end)
    store = LogStore(args.store, timezone=args.timezone)
    result = pull(
        store,
        args.start,
        args.end,
        kinds=args.kinds,
        timezone=args.timezone,
        options=options,
        on_window=None if args.json else lambda w: _print(window_text(w), flush=True),
    )
    if args.json:
        _dump(result.to_json())
    else:
        rows = ", ".join(f"{k} {n}" for k, n in result.rows.items())
        pending = sum(1 for w in result.windows if w.status == "pulled")
        later = f"; {pending} window(s) not settled yet, pulled again next run" if pending else ""
        if not result.windows:
            _print(f"nothing to pull: every window up to --to is finished in {store.uri}")
        else:
            _print(f"store: {store.uri} — new rows: {rows or 'none'} ({result.requests} requests){later}")
    for failure in result.failures:
        _error(failure)
    return EXIT_OK if result.ok else EXIT_INPUT


def _cmd_recover(args: argparse.Namespace) -> int:
    from cfanalytics.recover import run_recover

    _check_range(args.start, args.end)
    opts = {"now": args.now, "out": args.out, "currency": args.currency, "fixed": args.fixed}
    return run_recover(args.store, start=args.start, end=args.end, **opts, as_json=args.json)


def _cmd_refire(args: argparse.Namespace) -> int:
    from cfanalytics.refire import run_refire

    opts = {"send": args.send, "rate": args.rate, "timeout": args.timeout, "retries": args.retries}
    return run_refire(args.store, args.file, **opts, as_json=args.json)


_COMMANDS = {
    "recover": _cmd_recover,
    "refire": _cmd_refire,
    "ingest": _cmd_ingest,
    "validate": _cmd_validate,
    "forget": _cmd_forget,
    "diagnose": _cmd_diagnose,
    "reconcile": _cmd_reconcile,
    "report": _cmd_report,
    "config": _cmd_config,
    "batches": _cmd_batches,
    "maintain": _cmd_maintain,
    "demo": _cmd_demo,
    "pull": _cmd_pull,
}


# -------------------------------------------------------------------- output
def _print_ingest(result: Any, as_json: bool, *, store: str | None) -> None:
    if as_json:
        _dump(result.to_json())
        return
    for b in result.batches:
        line = (
            f"{b.source} [{b.kind}]: {b.rows_read} read, {b.rows_stored} stored, "
            f"{b.already_stored} already stored, {b.quarantined} quarantined, {b.flagged} flagged"
        )
        if b.skipped:
            line += f", {b.skipped} rows of other kinds skipped"
        _print(line)
        if b.quarantined_by_reason:
            top = sorted(b.quarantined_by_reason.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
            _print("    quarantine: " + ", ".join(f"{reason} {n}" for reason, n in top))
    for failure in result.failures:
        _error(failure)
    if store and result.batches:
        _print(f"store: {store}")
    if store and result.timezone_recorded:
        how = " (every time read carried a UTC offset; no --timezone given)" if result.timezone_from_offsets else ""
        _print(f"store time zone: {result.timezone_recorded}{how}")


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    from datetime import datetime

    out: dict[str, Any] = {}
    for k, v in row.items():
        out[k] = v.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if isinstance(v, datetime) else v
    return out


def _dump(doc: Any) -> None:
    """One JSON document on stdout, every string in it redacted."""
    json.dump(_redacted(doc), sys.stdout, indent=2, sort_keys=False, ensure_ascii=False)
    sys.stdout.write("\n")


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redacted(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(v) for v in value]
    return value


if __name__ == "__main__":
    raise SystemExit(main())
