"""The rich consoles commands print with, and what happens when stdout's reader goes away
(`xferlab train | head -1`): rich would end the process with exit 1, and a run it cut would end
FAILED; these consoles raise StdoutClosed instead. Rich loads when a console is made, not on
import: `cli` imports this for the exception, and `--help` must stay fast."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console


class StdoutClosed(KeyboardInterrupt):
    """The reader of stdout is gone: the user stopped the command. A KeyboardInterrupt, so
    that it unwinds as Ctrl-C does (past Hydra, which reports any Exception as a failure; the
    run it cuts ends KILLED, a sweep's parent too); `cli.main` exits quietly with 0."""


def console(**options: Any) -> Console:
    """A rich Console (rich's options) that raises StdoutClosed on a closed stdout."""
    return _pipe_aware()(**options)


@cache
def _pipe_aware() -> type[Console]:
    from rich.console import Console

    class PipeAware(Console):
        def on_broken_pipe(self) -> None:
            self.quiet = True  # what is still buffered is dropped, not written again at exit
            raise StdoutClosed("stdout was closed by its reader")

    return PipeAware
