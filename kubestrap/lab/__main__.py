"""``python -m kubestrap.lab up|down|status``: the lab CLI on its own (the main CLI also registers it).

Its exit codes come from the same map as bootstrap.py's (kubestrap/exits.py).
"""

from __future__ import annotations

import argparse
import sys

from kubestrap import exits
from kubestrap.lab.cli import register


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kubestrap.lab")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    args = parser.parse_args(["lab", *(sys.argv[1:] if argv is None else argv)])
    return exits.run(args)


if __name__ == "__main__":
    sys.exit(main())
