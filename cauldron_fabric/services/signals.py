"""Stopping long-running bench commands cleanly on SIGTERM or Ctrl-C."""

from __future__ import annotations

import signal
from collections.abc import Callable


def stop_requested() -> Callable[[], bool]:
	"""Installs SIGTERM/SIGINT handlers and returns a function telling whether one arrived.

	The running loop checks it between batches, so the batch in hand is finished first.
	"""
	received: list[int] = []
	for sig in (signal.SIGTERM, signal.SIGINT):
		signal.signal(sig, lambda number, _frame: received.append(number))
	return lambda: bool(received)
