"""The per-site supervisor (``bench --site all fabric relay``) with real child processes.

Each child is a small Python program standing in for a site's relay: it notes its start and
how it stopped in a file, and can be told to exit at once or to ignore SIGTERM.
"""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from cauldron_fabric.core.retry import Backoff
from cauldron_fabric.core.supervision import SiteSupervisor, Timing

CHILD = textwrap.dedent(
	"""
	import os, signal, sys, time
	folder, site, behaviour = sys.argv[1:4]
	note = lambda text: open(os.path.join(folder, site), "a").write(f"{text} {os.getpid()}\\n")
	stop = []
	if behaviour == "stubborn":
		signal.signal(signal.SIGTERM, signal.SIG_IGN)
	else:
		signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
	note("started")  # from here on, SIGTERM is handled
	if behaviour == "chatty":
		print(f"relaying for {site}")
		print("broker \u00e9 down", file=sys.stderr)
		sys.stdout.buffer.write(b"not utf-8: \\xff\\n")
	if behaviour == "exit":
		sys.exit(3)
	while not stop:
		time.sleep(0.05)
	note("stopped")
	"""
)


@pytest.fixture
def child_program(tmp_path):
	path = tmp_path / "child.py"
	path.write_text(CHILD)
	return path


def notes(folder, site):
	path = folder / site
	return path.read_text().split() if path.exists() else []


def alive(pid):
	try:
		os.kill(pid, 0)
	except ProcessLookupError:
		return False
	# A zombie (exited, not yet reaped by its parent) is not running.
	try:
		with open(f"/proc/{pid}/stat") as stat:
			return stat.read().split(") ", 1)[1][0] != "Z"
	except FileNotFoundError:
		return False


def wait_until(condition, seconds=10.0):
	deadline = time.monotonic() + seconds
	while time.monotonic() < deadline:
		if condition():
			return True
		time.sleep(0.05)
	return condition()


def supervisor(tmp_path, child_program, sites, behaviour=None, **options):
	"""A supervisor over ``sites`` (a dict the test changes between steps)."""
	folder = tmp_path / "notes"
	folder.mkdir(exist_ok=True)
	said = []
	options.setdefault("check_seconds", 0.0)
	options.setdefault("backoff", Backoff(base=0.3, factor=2.0, maximum=5.0, jitter=0.0))
	timing = Timing(**options)
	return (
		SiteSupervisor(
			lambda site: [
				sys.executable,
				str(child_program),
				str(folder),
				site,
				(behaviour or {}).get(site, "run"),
			],
			lambda: sites() if callable(sites) else sites,
			say=said.append,
			timing=timing,
		),
		folder,
		said,
	)


def test_one_child_per_wanted_site_each_stopped_with_sigterm(tmp_path, child_program):
	sites = {"a.site": True, "b.site": True, "c.site": False, "d.site": None}
	sup, folder, _ = supervisor(tmp_path, child_program, sites)
	sup.step()
	assert set(sup.running()) == {"a.site", "b.site"}
	assert wait_until(lambda: notes(folder, "a.site")[:1] == notes(folder, "b.site")[:1] == ["started"])
	pids = sup.running()
	sup.stop_all()
	for site, pid in pids.items():
		assert notes(folder, site) == ["started", str(pid), "stopped", str(pid)]
		assert not alive(pid)
	assert not notes(folder, "c.site") and not notes(folder, "d.site")
	assert sup.running() == {}


def test_what_each_child_prints_is_passed_on_led_by_its_site(tmp_path, child_program):
	# Before: children wrote straight to the terminal, and with many sites no line said whose it was.
	sites = {"a.site": True, "b.site": True}
	sup, _, said = supervisor(
		tmp_path, child_program, sites, behaviour={"a.site": "chatty", "b.site": "chatty"}
	)
	try:
		sup.step()
		expected = {
			f"{site} | {line}"
			for site in sites
			for line in (f"relaying for {site}", "broker \u00e9 down", "not utf-8: \ufffd")
		}
		assert wait_until(lambda: expected <= set(said)), said
	finally:
		sup.stop_all()


def test_sites_that_come_and_go_are_followed(tmp_path, child_program):
	sites = {"a.site": True}
	sup, folder, said = supervisor(tmp_path, child_program, sites)
	try:
		sup.step()
		first = sup.running()["a.site"]
		assert wait_until(lambda: notes(folder, "a.site")[:1] == ["started"])
		sites.update({"a.site": False, "b.site": True})
		sup.step()
		assert wait_until(lambda: "stopped" in notes(folder, "a.site"))
		assert wait_until(lambda: not alive(first))
		sup.step()
		assert set(sup.running()) == {"b.site"} and "a.site" not in sup.children
		assert any("a.site is gone" in line for line in said)
		# Back again: a new child, not the stopped one.
		sites["a.site"] = True
		sup.step()
		assert sup.running()["a.site"] != first
	finally:
		sup.stop_all()


