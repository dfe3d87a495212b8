"""``python -m cfanalytics`` — the same as the ``cfanalytics`` command."""

from cfanalytics.cli import main

raise SystemExit(main())
