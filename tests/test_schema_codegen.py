"""Generated Python and TypeScript types: they import, compile and carry the catalog's fields.

The TypeScript check runs ``tsc --strict --noEmit`` when a compiler is found (``FABRIC_TSC``,
or ``tsc`` on the PATH; ``npm install typescript`` provides one) and is skipped otherwise.
"""

import importlib.util
import os
import shutil
import subprocess
import sys
import typing

import pytest

from cauldron_fabric.core.schema.catalog import load_catalog
from cauldron_fabric.core.schema.codegen import python_source, type_name, typescript_source, write_sources

ODD = {
	"odd.thing": {
		"type": "object",
		"required": ["class", "odd-key"],
		"properties": {
			"class": {"type": "string"},
			"odd-key": {"type": "integer"},
			"plain": {"type": ["number", "null"]},
		},
	}
}

# A tree of org units, each with a manager whose reports are people again: recursion through
# the root ("#") and through $defs, a key that is no identifier, and one recursion (a list of
# lists of itself) that leads to no object and so has no type to name.
TREE = {
	"org.unit.changed": {
		"type": "object",
		"required": ["name"],
		"properties": {
			"name": {"type": "string"},
			"children": {"type": "array", "items": {"$ref": "#"}},
			"manager": {"$ref": "#/$defs/person"},
			"grid": {"$ref": "#/$defs/grid"},
			"parent": {"anyOf": [{"type": "null"}, {"$ref": "#"}]},
		},
		"$defs": {
			"person": {
				"type": "object",
				"properties": {
					"full-name": {"type": "string"},
					"reports": {"type": "array", "items": {"$ref": "#/$defs/person"}},
					"unit": {"$ref": "#"},
				},
			},
			"grid": {"type": "array", "items": {"$ref": "#/$defs/grid"}},
		},
	}
}


def catalog_schemas():
	return {entry.type: entry.schema for entry in load_catalog()}


def import_file(path, name):
	spec = importlib.util.spec_from_file_location(name, path)
	module = importlib.util.module_from_spec(spec)
	sys.modules[name] = module
	spec.loader.exec_module(module)
	return module


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
	folder = tmp_path_factory.mktemp("generated")
	python_path, typescript_path = write_sources(catalog_schemas(), folder)
	module = import_file(python_path, "cauldron_events_under_test")
	yield module, typescript_path.read_text()
	sys.modules.pop("cauldron_events_under_test", None)


def test_names_are_pascal_case():
	assert type_name("agent.approval.requested", "Payload") == "AgentApprovalRequestedPayload"
	assert type_name("skill_map.updated") == "SkillMapUpdated"


def test_python_types_import_and_resolve(generated):
	module, _ = generated
	assert set(module.EVENT_PAYLOADS) == set(catalog_schemas())
	assert set(typing.get_args(module.EventType)) == set(catalog_schemas())
	for cls in module.EVENT_PAYLOADS.values():
		typing.get_type_hints(cls)


def test_python_types_carry_required_and_optional_fields(generated):
	module, _ = generated
	request = module.EVENT_PAYLOADS["agent.approval.requested"]
	assert request.__required_keys__ == {
		"requestId",
		"agent",
		"task",
		"actionSummary",
		"payload",
		"risk",
		"dueBy",
		"approvers",
	}
	assert request.__optional_keys__ == {"reason"}
	hints = typing.get_type_hints(request)
	assert typing.get_args(hints["risk"]) == ("low", "medium", "high", "critical")
	assert hints["payload"] == dict[str, typing.Any]
	status = typing.get_type_hints(module.EVENT_PAYLOADS["system.status"])
	outbox = typing.get_type_hints(status["outbox"])
	assert outbox["pending"] is int and status["relayHeartbeatAgeSeconds"] == float | None
	transaction = typing.get_type_hints(module.EVENT_PAYLOADS["business.transaction"])
	assert typing.get_args(transaction["docstatus"]) == (1, 2)


def test_keys_that_are_not_identifiers_use_the_call_syntax(tmp_path):
	path = tmp_path / "odd_events.py"
	path.write_text(python_source(ODD))
	module = import_file(path, "odd_events_under_test")
	cls = module.EVENT_PAYLOADS["odd.thing"]
	assert cls.__required_keys__ == {"class", "odd-key"} and cls.__optional_keys__ == {"plain"}
	assert typing.get_type_hints(cls)["odd-key"] is int


