"""One measured step per process: ``python benchmarks/steps.py STEP '{"json": "params"}'``.

Each step does its setup (imports, listing files), times only the work with
``time.perf_counter`` and prints one JSON object on stdout: ``seconds`` plus
facts about what it did (row counts, the answers of a diagnosis) so that
:mod:`run` can check that the engines agree. ``--launch STEP PARAMS`` runs a
step in a child of this small process and adds its peak RSS and CPU time
(``getrusage(RUSAGE_CHILDREN)``).

Steps: ``ingest_kit``, ``ingest_duckdb_bare``, ``ingest_polars_bare``, ``ingest_duckdb``,
``ingest_pandas``, ``diagnose_kit``, ``diagnose_duckdb``, ``diagnose_pandas``, ``incidents_kit``,
``panel_kit``, ``doctor_kit``, ``panel_browser``, ``report_cli``, ``sample_store``, ``lookup_kit``,
``lookup_kit_scan``, ``lookup_duckdb``, ``maintain_kit``.
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Final

Params = dict[str, Any]
Result = dict[str, Any]

TIMEZONE: Final = "America/New_York"

#: UI header of visits.csv → canonical column (as the kit maps them).
VISIT_COLUMNS: Final = {
    "Click ID": "click_id",
    "Visit Time": "visit_time",
    "Campaign ID": "campaign_id",
    "Campaign": "campaign_name",
    "Traffic Source ID": "traffic_source_id",
    "Traffic Source": "traffic_source_name",
    "Offer ID": "offer_id",
    "Offer": "offer_name",
    "Lander ID": "landing_id",
    "Lander": "landing_name",
    "Affiliate Network ID": "affiliate_network_id",
    "Affiliate Network": "affiliate_network_name",
    "External ID": "external_id",
    "IP": "ip",
    "Country": "country",
    "City": "city",
    "Device Type": "device_type",
    "OS": "os",
    "Browser": "browser",
    "User Agent": "user_agent",
    "Referrer": "referrer",
    "Tracking Field 1": "tracking_field_1",
    "Tracking Field 2": "tracking_field_2",
}
REQUIRED: Final = ("click_id", "visit_time", "campaign_id")

# Error-kind rules of docs/contract.md §6 for the other engines (RE2 / Python ``re``): the same rule order
# as cfanalytics.diagnose.error_kinds, with shorter patterns that cover what the exports hold.
MACRO_RE: Final = r"\{[^}]*\}|[=/]\[[A-Za-z_]+\]|%7[Bb][A-Za-z_]+%7[Dd]"
MISSING_PARAM_RE: Final = r"(?i)[?&](?:external_?id|gclid|fbclid|ttclid|click_?id|cid|visitor_?id)=(?:&|#|$)"
MISSING_MSG_RE: Final = r"(?i)too short|unparseable_gclid|missing_gclid|missing_click_?id"
AUTH_RE: Final = (
    r"(?i)error validating access token|session (?:has |is )?expired|(?:invalid|expired|revoked) (?:access )?token"
    r"|unauthori[sz]ed|\"code\"\s*:\s*\"?190(?:[^0-9]|$)"
)
RATE_RE: Final = r"(?i)rate[ _-]?limit|too many (?:requests|calls)|quota|\"code\"\s*:\s*\"?40100(?:[^0-9]|$)"
DUPLICATE_RE: Final = r"(?i)duplicat|already[ _]exists"
TIME_RE: Final = r"(?i)too[ _](?:old|recent|early|late)|event[ _]?time|expired"
UUID_RE: Final = r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$"
#: Signature masking (pattern, replacement), applied in order to each distinct error message.
SIGNATURE_STEPS: Final = (
    (r'"[^"]*"\s*:\s*"[^"]*"', '"…":"…"'),
    (r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}", "<uuid>"),
    (r"\b[0-9A-Fa-f]{8,}\b", "<hex>"),
    (r"[0-9]+", "<n>"),
    (r"\s+", " "),
)


# ------------------------------------------------------------------------------ ingest
def ingest_kit(p: Params) -> Result:
    """``LogStore.ingest`` of one or more files (the CLI's code path).

    ``"validate": false`` skips the per-batch validation against the value models (to measure its cost):
    the normaliser is given no failure cases, so a clean input is stored the same.
    """
    import cfanalytics as cf

    if not p.get("validate", True):
        import polars as pl

        from cfanalytics import normalize
        from cfanalytics.schemas import FAILURE_SCHEMA

        normalize.row_failures = lambda *_a, **_k: pl.DataFrame(schema=FAILURE_SCHEMA)  # type: ignore[attr-defined]

    store = cf.LogStore(p["store"], timezone=p.get("timezone", TIMEZONE))
    t0 = time.perf_counter()
    result = store.ingest(p["files"])
    seconds = time.perf_counter() - t0
    if result.failures:
        raise RuntimeError("; ".join(result.failures))
    return {"seconds": seconds, **result.totals()}


def ingest_duckdb_bare(p: Params) -> Result:
    """DuckDB's bare conversion: ``COPY (FROM read_csv(…)) TO …parquet``."""
    import duckdb

    out = Path(p["out"])
    out.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    t0 = time.perf_counter()
    con.execute("COPY (SELECT * FROM read_csv(?, header = true)) TO '" + str(out / "visits.parquet") + "'", [p["csv"]])
    seconds = time.perf_counter() - t0
    rows = con.execute("SELECT count(*) FROM read_parquet(?)", [str(out / "visits.parquet")]).fetchone()
    return {"seconds": seconds, "rows_stored": rows[0] if rows else 0}


def ingest_polars_bare(p: Params) -> Result:
    """Polars' bare conversion with the kit's time parsing: ``scan_csv`` (every field as text) → the visit time
    parsed with ``str.to_datetime`` (the export's format, local → UTC) → ``sink_parquet``."""
    import polars as pl

    out = Path(p["out"])
    out.mkdir(parents=True, exist_ok=True)
    tz = p.get("timezone", TIMEZONE)
    target = out / "visits.parquet"
    t0 = time.perf_counter()
    (
        pl.scan_csv(p["csv"], infer_schema=False)
        .with_columns(
            pl.col("Visit Time")
            .str.strip_chars()
            .str.to_datetime("%Y-%m-%d %H:%M:%S", time_unit="us", strict=False)
            .dt.replace_time_zone(tz, ambiguous="earliest", non_existent="null")
            .dt.convert_time_zone("UTC")
        )
        .sink_parquet(target)
    )
    seconds = time.perf_counter() - t0
    rows = pl.scan_parquet(target).select(pl.len()).collect().item()
    return {"seconds": seconds, "rows_stored": rows}


def _duck_text(header: str) -> str:
    return f"nullif(trim(\"{header}\"), '')"


def ingest_duckdb(p: Params) -> Result:
    """DuckDB doing the kit's work on visits.csv.

    Parse every field as text; trim, empty → null; local time → UTC; required-field checks
    (rejects to a quarantine file with a reason); a stable row id (md5 of the canonical
    encoding of the identity column); click-id flags; in-file repeats (first kept); anti join
    with the ids already stored; append Parquet partitioned by date.
    """
    import duckdb

    table = Path(p["out"]) / "visits"
    quarantine = Path(p["out"]) / "quarantine"
    for d in (table, quarantine):
        d.mkdir(parents=True, exist_ok=True)
    # "memory_limit": DuckDB's own cap (default 80 % of RAM); it spills to disk beyond it
    con = duckdb.connect(config={"memory_limit": p["memory_limit"]} if "memory_limit" in p else {})
    tz = p.get("timezone", TIMEZONE)
    t0 = time.perf_counter()
    cols = []
    for header, name in VISIT_COLUMNS.items():
        if name == "visit_time":
            cols.append(f"timezone('{tz}', try_strptime(trim(\"{header}\"), '%Y-%m-%d %H:%M:%S')) AS visit_time")
            cols.append(f'"{header}" AS _visit_time_text')
        elif name == "country":
            cols.append(
                f"CASE WHEN regexp_full_match(upper(trim(\"{header}\")), '[A-Z]{{2}}') "
                f'THEN upper(trim("{header}")) END AS country'
            )
            cols.append(f"{_duck_text(header)} AS _country_text")
        else:
            cols.append(f"{_duck_text(header)} AS {name}")
    con.execute(
        "CREATE TEMP TABLE typed AS SELECT " + ", ".join(cols) + " FROM read_csv(?, header = true, all_varchar = true)",
        [p["csv"]],
    )
    # the temporary table keeps the file's order: its rowid is the record number
    reason = """CASE WHEN click_id IS NULL THEN 'missing_required'
                 WHEN _visit_time_text IS NULL OR trim(_visit_time_text) = '' THEN 'missing_required'
                 WHEN visit_time IS NULL THEN 'unparseable_required'
                 WHEN campaign_id IS NULL THEN 'missing_required' END"""
    existing = [str(f) for f in table.rglob("*.parquet")]
    stored = "read_parquet(?)" if existing else "(SELECT NULL::VARCHAR AS _row_id WHERE false)"
    con.execute(
        f"""
        CREATE TEMP TABLE fresh AS
        WITH ided AS (
            SELECT rowid AS _record, md5('cf1|visits|' || strlen(click_id) || ':' || click_id) AS _row_id, *
            FROM typed WHERE {reason} IS NULL
        ), firsts AS (
            SELECT * FROM ided QUALIFY row_number() OVER (PARTITION BY _row_id ORDER BY _record) = 1
        )
        SELECT f.* EXCLUDE (_record, _visit_time_text, _country_text),
            '{uuid.uuid4().hex}' AS _batch_id,
            (_country_text IS NOT NULL AND country IS NULL) AS flag_invalid_country,
            regexp_matches(click_id, '{MACRO_RE}') AS flag_click_id_macro,
            NOT regexp_matches(click_id, '{MACRO_RE}') AND NOT regexp_full_match(click_id, '{UUID_RE}')
                AS flag_click_id_malformed,
            CAST(timezone('UTC', visit_time) AS DATE) AS date
        FROM firsts f
        WHERE f._row_id NOT IN (SELECT _row_id FROM {stored})
        """,
        [existing] if existing else [],
    )
    con.execute(
        f"COPY fresh TO '{table}' (FORMAT parquet, PARTITION_BY (date), APPEND true, FILENAME_PATTERN 'part-{{uuid}}')"
    )
    con.execute(
        f"COPY (SELECT rowid AS record, {reason} AS reason FROM typed WHERE {reason} IS NOT NULL) "
        f"TO '{quarantine / (uuid.uuid4().hex + '.parquet')}'"
    )
    counts = con.execute(
        f"SELECT (SELECT count(*) FROM typed), (SELECT count(*) FROM fresh), "
        f"(SELECT count(*) FROM typed WHERE {reason} IS NOT NULL)"
    ).fetchone()
    seconds = time.perf_counter() - t0
    assert counts is not None
    read, stored, quarantined = counts
    return {
        "seconds": seconds,
        "rows_read": read,
        "rows_stored": stored,
        "already_stored": read - stored - quarantined,
        "quarantined": quarantined,
    }


def ingest_pandas(p: Params) -> Result:
    """pandas ``read_csv`` → ``to_parquet`` (defaults)."""
    import pandas as pd  # type: ignore[import-untyped]

    out = Path(p["out"])
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    df = pd.read_csv(p["csv"])
    df.to_parquet(out / "visits.parquet")
    return {"seconds": time.perf_counter() - t0, "rows_stored": len(df)}


# ---------------------------------------------------------------------------- diagnose
def _store(p: Params) -> Any:
    import cfanalytics as cf

    return cf.LogStore(p["store"], create=False)


def diagnose_kit(p: Params) -> Result:
    """The kit's diagnosis minus incidents (timed on their own): ``diagnose(store, with_incidents=False)``."""
    from cfanalytics.diagnose import diagnose

    store = _store(p)
    t0 = time.perf_counter()
    doc = diagnose(store, with_incidents=False)
    pb, gaps = doc["postbacks"], doc["gaps"]
    seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "answers": {
            "total": pb["total"],
            "errors": pb["errors"],
            "unattributed": pb["unattributed"],
            "by_traffic_source": {
                r["traffic_source_name"] or r["traffic_source_id"]: [r["postbacks"], r["errors"]]
                for r in pb["by_traffic_source"]
            },
            "by_integration": {r["integration_id"]: [r["postbacks"], r["errors"]] for r in pb["by_integration"]},
            "by_error_kind": {r["error_kind"]: r["errors"] for r in pb["by_error_kind"]},
            "gaps": gaps,
        },
    }


