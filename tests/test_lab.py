"""``make lab``: JupyterLab starts headless on 127.0.0.1 (as root too) and prints a URL that works."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

from cfanalytics.lab import free_port, lab_command


def test_command_allows_root_only_when_root(tmp_path):
    as_root = lab_command(port=9000, token="x", notebooks=tmp_path, as_root=True)
    as_user = lab_command(port=9000, token="x", notebooks=tmp_path, as_root=False)
    assert "--allow-root" in as_root
    assert "--allow-root" not in as_user
    assert "--no-browser" in as_user
    assert "--ip=127.0.0.1" in as_user


def test_lab_prints_a_url_that_answers(store, tmp_path):
    port = free_port(18888)
    env = {**os.environ, "CFANALYTICS_STORE": str(store.path), "CFANALYTICS_LAB_TOKEN": "labtesttoken"}
    env.update(JUPYTER_CONFIG_DIR=str(tmp_path / "cfg"), JUPYTER_DATA_DIR=str(tmp_path / "data"))
    env["JUPYTER_RUNTIME_DIR"] = str(tmp_path / "run")
    proc = subprocess.Popen(
        [sys.executable, "-m", "cfanalytics.lab", "--port", str(port), "--notebooks", str(tmp_path)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        printed = ""
        deadline = time.monotonic() + 60
        while "Ctrl-C" not in printed and time.monotonic() < deadline:
            printed += proc.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:(\d+)/lab\?token=(\w+)", printed)
        assert url is not None, printed
        assert url.groups() == (str(port), "labtesttoken")
        status = None
        while status is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token=labtesttoken", timeout=5) as r:
                    status = r.status
            except OSError:
                time.sleep(0.5)
        assert status == 200
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()
