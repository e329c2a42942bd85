"""The one exit-code map of kubestrap's commands: bootstrap.py (kubestrap/cli.py) and
`python -m kubestrap.lab` run every command through `run`.

A command returns its code (OK, FAILED); an exception that leaves it is printed as one message
(never a traceback) and ends it with the code this map gives its type.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from rich.console import Console
from rich.markup import escape

from kubestrap.artifacts import ArtifactError
from kubestrap.lab.errors import LabError

OK, FAILED, INPUT, INTERRUPTED = 0, 1, 2, 130


class UserError(Exception):
    """A mistake of the user's (inventory, flags, a refused request): one message, exit code 2."""


def _plain(message: str) -> None:
    print(message, file=sys.stderr)


def _error_line(message: str) -> None:
    # soft wrap: a path in the message is never broken across lines (copy-paste keeps working)
    Console(stderr=True, highlight=False).print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)


# exception type -> (exit code, how its message is printed); the first match wins
EXIT_CODES: tuple[tuple[type[BaseException], int, Callable[[str], None]], ...] = (
    (UserError, INPUT, _plain),
    (LabError, FAILED, _error_line),
    (ArtifactError, FAILED, _error_line),
)

# what a command that is interrupted (Ctrl-C) prints unless it sets `interrupted` in its defaults
INTERRUPTED_TEXT = "interrupted"


def run(args: argparse.Namespace) -> int:
    """Run the command *args* names (`args.func`) and map what ends it to an exit code."""
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print(getattr(args, "interrupted", INTERRUPTED_TEXT), file=sys.stderr)
        return INTERRUPTED
    except tuple(kind for kind, _, _ in EXIT_CODES) as exc:
        code, show = next((code, show) for kind, code, show in EXIT_CODES if isinstance(exc, kind))
        show(str(exc))
        return code
