"""Raw string batches → canonical, typed rows with flags, and a quarantine split.

One :class:`Normalizer` serves one input. It turns each raw batch (all strings,
plus ``_record``) into, per kind, a frame of canonical columns (docs/contract.md §2) and a
frame of quarantined records (docs/contract.md §3). Parsing lives here: times and zones
(DST fall-back and spring-forward), booleans, numbers (decimal comma), integers,
countries, activity vocabularies; and the flags of click-id macros, negative payouts
and error/status mismatches. The rules a typed value must obey (nullability, time
window, ranges, patterns, allowed values) live in the pandera value model of each kind
(:func:`cfanalytics.schemas.value_model`): every batch is validated against it (lazily,
all failures collected) and its failure cases decide. A required value the model
rejects quarantines its record (``missing_required`` when the text was empty, else
``unparseable_required``, the detail naming the column and the check); an optional one
is nulled and flagged, its raw text kept in ``_raw``.

>>> import pyarrow as pa
>>> from cfanalytics.columns import resolve
>>> resolution = resolve(["Click ID", "Visit Time", "Campaign ID"])
>>> n = Normalizer(resolution, timezone="America/New_York", source="v.csv")
>>> batch = pa.RecordBatch.from_pydict({"Click ID": ["a"], "Visit Time": ["2026-11-20 00:00:04"],
...     "Campaign ID": ["c1"], "_record": [2]})
>>> out = n.normalize(batch)["visits"]
>>> out.rows["visit_time"].to_list()[0].isoformat()
'2026-11-20T05:00:04+00:00'
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Final

import polars as pl
import pyarrow as pa

from cfanalytics.columns import Resolution
from cfanalytics.schemas import (
    ACTION_WORDS,
    BOOL,
    ENTITY_WORDS,
    FLOAT,
    INT,
    KIND_OF_EVENT_TYPE,
    MAIN_TIME,
    STR,
    TIME,
    Column,
    columns,
    flags,
    row_failures,
)
from cfanalytics.values import (
    EPOCH,
    MACRO_PATTERN,
    NAIVE_FORMATS,
    OFFSET,
    OFFSET_FORMATS,
    UUID_PATTERN,
    epoch_expr,
    iso_text,
    naive_expr,
    offset_expr,
    parse_bool_expr,
    parse_country_expr,
    parse_float_expr,
    parse_int_expr,
    parse_number_expr,
    time_class_expr,
    vocabulary_expr,
)

#: Candidates of time-format detection (:meth:`Normalizer._time_format`), in order of preference.
_TIME_FORMATS: Final = ("epoch", *OFFSET_FORMATS, *NAIVE_FORMATS, "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M")
_DETECT_SAMPLE: Final = 100
#: Parsers of columns by name, then by type (:meth:`Normalizer._typed`); text columns have none.
_PARSE_BY_NAME: Final[dict[str, Callable[[pl.Expr], pl.Expr]]] = {
    "country": parse_country_expr,
    "entity_type": lambda s: vocabulary_expr(s, ENTITY_WORDS, "other"),
    "action": lambda s: vocabulary_expr(s, ACTION_WORDS, "other"),
}
_PARSE_BY_TYPE: Final[dict[pl.DataType, Callable[[pl.Expr], pl.Expr]]] = {
    BOOL: parse_bool_expr,
    INT: parse_int_expr,
    FLOAT: parse_float_expr,
}
#: The check pandera reports for a null in a column that may not hold one.
_NOT_NULLABLE: Final = "not_nullable"
_FLAG_OF_COLUMN: Final = {
    "status_code": "flag_invalid_status_code",
    "payout": "flag_invalid_payout",
    "country": "flag_invalid_country",
}


@dataclass
class Normalized:
    """One kind's share of a normalized batch: stored-to-be rows and quarantined records."""

    rows: pl.DataFrame
    quarantine: pl.DataFrame


def _empty_quarantine() -> pl.DataFrame:
    return pl.DataFrame(schema={"record": INT, "reason": STR, "detail": STR, "raw": STR, "kind": STR})


@dataclass
class _FoldState:
    """Carry-over for resolving DST fall-back times by file order across batches."""

    direction: int = 0  # +1 ascending file, -1 descending, 0 unknown yet
    last_local: dict[date, datetime] = field(default_factory=dict)
    wrapped: dict[date, bool] = field(default_factory=dict)


