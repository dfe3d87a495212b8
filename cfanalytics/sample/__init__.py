"""Seeded sample ClickFlare account: exports with known faults, and their truth (docs/contract.md §7).

:func:`generate` writes a few days of one fictional account's exports — visits,
landing-page clicks, conversions, postback status (UI CSV and API JSON),
system activity and one affiliate network's conversion export — in the
spellings the loaders must accept, with bad input and faults injected on
purpose. Next to them it writes ``truth.json``: what was injected, when, and
what a correct ingest and diagnosis must find, computed here from the
generated records with code of its own (no other ``cfanalytics`` module is
used), so tests can hold the loaders and diagnostics to it.

The output depends only on the parameters: one seeded :class:`random.Random`,
no wall clock, no set or hash ordering, gzip written without a time stamp.

>>> import tempfile
>>> with tempfile.TemporaryDirectory() as tmp:
...     account = generate(tmp, visits=1000, days=2)
>>> sorted(account.files)
['activity', 'clicks', 'conversions', 'network_export', 'postbacks', 'postbacks_api', 'visits']
>>> [f["fault"] for f in account.truth["faults"]][:4]
['postback_url_edit', 'receiver_timeout', 'rate_limit', 'token_expired']

The package is split by concern: ``_account`` (the entities), ``_records`` (what
is simulated), ``_simulate`` (the seeded simulation), ``_write`` (the files),
``_truth`` (``truth.json``), ``_generate`` (the three together) and ``_cli``.
It imports nothing else from ``cfanalytics``, so it can judge the package.

Command line: ``python -m cfanalytics.sample OUT [--seed 7] [--visits 20000]``.
"""

from __future__ import annotations

# The entity tables are re-exported for benchmarks/gen.py, which builds the same account at scale.
from cfanalytics.sample._account import _CAMPAIGNS as _CAMPAIGNS
from cfanalytics.sample._account import _CITIES as _CITIES
from cfanalytics.sample._account import _LANDERS as _LANDERS
from cfanalytics.sample._account import _NETWORKS as _NETWORKS
from cfanalytics.sample._account import _OFFERS as _OFFERS
from cfanalytics.sample._account import _SOURCES as _SOURCES
from cfanalytics.sample._cli import main
from cfanalytics.sample._generate import SampleAccount, generate
from cfanalytics.sample._write import FILES, TRUTH_FILE

__all__ = ["FILES", "TRUTH_FILE", "SampleAccount", "generate", "main"]
