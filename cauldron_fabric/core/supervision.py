"""Keeping one child process running per site: ``bench --site all fabric relay`` and its kin.

A bench that serves many sites would otherwise need one Procfile line per site, and a site
added later would publish nothing until someone added its line. The supervisor runs one
child per site it is given, and follows the site list as it changes:

* a site that appears (a new site, the app installed on one) gets its child at the next check;
* a site that goes (dropped, the app uninstalled) has its child stopped with SIGTERM;
* a child that exits while its site is still wanted is started again after a backoff, which
  starts over once a child has run for a while;
* a site list that cannot be read (a database down) changes nothing: the children run on;
* stopping (SIGTERM, Ctrl-C) sends SIGTERM to every child, each finishing its batch in hand,
  and kills what still runs after the grace period. That loses nothing: a killed relay's rows
  stay Pending and its row locks go with its connection.

On Linux each child also gets SIGTERM when the supervisor dies (even by SIGKILL), so a
restarted supervisor does not find the last one's children still running beside its own.

What a child prints (stdout and stderr) is passed on line by line, each line led by its site
(``site.one | fabric relay … started``), so that the sites' output on one terminal or log
can be told apart.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from cauldron_fabric.core.retry import Backoff

log = logging.getLogger("cauldron_fabric.supervision")

CHECK_SITES_SECONDS = 60.0
GRACE_SECONDS = 25.0
# A child that ran this long before exiting is restarted at once, as if it had never failed.
STEADY_SECONDS = 60.0
RESTART_BACKOFF = Backoff(base=1.0, factor=2.0, maximum=60.0, jitter=0.2)
TICK_SECONDS = 0.2


@dataclass(frozen=True)
class Timing:
	"""How often the sites are checked, how long a stop may take, and how restarts back off."""

	check_seconds: float = CHECK_SITES_SECONDS
	grace_seconds: float = GRACE_SECONDS
	steady_seconds: float = STEADY_SECONDS
	backoff: Backoff = RESTART_BACKOFF


@dataclass
class Child:
	"""One site's child process and its restart record."""

	site: str
	process: subprocess.Popen | None = None
	started: float = 0.0
	failures: int = 0
	restart_at: float = 0.0
	stopping: bool = False


def _die_with_parent() -> None:
	"""Asks Linux to send this (child) process SIGTERM when its parent dies."""
	try:
		import ctypes

		ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
	except (OSError, AttributeError):
		pass  # not Linux: a supervisor killed with SIGKILL leaves its children running


