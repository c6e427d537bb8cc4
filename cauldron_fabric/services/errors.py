"""Error Log entries that say what failed without the values of the variables where it failed."""

from __future__ import annotations

import frappe


def log_error_without_values(title: str) -> None:
	"""Logs the exception being handled under ``title``, its traceback without the frames' variables.

	Frappe's Error Log keeps every frame's variables and hides only those named like a password:
	the fabric's frames hold broker URLs with the RabbitMQ password put in, Kafka options with
	``sasl_password`` and webhook header values (an Authorization) under names such as
	``connection``, ``settings`` and ``pairs``, and whoever reads the Error Log would read them.
	"""
	frappe.log_error(title=title, message=frappe.get_traceback(with_context=False))
