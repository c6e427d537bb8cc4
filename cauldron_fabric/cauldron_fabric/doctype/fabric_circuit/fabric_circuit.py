"""Fabric Circuit: a read-only view of the circuit breakers kept in Redis: request-reply targets'
and webhook endpoints' (a delivery worker defers an open endpoint's deliveries).

A virtual DocType: nothing is stored in the database. Each row is one target's circuit as every
worker sees it; circuits open and close by themselves, and a manager can reset one.
"""

from __future__ import annotations

import datetime as dt

import frappe
from frappe import _
from frappe.model.document import Document
from frappe.utils import convert_utc_to_system_timezone
from frappe.utils.data import evaluate_filters

from cauldron_fabric.consume.requesting import site_breaker
from cauldron_fabric.core.consumer.ports import CircuitState
from cauldron_fabric.delivery.circuits import site_webhook_circuits

REQUEST_TARGET, WEBHOOK_ENDPOINT = "Request target", "Webhook endpoint"


def _system_time(value: float | None):
	if not value:
		return None
	moment = dt.datetime.fromtimestamp(value, dt.timezone.utc)
	return convert_utc_to_system_timezone(moment).replace(tzinfo=None)


def as_row(state: CircuitState, kind: str = REQUEST_TARGET) -> dict:
	"""Returns a circuit state as the fields of a Fabric Circuit."""
	return {
		"doctype": "Fabric Circuit",
		"name": state.target,
		"target": state.target,
		"kind": kind,
		"state": state.state,
		"failures": state.failures,
		"opened_at": _system_time(state.opened_at),
		"retry_at": _system_time(state.retry_at),
		"last_failure_at": _system_time(state.last_failure_at),
	}


def all_rows() -> list[dict]:
	"""Returns every circuit as Fabric Circuit fields: request targets', then webhook endpoints'."""
	rows = [as_row(state) for state in site_breaker().states()]
	return rows + [as_row(state, WEBHOOK_ENDPOINT) for state in site_webhook_circuits().states()]


@frappe.whitelist(methods=["POST"])
def reset_webhook_circuit(endpoint: str) -> dict:
	"""Closes a webhook endpoint's circuit: its deferred deliveries go at their next due time."""
	from cauldron_fabric.api.permissions import require_role

	require_role()
	site_webhook_circuits().store.reset(endpoint)
	return {"endpoint": endpoint, "state": "closed"}


class FabricCircuit(Document):
	def db_insert(self, *args, **kwargs) -> None:
		frappe.throw(_("Circuits appear when a request target fails; they cannot be created."))

	def load_from_db(self) -> None:
		# The store answers every target, one never seen as a closed circuit: a mistyped or old
		# link opened a made-up circuit. Only the targets the list shows are documents.
		found = next((row for row in all_rows() if row["name"] == self.name), None)
		if found is None:
			raise frappe.DoesNotExistError(
				_(
					"Fabric Circuit {0} not found: no request or webhook to that target has failed since its last reset."
				).format(frappe.bold(frappe.utils.escape_html(self.name)))
			)
		super(Document, self).__init__(found)

	def db_update(self, *args, **kwargs) -> None:
		frappe.throw(_("Circuits change by themselves; use Reset to close one."))

	def delete(self, *args, **kwargs) -> None:
		frappe.throw(_("Circuits cannot be deleted; use Reset to close one."))

	@frappe.whitelist(methods=["POST"])
	def reset(self) -> None:
		"""Closes this circuit and forgets its failures (POST only: a GET carries no CSRF token)."""
		from cauldron_fabric.api.permissions import require_role

		require_role()
		if self.kind == WEBHOOK_ENDPOINT:
			site_webhook_circuits().store.reset(self.name)
		else:
			site_breaker().store.reset(self.name)

	@staticmethod
	def get_list(args) -> list[dict]:
		# Frappe's list view does not check permissions for virtual DocTypes: this does.
		frappe.has_permission("Fabric Circuit", "read", throw=True)
		rows = all_rows()
		# Each filter with its own operator: reading only the value turned "state != open"
		# into "state = open" and ignored every filter on another field.
		rows = [row for row in rows if evaluate_filters(row, args.get("filters") or [])]
		start, length = int(args.get("start") or 0), int(args.get("page_length") or 20)
		return [frappe._dict(row) for row in rows[start : start + length]]

	@staticmethod
	def get_count(args) -> int:
		return len(FabricCircuit.get_list({**(args or {}), "start": 0, "page_length": 1_000_000}))

	@staticmethod
	def get_stats(args) -> dict:
		return {}
