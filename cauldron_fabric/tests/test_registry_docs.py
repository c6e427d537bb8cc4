"""What the site tells developers: the AsyncAPI document, the catalog page, generated types."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

import frappe
from frappe.tests.utils import FrappeTestCase
from frappe.utils import get_bench_path
from jsonschema import Draft7Validator

from cauldron_fabric.core.schema import load_catalog
from cauldron_fabric.registry import versions
from cauldron_fabric.registry.documentation import site_asyncapi_document
from cauldron_fabric.tests.test_http_support import make_user, request
from cauldron_fabric.tests.test_registry_api import session
from cauldron_fabric.tests.test_registry_support import (
	ORDER_V1,
	PROBE_TYPE,
	drop_subjects,
	ensure_probe_doctype,
	new_probe,
	unique_subject,
)
from cauldron_fabric.tests.utils import bench_command, fabric_settings


def asyncapi_validator() -> Draft7Validator:
	"""Returns a validator of the official AsyncAPI 3.0 JSON Schema vendored in tests/fixtures."""
	app = Path(frappe.get_app_path("cauldron_fabric"))
	spec = app.parent / "tests" / "fixtures" / "asyncapi" / "asyncapi-3.0.0.schema.json"
	return Draft7Validator(json.loads(spec.read_text()))


def bench(*args: str) -> subprocess.CompletedProcess:
	"""Runs ``bench --site SITE *args`` as bench itself does, from the bench's sites folder."""
	return subprocess.run(
		bench_command(*args),
		cwd=os.path.join(get_bench_path(), "sites"),
		capture_output=True,
		text=True,
		timeout=300,
	)


class TestAsyncApi(FrappeTestCase):
	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		ensure_probe_doctype()
		new_probe("asyncapi")  # derives the probe's document events
		cls.subject = unique_subject("fabric_docs")
		versions.register_schema(cls.subject, ORDER_V1, owner_team="Docs Team", description="Docs probe.")
		frappe.db.commit()
		cls.addClassCleanup(drop_subjects, cls.subject)
		cls.manager = make_user("fabric-schema-manager@example.com", ["Fabric Manager"])

	def test_the_served_document_validates_against_the_asyncapi_3_schema(self):
		response = request("get", "/api/method/cauldron_fabric.api.schemas.asyncapi", session(self.manager))
		self.assertEqual(response.status_code, 200, response.text[:500])
		document = response.json
		self.assertEqual(document["asyncapi"], "3.0.0")
		errors = [
			f"{list(e.absolute_path)}: {e.message[:200]}" for e in asyncapi_validator().iter_errors(document)
		]
		self.assertEqual(errors, [])
		messages = document["components"]["messages"]
		self.assertLessEqual({entry.type for entry in load_catalog()}, set(messages))
		self.assertIn(f"{PROBE_TYPE}.created", messages)
		self.assertEqual(messages[self.subject]["x-dataschema"], f"urn:cauldron:schema:{self.subject}:1")
		operation = document["operations"]["Docs_Team.send." + self.subject]
		self.assertEqual(operation["summary"], f"Docs Team publishes {self.subject}.")

	def test_topics_follow_the_naming_rule_of_fabric_settings(self):
		with fabric_settings(topic_template="erp.{tenant}.{entity}", bootstrap_servers="kafka.example:9092"):
			document = site_asyncapi_document()
		tenant = frappe.local.site.replace(".", "_")
		self.assertIn(f"erp.{tenant}.{PROBE_TYPE}", [c["address"] for c in document["channels"].values()])
		self.assertEqual(document["servers"]["kafka1"]["host"], "kafka.example:9092")
		self.assertTrue(asyncapi_validator().is_valid(document))

	def test_the_catalog_page_lists_types_owners_versions_descriptions_and_examples(self):
		page = request("get", "/event-catalog", session(self.manager))
		self.assertEqual(page.status_code, 200)
		html = page.get_data(as_text=True)
		for text in (
			self.subject,
			"Docs Team",
			"Docs probe.",
			"user.login",
			"Aegis Protocol",
			"jane@cauldron.example",
		):
			self.assertIn(text, html)
		self.assertNotEqual(request("get", "/event-catalog").status_code, 200)


class TestCodegen(FrappeTestCase):
	def test_bench_fabric_codegen_writes_python_and_typescript_types(self):
		with tempfile.TemporaryDirectory() as out:
			result = bench(
				"fabric", "codegen", "--out", out, "--subject", "user.*", "--subject", "agent.task.*"
			)
			self.assertEqual(result.returncode, 0, result.stderr[-2000:])
			python = Path(out, "cauldron_events.py").read_text()
			typescript = Path(out, "cauldron_events.ts").read_text()
		namespace: dict = {}
		exec(compile(python, "cauldron_events.py", "exec"), namespace)
		self.assertIn("UserLoginPayload", namespace)
		self.assertIn("AgentTaskCreatedPayload", namespace)
		self.assertNotIn("SecurityAlertPayload", namespace)
		self.assertIn("export interface UserLoginPayload", typescript)
		self.assertIn("user", namespace["UserLoginPayload"].__annotations__)

	def test_codegen_says_when_nothing_matches(self):
		result = bench("fabric", "codegen", "--out", tempfile.gettempdir(), "--subject", "no_such.*")
		self.assertNotEqual(result.returncode, 0)
		self.assertIn("No registered event type matches no_such.*", result.stderr)
