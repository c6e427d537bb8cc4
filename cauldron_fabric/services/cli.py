"""What the ``bench fabric`` commands share: option types and opening the site.

Bad input is refused by click (exit 2, a message naming the option) before anything starts;
a site the app is not installed on is refused with what to run, never with a traceback.
"""

from __future__ import annotations

import math

import click

APP = "cauldron_fabric"


class Seconds(click.ParamType):
	"""A positive number of seconds (``inf``: no limit); 0, negatives and ``nan`` are refused."""

	name = "seconds"

	def convert(self, value, param, ctx) -> float:
		if isinstance(value, float):
			return value
		try:
			seconds = float(value)
		except (TypeError, ValueError):
			seconds = math.nan
		if math.isnan(seconds):
			self.fail(f"{value!r} is not a number of seconds, such as 30 or 0.5.", param, ctx)
		if seconds <= 0:
			self.fail(
				f"{value!r} is not more than 0 seconds. Pass how long to run, such as 30, "
				"or leave --seconds out to run until SIGTERM.",
				param,
				ctx,
			)
		return seconds


SECONDS = Seconds()


def not_blank(ctx: click.Context, param: click.Parameter, value: str | tuple[str, ...] | None):
	"""Refuses an option given as an empty string (an unset shell variable, say) instead of ignoring it."""
	values = value if isinstance(value, tuple) else (value,)
	if any(v is not None and not v.strip() for v in values):
		default = "" if param.required else ", or leave the option out for its default"
		raise click.BadParameter(f"is empty. Pass a value{default}.")
	return value


def connect_site(site: str) -> None:
	"""Opens ``site`` for this process; refuses, with what to run, a site without Cauldron Fabric."""
	import frappe

	frappe.init(site=site)
	frappe.connect()
	if APP not in frappe.get_installed_apps():
		frappe.destroy()
		raise click.ClickException(
			f"Cauldron Fabric is not installed on site {site}. Run "
			f"`bench --site {site} install-app {APP}`, or pass the --site it is installed on."
		)
