"""Print rich tables whole: on a terminal they fit its width; into a pipe or a CI log (no width to
fit) they take the width their content needs, so no cell is cut or ends in an ellipsis."""

from __future__ import annotations

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

_UNBOUNDED = 100_000


def print_table(console: Console, table: Table) -> None:
    if console.is_terminal:
        console.print(table)
        return
    needed = Measurement.get(console, console.options.update_width(_UNBOUNDED), table).maximum
    sized = Console(file=console.file, width=max(needed, 1), highlight=False, no_color=console.no_color,
                    color_system=None, soft_wrap=False)
    sized.print(table, crop=False)
