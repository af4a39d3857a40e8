"""Ctrl-C and SIGTERM as a request to stop at the next batch boundary, not an abort.

The first SIGINT or SIGTERM only sets :attr:`StopRequest.requested`; the training loop checks it
after each batch, writes a checkpoint of that exact point and stops. A second Ctrl-C raises
``KeyboardInterrupt`` at once (the previous checkpoint stays).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class StopRequest:
    """SIGINT/SIGTERM handlers that ask for a stop at the next batch boundary."""

    def __init__(self) -> None:
        self.requested = False

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: the user really means now
        self.requested = True
        print("\nstop requested: finishing this batch and saving a checkpoint "
              "(Ctrl-C again to abort without saving)", flush=True)

    @contextmanager
    def installed(self) -> Iterator[StopRequest]:
        """The handlers, installed for the ``with`` block (the previous ones restored after)."""
        if threading.current_thread() is not threading.main_thread():
            yield self  # signal handlers can only be set from the main thread
            return
        previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
