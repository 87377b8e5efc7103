"""Loads the project's shared contract, ../../../shared/reference/contract.py (the executable
form of shared/spec/accvit.md and shared/spec/lavit.md), once, by path.

The file is found at $WGVIT_CONTRACT, else ../shared/reference/contract.py next to the
repository (the layout of the project's workspace).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = Path(os.environ.get("WGVIT_CONTRACT", ROOT.parent / "shared" / "reference" / "contract.py"))
MODULE_NAME = "wgvit_contract"


def load_contract():
    """The contract module (one instance per process, shared by accvit.py and lavit.py)."""
    if MODULE_NAME in sys.modules:
        return sys.modules[MODULE_NAME]
    if not CONTRACT.is_file():
        raise SystemExit(f"contract not found at {CONTRACT} (set WGVIT_CONTRACT to contract.py)")
    spec = importlib.util.spec_from_file_location(MODULE_NAME, CONTRACT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[MODULE_NAME] = module
    spec.loader.exec_module(module)
    return module