class Normalizer:
    """Normalizes the batches of one input (see module docstring)."""

    def __init__(
        self,
        resolution: Resolution,
        *,
        timezone: str,
        source: str,
        delimiter: str | None = None,
        only_kind: str | None = None,
        ip_mode: str = "raw",
        ip_salt: str = "",
    ) -> None:
        self.resolution = resolution
        self.ip_mode = ip_mode
        self.ip_salt = ip_salt
        self.timezone = timezone
        self.source = source
        self.delimiter = delimiter
        self.only_kind = only_kind
        self.skipped = 0
        self.local_times = 0  # values read as local times (no UTC offset, not epoch) so far
        self.decimal_comma: bool | None = None
        self.derived_postback_id = resolution.kind == "postbacks" and "postback_id" not in resolution.canonical.values()
        self._folds: dict[str, _FoldState] = {}
        self._time_formats: dict[str, str] = {}  # "<kind>.<column>" → detected format
        self._event_columns = set(resolution.canonical.values()) - {"event_type"}
        self._validated: set[str] = set()  # kinds whose first batch pandera validated in full

    # ----------------------------------------------------------------- driver
    @staticmethod
    def frame(batch: pa.RecordBatch) -> pl.DataFrame:
        """A raw batch as a Polars frame (stateless: a reader thread may call it ahead of :meth:`normalize`)."""
        raw = pl.from_arrow(batch)
        assert isinstance(raw, pl.DataFrame)
        return raw.with_columns(pl.col("_record").cast(INT))

    def normalize(self, batch: pa.RecordBatch | pl.DataFrame) -> dict[str, Normalized]:
        """Normalize one raw batch; returns ``{kind: Normalized}`` for the kinds it holds.

        The quarantine frames' ``raw`` (JSON of the record's raw columns, see
        :func:`raw_records`) is built for the quarantined records only.
        """
        raw = batch if isinstance(batch, pl.DataFrame) else self.frame(batch)
        frame = raw.select(
            pl.col("_record"),
            *(pl.col(r).alias(c) for r, c in self.resolution.canonical.items()),
            *(pl.col(r).alias(c) for r, c in self.resolution.extras.items()),
        )
        if self.resolution.kind != "events":
            out = {self.resolution.kind: self._normalize_kind(frame, self.resolution.kind)}
        else:
            out = self._split_events(frame)
        return _fill_raw(out, raw)

    def _split_events(self, frame: pl.DataFrame) -> dict[str, Normalized]:
        et = pl.col("event_type").cast(STR).str.strip_chars().str.to_lowercase()
        frame = frame.with_columns(
            et.str.replace(r"s$", "").str.replace_all(r"[^a-z]", "").alias("_event"),
        )
        out: dict[str, Normalized] = {}
        known = frame.get_column("_event").is_in(list(KIND_OF_EVENT_TYPE)).fill_null(False)
        unknown = frame.filter(~known)
        q = unknown.select(
            "_record",
            pl.lit("unknown_event_type").alias("reason"),
            pl.concat_str(
                [
                    pl.lit("event type "),
                    pl.col("event_type").fill_null("").str.slice(0, 80).map_elements(repr, return_dtype=STR),
                    pl.lit(" is not visit, click or conversion"),
                ]
            ).alias("detail"),
            pl.lit(None, STR).alias("raw"),
            pl.lit(None, STR).alias("kind"),
        )
        for event, kind in KIND_OF_EVENT_TYPE.items():
            part = frame.filter(pl.col("_event") == event).drop("_event", "event_type")
            if self.only_kind is not None and kind != self.only_kind:
                self.skipped += part.height
                continue
            out[kind] = self._normalize_kind(part, kind)
        if q.height:
            out["events"] = Normalized(rows=pl.DataFrame(), quarantine=q)
        return out

    # ----------------------------------------------------------- one kind
    def _normalize_kind(self, frame: pl.DataFrame, kind: str) -> Normalized:
        if kind == "activity" and "action" in frame.columns and "action_raw" not in frame.columns:
            frame = frame.with_columns(pl.col("action").cast(STR).str.strip_chars().alias("action_raw"))
        present = set(frame.columns)
        cols = columns(kind)
        typed: dict[str, pl.Expr] = {}
        empties: dict[str, pl.Expr] = {}  # the raw text of the column is empty (or the column is absent)
        stripped: list[str] = []  # text columns whose stripped text is put in __v_<col> first
        frame = self._ensure_strings(frame, [c.name for c in cols if c.name in present])
        frame = self._parse_times(frame, kind, [c.name for c in cols if c.dtype == TIME and c.name in present])
        for col in cols:
            name = col.name
            if name not in present:
                continue
            value, empty, strip = self._typed(frame, col)
            if strip:
                stripped.append(name)
            typed[name] = value
            empties[name] = empty
        # Typed values (``__v_<col>``) once for all rows; the model's checks judge them.
        frame = frame.with_columns(pl.col(n).str.strip_chars().alias(f"__v_{n}") for n in stripped)
        frame = frame.with_columns(v.alias(f"__v_{n}") for n, v in typed.items())
        broken = self._model_failures(frame, kind, typed)
        frame = frame.with_columns(broken.values())
        # Quarantine: a required value the model rejects (null or failing a check); the first such
        # column of a row names it, with the check (reason and detail on those rows only).
        bad_required = [c.name for c in cols if c.required and c.name in broken]
        bad = pl.any_horizontal([pl.col(f"__rule_{n}").is_not_null() for n in bad_required]) if bad_required else None
        frame = frame.with_columns((pl.lit(False) if bad is None else bad).alias("_bad"))
        clean = bad is None
        reason = pl.lit(None, STR)
        detail = pl.lit(None, STR)
        for name in reversed(bad_required):
            src = self.resolution.source_of(name) or name
            label = name if src == name else f"{name} ({src})"
            shown = pl.col(name).cast(STR).str.slice(0, 80) if name in present else pl.lit("")
            rule = pl.col(f"__rule_{name}")
            missing = rule.is_not_null() & empties.get(name, pl.lit(True))
            reason = (
                pl.when(missing)
                .then(pl.lit("missing_required"))
                .when(rule.is_not_null())
                .then(pl.lit("unparseable_required"))
                .otherwise(reason)
            )
            detail = (
                pl.when(missing)
                .then(pl.lit(f"{label}: missing"))
                .when(rule == _NOT_NULLABLE)
                .then(pl.concat_str([pl.lit(f"{label}: cannot parse '"), shown, pl.lit("'")]))
                .when(rule.is_not_null())
                .then(pl.concat_str([pl.lit(f"{label}: '"), shown, pl.lit(f"' fails the {kind} model's check "), rule]))
                .otherwise(detail)
            )
        quarantined = (frame.clear() if clean else frame.filter(pl.col("_bad"))).select(
            "_record",
            reason.alias("reason"),
            detail.alias("detail"),
            pl.lit(None, STR).alias("raw"),
            pl.lit(kind).alias("kind"),
        )
        # Optional values that do not parse, or that the model rejects: nulled and flagged.
        nulled: dict[str, pl.Expr] = {}
        for col in cols:
            name = col.name
            if col.required or name not in typed or (col.dtype == STR and name not in broken):
                continue
            unparsed = ~empties[name] & pl.col(f"__v_{name}").is_null()
            nulled[name] = unparsed | pl.col(f"__rule_{name}").is_not_null() if name in broken else unparsed
        good = frame if clean else frame.filter(~pl.col("_bad"))
        # Flags of nulled optional values, raw values into _raw (computed on the raw text).
        nulled_flags: dict[str, pl.Expr] = {}
        for name, is_nulled in nulled.items():
            flag = _FLAG_OF_COLUMN.get(name, "flag_invalid_value")
            nulled_flags[flag] = nulled_flags.get(flag, pl.lit(False)) | is_nulled.fill_null(False)
        raw_parts = [
            pl.when(is_nulled).then(
                pl.struct(pl.col(name).alias(name)).struct.json_encode().str.slice(1, None).str.head(-1)
            )
            for name, is_nulled in nulled.items()
        ]
        raw_expr = (
            pl.concat_str([pl.lit("{"), pl.concat_str(raw_parts, separator=",", ignore_nulls=True), pl.lit("}")])
            if raw_parts
            else pl.lit(None, STR)
        )
        rows = good.with_columns(*(e.alias(f) for f, e in nulled_flags.items()), raw_expr.alias("_raw"))
        rows = rows.with_columns(
            (
                pl.when(pl.col(f"__rule_{n}").is_null()).then(pl.col(f"__v_{n}")) if n in broken else pl.col(f"__v_{n}")
            ).alias(n)
            for n in typed
        )
        rows = rows.with_columns(pl.when(pl.col("_raw") != "{}").then(pl.col("_raw")).alias("_raw"))
        rows = rows.with_columns(**self._value_flags(rows, kind, set(nulled_flags)))
        return Normalized(rows=self._finish(rows, kind), quarantine=quarantined)

    def _model_failures(self, frame: pl.DataFrame, kind: str, typed: Collection[str]) -> dict[str, pl.Series]:
        """The value model's verdict on a batch's typed values: ``{column: __rule_<column>}`` for the columns
        with a failure, each the name of the first check a row fails (null where it passes).

        Runs :func:`cfanalytics.schemas.row_failures` (pandera, lazy: every failure; the model's checks
        as Polars expressions first after the first batch) on the typed values; required columns the
        input lacks are validated as nulls (the derived postback id aside).
        """
        derived = ("postback_id",) if kind == "postbacks" and "postback_id" not in typed else ()
        absent = [c for c in columns(kind) if c.required and c.name not in typed and c.name not in derived]
        values = frame.select(
            *(pl.col(f"__v_{n}").alias(n) for n in typed), *(pl.lit(None, c.dtype).alias(c.name) for c in absent)
        )
        # pandera validates the first batch of each kind in full (and the expressions derived from the
        # model must agree with it); later batches by those expressions, pandera naming the failures.
        cases = row_failures(values, kind, without=derived, full=kind not in self._validated)
        self._validated.add(kind)
        if cases.height == 0:
            return {}
        if cases.get_column("index").null_count():
            whole = cases.filter(pl.col("index").is_null()).row(0, named=True)
            raise AssertionError(f"{kind}: the normalised frame breaks its model: {whole}")  # a bug, not bad input
        first = cases.group_by("column", "index", maintain_order=True).agg(pl.col("check").first())
        out: dict[str, pl.Series] = {}
        for (name,), part in first.group_by("column", maintain_order=True):
            rule = pl.Series(f"__rule_{name}", [None] * frame.height, dtype=STR)
            out[str(name)] = rule.scatter(part.get_column("index"), part.get_column("check"))
        return out

    def _typed(self, frame: pl.DataFrame, col: Column) -> tuple[pl.Expr, pl.Expr, bool]:
        """How one column is parsed: its typed value, its "empty" test, and whether its stripped
        text (``__v_<col>``) is computed first. By name (:data:`_PARSE_BY_NAME`), then by type
        (:data:`_PARSE_BY_TYPE`); other text is stripped, ``""`` → null."""
        name, s = col.name, pl.col(col.name)
        empty = s.is_null() | (s.str.strip_chars() == "")
        if col.dtype == TIME:
            return pl.col(f"__t_{name}"), empty, False
        if name == "payout":
            return self._parse_payout(frame, s), empty, False
        if name == "status_code":  # "0" means no response: empty (null), not unparseable
            no_response = s.str.strip_chars().str.replace(r"\.0+$", "") == "0"
            return pl.when(~no_response).then(parse_int_expr(s)), empty | no_response, False
        text = pl.col(f"__v_{name}")
        if name == "ip":
            return self._ip(pl.when(text != "").then(text)), empty, True
        parse = _PARSE_BY_NAME.get(name) or _PARSE_BY_TYPE.get(col.dtype)
        if parse is not None:
            return parse(s), empty, False
        return pl.when(text != "").then(text), text.is_null(), True  # the same empty test, on the text computed once

    def _time_cols(self, frame: pl.DataFrame) -> list[str]:
        return [c[len("__amb_") :] for c in frame.columns if c.startswith("__amb_")]

    def _value_flags(self, rows: pl.DataFrame, kind: str, done: set[str]) -> dict[str, pl.Expr]:
        """Flags judged on typed values (all flags not in ``done`` default to false)."""
        present = set(rows.columns)
        out: dict[str, pl.Expr] = {f: pl.lit(False) for f in flags(kind) if f not in done}
        if "click_id" in present and "flag_click_id_macro" in out:
            cid = pl.col("click_id")
            macro = cid.str.contains(MACRO_PATTERN).fill_null(False)
            out["flag_click_id_macro"] = macro
            out["flag_click_id_malformed"] = ~macro & ~cid.str.contains(UUID_PATTERN).fill_null(False)
        if kind == "conversions" and "payout" in present:
            out["flag_negative_payout"] = (pl.col("payout") < 0).fill_null(False)
        if kind == "postbacks" and "status_code" in present:
            sc = pl.col("status_code")
            err = pl.col("is_error")
            out["flag_error_status_mismatch"] = ((err & sc.is_between(200, 299)) | (~err & (sc >= 400))).fill_null(
                False
            )
        amb = [pl.col(f"__amb_{t}") == 1 for t in self._time_cols(rows)]
        shift = [pl.col(f"__amb_{t}") == 2 for t in self._time_cols(rows)]
        if amb:
            out["flag_ambiguous_time"] = pl.any_horizontal(amb).fill_null(False)
            out["flag_shifted_time"] = pl.any_horizontal(shift).fill_null(False)
        if kind == "postbacks":
            out["flag_derived_postback_id"] = pl.lit(self.derived_postback_id)
        return out

    def _finish(self, rows: pl.DataFrame, kind: str) -> pl.DataFrame:
        """Select canonical (typed), flags, extras; add ``date``; default ``is_filtered``."""
        main = MAIN_TIME[kind]
        schema = {c.name: c.dtype for c in columns(kind)}
        extras = [c for c in self.resolution.extras.values() if c in rows.columns]
        # Event-log columns of another kind (a conversion's payout on a visit row): kept as text;
        # the commit drops those that stay empty over the whole input.
        foreign = sorted(c for c in self._event_columns if c in rows.columns and c not in schema)
        out = rows.select(
            "_record",
            *(pl.col(c) if c in rows.columns else pl.lit(None, dtype).alias(c) for c, dtype in schema.items()),
            *(pl.col(f).cast(BOOL).alias(f) for f in flags(kind)),
            pl.col("_raw"),
            *(pl.col(e).cast(STR) for e in extras),
            *(pl.when(pl.col(c).cast(STR).str.strip_chars() != "").then(pl.col(c).cast(STR)).alias(c) for c in foreign),
        ).with_columns(pl.col(main).dt.date().alias("date"))
        if kind in ("visits", "clicks"):
            if "is_filtered" in out.columns:
                out = out.with_columns(pl.col("is_filtered").fill_null(False))
            else:
                out = out.with_columns(pl.lit(False).alias("is_filtered"))
        return out

    # ------------------------------------------------------------- values
    def _ip(self, ip: pl.Expr) -> pl.Expr:
        """IP addresses as the store keeps them: raw, masked (/24, /48) or hashed (salted xxh3)."""
        from cfanalytics.redaction import mask_ip_expr

        if self.ip_mode == "masked":
            return mask_ip_expr(ip)
        if self.ip_mode == "hashed":
            return hash_ip_expr(ip, self.ip_salt)
        return ip

    def _ensure_strings(self, frame: pl.DataFrame, names: list[str]) -> pl.DataFrame:
        return frame.with_columns(pl.col(n).cast(STR) for n in names if frame.schema[n] != STR)

    def _parse_payout(self, frame: pl.DataFrame, s: pl.Expr) -> pl.Expr:
        if self.decimal_comma is None:
            vals = frame.select(s.str.strip_chars()).to_series().drop_nulls()
            vals = vals.filter(vals != "")
            if vals.len():
                self.decimal_comma = bool(
                    self.delimiter == ";"
                    and vals.str.contains(r"^-?\d+(,\d+)?$").all()
                    and vals.str.contains(",").any()
                )
        return parse_number_expr(s.str.strip_chars(), decimal_comma=bool(self.decimal_comma), finite=False)

    def _parse_times(self, frame: pl.DataFrame, kind: str, names: list[str]) -> pl.DataFrame:
        """Add ``__t_<col>`` (UTC) and ``__amb_<col>`` (0 ok, 1 ambiguous, 2 shifted) per time column.

        Each value is classed as epoch, with offset, or naive local (docs/contract.md §2) and
        parsed by the first format of its class that fits. An instant is a time of years
        1–9999 (what Python, and pandera's failure cases, can hold); whether it is a log time
        is the model's time-window check. The format of a column
        is detected once per input (:meth:`_time_format`) and tried alone; the
        rows it leaves unparsed get every format, so results do not depend on it.
        """
        for name in names:
            key = f"{kind}.{name}"
            s = pl.col(name).cast(STR).str.strip_chars()
            fmt = self._time_format(frame, name, key)
            all_naive = False  # every row of class 3 (naive local)
            if fmt is None:
                frame = frame.with_columns(**_time_parts(s))
            else:
                frame, all_naive = self._time_parts_detected(frame, s, fmt, key)
            frame = self._localize(frame, key)
            instant = (
                pl.when(pl.col("__cls") == 1)
                .then(pl.col("__epoch"))
                .when(pl.col("__cls") == 2)
                .then(pl.col("__offset"))
                .otherwise(pl.col("__local"))
            )
            amb = pl.when(pl.col("__cls") == 3).then(pl.col("__amb")).otherwise(pl.lit(0, pl.Int8))
            if all_naive:
                instant, amb = pl.col("__local"), pl.col("__amb")
            frame = frame.with_columns(
                pl.when(instant.dt.year().is_between(1, 9999)).then(instant).alias(f"__t_{name}"),
                amb.alias(f"__amb_{name}"),
            ).drop("__cls", "__epoch", "__offset", "__naive", "__local", "__amb")
        return frame

    def _time_format(self, frame: pl.DataFrame, name: str, key: str) -> str | None:
        """The detected format of a time column (``"epoch"`` or a strptime format), or ``None``.

        Detected once per input from the first non-empty values: the format that
        parses most of them (earliest in :data:`_TIME_FORMATS` on ties). ``None``
        until a batch has a value any format parses.
        """
        if key in self._time_formats:
            return self._time_formats[key]
        s = pl.col(name).cast(STR).str.strip_chars()
        sample = frame.select(s.filter(s.is_not_null() & (s != "")).head(_DETECT_SAMPLE)).to_series()
        if sample.len() == 0:
            return None
        hits = pl.DataFrame({"v": sample}).select(
            _detected_parts(pl.col("v"), f)["__ok"].sum().alias(f) for f in _TIME_FORMATS
        )
        best = max(_TIME_FORMATS, key=lambda f: (hits.get_column(f)[0], -_TIME_FORMATS.index(f)))
        if hits.get_column(best)[0] == 0:
            return None
        self._time_formats[key] = best
        return best

    def _time_parts_detected(self, frame: pl.DataFrame, s: pl.Expr, fmt: str, key: str) -> tuple[pl.DataFrame, bool]:
        """:func:`_time_parts` by the detected format; the rows it misses get the full parse.

        Also tells whether every row is of class 3 (naive local).
        """
        frame = frame.with_columns(**_detected_parts(s, fmt))
        miss = frame.get_column("__ok").not_().arg_true()
        frame = frame.drop("__ok")
        if miss.len() == 0:
            return frame, fmt not in OFFSET_FORMATS and fmt != "epoch"
        full = frame.select(s.gather(miss)).select(**_time_parts(pl.first()))
        frame = frame.with_columns(
            frame.get_column(c).clone().scatter(miss, full.get_column(c))
            for c in ("__cls", "__epoch", "__offset", "__naive")
        )
        empty = frame.select((s.is_null() | (s == "")).sum()).item()
        if 2 * miss.len() > frame.height - empty:
            del self._time_formats[key]  # most values are of another format now: detect again
        return frame, False

    def _localize(self, frame: pl.DataFrame, key: str) -> pl.DataFrame:
        """Naive local times → UTC in the account zone, with DST rules (docs/contract.md §2).

        One conversion for all rows; the earlier/later/shifted readings are only
        computed for the few ambiguous or non-existent local times.
        """
        naive = pl.col("__naive")
        self.local_times += int(frame.select(naive.is_not_null().sum()).item())
        sure = naive.dt.replace_time_zone(self.timezone, ambiguous="null", non_existent="null").dt.convert_time_zone(
            "UTC"
        )
        frame = frame.with_columns(sure.alias("__early"))
        odd = frame.select((naive.is_not_null() & pl.col("__early").is_null()).arg_true()).to_series()
        if odd.len() == 0:
            frame = frame.with_columns(pl.col("__early").alias("__late"), pl.lit(0, pl.Int8).alias("__amb"))
            self._fold_order(frame, key)  # learns the column's direction
            return frame.with_columns(pl.col("__early").alias("__local")).drop("__early", "__late")
        sub = frame.select(naive.gather(odd))
        early = naive.dt.replace_time_zone(self.timezone, ambiguous="earliest", non_existent="null")
        late = naive.dt.replace_time_zone(self.timezone, ambiguous="latest", non_existent="null")
        shifted = (naive - pl.duration(hours=12)).dt.replace_time_zone(
            self.timezone, ambiguous="earliest", non_existent="null"
        ) + pl.duration(hours=12)
        sub = sub.select(
            early.dt.convert_time_zone("UTC").alias("__early"),
            late.dt.convert_time_zone("UTC").alias("__late"),
            shifted.dt.convert_time_zone("UTC").alias("__shifted"),
        )
        frame = frame.with_columns(
            pl.col("__early").alias("__late"), pl.lit(None, pl.Datetime("us", "UTC")).alias("__shifted")
        )
        frame = frame.with_columns(
            frame.get_column(c).clone().scatter(odd, sub.get_column(c)) for c in ("__early", "__late", "__shifted")
        )
        frame = frame.with_columns(
            pl.when(naive.is_null())
            .then(pl.lit(0, pl.Int8))
            .when(pl.col("__early").is_null())
            .then(pl.lit(2, pl.Int8))
            .when(pl.col("__early") != pl.col("__late"))
            .then(pl.lit(1, pl.Int8))
            .otherwise(pl.lit(0, pl.Int8))
            .alias("__amb")
        )
        late_mask = self._fold_order(frame, key)
        return frame.with_columns(
            pl.when(pl.col("__amb") == 2)
            .then(pl.col("__shifted"))
            .when((pl.col("__amb") == 1) & pl.Series(late_mask))
            .then(pl.col("__late"))
            .otherwise(pl.col("__early"))
            .alias("__local")
        ).drop("__early", "__late", "__shifted")

    def _fold_order(self, frame: pl.DataFrame, key: str) -> list[bool]:
        """For DST fall-back rows, pick the later instant by file order when the column is monotonic."""
        height = frame.height
        late = [False] * height
        amb_idx = frame.select(pl.arg_where(pl.col("__amb") == 1)).to_series().to_list()
        state = self._folds.setdefault(key, _FoldState())
        if state.direction == 0:
            early = frame.get_column("__early").drop_nulls().dt.epoch("us")
            if early.len() >= 2:
                state.direction = 1 if early[-1] >= early[0] else -1
        if not amb_idx:
            return late
        naive = frame.get_column("__naive").to_list()
        direction = state.direction or 1
        for i in amb_idx:
            local = naive[i]
            fold = local.date()
            last = state.last_local.get(fold)
            if last is not None and (local - last).total_seconds() * direction < 0:
                state.wrapped[fold] = True
            state.last_local[fold] = local
            wrapped = state.wrapped.get(fold, False)
            late[i] = wrapped if direction > 0 else not wrapped
        # Monotonic check: when the resolved column is not ordered, use the earlier instant.
        resolved = (
            frame.select(pl.when(pl.Series(late)).then(pl.col("__late")).otherwise(pl.col("__early")))
            .to_series()
            .drop_nulls()
        )
        diffs = resolved.diff().drop_nulls().dt.total_microseconds()
        ordered = bool((diffs >= 0).all()) if direction > 0 else bool((diffs <= 0).all())
        return late if ordered else [False] * height


