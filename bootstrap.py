#!/usr/bin/env python3
"""Thin entry point: `./bootstrap.py COMMAND` is `kubestrap COMMAND` (see kubestrap/cli.py)."""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

try:
    from kubestrap.cli import main
except ImportError as exc:
    venv_python = ROOT / ".venv" / "bin" / "python"
    if venv_python.exists() and Path(sys.prefix).resolve() != (ROOT / ".venv").resolve():
        os.execv(str(venv_python), [str(venv_python), *sys.argv])
    sys.exit(f"bootstrap.py: missing Python package ({exc.name}); run `scripts/setup` first (see README.md)")

if __name__ == "__main__":
    sys.exit(main())
