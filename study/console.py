"""Messages to the user on stderr (a module of its own, so that light commands such as
``litmus status`` do not import the trainer, and with it torch, to print a line)."""

from __future__ import annotations

import sys


def eprint(msg: str) -> None:
    """Print ``msg`` to stderr at once."""
    print(msg, file=sys.stderr, flush=True)