def raw_record_frame(batch: pa.RecordBatch | pl.DataFrame, records: Collection[int]) -> pl.DataFrame:
    """``_record`` and ``raw`` (JSON object of all raw columns) for the rows of a raw batch in ``records``.

    The JSON is Polars' ``struct.json_encode`` of the batch's columns other than
    ``_record``, in batch order (``{}`` when there are none); rows come in batch order.

    >>> b = pa.RecordBatch.from_pydict({"Click ID": ["a", None], "Payout": ["1,5", "x"], "_record": [2, 3]})
    >>> raw_record_frame(b, {3}).rows()
    [(3, '{"Click ID":null,"Payout":"x"}')]
    """
    wanted = sorted({int(r) for r in records})
    if isinstance(batch, pa.RecordBatch):  # pick the rows before converting the whole batch
        import pyarrow.compute as pc

        col = batch.column("_record")
        batch = batch.filter(pc.is_in(col, value_set=pa.array(wanted).cast(col.type, safe=False)))
    raw = batch if isinstance(batch, pl.DataFrame) else pl.from_arrow(batch)
    assert isinstance(raw, pl.DataFrame)
    raw = raw.filter(pl.col("_record").cast(INT).is_in(pl.Series(wanted, dtype=INT).implode()))
    names = [c for c in raw.columns if c != "_record"]
    text = pl.struct([pl.col(c) for c in names]).struct.json_encode() if names else pl.lit("{}", STR)
    return raw.select(pl.col("_record").cast(INT), text.alias("raw"))


