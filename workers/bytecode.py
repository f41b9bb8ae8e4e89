"""Bytecode for the workflow modules, written once when a worker starts.

The Temporal sandbox re-imports a workflow's module on every workflow run (that is how it
isolates global state). Without a `.pyc` each of those imports compiles the source again: with
PYTHONDONTWRITEBYTECODE=1 (set in many dev shells and containers) and an editable install, that
was about a tenth of the worker's CPU in `radiant bench throughput`. Wheels installed by pip
already carry bytecode; this covers source checkouts. Stale files are rewritten (compileall
compares the source's mtime), and a read-only tree is fine: the sandbox then compiles as before.
"""

from __future__ import annotations

import compileall
import logging
from pathlib import Path

import workflows

log = logging.getLogger("radiant.worker")


def ensure_workflow_bytecode() -> bool:
    """Compile `workflows/` to bytecode where missing or stale; False if it could not."""
    root = Path(workflows.__file__).parent
    try:
        return bool(compileall.compile_dir(root, quiet=2, workers=1))
    except OSError as exc:  # read-only install: not an error, only slower workflow starts
        log.info("workflow bytecode not written (%s); the sandbox compiles from source", exc)
        return False
