"""``python -m kubestrap.lab up|down|status``: the lab CLI on its own (the main CLI also registers it)."""

from __future__ import annotations

import argparse
import sys

from kubestrap.lab.cli import register


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kubestrap.lab")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    args = parser.parse_args(["lab", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
