"""Interactive JupyterLab panels (ipywidgets + Plotly ``FigureWidget``), each opened in one line.

>>> from cfanalytics.panels import event_logs, postback_doctor, conversion_gaps, activity_log
>>> postback_doctor(store)                                     # doctest: +SKIP

Each call returns a panel object that displays itself in a notebook. Every panel
reads the store once per date range and applies the other filters in memory
(``panel.loads`` counts the reads); ``panel.set_filters(...)`` sets filters from
code; the frames behind each chart and table are attributes (``panel.rates``,
``panel.table_frame`` …) and ``panel.figure`` is the main chart. Tables export
to CSV or Excel (redacted, formula-safe) into ``export_dir`` (default
``./exports``), and show the file's path.

Importing this package is cheap: ipywidgets and plotly are imported when the first panel opens.
"""

from __future__ import annotations

from cfanalytics.panels.activity_log import ActivityLogPanel, activity_log
from cfanalytics.panels.conversion_gaps import ConversionGapsPanel, conversion_gaps
from cfanalytics.panels.event_logs import EventLogsPanel, event_logs
from cfanalytics.panels.export import export_frame
from cfanalytics.panels.postback_doctor import PostbackDoctorPanel, postback_doctor

__all__ = [
    "ActivityLogPanel",
    "ConversionGapsPanel",
    "EventLogsPanel",
    "PostbackDoctorPanel",
    "activity_log",
    "conversion_gaps",
    "event_logs",
    "export_frame",
    "postback_doctor",
]
