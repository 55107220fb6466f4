"""Ctrl-C and SIGTERM in a run: both unwind as KeyboardInterrupt, so the run ends KILLED, and
both are remembered, so one whose exception Python swallowed still stops the run."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """In the block SIGTERM raises KeyboardInterrupt, so a `kill` unwinds like Ctrl-C (runs end
    KILLED, atomic writes drop their temporary files); after it, whatever handled SIGTERM before
    does again: the handler is process-wide and must not outlive the block (issue 17).

    Both signals are also remembered (`_pending`): Python drops an exception raised while it
    runs a weakref callback or a `__del__` ("Exception ignored in …"), and a Ctrl-C that lands
    there would otherwise be lost; `interrupt_pending` raises it again at the next epoch, and a
    run that ends with one pending ends KILLED."""
    _pending.clear()
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            if handler is not None:  # None: set outside Python, and cannot be put back from here
                signal.signal(sig, handler)


def interrupt_pending() -> None:
    """KeyboardInterrupt if a Ctrl-C or SIGTERM arrived and its exception was swallowed."""
    if (name := pending()) is not None and threading.current_thread() is threading.main_thread():
        raise KeyboardInterrupt(name)


def pending() -> str | None:
    """The signal that arrived in the block last, if its KeyboardInterrupt was swallowed (the
    block's own KeyboardInterrupt otherwise ended it); None without one."""
    return _pending[-1] if _pending else None


_pending: list[str] = []  # the signals that raised KeyboardInterrupt in this run's block


def _interrupt(signum: int, frame: Any) -> None:
    _pending.append(signal.Signals(signum).name)
    raise KeyboardInterrupt(_pending[-1])
