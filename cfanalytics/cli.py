"""The ``cfanalytics`` command: thin — parse arguments, call the package, print.

Exit codes: 0 ok (also with quarantined rows), 1 an input failed, 2 usage,
3 a ``--fail-on`` threshold breached, 4 store busy after retries.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cfanalytics.exceptions import CfError, UsageError

EXIT_OK, EXIT_INPUT, EXIT_USAGE, EXIT_THRESHOLD, EXIT_BUSY = 0, 1, 2, 3, 4


class _Parser(argparse.ArgumentParser):
    """argparse that exits with code 2 and a one-line message."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


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

    ing = sub.add_parser("ingest", help="load export files into a store")
    _input_args(ing)
    ing.add_argument("--store", required=True, help="store folder (created if absent)")
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
    fgt.add_argument("--store", required=True)
    who = fgt.add_mutually_exclusive_group(required=True)
    who.add_argument("--batch", help="batch id, or an input's batch prefix (all its kinds)")
    who.add_argument("--ip", help="every row of this IP address (a data-subject request)")
    fgt.add_argument("--json", action="store_true")

    dia = sub.add_parser("diagnose", help="postback errors, conversion gaps and incidents with their suspected change")
    dia.add_argument("--store", required=True)
    _range_args(dia)
    dia.add_argument(
        "--grace",
        type=float,
        default=0,
        metavar="MINUTES",
        help="conversions newer than this before the last postback count as pending (default 0)",
    )
    dia.add_argument("--json", action="store_true", help="print one JSON document on stdout")

    rec = sub.add_parser("reconcile", help="compare an affiliate network's conversion export with the store")
    rec.add_argument("network_export", metavar="NETWORK_EXPORT", help="the network's conversion export (csv/xlsx)")
    rec.add_argument("--store", required=True)
    rec.add_argument("--timezone", help="time zone of the export's local times (default: the store's)")
    _range_args(rec)
    rec.add_argument("--click-id-column", help="the export's column holding the click id (sub id)")
    rec.add_argument("--json", action="store_true", help="print one JSON document on stdout")

    rep = sub.add_parser("report", help="run the report notebook and write one self-contained HTML file")
    rep.add_argument("--store", required=True)
    _range_args(rep)
    rep.add_argument("--timezone", help="display time zone (default: the store's)")
    rep.add_argument("--grace", type=float, default=0, metavar="MINUTES", help="pending window for conversions")
    rep.add_argument(
        "--fail-on",
        action="append",
        default=[],
        metavar="EXPR",
        help="exit 3 when e.g. 'error_rate>0.05' holds (several allowed; see the README)",
    )
    rep.add_argument("--out", required=True, metavar="FILE.html", help="where the HTML goes")
    rep.add_argument("--png", metavar="DIR", help="also write every chart as PNG here (uses chromium)")
    rep.add_argument("--json", action="store_true", help="print the summary as JSON")

    cfg = sub.add_parser("config", help="show or change a store's settings (column map, PII)")
    cfg.add_argument("--store", required=True)
    cfg.add_argument("--map", action="append", default=[], metavar="HEADER=COLUMN", help="save a header mapping")
    cfg.add_argument("--store-ips", choices=["raw", "masked", "hashed"], help="how later ingests keep IP addresses")
    cfg.add_argument("--mask-ips", choices=["on", "off"], help="show IP addresses masked in every output")
    cfg.add_argument("--json", action="store_true")

    bat = sub.add_parser("batches", help="list the ingest ledger")
    bat.add_argument("--store", required=True)
    bat.add_argument("--json", action="store_true")

    mnt = sub.add_parser("maintain", help="compact, checkpoint and vacuum the store under its lock")
    mnt.add_argument("--store", required=True)
    mnt.add_argument("--retention-hours", type=int, default=168, help="keep unreferenced files this long (default 168)")
    mnt.add_argument("--json", action="store_true")
    _pull_parser(sub)
    return p


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
    p.add_argument("--from", dest="start", metavar="DATE", help="first local date (YYYY-MM-DD), inclusive")
    p.add_argument("--to", dest="end", metavar="DATE", help="last local date (YYYY-MM-DD), inclusive")


def _date(value: str | None, flag: str) -> Any:
    from datetime import date

    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise UsageError(f"{flag} {value!r}: expected a date YYYY-MM-DD") from None