def raw_records(batch: pa.RecordBatch | pl.DataFrame, records: Collection[int]) -> dict[int, str]:
    """``{record: raw JSON}`` for the rows of a raw batch whose ``_record`` is in ``records``.

    The text is what quarantined records carry in ``raw`` (see :func:`raw_record_frame`);
    records not in the batch are absent from the result.

    >>> b = pa.RecordBatch.from_pydict({"Click ID": ["a", "b"], "_record": [2, 3]})
    >>> raw_records(b, [2, 9])
    {2: '{"Click ID":"a"}'}
    """
    if not records:
        return {}
    frame = raw_record_frame(batch, records)
    return dict(zip(frame.get_column("_record").to_list(), frame.get_column("raw").to_list(), strict=True))


def _fill_raw(out: dict[str, Normalized], raw: pl.DataFrame) -> dict[str, Normalized]:
    """Fill the ``raw`` column of the quarantine frames in ``out`` from the raw batch."""
    wanted = [n.quarantine.get_column("_record") for n in out.values() if n.quarantine.height]
    if not wanted:
        return out
    text = raw_records(raw, set(pl.concat(wanted).to_list()))
    for n in out.values():
        if n.quarantine.height:
            n.quarantine = n.quarantine.with_columns(
                pl.col("_record").replace_strict(text, default=None, return_dtype=STR).alias("raw")
            )
    return out


