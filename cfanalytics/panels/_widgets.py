"""Filter widgets built from :class:`~cfanalytics.filters.LogFilter` fields, and option labels.

A :class:`FilterBar` holds one widget per filter field (date pickers for the
range, searchable checkbox lists labelled by name with ids as values, a checkbox for
filtered traffic, a text box for the click-id search) and turns their values
back into a ``LogFilter``. An empty multi-selection means "all".

>>> option_pairs(["t2", "t1", None], {"t1": "Meta <Ads>"})
[('Meta &lt;Ads&gt;', 't1'), ('t2', 't2')]
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Final

import ipywidgets as widgets
import traitlets

from cfanalytics.charts import safe_text
from cfanalytics.filters import LogFilter
from cfanalytics.filters import as_date as _as_date

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


#: What :class:`Busy` shows while a panel works.
BUSY_HTML: Final = (
    '<span class="cf-busy" role="status" style="opacity:0.8">'
    '<i class="fa fa-spinner fa-spin" aria-hidden="true"></i> updating…</span>'
)


class Busy:
    """An "updating…" spinner, shown from the start of a panel update to its end.

    >>> busy = Busy()
    >>> with busy.working():
    ...     busy.widget.value == BUSY_HTML
    True
    >>> busy.widget.value
    ''
    """

    def __init__(self) -> None:
        self.widget = widgets.HTML(value="", layout=widgets.Layout(min_width="110px"))
        self.widget.add_class("cf-busy-box")
        self._depth = 0

    @contextlib.contextmanager
    def working(self) -> Iterator[None]:
        """Show the spinner inside the block (nested blocks keep it until the outer one ends)."""
        self._depth += 1
        if self._depth == 1:
            self.widget.value = BUSY_HTML
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0:
                self.widget.value = ""


class MultiChoice(widgets.VBox):  # type: ignore[misc]
    """A compact, searchable checkbox list: ``options`` are ``(label, id)`` pairs, ``value`` the ids ticked.

    A filter box narrows the list as one types; "All" ticks every option shown,
    "None" clears the choice. Nothing ticked means "all" (no filter). Every option
    is in the list (ten show at once; longer lists scroll).

    >>> box = MultiChoice("Error kind", [("auth", "auth"), ("timeout", "timeout")])
    >>> box.value = ("timeout",)
    >>> [c.value for c in box.checkboxes]
    [False, True]
    >>> box.search.value = "au"
    >>> [c.layout.display for c in box.checkboxes]
    [None, 'none']
    """

    value = traitlets.Tuple()
    options = traitlets.List()

    def __init__(self, label: str, options: Sequence[tuple[str, str]] = (), value: Sequence[str] = ()) -> None:
        self.label = label
        self.title = widgets.HTML()
        self.search = widgets.Text(
            placeholder="search…", continuous_update=True, layout=widgets.Layout(width="112px", flex="0 1 112px")
        )
        small = {"width": "auto", "flex": "0 0 auto", "padding": "0 6px", "margin": "0 0 0 2px"}
        self.all_button = widgets.Button(
            description="All", layout=widgets.Layout(**small), tooltip="tick every option shown"
        )
        self.none_button = widgets.Button(description="None", layout=widgets.Layout(**small), tooltip="clear")
        self.list = widgets.VBox(layout=widgets.Layout(max_height="290px", overflow="hidden auto"))
        self.checkboxes: list[widgets.Checkbox] = []
        self._ids: list[str] = []
        self._syncing = False
        super().__init__(
            [
                self.title,
                widgets.HBox([self.search, self.all_button, self.none_button], layout=widgets.Layout(width="100%")),
                self.list,
            ],
            layout=widgets.Layout(width="220px", margin="0 10px 6px 0"),
        )
        self.add_class("cf-multichoice")
        self.all_button.on_click(lambda _b: self._tick_shown())
        self.none_button.on_click(lambda _b: setattr(self, "value", ()))
        self.search.observe(lambda _c: self._filter(), names="value")
        self.options = list(options)
        self.value = tuple(value)
        self._title()

    @traitlets.observe("options")
    def _options_changed(self, change: dict[str, Any]) -> None:
        pairs = [(str(label), str(ident)) for label, ident in change["new"]]
        by_id = dict(zip(self._ids, self.checkboxes, strict=True))
        boxes: list[widgets.Checkbox] = []
        for label, ident in pairs:
            box = by_id.pop(ident, None)
            if box is None:
                box = widgets.Checkbox(value=False, indent=False, layout=widgets.Layout(width="auto", margin="0"))
                box.observe(self._ticked, names="value")
            box.description = label
            box.description_allow_html = True  # labels are escaped by option_pairs
            box.tooltip = label  # the whole label (escaped, as every text shown), when the list cuts it
            boxes.append(box)
        for stale in by_id.values():
            stale.close()
        self.checkboxes, self._ids = boxes, [i for _, i in pairs]
        self.list.children = tuple(boxes)
        self._sync_boxes()
        self._filter()

    @traitlets.observe("value")
    def _value_changed(self, _change: dict[str, Any]) -> None:
        self._sync_boxes()
        self._title()

    def _sync_boxes(self) -> None:
        chosen = set(self.value)
        self._syncing = True
        try:
            for ident, box in zip(self._ids, self.checkboxes, strict=True):
                box.value = ident in chosen
        finally:
            self._syncing = False

    def _ticked(self, _change: dict[str, Any]) -> None:
        if self._syncing:
            return
        ticked = {i for i, b in zip(self._ids, self.checkboxes, strict=True) if b.value}
        # keep ids chosen that are not (or no longer) options, in their order
        kept = [i for i in self.value if i not in self._ids]
        self.value = (*kept, *(i for i in self._ids if i in ticked))

    def _tick_shown(self) -> None:
        shown = [i for i, b in zip(self._ids, self.checkboxes, strict=True) if b.layout.display != "none"]
        self.value = tuple(dict.fromkeys([*self.value, *shown]))

    def _filter(self) -> None:
        text = self.search.value.strip().lower()
        for box in self.checkboxes:
            box.layout.display = None if not text or text in box.description.lower() else "none"

    def _title(self) -> None:
        n = len(self.value)
        state = "all" if n == 0 else f"{n} of {len(self._ids)}" if n <= len(self._ids) else f"{n}"
        self.title.value = f"<b>{safe_text(self.label)}</b> <small>({state})</small>"


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
                box = MultiChoice(MULTI_FIELDS[name], [(safe_text(v), v) for v in values], values)
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
