"""``python -m cfanalytics.sample OUT [--seed 7] [--visits 20000]``."""

from cfanalytics.sample._cli import main

raise SystemExit(main())