def incidents_kit(p: Params) -> Result:
    """``cfanalytics.diagnose.incidents`` (default rule, all scopes)."""
    from cfanalytics.diagnose import incidents

    store = _store(p)
    t0 = time.perf_counter()
    found = incidents(store)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "incidents": found.height}


def _files(store: Any) -> dict[str, list[str]]:
    return {kind: store.file_uris(kind) for kind in ("visits", "clicks", "conversions", "postbacks", "activity")}


def diagnose_duckdb(p: Params) -> Result:
    """The same questions in DuckDB SQL over the store's current Parquet files (from the Delta log)."""
    import duckdb

    store = _store(p)
    con = duckdb.connect()
    t0 = time.perf_counter()
    files = _files(store)

    def src(kind: str) -> str:
        listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files[kind])
        return f"read_parquet([{listed}], union_by_name = true, hive_partitioning = false)"

    con.execute(
        f"""
        CREATE TEMP TABLE pb AS
        WITH v AS (SELECT click_id, traffic_source_id AS v_ts, campaign_id AS v_cmp FROM {src("visits")}),
        c AS (SELECT click_id, min(traffic_source_id) AS c_ts, min(campaign_id) AS c_cmp
              FROM {src("conversions")} GROUP BY click_id)
        SELECT p.postback_id, p.click_id, p.postback_time, p.is_error, p.status_code, p.error_message,
               p.postback_url, p.ct, p.integration_id,
               coalesce(p.traffic_source_id, v.v_ts, c.c_ts) AS traffic_source_id,
               coalesce(p.campaign_id, v.v_cmp, c.c_cmp) AS campaign_id
        FROM {src("postbacks")} p
        LEFT JOIN v ON p.click_id = v.click_id
        LEFT JOIN c ON p.click_id = c.click_id
        """
    )
    con.execute(
        f"""
        CREATE TEMP TABLE errs AS
        WITH e AS (SELECT *, coalesce(error_message, '') AS m FROM pb WHERE is_error)
        SELECT *, CASE
            WHEN regexp_matches(postback_url, '{MACRO_RE}') OR regexp_matches(m, '[=/''"]\\{{[A-Za-z_]+\\}}')
                THEN 'unreplaced_macro'
            WHEN regexp_matches(postback_url, '{MISSING_PARAM_RE}') OR regexp_matches(m, '{MISSING_MSG_RE}')
                THEN 'missing_click_id'
            WHEN status_code IN (401, 403) OR regexp_matches(m, '{AUTH_RE}') THEN 'auth'
            WHEN status_code = 429 OR regexp_matches(m, '{RATE_RE}') THEN 'rate_limit'
            WHEN regexp_matches(m, '{DUPLICATE_RE}') THEN 'duplicate'
            WHEN regexp_matches(m, '{TIME_RE}') THEN 'time_window'
            WHEN status_code IS NULL OR status_code NOT BETWEEN 100 AND 599 THEN 'no_response'
            WHEN status_code BETWEEN 500 AND 599 THEN 'server_error'
            WHEN status_code BETWEEN 400 AND 499 THEN 'bad_request'
            ELSE 'other' END AS error_kind
        FROM e
        """
    )
    sig = "m"
    for pattern, replacement in SIGNATURE_STEPS:
        sig = f"regexp_replace({sig}, '{pattern}', '{replacement}', 'g')"
    signatures = con.execute(
        f"""
        WITH d AS (SELECT DISTINCT m FROM errs),
        s AS (SELECT m, nullif(left(trim({sig}), 200), '') AS signature FROM d)
        SELECT s.signature, count(*) AS errors, arg_min(e.error_message, e.postback_time) AS example
        FROM errs e JOIN s USING (m) GROUP BY s.signature ORDER BY errors DESC, signature LIMIT 10
        """
    ).fetchall()

    def names(id_col: str, name_col: str, entity: str) -> str:
        parts = []
        for kind, t in (
            ("visits", "visit_time"),
            ("clicks", "click_time"),
            ("conversions", "conversion_time"),
            ("postbacks", "postback_time"),
        ):
            cols = {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {src(kind)}").fetchall()}
            if id_col in cols and name_col in cols:
                parts.append(
                    f"SELECT {id_col} AS id, {name_col} AS name, {t} AS t FROM {src(kind)} "
                    f"WHERE {id_col} IS NOT NULL AND {name_col} IS NOT NULL"
                )
        parts.append(
            f"SELECT entity_id, entity_name, changed_at FROM {src('activity')} "
            f"WHERE entity_type = '{entity}' AND entity_id IS NOT NULL AND entity_name IS NOT NULL"
        )
        return f"(SELECT id, arg_max(name, t) AS name FROM ({' UNION ALL '.join(parts)}) GROUP BY id)"

    total = con.execute(
        "SELECT count(*), count(*) FILTER (is_error), count(*) FILTER (traffic_source_id IS NULL), max(postback_time) "
        "FROM pb"
    ).fetchone()
    assert total is not None
    by_ts = con.execute(
        f"""
        SELECT g.*, n.name, g.errors / g.postbacks AS error_rate FROM (
            SELECT traffic_source_id, count(*) AS postbacks, count(*) FILTER (is_error) AS errors
            FROM pb WHERE traffic_source_id IS NOT NULL GROUP BY ALL) g
        LEFT JOIN {names("traffic_source_id", "traffic_source_name", "traffic_source")} n
            ON g.traffic_source_id = n.id
        ORDER BY errors DESC, traffic_source_id
        """
    ).fetchall()
    by_int = con.execute(
        f"""
        SELECT g.*, n.name, g.errors / g.postbacks AS error_rate FROM (
            SELECT integration_id, count(*) AS postbacks, count(*) FILTER (is_error) AS errors
            FROM pb WHERE integration_id IS NOT NULL GROUP BY ALL) g
        LEFT JOIN {names("integration_id", "integration_name", "integration")} n ON g.integration_id = n.id
        ORDER BY errors DESC, integration_id
        """
    ).fetchall()
    kinds = con.execute("SELECT error_kind, count(*) FROM errs GROUP BY ALL ORDER BY 2 DESC, 1").fetchall()
    gaps = con.execute(
        f"""
        WITH conv AS (
            SELECT c.click_id, nullif(c.ct, '') AS _ct, nullif(c.txid, '') AS _tx,
                   v.click_id IS NOT NULL AS known
            FROM {src("conversions")} c
            LEFT JOIN (SELECT click_id FROM {src("visits")}) v ON c.click_id = v.click_id
        ), per_key AS (
            SELECT click_id, nullif(ct, '') AS _ct, count(*) AS n, count(*) FILTER (is_error) AS e
            FROM {src("postbacks")} GROUP BY ALL
        ), g AS (
            SELECT conv.*, coalesce(k.n, 0) AS n, coalesce(k.e, 0) AS e FROM conv
            LEFT JOIN per_key k ON conv.click_id = k.click_id AND conv._ct IS NOT DISTINCT FROM k._ct
        )
        SELECT count(*), count(*) FILTER (n > e), count(*) FILTER (n > 0 AND n = e), count(*) FILTER (n = 0),
               count(*) FILTER (NOT known),
               count(*) FILTER (NOT known AND (regexp_matches(click_id, '{MACRO_RE}')
                                               OR NOT regexp_full_match(click_id, '{UUID_RE}'))),
               (SELECT coalesce(sum(k - 1), 0) FROM (SELECT count(*) AS k FROM conv GROUP BY click_id, _ct, _tx))
        FROM g
        """
    ).fetchone()
    orphans = con.execute(
        f"""
        WITH keys AS (SELECT DISTINCT click_id, nullif(ct, '') AS _ct FROM {src("conversions")}),
        clicks AS (SELECT DISTINCT click_id FROM {src("conversions")}),
        o AS (SELECT p.click_id FROM pb p
              WHERE NOT EXISTS (SELECT 1 FROM keys k WHERE k.click_id IS NOT DISTINCT FROM p.click_id
                                AND k._ct IS NOT DISTINCT FROM nullif(p.ct, '')))
        SELECT count(*), count(*) FILTER (click_id IN (SELECT click_id FROM clicks)) FROM o
        """
    ).fetchone()
    seconds = time.perf_counter() - t0
    assert gaps is not None
    assert orphans is not None
    return {
        "seconds": seconds,
        "answers": {
            "total": total[0],
            "errors": total[1],
            "unattributed": total[2],
            "by_traffic_source": {(r[3] or r[0]): [r[1], r[2]] for r in by_ts},
            "by_integration": {r[0]: [r[1], r[2]] for r in by_int},
            "by_error_kind": dict(kinds),
            "gaps": _gap_dict(gaps, orphans),
        },
        "signatures": len(signatures),
    }


def _gap_dict(g: tuple[Any, ...], o: tuple[Any, ...]) -> dict[str, int]:
    conversions, ok, failed, not_posted, unknown, malformed, duplicates = (int(x) for x in g)
    return {
        "conversions": conversions,
        "posted_ok": ok,
        "posted_failed": failed,
        "not_posted": not_posted,
        "pending": 0,
        "orphan_postbacks": int(o[0]),
        "ct_mismatch": int(o[1]),
        "duplicate_conversions": duplicates,
        "unknown_click": unknown,
        "unknown_click_malformed": malformed,
    }


def diagnose_pandas(p: Params) -> Result:
    """The same questions in pandas over the store's current Parquet files (from the Delta log)."""
    import numpy as np
    import pandas as pd

    store = _store(p)
    t0 = time.perf_counter()
    files = _files(store)

    def read(kind: str, columns: list[str]) -> pd.DataFrame:
        return pd.read_parquet(files[kind], columns=columns)

    visits = read("visits", ["click_id", "traffic_source_id", "campaign_id", "traffic_source_name", "visit_time"])
    conv = read("conversions", ["click_id", "traffic_source_id", "campaign_id", "ct", "txid"])
    pb = read(
        "postbacks",
        [
            "postback_id",
            "click_id",
            "postback_time",
            "is_error",
            "status_code",
            "error_message",
            "postback_url",
            "ct",
            "integration_id",
            "traffic_source_id",
            "campaign_id",
            "integration_name",
            "traffic_source_name",
        ],
    )
    activity = read("activity", ["entity_type", "entity_id", "entity_name", "changed_at"])
    v = visits[["click_id", "traffic_source_id", "campaign_id"]].rename(
        columns={"traffic_source_id": "v_ts", "campaign_id": "v_cmp"}
    )
    c = (
        conv.groupby("click_id", dropna=True)[["traffic_source_id", "campaign_id"]]
        .min()
        .rename(columns={"traffic_source_id": "c_ts", "campaign_id": "c_cmp"})
        .reset_index()
    )
    e = pb.merge(v, on="click_id", how="left").merge(c, on="click_id", how="left")
    e["traffic_source_id"] = e["traffic_source_id"].fillna(e["v_ts"]).fillna(e["c_ts"])
    e["campaign_id"] = e["campaign_id"].fillna(e["v_cmp"]).fillna(e["c_cmp"])
    e["is_error"] = e["is_error"].fillna(False).astype(bool)

    errs = e[e["is_error"]].copy()
    m = errs["error_message"].fillna("")
    url = errs["postback_url"].fillna("")
    code = errs["status_code"]
    rules = [
        url.str.contains(MACRO_RE, regex=True) | m.str.contains(r"[=/'\"]\{[A-Za-z_]+\}", regex=True),
        url.str.contains(MISSING_PARAM_RE, regex=True) | m.str.contains(MISSING_MSG_RE, regex=True),
        code.isin([401, 403]) | m.str.contains(AUTH_RE, regex=True),
        (code == 429) | m.str.contains(RATE_RE, regex=True),
        m.str.contains(DUPLICATE_RE, regex=True),
        m.str.contains(TIME_RE, regex=True),
        ~code.between(100, 599).fillna(False).astype(bool),
        code.between(500, 599).fillna(False).astype(bool),
        code.between(400, 499).fillna(False).astype(bool),
    ]
    labels = [
        "unreplaced_macro",
        "missing_click_id",
        "auth",
        "rate_limit",
        "duplicate",
        "time_window",
        "no_response",
        "server_error",
        "bad_request",
    ]
    errs["error_kind"] = np.select([r.fillna(False).astype(bool).to_numpy() for r in rules], labels, default="other")
    distinct = pd.Series(m.unique())
    masked = distinct
    for pattern, replacement in SIGNATURE_STEPS:
        masked = masked.str.replace(pattern, replacement, regex=True)
    errs["signature"] = m.map(dict(zip(distinct, masked.str.strip().str.slice(0, 200), strict=True)))
    top = (
        errs.sort_values("postback_time")
        .groupby("signature")
        .agg(errors=("postback_id", "size"), example=("error_message", "first"))
        .sort_values("errors", ascending=False)
        .head(10)
    )

    def names(id_col: str, name_col: str, entity: str, frames: list[tuple[pd.DataFrame, str]]) -> pd.Series:
        parts = [f[[id_col, name_col, t]].set_axis(["id", "name", "t"], axis=1) for f, t in frames]
        act = activity[activity["entity_type"] == entity]
        parts.append(act[["entity_id", "entity_name", "changed_at"]].set_axis(["id", "name", "t"], axis=1))
        allp = pd.concat(parts).dropna(subset=["id", "name"])
        return allp.sort_values("t").groupby("id")["name"].last()

    def grouped(frame: pd.DataFrame, key: str, lookup: pd.Series) -> pd.DataFrame:
        g = frame.groupby(key).agg(postbacks=("is_error", "size"), errors=("is_error", "sum"))
        g["error_rate"] = g["errors"] / g["postbacks"]
        g["name"] = g.index.map(lookup)
        return g.sort_values(["errors"], ascending=False)

    ts_names = names(
        "traffic_source_id", "traffic_source_name", "traffic_source", [(visits, "visit_time"), (pb, "postback_time")]
    )
    int_names = names("integration_id", "integration_name", "integration", [(pb, "postback_time")])
    by_ts = grouped(e[e["traffic_source_id"].notna()], "traffic_source_id", ts_names)
    by_int = grouped(e[e["integration_id"].notna()], "integration_id", int_names)
    kinds = errs["error_kind"].value_counts()

    # gaps
    known = set(visits["click_id"].dropna())
    cv = conv.assign(
        _ct=conv["ct"].mask(conv["ct"] == ""),
        _tx=conv["txid"].mask(conv["txid"] == ""),
        known=conv["click_id"].isin(known),
    )
    per_key = (
        pb.assign(_ct=pb["ct"].mask(pb["ct"] == ""))
        .groupby(["click_id", "_ct"], dropna=False)
        .agg(n=("is_error", "size"), e=("is_error", "sum"))
        .reset_index()
    )
    g = cv.merge(per_key, on=["click_id", "_ct"], how="left")
    n, err = g["n"].fillna(0), g["e"].fillna(0)
    unknown = ~g["known"]
    cid = g["click_id"].fillna("")
    malformed = unknown & (cid.str.contains(MACRO_RE, regex=True) | ~cid.str.match(UUID_RE))
    duplicates = int(cv.duplicated(subset=["click_id", "_ct", "_tx"]).sum())
    keys = cv[["click_id", "_ct"]].drop_duplicates().assign(_hit=True)
    o = e.assign(_ct=e["ct"].mask(e["ct"] == "")).merge(keys, on=["click_id", "_ct"], how="left")
    o = o[o["_hit"].isna()]
    seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "answers": {
            "total": len(e),
            "errors": int(e["is_error"].sum()),
            "unattributed": int(e["traffic_source_id"].isna().sum()),
            "by_traffic_source": {
                (r["name"] or k): [int(r["postbacks"]), int(r["errors"])] for k, r in by_ts.iterrows()
            },
            "by_integration": {k: [int(r["postbacks"]), int(r["errors"])] for k, r in by_int.iterrows()},
            "by_error_kind": {k: int(x) for k, x in kinds.items()},
            "gaps": {
                "conversions": len(g),
                "posted_ok": int((n > err).sum()),
                "posted_failed": int(((n > 0) & (n == err)).sum()),
                "not_posted": int((n == 0).sum()),
                "pending": 0,
                "orphan_postbacks": len(o),
                "ct_mismatch": int(o["click_id"].isin(set(cv["click_id"])).sum()),
                "duplicate_conversions": duplicates,
                "unknown_click": int(unknown.sum()),
                "unknown_click_malformed": int(malformed.sum()),
            },
        },
        "signatures": len(top),
    }