def hash_ip(ip: str, salt: str) -> str:
    """The stored form of an IP address under ``store_ips = "hashed"`` (``ip:`` + salted xxh3-64).

    >>> hash_ip("203.0.113.9", "s")
    'ip:3724dbf8708019b9'
    """
    import xxhash

    return "ip:" + xxhash.xxh3_64_hexdigest(f"{salt}|{ip}".encode())


def hash_ip_expr(ip: pl.Expr, salt: str) -> pl.Expr:
    """:func:`hash_ip` for a column (one call per distinct address)."""

    def _hash(series: pl.Series) -> pl.Series:
        distinct = series.drop_nulls().unique().to_list()
        return series.replace_strict({v: hash_ip(v, salt) for v in distinct}, default=None, return_dtype=STR)

    return ip.map_batches(_hash, return_dtype=STR, is_elementwise=True)


def _time_parts(s: pl.Expr) -> dict[str, pl.Expr]:
    """Every reading of stripped time text ``s``: class (1 epoch, 2 offset, 3 naive) and parses."""
    return {
        "__cls": time_class_expr(s),
        "__epoch": epoch_expr(s),
        "__offset": offset_expr(s),
        "__naive": naive_expr(s),
    }


def _detected_parts(s: pl.Expr, fmt: str) -> dict[str, pl.Expr]:
    """:func:`_time_parts` by one format, plus ``__ok``: the row is settled without the others.

    Settled: empty, or of the format's class and parsed by it. The formats of a
    class exclude each other (the text must match the whole format), so the one
    that parses a value is the one the full parse picks.
    """
    empty = s.is_null() | (s == "")
    iso = iso_text(s)
    null_utc = pl.lit(None, pl.Datetime("us", "UTC"))
    if fmt == "epoch":
        ok = s.str.contains(EPOCH)
        return {
            "__cls": pl.when(ok).then(pl.lit(1)).otherwise(pl.lit(3)),
            "__epoch": pl.when(ok).then(epoch_expr(s)),
            "__offset": null_utc,
            "__naive": pl.lit(None, pl.Datetime("us")),
            "__ok": (ok | empty).fill_null(True),
        }
    if fmt in OFFSET_FORMATS:
        parsed = iso.str.to_datetime(fmt, time_unit="us", time_zone="UTC", strict=False)
        ok = parsed.is_not_null() & s.str.contains(OFFSET)
        return {
            "__cls": pl.when(ok).then(pl.lit(2)).otherwise(pl.lit(3)),
            "__epoch": null_utc,
            "__offset": pl.when(ok).then(parsed),
            "__naive": pl.lit(None, pl.Datetime("us")),
            "__ok": (ok | empty).fill_null(True),
        }
    # Naive formats read the text as is: a text they parse has no ``T`` or zone letter for
    # the full parse to rewrite (the ``T`` formats: only the one after the date).
    parsed = s.str.to_datetime(fmt, time_unit="us", strict=False)
    return {
        "__cls": pl.lit(3),
        "__epoch": null_utc,
        "__offset": null_utc,
        "__naive": parsed,
        "__ok": (parsed.is_not_null() | empty).fill_null(True),
    }


__all__ = [
    "Normalized",
    "Normalizer",
    "hash_ip",
    "hash_ip_expr",
    "raw_record_frame",
    "raw_records",
]
