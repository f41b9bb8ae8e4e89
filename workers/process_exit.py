"""Leave a process that used a Temporal client without CPython's finalization.

The SDK's Rust bridge keeps Tokio threads that may still call back into Python while the
interpreter finalizes; now and then that aborts a finished process with "Fatal Python error:
PyGILState_Release" and SIGABRT (temporalio/sdk-python#300, open). A command whose work is
done must not turn into exit code -6, so the entry points flush, run the atexit handlers (the
embedded PostgreSQL stops there) and end with os._exit, before the finalizing phase begins.

What os._exit skips, on purpose: joining non-daemon threads (an entry point that starts one
must join it itself) and finalizers other than atexit handlers.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import traceback
from collections.abc import Callable

from workers.settings import SettingsError


def exit_code(exc: SystemExit) -> int:
    """The status `sys.exit(value)` would give: None is 0, an int itself, anything else 1."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def run_then_exit(entry: Callable[[], object]) -> None:
    """Run `entry` (it may raise SystemExit) and end the process without finalization.
    SIGTERM takes Ctrl-C's path: by default it would end the process without the atexit
    handlers, leaving e.g. the embedded PostgreSQL of a `radiant watch` running."""
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        entry()
        code = 0
    except SystemExit as exc:
        code = exit_code(exc)
    except KeyboardInterrupt:
        code = 130
    except SettingsError as exc:  # the environment is wrong, not the program: one line
        print(f"error: {exc}", file=sys.stderr)
        code = 2
    except BaseException:  # what the interpreter would do with an uncaught error: print, 1
        traceback.print_exc()
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing left to say
            pass
    atexit._run_exitfuncs()  # what normal exit would run, while threads may still call in
    os._exit(code)
