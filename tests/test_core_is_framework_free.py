"""The core must run without Frappe: no module under cauldron_fabric/core imports it."""

import ast
from pathlib import Path

import cauldron_fabric.core

FRAMEWORK_FREE = [
	Path(cauldron_fabric.core.__file__).parent,
	Path(cauldron_fabric.core.__file__).parent.parent / "testing",
]


def imported_modules(path: Path) -> set[str]:
	tree = ast.parse(path.read_text(), str(path))
	names = set()
	for node in ast.walk(tree):
		if isinstance(node, ast.Import):
			names |= {alias.name for alias in node.names}
		elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
			names.add(node.module)
	return names


def test_no_core_module_imports_frappe():
	files = [f for root in FRAMEWORK_FREE for f in root.rglob("*.py")]
	assert len(files) > 5, "the walk found no core modules; the check would prove nothing"
	offenders = {
		str(f): sorted(m for m in imported_modules(f) if m == "frappe" or m.startswith("frappe."))
		for f in files
	}
	assert {f: m for f, m in offenders.items() if m} == {}


def test_the_check_catches_an_import(tmp_path):
	sample = tmp_path / "sample.py"
	sample.write_text("def f():\n\tfrom frappe.utils import now\n\treturn now()\n")
	assert "frappe.utils" in imported_modules(sample)