def test_an_unreadable_site_list_or_site_keeps_what_runs(tmp_path, child_program):
	answers = {"a.site": True, "b.site": True}
	failing = []

	def sites():
		if failing:
			raise ConnectionError("database down")
		return answers

	sup, _, said = supervisor(tmp_path, child_program, sites)
	try:
		sup.step()
		before = sup.running()
		failing.append(1)
		sup.step()
		assert sup.running() == before
		assert any("could not read the sites (database down)" in line for line in said)
		failing.clear()
		answers.update({"a.site": None, "b.site": None, "c.site": None})
		sup.step()
		assert sup.running() == before  # unknown: a running child stays, none is started
	finally:
		sup.stop_all()


def test_a_child_that_exits_is_restarted_after_a_growing_backoff(tmp_path, child_program):
	sites = {"a.site": True}
	sup, folder, said = supervisor(tmp_path, child_program, sites, behaviour={"a.site": "exit"})
	try:
		sup.step()
		assert wait_until(lambda: sup.step() or sup.children["a.site"].failures >= 1)
		child = sup.children["a.site"]
		assert child.process is None and child.restart_at - time.monotonic() == pytest.approx(0.3, abs=0.1)
		assert wait_until(lambda: sup.step() or child.failures >= 3, seconds=15)
		assert child.restart_at - time.monotonic() == pytest.approx(1.2, abs=0.2)
		assert notes(folder, "a.site").count("started") == 3
		assert "fabric: the process for a.site exited with code 3; restarting in 0.6 s" in said
	finally:
		sup.stop_all()


def test_a_child_that_ran_steadily_restarts_at_once(tmp_path, child_program):
	sites = {"a.site": True}
	sup, _, _ = supervisor(tmp_path, child_program, sites, steady_seconds=0.0)
	try:
		sup.step()
		child = sup.children["a.site"]
		child.failures = 5  # an earlier bad spell
		child.process.send_signal(signal.SIGTERM)
		child.process.wait(10)
		sup.step()
		assert child.failures == 1 and child.restart_at - time.monotonic() < 0.4
	finally:
		sup.stop_all()


def test_a_child_ignoring_sigterm_is_killed_after_the_grace_period(tmp_path, child_program):
	sup, folder, said = supervisor(
		tmp_path, child_program, {"a.site": True}, behaviour={"a.site": "stubborn"}, grace_seconds=0.5
	)
	sup.step()
	assert wait_until(lambda: notes(folder, "a.site")[:1] == ["started"])
	pid = sup.running()["a.site"]
	started = time.monotonic()
	sup.stop_all()
	assert 0.4 < time.monotonic() - started < 5
	assert not alive(pid) and "stopped" not in notes(folder, "a.site")
	assert f"fabric: process {pid} of a.site did not stop in 0.5 s: killing it" in said


def test_run_stops_every_child_when_asked(tmp_path, child_program):
	sup, folder, _ = supervisor(tmp_path, child_program, {"a.site": True, "b.site": True})
	started = time.monotonic()
	both = lambda: all(notes(folder, site)[:1] == ["started"] for site in ("a.site", "b.site"))  # noqa: E731
	sup.run(lambda: both() or time.monotonic() - started > 20)
	for site in ("a.site", "b.site"):
		assert notes(folder, site)[::2] == ["started", "stopped"]


def test_children_stop_when_the_supervisor_is_killed(tmp_path, child_program):
	folder = tmp_path / "notes"
	folder.mkdir()
	program = textwrap.dedent(
		f"""
		import sys
		from cauldron_fabric.core.supervision import SiteSupervisor, Timing
		sup = SiteSupervisor(
			lambda site: [sys.executable, {str(child_program)!r}, {str(folder)!r}, site, "run"],
			lambda: {{"a.site": True}},
		)
		sup.run(lambda: False)
		"""
	)
	parent = subprocess.Popen([sys.executable, "-c", program], cwd=os.getcwd())
	try:
		assert wait_until(lambda: len(notes(folder, "a.site")) == 2)
		child = int(notes(folder, "a.site")[1])
		parent.send_signal(signal.SIGKILL)
		parent.wait(10)
		assert wait_until(lambda: "stopped" in notes(folder, "a.site"))
		assert wait_until(lambda: not alive(child))
	finally:
		parent.kill()