def _version() -> str:
    from cfanalytics import __version__

    return __version__


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cfanalytics`` command; returns the exit code."""
    try:
        args = _parser().parse_args(argv)
        return int(_COMMANDS[args.command](args))
    except CfError as exc:
        print(f"cfanalytics: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("cfanalytics: interrupted", file=sys.stderr)
        return 130


# ------------------------------------------------------------------- commands
def _cmd_ingest(args: argparse.Namespace) -> int:
    from cfanalytics.store import LogStore

    store = LogStore(args.store, timezone=args.timezone, force_timezone=args.force_timezone)
    result = store.ingest(
        args.files,
        kind=args.kind,
        timezone=args.timezone,
        column_map=args.map,
        progress=not args.json,
        store_ips=args.store_ips,
    )
    _print_ingest(result, args.json, store=str(store.path))
    return EXIT_OK if result.ok else EXIT_INPUT


def _cmd_validate(args: argparse.Namespace) -> int:
    from cfanalytics.ingest import validate_paths

    result = validate_paths(args.files, kind=args.kind, timezone=args.timezone or "UTC", column_map=args.map)
    _print_ingest(result, args.json, store=None)
    return EXIT_OK if result.ok else EXIT_INPUT


def _cmd_diagnose(args: argparse.Namespace) -> int:
    from cfanalytics.diagnose import diagnose
    from cfanalytics.filters import LogFilter
    from cfanalytics.store import LogStore

    store = LogStore(args.store, create=False)
    flt = LogFilter(start=_date(args.start, "--from"), end=_date(args.end, "--to"))
    doc = diagnose(store, flt, grace_minutes=args.grace)
    if args.json:
        _dump(doc)
    else:
        from cfanalytics.text import diagnosis_text

        print(diagnosis_text(doc))
    return EXIT_OK


def _cmd_reconcile(args: argparse.Namespace) -> int:
    from cfanalytics.diagnose.reconcile import reconcile
    from cfanalytics.store import LogStore

    store = LogStore(args.store, create=False)
    result = reconcile(
        store,
        args.network_export,
        timezone=args.timezone,
        start=_date(args.start, "--from"),
        end=_date(args.end, "--to"),
        click_id_column=args.click_id_column,
    )
    if args.json:
        _dump(result.summary)
    else:
        from cfanalytics.text import reconcile_text

        print(reconcile_text(result.summary))
    return EXIT_OK


def _cmd_report(args: argparse.Namespace) -> int:
    from cfanalytics.report import parse_fail_on, run

    parse_fail_on(args.fail_on)  # a bad expression fails before the long run
    result = run(
        args.store,
        args.out,
        start=_date(args.start, "--from"),
        end=_date(args.end, "--to"),
        timezone=args.timezone,
        grace_minutes=args.grace,
        fail_on=args.fail_on,
        png_dir=args.png,
    )
    if args.json:
        _dump(
            {
                "html": str(result.html),
                **result.summary,
                "breached": result.breached,
                "png": [str(p) for p in result.pngs],
            }
        )
    else:
        cur = result.summary["current"]
        rate = "n/a" if cur["error_rate"] is None else f"{cur['error_rate']:.1%}"
        print(f"report: {result.html}")
        print(
            f"  {cur['postbacks']} postbacks, {cur['errors']} failed ({rate}); {cur['incidents']} incidents "
            f"({cur['new_incidents']} new); {cur['not_posted']} conversions never posted"
        )
        for line in result.breached:
            print(f"threshold breached: {line}", file=sys.stderr)
    return EXIT_THRESHOLD if result.breached else EXIT_OK


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
        print(f"forgot {what}: " + ", ".join(f"{n} {k}" for k, n in sorted(deleted.items())))
    else:
        print(f"no rows of {what} in {store.path}")
    return EXIT_OK


def _cmd_config(args: argparse.Namespace) -> int:
    from cfanalytics.store import LogStore

    store = LogStore(args.store, create=False)
    if args.map:
        store.set_column_map(args.map)
    if args.store_ips or args.mask_ips:
        store.set_privacy(store_ips=args.store_ips, mask_ips=None if args.mask_ips is None else args.mask_ips == "on")
    meta = {k: v for k, v in store.metadata.items() if k != "ip_salt"}
    if args.json:
        _dump(meta)
    else:
        for key, value in sorted(meta.items()):
            print(f"{key}: {value}")
    return EXIT_OK


def _cmd_batches(args: argparse.Namespace) -> int:
    from cfanalytics.store import LogStore

    ledger = LogStore(args.store, create=False).batches()
    if args.json:
        _dump({"batches": [_jsonable(r) for r in ledger.to_dicts()]})
    else:
        for r in ledger.to_dicts():
            print(
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
            print(f"{table:<11} compacted {info['compacted']} files, vacuumed {info['vacuumed']}")
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from cfanalytics.diagnose import diagnose
    from cfanalytics.workspace import build_sample_store

    folder = Path(args.dir)
    exports, store_path, report_path = folder / "exports", folder / "store", folder / "report.html"
    if not args.json:
        print(f"generating the sample account (seed {args.seed}, {args.visits} visits) in {exports} …", file=sys.stderr)
    store, _, result = build_sample_store(folder, seed=args.seed, visits=args.visits, progress=not args.json)
    doc = diagnose(store)
    report = None
    if not args.no_report:
        if not args.json:
            print(f"rendering the report to {report_path} …", file=sys.stderr)
        from cfanalytics.report import run

        report = str(run(store_path, report_path).html)
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
    print()
    print(diagnosis_text(doc))
    print()
    print(f"exports: {exports.resolve()}  (truth.json lists the injected faults)")
    print(f"store:   {store.path.resolve()}  (time zone {store.timezone})")
    print(f"report:  {Path(report).resolve() if report else 'skipped (--no-report)'}")
    return EXIT_OK if result.ok else EXIT_INPUT


def _pull_parser(sub: Any) -> None:
    pul = sub.add_parser(
        "pull",
        help="fetch event logs and postback status from the ClickFlare API into a store",
        description="Pull local days from the ClickFlare API (key: CLICKFLARE_API_KEY); finished days are skipped.",
    )
    pul.add_argument("--store", required=True, help="store folder (created if absent)")
    pul.add_argument("--from", dest="start", metavar="DATE", help="first local date, inclusive (default: resume)")
    pul.add_argument("--to", dest="end", metavar="DATE", help="last local date, inclusive (default: today)")
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
    store = LogStore(args.store, timezone=args.timezone)
    result = pull(
        store,
        _date(args.start, "--from"),
        _date(args.end, "--to"),
        kinds=args.kinds,
        timezone=args.timezone,
        options=options,
        on_window=None if args.json else lambda w: print(window_text(w), flush=True),
    )
    if args.json:
        _dump(result.to_json())
    else:
        rows = ", ".join(f"{k} {n}" for k, n in result.rows.items())
        pending = sum(1 for w in result.windows if w.status == "pulled")
        later = f"; {pending} window(s) not settled yet, pulled again next run" if pending else ""
        if not result.windows:
            print(f"nothing to pull: every window up to --to is finished in {store.path}")
        else:
            print(f"store: {store.path} — new rows: {rows or 'none'} ({result.requests} requests){later}")
    for failure in result.failures:
        print(f"error: {failure}", file=sys.stderr)
    return EXIT_OK if result.ok else EXIT_INPUT


_COMMANDS = {
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
    from cfanalytics.redaction import redact

    for b in result.batches:
        line = (
            f"{b.source} [{b.kind}]: {b.rows_read} read, {b.rows_stored} stored, "
            f"{b.already_stored} already stored, {b.quarantined} quarantined, {b.flagged} flagged"
        )
        if b.skipped:
            line += f", {b.skipped} rows of other kinds skipped"
        print(redact(line))
        if b.quarantined_by_reason:
            top = sorted(b.quarantined_by_reason.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
            print("    quarantine: " + ", ".join(f"{reason} {n}" for reason, n in top))
    for failure in result.failures:
        print(f"error: {redact(failure)}", file=sys.stderr)
    if store and result.batches:
        print(f"store: {store}")


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    from datetime import datetime

    out: dict[str, Any] = {}
    for k, v in row.items():
        out[k] = v.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if isinstance(v, datetime) else v
    return out


def _dump(doc: Any) -> None:
    json.dump(doc, sys.stdout, indent=2, sort_keys=False, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    raise SystemExit(main())
