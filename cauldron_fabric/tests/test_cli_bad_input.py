"""``bench fabric`` commands given bad input: a message naming the option, a non-zero exit, no traceback.

Each test runs the real command, as bench runs it, in a process of its own. Input that would make a
long-running command do nothing (``--seconds 0``) or do something else than asked (an empty
``--group`` silently meaning the default group) is refused before the command starts.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import frappe
from frappe.tests.utils import FrappeTestCase

from cauldron_fabric.tests.utils import assert_usage_error, start_fabric_command


def run_fabric(*args: str) -> tuple[int, str, str]:
	"""Runs ``bench --site SITE fabric *args``; returns its exit code, stdout and stderr."""
	process = start_fabric_command(*args, stdout=subprocess.PIPE)
	stdout, stderr = process.communicate(timeout=120)
	return process.returncode, stdout, stderr


class TestCliBadInput(FrappeTestCase):
	def test_long_running_commands_refuse_seconds_that_are_not_a_positive_number(self):
		# Before: -5, 0 and nan were taken, and the command stopped at once with exit 0, its work undone.
		for command, seconds in (
			("relay", "-5"),
			("relay", "nan"),
			("deliver", "0"),
			("deliver", "abc"),
			("consume", "-1"),
		):
			with self.subTest(command=command, seconds=seconds):
				stderr = assert_usage_error(self, command, "--seconds", seconds)
				self.assertIn("Invalid value for '--seconds'", stderr)
				self.assertIn(repr(seconds), stderr)
		self.assertIn("more than 0", assert_usage_error(self, "relay", "--seconds", "0"))

	def test_consume_refuses_empty_names_and_a_pattern_python_cannot_compile(self):
		# Before: an empty --group, --topics or --pattern (an unset shell variable) silently meant the
		# defaults, and a regex too large to compile killed the consumer with a traceback.
		for option, value, says in (
			("--group", "", "is empty"),
			("--group", "  ", "is empty"),
			("--topics", ",", "names no topic"),
			("--pattern", "", "is empty"),
			("--pattern", "a{99999999999}", "cannot be compiled"),
		):
			with self.subTest(option=option, value=value):
				stderr = assert_usage_error(self, "consume", option, value, "--seconds", "3")
				self.assertIn(f"Invalid value for '{option}'", stderr)
				self.assertIn(says, stderr)

	def test_codegen_refuses_an_empty_out_and_says_why_it_cannot_write(self):
		sites = Path(frappe.get_site_path("..")).resolve()
		stray = [sites / "cauldron_events.py", sites / "cauldron_events.ts"]
		existed = {path: path.exists() for path in stray}
		try:
			# Before: --out '' wrote both files into the bench's sites folder and said "wrote cauldron_events.py".
			stderr = assert_usage_error(self, "codegen", "--out", "")
			self.assertIn("Invalid value for '--out': is empty", stderr)
			self.assertEqual({path: path.exists() for path in stray}, existed, "nothing written")
		finally:
			for path in stray:
				if path.exists() and not existed[path]:
					path.unlink()
		self.assertIn(
			"Invalid value for '--subject': is empty",
			assert_usage_error(self, "codegen", "--out", tempfile.gettempdir(), "--subject", ""),
		)

		with tempfile.TemporaryDirectory() as folder:
			afile = Path(folder, "afile")
			afile.write_text("not a directory")
			# Before: a NotADirectoryError traceback, exit 1.
			code, stdout, stderr = run_fabric("codegen", "--out", str(afile / "types"))
			self.assertEqual(code, 1, stderr)
			self.assertNotIn("Traceback", stderr)
			self.assertIn(f"Cannot write the types into {afile / 'types'}: Not a directory", stderr)
			self.assertIn("Pass --out a directory you can write to", stderr)
			self.assertEqual(afile.read_text(), "not a directory", "the file in the way is untouched")

			out = Path(folder, "types")
			code, stdout, stderr = run_fabric("codegen", "--out", str(out), "--subject", "user.*")
			self.assertEqual(code, 0, stderr)
			self.assertIn(f"wrote {out / 'cauldron_events.py'}", stdout)
			self.assertTrue(os.path.isfile(out / "cauldron_events.ts"))