# ------------------------------------------------------------------------- interactive
def _random_filter(rng: random.Random, values: dict[str, list[Any]], days: list[date], tz: str) -> Any:
    from cfanalytics.filters import LogFilter

    fields: dict[str, Any] = {"timezone": tz}
    for name in rng.sample(sorted(values), rng.randint(1, 3)):
        pool = values[name]
        fields[name] = rng.sample(pool, rng.randint(1, max(1, min(3, len(pool)))))
    if rng.random() < 0.5 and days:
        a, b = sorted(rng.sample(range(len(days)), 2)) if len(days) > 1 else (0, 0)
        fields["start"], fields["end"] = days[a], days[b]
    if rng.random() < 0.2:
        fields["errors_only"] = True
    return LogFilter(**fields)


def panel_kit(p: Params) -> Result:
    """Panel responsiveness: the enriched postbacks collected once, then random filter changes
    (``LogFilter.expr``) each followed by ``error_rates(by=["hour"])`` on the filtered frame."""
    import polars as pl

    from cfanalytics.diagnose import error_rates, postbacks
    from cfanalytics.filters import LogFilter

    store = _store(p)
    tz = store.timezone or "UTC"
    t0 = time.perf_counter()
    frame = postbacks(store, LogFilter()).collect()
    load = time.perf_counter() - t0
    values = {
        "traffic_sources": frame.get_column("traffic_source_id").drop_nulls().unique().sort().to_list(),
        "integrations": frame.get_column("integration_id").drop_nulls().unique().sort().to_list(),
        "status_classes": frame.get_column("status_class").drop_nulls().unique().sort().to_list(),
        "error_kinds": frame.get_column("error_kind").drop_nulls().unique().sort().to_list(),
        "cts": frame.get_column("ct").fill_null("").unique().sort().to_list(),
    }
    local = frame.get_column("postback_time").dt.convert_time_zone(tz).dt.date()
    lo, hi = local.min(), local.max()
    days: list[date] = []
    if isinstance(lo, date) and isinstance(hi, date):
        days = [lo + timedelta(days=i) for i in range((hi - lo).days + 1)]
    rng = random.Random(p.get("seed", 7))
    times: list[float] = []
    rows: list[int] = []
    for _ in range(int(p.get("changes", 50))):
        flt = _random_filter(rng, values, days, tz)
        t1 = time.perf_counter()
        filtered = frame.lazy().filter(flt.expr(frame.columns, time_column="postback_time", timezone=tz))
        out = error_rates(filtered, ["hour"], tz)
        times.append(time.perf_counter() - t1)
        rows.append(out.height)
    return {
        "seconds": statistics.median(times),
        "load_seconds": load,
        "p50": statistics.median(times),
        "p95": _quantile(times, 0.95),
        "max": max(times),
        "frame_rows": frame.height,
        "frame_mb": round(frame.estimated_size("mb"), 1),
        "mean_groups": statistics.mean(rows),
        "polars": pl.__version__,
    }


