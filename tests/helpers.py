"""Helpers shared by the tests: small fixture files, the worked examples, generated exports and store checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import polars as pl
from polars.testing import assert_frame_equal

ROOT = Path(__file__).resolve().parents[1]
#: Worked examples with their expected numbers (``tests/data/examples/<name>/``).
EXAMPLES = ROOT / "tests" / "data" / "examples"

POSTBACK_HEADER = (
    "Postback ID",
    "Click ID",
    "Postback Time",
    "Is Error",
    "Error Message",
    "Status Code",
    "Postback URL",
    "Custom Conversion (ct)",
    "Integration ID",
)
BAD_TIME = "not a time"
EVENT_KINDS = ("visits", "clicks", "conversions", "postbacks", "activity")


# ----------------------------------------------------------------- subprocesses
def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    """Write a small fixture file and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def cli_env(**extra: str) -> dict[str, str]:
    """The environment of a child process: the project importable from any working directory."""
    env = os.environ.copy()
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


def cli(*args: str) -> list[str]:
    """Command line of ``cfanalytics ARGS…``."""
    return [sys.executable, "-m", "cfanalytics", *args]


def run_cli(*args: str, timeout: float = 600, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``cfanalytics ARGS…`` to its end."""
    return subprocess.run(
        cli(*args), capture_output=True, text=True, check=False, cwd=ROOT, env=cli_env(**env), timeout=timeout
    )


_SYNCED = """
import os, sys, time
import deltalake, polars, pyarrow
import cfanalytics.ingest
from cfanalytics.cli import main
barrier, count = sys.argv[1], int(sys.argv[2])
open(os.path.join(barrier, str(os.getpid())), "w").close()
deadline = time.monotonic() + 300
while len(os.listdir(barrier)) < count and time.monotonic() < deadline:
    time.sleep(0.001)
raise SystemExit(main(sys.argv[3:]))
"""


def start_synced(argvs: list[list[str]], barrier: Path, **env: str) -> list[subprocess.Popen[str]]:
    """Start one ``cfanalytics`` process per argv; each imports the package, then all run ``main`` at one instant.

    ``barrier`` is a new folder where each process signs in once ready.
    """
    barrier.mkdir(parents=True)
    return [
        subprocess.Popen(
            [sys.executable, "-c", _SYNCED, str(barrier), str(len(argvs)), *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=cli_env(**env),
        )
        for argv in argvs
    ]


def finish(procs: list[subprocess.Popen[str]], timeout: float = 900) -> list[tuple[int, str, str]]:
    """Wait for every process; ``(exit code, stdout, stderr)`` of each."""
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=timeout)
        out.append((p.returncode, stdout, stderr))
    return out


# ---------------------------------------------------------------------- exports
def postbacks_frame(n: int, *, start: int = 0, bad_every: int = 0, days: int = 3) -> pl.DataFrame:
    """``n`` postback rows in the UI spelling, ids ``pb-<start…>``, times spread over ``days`` days.

    Every value depends on the row number alone, so overlapping exports agree on the rows they share.

    Every ``bad_every``-th row (when > 0) has an unparseable postback time (a quarantined row).
    """
    i = pl.col("i")
    error = i % 7 == 0
    frame = pl.DataFrame({"i": pl.int_range(start, start + n, eager=True, dtype=pl.Int64)})
    offset = pl.duration(seconds=(i * 7_919) % (days * 86_400))
    time_text = (pl.datetime(2024, 5, 1) + offset).dt.strftime("%Y-%m-%d %H:%M:%S")
    if bad_every > 0:
        time_text = pl.when(i % bad_every == bad_every - 1).then(pl.lit(BAD_TIME)).otherwise(time_text)
    return frame.select(
        ("pb-" + i.cast(pl.String)).alias("Postback ID"),
        click_id(i % 50_000).alias("Click ID"),
        time_text.alias("Postback Time"),
        error.cast(pl.Int8).cast(pl.String).alias("Is Error"),
        pl.when(error).then(pl.lit("Bad Request: invalid click id")).otherwise(pl.lit("")).alias("Error Message"),
        pl.when(error).then(pl.lit("400")).otherwise(pl.lit("200")).alias("Status Code"),
        pl.format("https://ts.example/pb?cid={}", i).alias("Postback URL"),
        pl.when(i % 3 == 0).then(pl.lit("sale")).otherwise(pl.lit("lead")).alias("Custom Conversion (ct)"),
        ("int-" + (i % 5).cast(pl.String)).alias("Integration ID"),
    )


def click_id(n: pl.Expr) -> pl.Expr:
    """A UUID-shaped click id made from an integer expression."""
    return pl.format("{}-0000-4000-8000-{}", n.cast(pl.String).str.zfill(8), n.cast(pl.String).str.zfill(12))


def visits_frame(n: int, *, start: int = 0) -> pl.DataFrame:
    """``n`` visits (``Click ID,Visit Time,Campaign ID``) over two days."""
    i = pl.col("i")
    return pl.DataFrame({"i": pl.int_range(start, start + n, eager=True, dtype=pl.Int64)}).select(
        click_id(i).alias("Click ID"),
        (pl.datetime(2024, 5, 1) + pl.duration(seconds=i * 17 % 172_800))
        .dt.strftime("%Y-%m-%d %H:%M:%S")
        .alias("Visit Time"),
        ("camp-" + (i % 4).cast(pl.String)).alias("Campaign ID"),
    )


def conversions_frame(ids: list[int], *, day: datetime = datetime(2024, 5, 2)) -> pl.DataFrame:
    """One conversion row per entry of ``ids`` (repeat an id for identical rows)."""
    frame = pl.DataFrame({"i": ids}, schema={"i": pl.Int64})
    i = pl.col("i")
    return frame.select(
        click_id(i).alias("Click ID"),
        (pl.lit(day) + pl.duration(minutes=i % 1_440)).dt.strftime("%Y-%m-%d %H:%M:%S").alias("Conversion Time"),
        pl.lit("1.50").alias("Payout"),
        pl.lit("lead").alias("Custom Conversion (ct)"),
    )


def write_csv(frame: pl.DataFrame, path: Path) -> Path:
    """Write ``frame`` as a CSV export and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.write_csv(path)
    return path


# ------------------------------------------------------------------ store checks
def content(store_path: Path, table: str) -> pl.DataFrame:
    """What a table holds, independent of when and by which batch: sorted by ``_row_id``, no ``_batch_id``."""
    from cfanalytics import LogStore

    frame = LogStore(store_path, create=False).scan(table).collect()
    drop = ["_batch_id", "quarantined_at"] if table == "quarantine" else ["_batch_id"]
    frame = frame.drop(drop).sort("_row_id")
    return frame.select(sorted(frame.columns))


def assert_same_store(got: Path, expected: Path) -> None:
    """Both stores hold the same rows in every table (batch ids and quarantine times aside)."""
    for table in (*EVENT_KINDS, "quarantine"):
        assert_frame_equal(content(got, table), content(expected, table), check_row_order=True)


def check_store(store_path: Path) -> dict[str, int]:
    """The store opens and reads; each table holds whole batches and no ``_row_id`` twice. Rows per table."""
    from cfanalytics import LogStore

    store = LogStore(store_path, create=False)
    ledger = store.batches()
    rows: dict[str, int] = {}
    for table in (*EVENT_KINDS, "quarantine"):
        frame = store.scan(table).collect()
        rows[table] = frame.height
        assert frame.get_column("_row_id").is_duplicated().sum() == 0, f"{table}: a _row_id is stored twice"
        mine = ledger.filter(pl.col("table") == table)
        if table == "quarantine":
            # quarantine commits are labelled with the input's batch prefix; rows with "<prefix>-<kind>"
            held = frame.group_by(pl.col("_batch_id").str.replace(r"-[a-z]+$", "").alias("batch")).len()
            recorded = mine.select(pl.col("batch_id").alias("batch"), pl.col("quarantined").alias("len"))
        else:
            held = frame.group_by(pl.col("_batch_id").alias("batch")).len()
            recorded = mine.select(pl.col("batch_id").alias("batch"), pl.col("rows_stored").alias("len"))
        held_d = dict(held.iter_rows())
        recorded_d = dict(recorded.iter_rows())
        assert len(recorded_d) == recorded.height, f"{table}: one batch committed twice"
        assert held_d == recorded_d, f"{table}: stored rows per batch {held_d} != committed counts {recorded_d}"
    return rows


def panel_widgets(widget):
    """Every widget under ``widget`` (children of boxes)."""
    yield widget
    for child in getattr(widget, "children", ()):
        yield from panel_widgets(child)


def panel_texts(panel) -> list[str]:
    """Every text a panel shows: widget values, descriptions, option labels, figure JSON."""
    out: list[str] = []
    for w in panel_widgets(panel.root):
        if hasattr(w, "to_plotly_json"):  # a chart: its figure JSON
            out.append(json.dumps(w.to_plotly_json(), default=str))
            continue
        for attr in ("value", "description", "placeholder", "tooltip"):
            value = getattr(w, attr, None)
            if isinstance(value, str):
                out.append(value)
        for option in getattr(w, "options", ()) or ():
            if isinstance(option, tuple) and option and isinstance(option[0], str):
                out.append(option[0])
            elif isinstance(option, str):
                out.append(option)
    return out


# ------------------------------------------------------------------ money at stake, by a second method
#: ``gaps.at_stake`` grouping → the SQL expression of its key (``None``: the totals).
AT_STAKE_SQL_KEYS = {
    "total": None,
    "by_traffic_source": "coalesce(c.traffic_source_id, v.traffic_source_id)",
    "by_integration": "i.integration_id",
    "by_campaign": "coalesce(c.campaign_id, v.campaign_id)",
    "by_day": "strftime(timezone($tz, c.conversion_time), '%Y-%m-%d')",
}


def sql_at_stake(
    store_path: Path,
    grouping: str,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    timezone: str = "UTC",
) -> list[tuple]:
    """Money at stake by a plain DuckDB query over the store's parquet files: ``(key, currency, conversions,
    posted_failed, not_posted, payout)`` per group (no key for ``total``), sorted by ``str``.

    A conversion (the first of its click id, ct and txid in ``[start, end)``) is at stake when its postbacks
    on the same click id and ct all failed, or it has none; its integration is that of its latest postback
    naming one; payout null counts 0; nothing is converted between currencies.
    """
    import duckdb
    from deltalake import DeltaTable

    def files(kind: str) -> list[str]:
        return DeltaTable(str(Path(store_path) / "tables" / kind)).file_uris()

    key = AT_STAKE_SQL_KEYS[grouping]
    bounds = (["conversion_time >= $start"] if start else []) + (["conversion_time < $end"] if end else [])
    where = " and ".join(bounds)
    sql = f"""
        with c as (
            select *, nullif(ct, '') as ct0,
                   row_number() over (partition by click_id, nullif(ct, ''), nullif(txid, '')
                                      order by conversion_time, _row_id) as nth
            from read_parquet({files("conversions")!r}, union_by_name = true)
            {"where " + where if where else ""}
        ),
        p as (
            select click_id, nullif(ct, '') as ct0, count(*) as n, sum(case when is_error then 1 else 0 end) as e
            from read_parquet({files("postbacks")!r}, union_by_name = true) group by 1, 2
        ),
        i as (
            select click_id, ct0, integration_id from (
                select click_id, nullif(ct, '') as ct0, integration_id,
                       row_number() over (partition by click_id, nullif(ct, '')
                                          order by postback_time desc, integration_id desc) as r
                from read_parquet({files("postbacks")!r}, union_by_name = true)
                where integration_id is not null
            ) where r = 1
        ),
        v as (select click_id, traffic_source_id, campaign_id from read_parquet({files("visits")!r}))
        select {key + " as k, " if key else ""} c.currency, count(*),
               sum(case when p.n is not null then 1 else 0 end), sum(case when p.n is null then 1 else 0 end),
               sum(coalesce(c.payout, 0))
        from c
        left join p on p.click_id = c.click_id and p.ct0 is not distinct from c.ct0
        left join i on i.click_id = c.click_id and i.ct0 is not distinct from c.ct0
        left join v on v.click_id = c.click_id
        where c.nth = 1 and (p.n is null or p.n = p.e)
        group by all
    """
    params = {"tz": timezone} if "$tz" in sql else {}
    params |= {"start": start} if start else {}
    params |= {"end": end} if end else {}
    rows = duckdb.sql(sql, params=params).fetchall() if params else duckdb.sql(sql).fetchall()
    return sorted(((*r[:-4], int(r[-4]), int(r[-3]), int(r[-2]), round(float(r[-1]), 6)) for r in rows), key=str)


def at_stake_rows(section: list[dict], grouping: str) -> list[tuple]:
    """The rows of one ``gaps.at_stake`` grouping as :func:`sql_at_stake` gives them."""
    id_key = {
        "by_traffic_source": "traffic_source_id",
        "by_integration": "integration_id",
        "by_campaign": "campaign_id",
        "by_day": "day",
    }.get(grouping)
    fields = ("currency", "conversions", "posted_failed", "not_posted", "payout")
    return sorted(((*((r[id_key],) if id_key else ()), *(r[f] for f in fields)) for r in section), key=str)


def gap_counts_of(gaps: dict) -> dict:
    """The counts of a ``gaps`` section (every key but ``at_stake`` and the lists per traffic source and
    integration, checked on their own)."""
    return {k: v for k, v in gaps.items() if k not in ("at_stake", "by_traffic_source", "by_integration")}


class _NoKernel:
    """Stands for the report's kernel when the notebook run is left out."""

    has_kernel = False


def skip_report_notebook(monkeypatch, html: str = "<html>cfanalytics jp-Notebook</html>") -> None:
    """Make ``report.run`` leave out the notebook (no kernel, no execution, ``html`` as the page):
    the summary, thresholds, alert state and notices stay real."""
    from cfanalytics import report

    monkeypatch.setattr(report, "_start_kernel", lambda cwd, sockets, env=None: _NoKernel())
    monkeypatch.setattr(report, "_execute", lambda source, params, kernel: None)
    monkeypatch.setattr(report, "_to_html", lambda executed: html)
