"""The `songbatch` command's first code: stop signals are caught before the heavy imports
(typer, numpy, SQLite...), so a Ctrl-C or SIGTERM at start-up also ends with exit 130 and no
traceback, and click's own handling (which prints "Aborted!" and exits 1) never sees one."""

from __future__ import annotations

import errno
import sys


def main() -> None:
    from songbatch.signals import stop_on_signals

    with stop_on_signals():
        sys.exit(_run())


def _interrupted() -> int:
    sys.stderr.write("songbatch: interrupted\n")
    return 130


def _run() -> int:
    try:
        from songbatch.crashpoints import pause_point

        pause_point("imports")
        import click

        from songbatch.cli.main import app
    except KeyboardInterrupt:
        return _interrupted()
    try:
        code = app(standalone_mode=False)
    except (KeyboardInterrupt, click.exceptions.Abort):
        return _interrupted()
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except OSError as exc:
        if exc.errno == errno.EPIPE:  # `songbatch status | head`: the reader left
            return 1
        raise
    return code if isinstance(code, int) else 0