def doctor_kit(p: Params) -> Result:
    """First load of the postback doctor, as its notebook does it: ``postback_doctor(store)`` (default range, names,
    the base frame read, every chart and table built), then its widget tree rendered to a mime bundle; the
    modules the panel loads on first use are in the time (``plotly.io`` is not: the notebook imports it first).
    ``second_panel``: the same again in the same process; ``change_p50`` / ``change_p95``: the kernel's side of 20
    traffic-source filter changes (``doctor.set_filters``)."""
    import plotly.io  # the notebook's first cell imports it

    from cfanalytics.panels import postback_doctor

    del plotly
    store = _store(p)
    t0 = time.perf_counter()
    doctor = postback_doctor(store)
    doctor._repr_mimebundle_()
    seconds = time.perf_counter() - t0
    t1 = time.perf_counter()  # a second panel in the same process: the modules loaded, the store read again
    again = postback_doctor(store)
    again._repr_mimebundle_()
    second = time.perf_counter() - t1
    # the kernel's side of a filter change (what the browser measurement adds the page's to): tick one traffic
    # source, untick it, the next … through the panel's public setter
    sources = doctor.table_frame.get_column("traffic_source_id").drop_nulls().unique().sort().to_list()
    sources = sources or [None]
    times: list[float] = []
    for i in range(int(p.get("changes", 20))):
        chosen = [sources[(i // 2) % len(sources)]] if i % 2 == 0 and sources[0] is not None else []
        t2 = time.perf_counter()
        doctor.set_filters(traffic_sources=chosen)
        times.append(time.perf_counter() - t2)
    return {
        "seconds": seconds,
        "second_panel": second,
        "change_p50": statistics.median(times),
        "change_p95": _quantile(times, 0.95),
        "sources": len(sources),
        "loads": doctor.loads,
        "store_reads": doctor.store_reads,
    }


#: A filter change in the browser has settled when the page has not changed for this long (ms).
QUIET_MS: Final = 400

#: The postback doctor's status line ("12,345 postbacks · …") and the busy indicator, read in the page.
_STATUS_JS: Final = r"""() => Array.from(document.querySelectorAll('.widget-html-content'))
  .map(e => e.innerText.trim()).find(t => /^[\d,]+ postbacks ·/.test(t)) || null"""

#: In the page: time from a filter widget's change event to the moment the status line shows a new text and no
#: busy indicator is left (a MutationObserver checks on every change of the page).
_WATCH_JS: Final = (
    """() => {
  const status = ("""
    + _STATUS_JS
    + """);
  const w = window.__cfBench = {t0: null, t1: null, last: null, before: status()};
  document.addEventListener('change', () => { w.t0 = performance.now(); w.t1 = null; w.last = w.t0; }, true);
  const check = () => {
    if (w.t0 === null) return;
    w.last = performance.now();  // the page changed: the last change after t0 is when it settled (charts drawn)
    if (w.t1 !== null) return;
    const now = status();
    if (now && now !== w.before && !document.querySelector('.cf-busy')) { w.t1 = performance.now(); w.before = now; }
  };
  new MutationObserver(check).observe(document.body, {subtree: true, childList: true, characterData: true,
                                                       attributes: true});
}"""
)


def panel_browser(p: Params) -> Result:
    """The postback doctor in headless Chromium, served by Voila as ``tests/browser`` serves it (the notebook
    ``02_postback_doctor.ipynb`` on ``$CFANALYTICS_STORE``): the first load (page open → filters and a chart
    shown), then ``changes`` traffic-source filter changes (tick a source, untick it, the next …), each timed in
    the page from the checkbox's change event until the page has settled: the status line shows the new totals,
    the busy indicator is gone, and the last change of the page (charts and tables redrawn) is followed by
    :data:`QUIET_MS` without any (``p50`` / ``p95``; ``status_p50`` / ``status_p95``: until the status line only)."""
    import tempfile

    repo = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(repo))
    from playwright import sync_api

    from tests.browser.conftest import (
        CHROMIUM,
        CHROMIUM_ARGS,
        filter_choice,
        start_voila,
        stop_server,
    )

    changes = int(p.get("changes", 50))
    with tempfile.TemporaryDirectory(prefix="cf-bench-voila-") as tmp:
        server = start_voila(Path(tmp), Path(p["store"]))
        try:
            with sync_api.sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=list(CHROMIUM_ARGS), headless=True)
                try:
                    page = browser.new_page(viewport={"width": 1400, "height": 1000})
                    t0 = time.perf_counter()
                    page.goto(f"{server.url}/", timeout=600_000)
                    sources = filter_choice(page, "Traffic sources")
                    sources.wait_for(timeout=600_000)
                    page.locator(".js-plotly-plot").first.wait_for(state="attached", timeout=600_000)
                    page.wait_for_function(_STATUS_JS, timeout=600_000)
                    first_load = time.perf_counter() - t0
                    boxes = sources.locator(".widget-checkbox input[type=checkbox]")
                    count = boxes.count()
                    if count == 0:
                        raise RuntimeError("no traffic-source checkboxes in the page")
                    page.evaluate(_WATCH_JS)
                    times: list[float] = []
                    settled: list[float] = []
                    for i in range(changes):
                        box = boxes.nth((i // 2) % count)
                        page.evaluate("() => { window.__cfBench.t0 = null; window.__cfBench.t1 = null; }")
                        if i % 2 == 0:
                            box.check()
                        else:
                            box.uncheck()
                        page.wait_for_function("() => window.__cfBench.t1 !== null", timeout=600_000, polling="raf")
                        took = page.evaluate("() => window.__cfBench.t1 - window.__cfBench.t0")
                        times.append(float(took) / 1000)
                        # then until the page is quiet (no change for QUIET_MS): every chart and table redrawn
                        page.wait_for_function(
                            f"() => performance.now() - window.__cfBench.last >= {QUIET_MS}",
                            timeout=600_000,
                            polling=50,
                        )
                        done = page.evaluate("() => window.__cfBench.last - window.__cfBench.t0")
                        settled.append(max(float(done), float(took)) / 1000)
                finally:
                    browser.close()
        finally:
            stop_server(server)
    return {
        "seconds": statistics.median(settled),
        "first_load": first_load,
        "p50": statistics.median(settled),
        "p95": _quantile(settled, 0.95),
        "max": max(settled),
        "status_p50": statistics.median(times),
        "status_p95": _quantile(times, 0.95),
        "changes": len(times),
        "sources": count,
    }


def report_cli(p: Params) -> Result:
    """The whole ``cfanalytics report`` command as a scheduler runs it (a subprocess; wall time), optionally
    with ``--png DIR``; ``charts`` is the number of PNGs written."""
    import subprocess

    out = Path(p["out"])
    out.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "cfanalytics", "report", "--store", p["store"], "--out", str(out), "--json"]
    if p.get("png"):
        command += ["--png", p["png"]]
    t0 = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - t0
    if done.returncode not in (0, 3):  # 3: a --fail-on threshold (none given here)
        raise RuntimeError(f"cfanalytics report exited with {done.returncode}: {done.stderr[-500:]}")
    doc = json.loads(done.stdout)
    return {"seconds": seconds, "charts": len(doc.get("png") or []), "html_mb": round(out.stat().st_size / 2**20, 2)}


def sample_store(p: Params) -> Result:
    """The built-in sample account (``cfanalytics demo``'s: ``workspace.build_sample_store``) in ``folder``."""
    from cfanalytics.workspace import build_sample_store

    t0 = time.perf_counter()
    store, _account, result = build_sample_store(Path(p["folder"]))
    return {"seconds": time.perf_counter() - t0, "store": str(store.path), **result.totals()}


def lookup_kit(p: Params) -> Result:
    """Click-id lookup: a click's journey (visit, clicks, conversions, postbacks; the columns the event-logs
    panel shows) with :func:`cfanalytics.diagnose.journey.journey`, straight from the store (cold first, then warm):
    on a plain local store, the row groups that can hold the id read directly (``cfanalytics._lookup``)."""
    store = _store(p)
    return {
        **_time_journeys(store, p["click_ids"]),
        "files": {k: len(store.file_uris(k)) for k in ("visits", "postbacks")},
    }


class _OtherReader:
    """A reader that is not a ``LogStore`` (as a wrapper that counts or caches scans): the journey scans each table."""

    def __init__(self, store: Any) -> None:
        self.store = store

    @property
    def timezone(self) -> str | None:
        return self.store.timezone  # type: ignore[no-any-return]

    def scan(self, kind: str) -> Any:
        return self.store.scan(kind)

    def events(self) -> Any:
        return self.store.events()


def lookup_kit_scan(p: Params) -> Result:
    """The same lookups through another reader: ``scan_delta`` per table with a ``click_id == X`` filter (the path
    every lookup took before ``cfanalytics._lookup``, and still the path of wrapper readers and object storage)."""
    return _time_journeys(_OtherReader(_store(p)), p["click_ids"])


def _time_journeys(reader: Any, click_ids: list[str]) -> Result:
    from cfanalytics.diagnose.journey import journey

    times: list[float] = []
    found = 0
    for cid in click_ids:
        t0 = time.perf_counter()
        rows = journey(reader, cid)
        times.append(time.perf_counter() - t0)
        steps = rows.get_column("step").to_list()
        found += int(steps.count("visit") == 1 and "postback" in steps)
    warm = times[1:] or times
    return {
        "seconds": statistics.median(warm),
        "cold": times[0],
        "p50": statistics.median(warm),
        "p95": _quantile(warm, 0.95),
        "lookups": len(times),
        "found": found,
    }


def lookup_duckdb(p: Params) -> Result:
    """The same click-id lookups in DuckDB over the same Parquet files (listed once from the Delta log):
    per table, the journey's columns of the rows with that click id (DuckDB skips row groups by their
    statistics); cold first, then warm."""
    import duckdb

    from cfanalytics.diagnose.journey import JOURNEY_COLUMNS
    from cfanalytics.schemas import MAIN_TIME, polars_schema

    store = _store(p)
    con = duckdb.connect()
    queries = []
    for kind in ("visits", "clicks", "conversions", "postbacks"):
        known = polars_schema(kind)
        cols = [MAIN_TIME[kind], *(c for c in (*JOURNEY_COLUMNS, "is_error") if c in known and c != MAIN_TIME[kind])]
        listed = ", ".join("'" + f.replace("'", "''") + "'" for f in store.file_uris(kind))
        select = ", ".join(f'"{c}"' for c in cols)
        queries.append(
            f"SELECT {select} FROM read_parquet([{listed}], union_by_name = true, hive_partitioning = false) "
            "WHERE click_id = ?"
        )
    times: list[float] = []
    found = 0
    for cid in p["click_ids"]:
        t0 = time.perf_counter()
        rows = [con.execute(q, [cid]).fetchall() for q in queries]
        times.append(time.perf_counter() - t0)
        found += int(len(rows[0]) == 1 and len(rows[3]) > 0)
    warm = times[1:] or times
    return {
        "seconds": statistics.median(warm),
        "cold": times[0],
        "p50": statistics.median(warm),
        "p95": _quantile(warm, 0.95),
        "lookups": len(times),
        "found": found,
    }


def maintain_kit(p: Params) -> Result:
    """``LogStore.maintain``: click-id layout of visits, clicks, conversions and postbacks, compaction, vacuum."""
    store = _store(p)
    t0 = time.perf_counter()
    out = store.maintain()
    seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "partitions_sorted": sum(int(v.get("sorted", 0)) for v in out.values()),
        "files_replaced": sum(int(v.get("compacted", 0)) for v in out.values()),
    }


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = q * (len(ordered) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


STEPS: Final[dict[str, Callable[[Params], Result]]] = {
    "ingest_kit": ingest_kit,
    "ingest_duckdb_bare": ingest_duckdb_bare,
    "ingest_polars_bare": ingest_polars_bare,
    "ingest_duckdb": ingest_duckdb,
    "ingest_pandas": ingest_pandas,
    "diagnose_kit": diagnose_kit,
    "diagnose_duckdb": diagnose_duckdb,
    "diagnose_pandas": diagnose_pandas,
    "incidents_kit": incidents_kit,
    "panel_kit": panel_kit,
    "doctor_kit": doctor_kit,
    "panel_browser": panel_browser,
    "report_cli": report_cli,
    "sample_store": sample_store,
    "lookup_kit": lookup_kit,
    "lookup_kit_scan": lookup_kit_scan,
    "lookup_duckdb": lookup_duckdb,
    "maintain_kit": maintain_kit,
}


def launch(step: str, params: str) -> int:
    """Run ``step`` in a child process and print one JSON line: its exit code, output and resource use.

    The step is forked from this small process rather than from the harness, because Linux
    carries a parent's peak RSS over to a forked child (``ru_maxrss`` survives ``execve``).
    While it runs, ``/proc/PID/status`` is sampled every 0.2 s for the split of the resident
    set into anonymous memory and mapped files (Parquet files a reader maps count as RSS too).
    """
    import resource
    import subprocess
    import tempfile

    t0 = time.perf_counter()
    peaks = {"RssAnon": 0, "RssFile": 0}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([sys.executable, __file__, step, params], stdout=out, stderr=err)
        status = Path(f"/proc/{proc.pid}/status")
        while proc.poll() is None:
            try:
                for line in status.read_text().splitlines():
                    key, _, value = line.partition(":")
                    if key in peaks:
                        peaks[key] = max(peaks[key], int(value.split()[0]))
            except (OSError, ValueError, IndexError):
                pass
            time.sleep(0.2)
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # the one child this process had
    lines = stdout.strip().splitlines()
    report = {
        "returncode": proc.returncode,
        "result": json.loads(lines[-1]) if proc.returncode == 0 and lines else None,
        "stderr": stderr[-2000:],
        "wall": wall,
        "cpu": usage.ru_utime + usage.ru_stime,
        "maxrss_kb": usage.ru_maxrss,
        "rss_anon_kb": peaks["RssAnon"],
        "rss_file_kb": peaks["RssFile"],
    }
    print(json.dumps(report))
    return 0


def main(argv: list[str]) -> int:
    """``STEP PARAMS``: run one step and print its result as one JSON line; ``--launch STEP PARAMS``: see
    :func:`launch`."""
    if argv and argv[0] == "--launch":
        return launch(argv[1], argv[2] if len(argv) > 2 else "{}")
    name, params = argv[0], json.loads(argv[1]) if len(argv) > 1 else {}
    result = STEPS[name](params)
    print(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