class SiteSupervisor:
	"""Runs ``command_for(site)`` for every site ``list_sites()`` wants, until stopped.

	``list_sites`` maps each site to whether it is wanted, or to None when that cannot be told
	now (its database is down, say): such a site keeps its child if it has one and gets none
	if not. Raising means no site can be told. It is asked at start and every ``check_seconds``.
	"""

	def __init__(
		self,
		command_for: Callable[[str], Sequence[str]],
		list_sites: Callable[[], Mapping[str, bool | None]],
		*,
		cwd: str | None = None,
		timing: Timing = Timing(),
		say: Callable[[str], None] | None = None,
	):
		self.command_for, self.list_sites, self.cwd, self.timing = command_for, list_sites, cwd, timing
		self.say = say or (lambda text: print(text, file=sys.stderr, flush=True))
		self._saying = threading.Lock()  # children's lines come from a thread each
		self.children: dict[str, Child] = {}
		self.wanted: set[str] = set()
		self._next_check = 0.0

	def run(self, should_stop: Callable[[], bool], max_seconds: float | None = None) -> None:
		"""Supervises until ``should_stop()`` or ``max_seconds``; then stops every child."""
		deadline = None if max_seconds is None else time.monotonic() + max_seconds
		try:
			while not should_stop() and (deadline is None or time.monotonic() < deadline):
				self.step()
				time.sleep(TICK_SECONDS)
		finally:
			self.stop_all()

	def step(self) -> None:
		"""Reads the site list when due, reaps exited children and starts the missing ones."""
		now = time.monotonic()
		if now >= self._next_check:
			self._next_check = now + self.timing.check_seconds
			self._follow_sites()
		for child in list(self.children.values()):
			self._reap(child, now)
		for site in sorted(self.wanted):
			child = self.children.setdefault(site, Child(site))
			if child.process is None and now >= child.restart_at:
				self._start(child)

	def running(self) -> dict[str, int]:
		"""Returns each site's running child's process id."""
		return {
			site: child.process.pid
			for site, child in self.children.items()
			if child.process is not None and child.process.poll() is None
		}

	def _follow_sites(self) -> None:
		try:
			answers = dict(self.list_sites())
		except Exception as exc:
			self.say(f"fabric: could not read the sites ({exc}); the running processes go on")
			return
		wanted = {site for site, want in answers.items() if want}
		wanted |= {site for site, want in answers.items() if want is None and site in self.running()}
		for site in sorted(set(self.children) - wanted):
			child = self.children[site]
			if child.process is None:
				del self.children[site]
			elif not child.stopping:
				# Dropped, the app uninstalled, or no more work for it (list_sites says which it asks).
				self.say(f"fabric: {site} is gone or no longer wants its process: stopping it")
				self._terminate(child)
		self.wanted = wanted

	def _start(self, child: Child) -> None:
		command = list(self.command_for(child.site))
		try:
			child.process = subprocess.Popen(
				command,
				cwd=self.cwd,
				preexec_fn=_die_with_parent,
				stdout=subprocess.PIPE,
				stderr=subprocess.STDOUT,
				# Line by line as printed: a pipe would make Python hold them in a block buffer.
				env={**os.environ, "PYTHONUNBUFFERED": "1"},
			)
		except OSError as exc:
			child.failures += 1
			child.restart_at = time.monotonic() + self.timing.backoff.delay(child.failures)
			self.say(f"fabric: could not start the process for {child.site}: {exc}")
			return
		child.started, child.stopping = time.monotonic(), False
		threading.Thread(
			target=self._pass_on,
			args=(child.site, child.process.stdout),
			name=f"output of {child.site}",
			daemon=True,
		).start()

	def _pass_on(self, site: str, stream) -> None:
		"""Says each line ``stream`` gives, led by its site, until the child closes it."""
		with stream:
			for line in iter(stream.readline, b""):
				text = line.decode("utf-8", "replace").rstrip("\r\n")
				with self._saying:
					self.say(f"{site} | {text}")

	def _reap(self, child: Child, now: float) -> None:
		if child.process is None or child.process.poll() is None:
			return
		code, child.process = child.process.returncode, None
		if child.site not in self.wanted:
			del self.children[child.site]
			return
		child.failures = 1 if now - child.started >= self.timing.steady_seconds else child.failures + 1
		delay = self.timing.backoff.delay(child.failures)
		child.restart_at = now + delay
		self.say(f"fabric: the process for {child.site} exited with code {code}; restarting in {delay:.2g} s")

	def _terminate(self, child: Child) -> None:
		child.stopping = True
		try:
			child.process.send_signal(signal.SIGTERM)
		except ProcessLookupError:
			pass  # already gone: reaped on the next step

	def stop_all(self) -> None:
		"""Sends SIGTERM to every child, waits the grace period, then kills what still runs."""
		live = [c for c in self.children.values() if c.process is not None]
		for child in live:
			if child.process.poll() is None:
				self._terminate(child)
		deadline = time.monotonic() + self.timing.grace_seconds
		for child in live:
			try:
				child.process.wait(max(0.0, deadline - time.monotonic()))
			except subprocess.TimeoutExpired:
				self.say(
					f"fabric: process {child.process.pid} of {child.site} did not stop in "
					f"{self.timing.grace_seconds:g} s: killing it"
				)
				child.process.kill()
				child.process.wait()
		self.children.clear()
