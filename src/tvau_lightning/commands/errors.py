"""How the ``tvau`` tool commands report a failure: one line on stderr and exit status 1, or, after
``tvau --verbose …`` (anywhere on the command line), the full traceback.

Every tool command catches the errors it knows (a bad file, a bad value, an inconsistent checkpoint) and
returns :func:`command_error`; :func:`~tvau_lightning.cli.main` sets :data:`VERBOSE` from the flag, as it does
for the Lightning commands, so the two kinds of command behave alike.
"""

from __future__ import annotations

import sys

#: set by ``tvau --verbose``: re-raise instead of the one-line message
VERBOSE = False


def one_line(error: BaseException) -> str:
    """An error's message on one line (continuation lines joined)."""
    return " ".join(part.strip() for part in str(error).splitlines() if part.strip())


def command_error(command: str, error: BaseException, *, status: int = 1, label: str = ": error:") -> int:
    """Print ``tvau COMMAND: error: MESSAGE`` (``label`` between the command and the message) on one line and
    return ``status``; with :data:`VERBOSE`, re-raise ``error`` (call it inside the ``except`` block, so the
    traceback is the original one)."""
    if VERBOSE:
        raise error
    print(f"tvau {command}{label} {one_line(error)}", file=sys.stderr)
    return status