def test_a_recursive_schema_gives_types_that_name_themselves(tmp_path):
	path = tmp_path / "tree_events.py"
	path.write_text(python_source({**TREE, **ODD}))
	module = import_file(path, "tree_events_under_test")
	unit = module.EVENT_PAYLOADS["org.unit.changed"]
	hints = typing.get_type_hints(unit)
	assert hints["children"] == list[unit]
	person = hints["manager"]
	person_hints = typing.get_type_hints(person)  # the call syntax: "full-name" is no identifier
	assert person_hints["reports"] == list[person] and person_hints["unit"] is unit
	assert hints["grid"] == list[typing.Any]
	assert hints["parent"] == unit | None
	assert typing.get_type_hints(module.EVENT_PAYLOADS["odd.thing"])["odd-key"] is int
	source = typescript_source(TREE)
	assert "\tchildren?: OrgUnitChangedPayload[];" in source
	assert "\treports?: OrgUnitChangedPayloadManager[];" in source
	assert "\tunit?: OrgUnitChangedPayload;" in source
	assert "\tgrid?: unknown[];" in source


def test_typescript_has_every_event_and_field(generated):
	_, source = generated
	for event_type in catalog_schemas():
		assert f'\t"{event_type}": {type_name(event_type, "Payload")};' in source
	assert '\trisk: "low" | "medium" | "high" | "critical";' in source
	assert "\treason?: string;" in source
	assert "\tcomment?: string | null;" in source
	assert source.count("{") == source.count("}")
	assert "export interface Envelope<T extends EventType = EventType>" in source
	odd = typescript_source(ODD)
	assert '\t"odd-key": number;' in odd and "\tplain?: number | null;" in odd


def _tsc():
	return os.environ.get("FABRIC_TSC") or shutil.which("tsc")


@pytest.mark.skipif(not _tsc(), reason="no TypeScript compiler: set FABRIC_TSC or put tsc on the PATH")
def test_typescript_compiles_with_tsc(generated, tmp_path):
	_, source = generated
	good = tmp_path / "events.ts"
	good.write_text(
		source + '\nconst e: Envelope<"user.login"> = {id: "1", type: "user.login", source: "s", time: "t", '
		'dataContentType: "application/json", specVersion: "1.0", data: {entity: "User", entityId: "u", '
		'action: "login", payload: {user: "u"}}, metadata: {correlationId: null, causationId: null, '
		"userId: null, tenantId: null}};\nexport { e };\n"
	)
	run = subprocess.run(
		[_tsc(), "--strict", "--noEmit", str(good)], capture_output=True, text=True, timeout=300
	)
	assert run.returncode == 0, run.stdout + run.stderr
	bad = tmp_path / "bad.ts"
	bad.write_text(source + "\nconst p: UserLoginPayload = {user: 5};\nexport { p };\n")
	run = subprocess.run(
		[_tsc(), "--strict", "--noEmit", str(bad)], capture_output=True, text=True, timeout=300
	)
	assert run.returncode != 0 and "number" in run.stdout


@pytest.mark.skipif(not _tsc(), reason="no TypeScript compiler: set FABRIC_TSC or put tsc on the PATH")
def test_recursive_types_compile_with_tsc(tmp_path):
	good = tmp_path / "tree.ts"
	good.write_text(
		typescript_source(TREE)
		+ '\nconst u: OrgUnitChangedPayload = {name: "a", children: [{name: "b", parent: null}], '
		'manager: {reports: [{"full-name": "c", unit: {name: "d"}}]}};\nexport { u };\n'
	)
	run = subprocess.run(
		[_tsc(), "--strict", "--noEmit", str(good)], capture_output=True, text=True, timeout=300
	)
	assert run.returncode == 0, run.stdout + run.stderr
	bad = tmp_path / "tree_bad.ts"
	bad.write_text(
		typescript_source(TREE) + '\nconst u: OrgUnitChangedPayload = {name: "a", children: [{name: 5}]};\n'
		"export { u };\n"
	)
	run = subprocess.run(
		[_tsc(), "--strict", "--noEmit", str(bad)], capture_output=True, text=True, timeout=300
	)
	assert run.returncode != 0 and "number" in run.stdout


def test_a_failed_write_leaves_the_last_pair_of_files_as_it_was(tmp_path):
	python_path, typescript_path = write_sources(ODD, tmp_path)
	before = (python_path.read_text(), typescript_path.read_text())
	(tmp_path / ".cauldron_events.ts.tmp").mkdir()  # the TypeScript file cannot be written aside
	with pytest.raises(OSError):
		write_sources({**ODD, **TREE}, tmp_path)
	assert (python_path.read_text(), typescript_path.read_text()) == before
	assert not (tmp_path / ".cauldron_events.py.tmp").exists()
