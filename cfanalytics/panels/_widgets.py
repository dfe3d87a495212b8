"""Filter widgets built from :class:`~cfanalytics.filters.LogFilter` fields, and option labels.

A :class:`FilterBar` holds one widget per filter field (date pickers for the
range, multi-selects labelled by name with ids as values, a checkbox for
filtered traffic, a text box for the click-id search) and turns their values
back into a ``LogFilter``. An empty multi-selection means "all".

>>> option_pairs(["t2", "t1", None], {"t1": "Meta <Ads>"})
[('Meta &lt;Ads&gt;', 't1'), ('t2', 't2')]
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import date, datetime
from typing import Any, Final

import ipywidgets as widgets

from cfanalytics.charts import safe_text
from cfanalytics.filters import LogFilter

#: Label of each multi-select filter field.
MULTI_FIELDS: Final[dict[str, str]] = {
    "event_types": "Event type",
    "campaigns": "Campaigns",
    "traffic_sources": "Traffic sources",
    "offers": "Offers",
    "integrations": "Integrations",
    "cts": "Conversion type (ct)",
    "status_classes": "Status class",
    "error_kinds": "Error kind",
    "entity_types": "Entity type",
    "actions": "Action",
    "authors": "Author",
    "countries": "Countries",
    "device_types": "Device types",
}
DATE_FIELDS: Final = ("start", "end")
NO_CT: Final = ""
FILTERED_NOTE: Final = "Filtered (bot) traffic is excluded unless this box is ticked."


def option_pairs(ids: Iterable[str | None], names: Mapping[str, str] | None = None) -> list[tuple[str, str]]:
    """``(label, id)`` options sorted by label: the display name (escaped), else the id.

    Labels shared by several ids get the id beside them, so every option is told apart.
    """
    names = names or {}
    distinct = sorted({i for i in ids if i is not None})
    labels = {i: safe_text(names.get(i) or i, 60) for i in distinct}
    counts: dict[str, int] = {}
    for text in labels.values():
        counts[text] = counts.get(text, 0) + 1
    pairs = [(f"{text} ({safe_text(i)})" if counts[text] > 1 else text, i) for i, text in labels.items()]
    return sorted(pairs, key=lambda p: (p[0].lower(), p[1]))


def _layout(width: str = "220px") -> widgets.Layout:
    return widgets.Layout(width=width)


class FilterBar:
    """Widgets for some ``LogFilter`` fields; ``value()`` reads them back as a filter.

    Parameters
    ----------
    fields
        LogFilter field names: ``start``/``end``, keys of :data:`MULTI_FIELDS`,
        ``include_filtered``, ``click_id``.
    initial
        Starting values (a ``LogFilter``); its ``timezone`` is the display zone.
    """

    def __init__(self, fields: Sequence[str], initial: LogFilter) -> None:
        self.timezone = initial.timezone
        self.widgets: dict[str, widgets.Widget] = {}
        zone = safe_text(initial.timezone or "UTC")
        rows: list[widgets.Widget] = []
        if "start" in fields or "end" in fields:
            self.widgets["start"] = widgets.DatePicker(
                description="From", value=_as_date(initial.start), layout=_layout()
            )
            self.widgets["end"] = widgets.DatePicker(description="To", value=_as_date(initial.end), layout=_layout())
            rows.append(
                widgets.HBox(
                    [
                        self.widgets["start"],
                        self.widgets["end"],
                        widgets.HTML(f"<small>local dates in {zone}, both inclusive</small>"),
                    ]
                )
            )
        selects: list[widgets.Widget] = []
        for name in fields:
            if name in MULTI_FIELDS:
                current = getattr(initial, name)
                values = tuple(current or ())
                box = widgets.SelectMultiple(
                    options=[(safe_text(v), v) for v in values],
                    value=values,
                    rows=5,
                    description=MULTI_FIELDS[name],
                    style={"description_width": "initial"},
                    layout=_layout("260px"),
                )
                self.widgets[name] = box
                selects.append(box)
        if selects:
            rows.append(widgets.HBox(selects, layout=widgets.Layout(flex_flow="row wrap")))
        extras: list[widgets.Widget] = []
        if "include_filtered" in fields:
            self.widgets["include_filtered"] = widgets.Checkbox(
                value=initial.include_filtered, description="Include filtered (bot) traffic", indent=False
            )
            extras += [self.widgets["include_filtered"], widgets.HTML(f"<small>{FILTERED_NOTE}</small>")]
        if "click_id" in fields:
            self.widgets["click_id"] = widgets.Text(
                value=initial.click_id or "",
                description="Click id",
                placeholder="contains…",
                continuous_update=False,
                layout=_layout("320px"),
            )
            extras.append(self.widgets["click_id"])
        if extras:
            rows.append(widgets.HBox(extras))
        self.clear_button = widgets.Button(description="Clear filters", icon="times", layout=_layout("140px"))
        self.clear_button.on_click(lambda _b: self.clear())
        rows.append(self.clear_button)
        self.box = widgets.VBox(rows)
        self._callbacks: list[Callable[[frozenset[str]], None]] = []
        self._held: set[str] | None = None
        self._silent = 0
        for name, widget in self.widgets.items():
            widget.observe(self._changed(name), names="value")

    # ------------------------------------------------------------ callbacks
    def _changed(self, name: str) -> Callable[[dict[str, Any]], None]:
        def handler(_change: dict[str, Any]) -> None:
            if self._silent:
                return
            if self._held is not None:
                self._held.add(name)
                return
            self._notify(frozenset({name}))

        return handler

    def _notify(self, names: frozenset[str]) -> None:
        for callback in self._callbacks:
            callback(names)

    def observe(self, callback: Callable[[frozenset[str]], None]) -> None:
        """Call ``callback(changed_field_names)`` whenever filter widget values change."""
        self._callbacks.append(callback)

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Collect the changes made inside the block and report them once, at its end."""
        if self._held is not None:  # nested: the outer block reports
            yield
            return
        self._held = set()
        try:
            yield
        finally:
            names, self._held = frozenset(self._held), None
            if names:
                self._notify(names)

    @contextlib.contextmanager
    def silent(self) -> Iterator[None]:
        """Changes made inside the block are not reported (option updates by the panel itself)."""
        self._silent += 1
        try:
            yield
        finally:
            self._silent -= 1

    # --------------------------------------------------------------- values
    def value(self) -> LogFilter:
        """The filter the widgets describe (display zone included)."""
        changes: dict[str, Any] = {"timezone": self.timezone}
        for name, widget in self.widgets.items():
            if name in MULTI_FIELDS:
                changes[name] = list(widget.value) or None
            elif name == "click_id":
                changes[name] = widget.value.strip() or None
            else:
                changes[name] = widget.value
        return LogFilter(**changes)

    def set(self, **values: Any) -> None:
        """Set widget values by field name (multi-selects take ids; unknown ids become options).

        The changes are reported once, together.
        """
        with self.hold():
            self._set(values)

    def _set(self, values: Mapping[str, Any]) -> None:
        for name, value in values.items():
            widget = self.widgets.get(name)
            if widget is None:
                raise KeyError(f"this panel has no {name!r} filter; it has {', '.join(self.widgets)}")
            if name in MULTI_FIELDS:
                ids = [value] if isinstance(value, str) else list(value or ())
                known = {v for _, v in widget.options}
                missing = [i for i in ids if i not in known]
                if missing:
                    widget.options = [*widget.options, *((safe_text(i), i) for i in missing)]
                widget.value = tuple(ids)
            elif name in DATE_FIELDS:
                widget.value = _as_date(value)
            elif name == "click_id":
                widget.value = value or ""
            else:
                widget.value = bool(value)

    def set_options(self, name: str, pairs: Sequence[tuple[str, str]]) -> None:
        """Replace a multi-select's options, keeping the selected ids (as options too); not reported."""
        widget = self.widgets[name]
        selected = tuple(widget.value)
        known = {v for _, v in pairs}
        extra = [(safe_text(v), v) for v in selected if v not in known]
        new = [*pairs, *extra]
        if list(widget.options) != new:
            with self.silent():
                widget.options = new
                widget.value = selected

    def clear(self) -> None:
        """Empty every multi-select and the click-id search; keep the date range."""
        with self.hold():
            for name, widget in self.widgets.items():
                if name in MULTI_FIELDS:
                    widget.value = ()
                elif name == "click_id":
                    widget.value = ""
                elif name == "include_filtered":
                    widget.value = False


def _as_date(value: date | datetime | str | None) -> date | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])
