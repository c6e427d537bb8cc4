"""``bench --site all fabric relay`` (deliver, consume): one process per site with the app.

Frappe gives a command run with ``--site all`` every site of the bench, and the fabric's
long-running commands each serve one site: run for the first site only, the others' events
would wait for the scheduler's safety net while the admin believed them relayed. With
``--site all`` the command instead supervises one ``bench --site SITE fabric …`` process per
site that has the app installed (core.supervision), following sites as they are made,
dropped, or gain or lose the app.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Sequence

import click
import frappe

from cauldron_fabric.core.supervision import SiteSupervisor
from cauldron_fabric.services.cli import APP


def all_sites_requested() -> bool:
	"""Tells whether the running bench command was given ``--site all``."""
	context = click.get_current_context(silent=True)
	while context is not None:
		if context.params.get("site") == "all":
			return True
		context = context.parent
	return False


def _connected_sites(sites_path: str = ".") -> Iterator[tuple[str, bool | None, str | None]]:
	"""Connects to every site of the bench in turn and yields it with whether it has this app
	installed, while it is connected (until the next site is asked for).

	A site that cannot be read now (its database down, its config broken) comes with None and why.
	"""
	for site in frappe.utils.get_sites(sites_path):
		try:
			frappe.init(site=site, sites_path=sites_path)
			frappe.connect()
			installed, error = APP in frappe.get_installed_apps(), None
		except Exception as exc:
			installed, error = None, f"{type(exc).__name__}: {exc}"
		try:
			yield site, installed, error
		finally:
			frappe.destroy()


def sites_with_app(sites_path: str = ".", needed: Callable[[], bool] | None = None) -> dict[str, bool | None]:
	"""Maps every site of the bench to whether it has this app installed (and, with ``needed``,
	whether ``needed()``, asked on the connected site, says it has work for the process); None
	for a site that cannot be read now, or whose ``needed()`` failed."""
	answers: dict[str, bool | None] = {}
	for site, installed, _ in _connected_sites(sites_path):
		try:
			answers[site] = installed and (needed is None or needed())
		except Exception:
			answers[site] = None
	return answers


def bench_command(site: str, *arguments: str) -> list[str]:
	"""Returns the command line of ``bench --site SITE ARGUMENTS`` as bench runs it (from ``sites``)."""
	return [sys.executable, "-m", "frappe.utils.bench_helper", "frappe", "--site", site, *arguments]


def forwarded(**options: object) -> list[str]:
	"""Returns the command-line options that pass ``options`` on to each site's process.

	``batch_size=5`` gives ``--batch-size 5``, a list is joined with commas, and options left
	unset (None, empty) are left out.
	"""
	arguments: list[str] = []
	for name, value in options.items():
		if value is None or value == "" or value == [] or value == ():
			continue
		spelt = ",".join(value) if isinstance(value, list | tuple) else str(value)
		arguments += [f"--{name.replace('_', '-')}", spelt]
	return arguments


def supervise_all_sites(
	arguments: Sequence[str],
	should_stop: Callable[[], bool],
	max_seconds: float | None = None,
	needed: Callable[[], bool] | None = None,
) -> None:
	"""Runs ``bench --site SITE fabric ARGUMENTS`` for every site with the app until stopped
	(with ``needed``: every such site where ``needed()`` says there is work for it)."""
	sites_path = os.getcwd()  # bench runs its commands from the sites folder
	supervisor = SiteSupervisor(
		lambda site: bench_command(site, "fabric", *arguments),
		lambda: sites_with_app(sites_path, needed=needed),
		cwd=sites_path,
		say=lambda text: click.echo(text, err=True),
	)
	click.echo(
		f"fabric {arguments[0]} for every site with {APP} (checked every "
		f"{supervisor.timing.check_seconds:g} s) started",
		err=True,
	)
	supervisor.run(should_stop, max_seconds=max_seconds)
	click.echo(f"fabric {arguments[0]} for every site stopped", err=True)


def each_site_with_app(run: Callable[[], object]) -> dict[str, object]:
	"""Runs ``run()`` on every site with the app (connected in turn); returns results by site.

	A site that could not be read is there too, as ``{"error": why}``.
	"""
	results: dict[str, object] = {}
	for site, installed, error in _connected_sites(os.getcwd()):
		if installed is None:
			results[site] = {"error": f"the site could not be read: {error}"}
		elif installed:
			results[site] = run()
	return results
