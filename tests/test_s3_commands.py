"""pull, recover and forget on a store on S3 (a SeaweedFS the tests start) give what they give on a local store."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import polars as pl
from polars.testing import assert_frame_equal

import cfanalytics as cf
from cfanalytics.cli import main
from cfanalytics.pull import configure, ledger
from cfanalytics.recover import recover
from cfanalytics.sample import generate
from cfanalytics.schemas import KINDS, polars_schema
from tests.fake_api import serving
from tests.test_pull import FIRST, KEY, LAST, everything

NOW = datetime(2026, 11, 26, 12, tzinfo=UTC)


def _rows(store: cf.LogStore, kind: str) -> pl.DataFrame:
    cols = [c for c in polars_schema(kind) if c != "_batch_id"]
    return store.scan(kind).select(cols).collect().sort("_row_id")


def _same_rows(a: cf.LogStore, b: cf.LogStore) -> None:
    for kind in KINDS:
        assert_frame_equal(_rows(a, kind), _rows(b, kind))


def test_pull_recover_and_forget_on_s3_equal_a_local_store(tmp_path, s3_env, s3_uri, monkeypatch, capsys):
    account = generate(tmp_path / "exports", visits=1_500, days=3)
    tz = account.truth["timezone"]
    monkeypatch.setenv("CLICKFLARE_API_KEY", KEY)
    local_dir = str(tmp_path / "local")
    with serving(account.folder, api_key=KEY, timezone=tz) as api:
        fields = everything(api)
        for target in (s3_uri, local_dir):
            configure(cf.LogStore(target, timezone=tz), extra_fields=fields)
            args = ["pull", "--store", target, "--base-url", api.base_url, "--page-size", "500"]
            code = main([*args, "--rate-limit", "1000", "--from", str(FIRST), "--to", str(LAST)])
            out, err = capsys.readouterr()
            assert code == 0, err
            assert KEY not in out + err
    remote, local = cf.LogStore(s3_uri, create=False), cf.LogStore(local_dir, create=False)
    _same_rows(remote, local)
    assert remote.counts()["postbacks"] > 0
    # the pull ledger and settings live under the S3 prefix, not in the local working folder
    keep = ("kind", "date", "status", "rows")
    assert [{k: e[k] for k in keep} for e in ledger(remote)] == [{k: e[k] for k in keep} for e in ledger(local)]
    assert remote.read_document("pull_state.json") is not None
    assert remote.read_document("pull_config.json") is not None
    assert not (remote.path / "pull_state.json").exists()
    assert KEY.encode() not in remote.read_document("pull_config.json")[0]

    # recover: the same upload files; the recovery ledger is kept on S3 and a second run adds nothing
    first = {t: recover(t, now=NOW, out=tmp_path / f"out-{i}") for i, t in enumerate((remote, local))}
    assert first[remote].manifest["files"] == first[local].manifest["files"]
    for name in first[local].manifest["files"]:
        assert (tmp_path / "out-0" / name).read_bytes() == (tmp_path / "out-1" / name).read_bytes(), name
    recovered = json.loads(remote.read_document("recovery_ledger.json")[0])["conversions"]
    assert len(recovered) == first[remote].manifest["included"]
    again = recover(remote, now=NOW, out=tmp_path / "out-again")
    assert again.manifest["included"] == 0

    # forget one input (a source pulled once) on each store: the same rows remain, fewer than before
    def prefixes(store: cf.LogStore) -> pl.DataFrame:
        ledger = store.batches().with_columns(pl.col("batch_id").str.replace(r"-[a-z]+$", "").alias("prefix"))
        return ledger.group_by("source").agg(pl.col("prefix").unique(), pl.col("rows_stored").sum())

    once = prefixes(remote).filter((pl.col("prefix").list.len() == 1) & (pl.col("rows_stored") > 0)).sort("source")
    source = once.get_column("source")[0]
    before = remote.counts()
    for store in (remote, local):
        (prefix,) = prefixes(store).filter(pl.col("source") == source).get_column("prefix")[0]
        assert main(["forget", "--store", store.uri, "--batch", prefix]) == 0
    capsys.readouterr()
    after = cf.LogStore(s3_uri, create=False)
    _same_rows(after, cf.LogStore(local_dir, create=False))
    assert sum(after.counts().values()) < sum(before.values())


def test_alert_state_lives_under_the_s3_prefix(s3, s3_uri):
    from cfanalytics.alerts import ALERTS_FILE, read_state, record

    store = cf.LogStore(s3_uri, timezone="UTC", storage_options=s3.options)
    record(store, reported=["inc-1", "inc-2"], notified=["inc-1"])
    record(store, reported=["inc-3"])
    state = read_state(cf.LogStore(s3_uri, create=False, storage_options=s3.options).location)
    assert sorted(state["incidents"]) == ["inc-1", "inc-2", "inc-3"]
    assert state["incidents"]["inc-1"]["notified_at"] is not None
    assert state["incidents"]["inc-2"]["notified_at"] is None
    assert json.loads(store.read_document(ALERTS_FILE)[0]) == state
    assert not (store.path / ALERTS_FILE).exists()


def test_the_panels_recovery_files_of_an_s3_store_are_written_here(tmp_path, s3_env, s3_uri, monkeypatch):
    """The recovery button of a store on S3 writes into ``recovery/`` of the working directory (the files are
    for uploading from this machine), never into the store's scratch folder; the ledger stays on S3."""
    from cfanalytics.panels import conversion_gaps
    from tests.test_recover import _hand_made

    real = cf.LogStore
    monkeypatch.setattr(cf, "LogStore", lambda _folder, timezone: real(s3_uri, timezone=timezone))
    store = _hand_made(tmp_path)
    assert store.remote
    here = tmp_path / "notebooks"
    here.mkdir()
    monkeypatch.chdir(here)
    panel = conversion_gaps(store, start="2026-11-01", end="2026-11-30", export_dir=tmp_path / "exports")
    assert panel.recover_folder.placeholder == str(here / "recovery" / "<time>")
    panel.recovery_now = "2026-11-20T12:00:00Z"
    panel.recover_button.click()
    assert panel.recovery is not None, panel.recover_html.value
    assert panel.recovery.out.parent == here / "recovery"
    assert panel.recovery.manifest["included"] == 5  # the hand-made account's recoverable conversions
    assert (panel.recovery.out / "manifest.json").exists()
    assert not (store.path.parent / "recovery").exists()
    recovered = json.loads(store.read_document("recovery_ledger.json")[0])["conversions"]
    assert len(recovered) == 5
