"""JupyterLab on the notebooks, ready to use on a headless machine (``make lab``).

Builds the sample store on first use, picks a free port on 127.0.0.1 (from 8888
up), makes a token, prints the URL to open (and the SSH tunnel for a remote
machine), then runs JupyterLab without trying to open a browser, with
``--allow-root`` when run as root (the normal case in a container).

>>> argv = lab_command(port=8899, token="t0k", notebooks=Path("notebooks"), as_root=True)
>>> argv[-5:-1]
['--ip=127.0.0.1', '--port=8899', '--ServerApp.port_retries=0', '--IdentityProvider.token=t0k']
>>> "--no-browser" in argv and argv[-1]
'--allow-root'
>>> lab_url(8899, "t0k")
'http://127.0.0.1:8899/lab?token=t0k'
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import sys
from pathlib import Path

#: First port tried; the next free one is taken when it is busy.
DEFAULT_PORT = 8888
HOST = "127.0.0.1"


def free_port(start: int = DEFAULT_PORT, tries: int = 100) -> int:
    """The first port from ``start`` that nothing listens on at 127.0.0.1.

    >>> 1024 <= free_port(20000) < 20100
    True
    """
    for port in range(start, start + tries):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((HOST, port))
            except OSError:
                continue
            return port
    raise OSError(f"no free port between {start} and {start + tries - 1} on {HOST}")


def lab_url(port: int, token: str) -> str:
    """The URL that opens JupyterLab with its token."""
    return f"http://{HOST}:{port}/lab?token={token}"


def lab_command(*, port: int, token: str, notebooks: Path, as_root: bool) -> list[str]:
    """The ``jupyter lab`` command line: headless, on 127.0.0.1 only, on exactly ``port``."""
    argv = [
        sys.executable,
        "-m",
        "jupyterlab",
        f"--ServerApp.root_dir={notebooks}",
        "--no-browser",
        f"--ip={HOST}",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
    ]
    if as_root:
        argv.append("--allow-root")
    return argv


def main(argv: list[str] | None = None) -> None:
    """Prepare the sample store, print how to open JupyterLab, then run it (replaces this process)."""
    parser = argparse.ArgumentParser(prog="python -m cfanalytics.lab", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=None, help=f"port on {HOST} (default: first free from 8888)")
    parser.add_argument("--notebooks", type=Path, default=None, help="folder to open (default: notebooks/)")
    args = parser.parse_args(argv)

    from cfanalytics.workspace import open_store

    print("Preparing the sample store (built on first use, about 20 s)…", flush=True)
    print(f"store: {open_store().uri}", flush=True)
    notebooks = args.notebooks or Path(__file__).resolve().parents[1] / "notebooks"
    port = args.port or free_port()
    token = os.environ.get("CFANALYTICS_LAB_TOKEN") or secrets.token_hex(16)
    url = lab_url(port, token)
    print(
        f"\nJupyterLab is starting on {HOST}:{port}. Open this URL in a browser on this machine:\n\n    {url}\n\n"
        f"On a remote machine, forward the port first (ssh -L {port}:{HOST}:{port} USER@HOST), then open the URL"
        " on your own computer. Stop JupyterLab with Ctrl-C.\n",
        flush=True,
    )
    command = lab_command(port=port, token=token, notebooks=notebooks, as_root=os.geteuid() == 0)
    os.execv(command[0], command)


if __name__ == "__main__":
    main()
