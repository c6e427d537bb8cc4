"""Validations per second of a typical ~2 KB event: the cached validator against jsonschema.validate afresh.

Run from the repository root:

    python tests/benchmarks/bench_schema_validation.py [--seconds 3]

Two payloads are measured in the same run: a document event (``sales_invoice.submitted``,
schema derived from the DocType's fields, every field checked) and a ``business.transaction``
from the catalog. For each it prints the rate of ``validate_payload`` through the
``ValidatorCache`` (compiled once, looked up per call), the rate of ``jsonschema.validate``
called afresh each time (it checks the schema and builds a validator per call), and the ratio.
Each rate is the best of 5 rounds, so another busy process on the machine skews it less.
Targets (issue 4): at least 20 times faster and at least 50,000 validations per second.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import jsonschema

sys.path[:0] = [str(Path(__file__).resolve().parents[2])]

from cauldron_fabric.core.schema.catalog import catalog_entry  # noqa: E402
from cauldron_fabric.core.schema.dialect import FORMAT_CHECKER, validator_class  # noqa: E402
from cauldron_fabric.core.schema.doctype_schema import document_event_schema  # noqa: E402
from cauldron_fabric.core.schema.validation import ValidatorCache, validate_payload  # noqa: E402

INVOICE_FIELDS = [
	{"fieldname": "naming_series", "fieldtype": "Select", "options": "ACC-SINV-.YYYY.-", "reqd": 1},
	{"fieldname": "customer", "fieldtype": "Link", "options": "Customer", "reqd": 1},
	{"fieldname": "customer_name", "fieldtype": "Data"},
	{"fieldname": "company", "fieldtype": "Link", "options": "Company", "reqd": 1},
	{"fieldname": "posting_date", "fieldtype": "Date", "reqd": 1},
	{"fieldname": "due_date", "fieldtype": "Date"},
	{"fieldname": "currency", "fieldtype": "Link", "options": "Currency", "reqd": 1},
	{"fieldname": "conversion_rate", "fieldtype": "Float"},
	{"fieldname": "is_return", "fieldtype": "Check"},
	{"fieldname": "status", "fieldtype": "Select", "options": "\nDraft\nUnpaid\nPaid\nCancelled"},
	{"fieldname": "total_qty", "fieldtype": "Float"},
	{"fieldname": "net_total", "fieldtype": "Currency"},
	{"fieldname": "total_taxes_and_charges", "fieldtype": "Currency"},
	{"fieldname": "grand_total", "fieldtype": "Currency", "non_negative": 1},
	{"fieldname": "remarks", "fieldtype": "Small Text"},
	{"fieldname": "items", "fieldtype": "Table", "options": "Sales Invoice Item", "reqd": 1},
	{"fieldname": "taxes", "fieldtype": "Table", "options": "Sales Taxes and Charges"},
]
CHILDREN = {
	"Sales Invoice Item": [
		{"fieldname": "item_code", "fieldtype": "Link", "options": "Item", "reqd": 1},
		{"fieldname": "item_name", "fieldtype": "Data"},
		{"fieldname": "qty", "fieldtype": "Float", "reqd": 1},
		{"fieldname": "uom", "fieldtype": "Link", "options": "UOM"},
		{"fieldname": "rate", "fieldtype": "Currency"},
		{"fieldname": "amount", "fieldtype": "Currency"},
	],
	"Sales Taxes and Charges": [
		{"fieldname": "charge_type", "fieldtype": "Select", "options": "Actual\nOn Net Total", "reqd": 1},
		{"fieldname": "account_head", "fieldtype": "Link", "options": "Account", "reqd": 1},
		{"fieldname": "rate", "fieldtype": "Float"},
		{"fieldname": "tax_amount", "fieldtype": "Currency"},
	],
}


def _row(doctype: str, parentfield: str, idx: int, **values) -> dict:
	standard = {
		"doctype": doctype,
		"name": f"r{idx:08x}",
		"parent": "ACC-SINV-2026-00042",
		"parentfield": parentfield,
	}
	return {**standard, "parenttype": "Sales Invoice", "idx": idx, "docstatus": 1, **values}


def invoice_payload() -> dict:
	"""A submitted Sales Invoice with six items and one tax row, as the document event carries it."""
	items = [
		_row(
			"Sales Invoice Item",
			"items",
			i,
			item_code=f"WIDGET-{i:02d}",
			item_name=f"Widget {i}",
			qty=float(i),
			uom="Nos",
			rate=12.5,
			amount=12.5 * i,
		)
		for i in range(1, 7)
	]
	taxes = [
		_row(
			"Sales Taxes and Charges",
			"taxes",
			1,
			charge_type="On Net Total",
			account_head="VAT 19% - CL",
			rate=19.0,
			tax_amount=49.88,
		)
	]
	doc = {
		"doctype": "Sales Invoice",
		"name": "ACC-SINV-2026-00042",
		"owner": "jane@cauldron.example",
		"creation": "2026-03-02 10:00:00.123456",
		"modified": "2026-03-02 10:05:00.654321",
		"modified_by": "jane@cauldron.example",
		"docstatus": 1,
		"idx": 0,
		"naming_series": "ACC-SINV-.YYYY.-",
		"customer": "Grant Plastics",
		"customer_name": "Grant Plastics Ltd",
		"company": "Cauldron Ltd",
		"posting_date": "2026-03-02",
		"due_date": "2026-04-01",
		"currency": "EUR",
		"conversion_rate": 1.0,
		"is_return": 0,
		"status": "Unpaid",
		"total_qty": 21.0,
		"net_total": 262.5,
		"total_taxes_and_charges": 49.88,
		"grand_total": 312.38,
		"remarks": "Delivered with the March order.",
		"items": items,
		"taxes": taxes,
	}
	return {"doc": doc}


def rate(validate: Callable[[], object], seconds: float, rounds: int = 5) -> float:
	"""Returns calls per second of ``validate``: the best of ``rounds`` runs sharing ``seconds``.

	The best round is the one least disturbed by other processes on the machine (as timeit does).
	"""
	for _ in range(20):
		validate()
	best = 0.0
	for _ in range(rounds):
		calls, started = 0, time.perf_counter()
		deadline = started + seconds / rounds
		while True:
			for _ in range(20):
				validate()
			calls += 20
			now = time.perf_counter()
			if now >= deadline:
				break
		best = max(best, calls / (now - started))
	return best


def measure(label: str, subject: str, schema: dict, payload: dict, seconds: float) -> tuple[float, float]:
	reference = validator_class(schema)(schema, format_checker=FORMAT_CHECKER)
	assert reference.is_valid(payload), "the benchmark payload must be valid"
	cache = ValidatorCache()
	cached = rate(lambda: validate_payload(payload, schema, subject, 1, cache), seconds)
	fresh = rate(lambda: jsonschema.validate(payload, schema, format_checker=FORMAT_CHECKER), seconds)
	compiled_once = rate(lambda: reference.is_valid(payload), seconds)
	size = len(json.dumps(payload, separators=(",", ":")))
	print(f"{label}: {subject}, {size:,} bytes of JSON")
	print(f"  cached validator (validate_payload):   {cached:>12,.0f} validations/s")
	print(f"  jsonschema.validate, afresh each time: {fresh:>12,.0f} validations/s")
	print(f"  ratio:                                 {cached / fresh:>12,.1f}x")
	print(f"  (context: one jsonschema validator reused, no compiled check: {compiled_once:,.0f}/s)")
	return cached, fresh


def main() -> None:
	parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
	parser.add_argument("--seconds", type=float, default=3.0, help="time spent per measurement (5 rounds)")
	args = parser.parse_args()
	document = document_event_schema("Sales Invoice", "submitted", INVOICE_FIELDS, CHILDREN)
	transaction = catalog_entry("business.transaction")
	payload = invoice_payload()
	summary = {
		k: payload["doc"][k]
		for k in ("company", "customer", "posting_date", "grand_total", "currency", "status")
	}
	business = {
		"doctype": "Sales Invoice",
		"name": payload["doc"]["name"],
		"docstatus": 1,
		**summary,
		"doc": payload["doc"],
	}
	results = [
		measure("document event", "sales_invoice.submitted", document, payload, args.seconds),
		measure("catalog event", "business.transaction", dict(transaction.schema), business, args.seconds),
	]
	met = all(cached >= 50_000 and cached / fresh >= 20 for cached, fresh in results)
	print(f"targets (>= 50,000/s and >= 20x): {'met' if met else 'NOT met'}")


if __name__ == "__main__":
	main()
