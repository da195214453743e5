"""fer-annotate as installed: ferstream.annotate.cli's command, with the client's remote backend behind --server.

annotate/ sits below client/ (the client draws and writes with it), so it never imports the client; the
two meet here, above both. `python -m ferstream.annotate_command` runs fer-annotate as the installed
command does.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from ferstream.annotate.cli import build_parser
from ferstream.annotate.cli import main as annotate_main

if TYPE_CHECKING:
    from ferstream.annotate.run import Backend, RemoteRequest

__all__ = ["build_parser", "main"]


@contextmanager
def open_remote(request: RemoteRequest) -> Iterator[Backend]:
    """ferstream.client.remote.open_remote, imported only when --server is given (gRPC and the client
    library are not needed to annotate in this process)."""
    from ferstream.client.remote import open_remote as open_client_remote

    with open_client_remote(request) as backend:
        yield backend


def main(argv: list[str] | None = None) -> int:
    """Runs fer-annotate on argv (None: sys.argv's); returns the exit code (see ferstream.annotate.cli)."""
    return annotate_main(argv, remote=open_remote)


if __name__ == "__main__":
    sys.exit(main())
