"""What a long-running process (relay, delivery worker, consumer, web worker) keeps per site in
memory stays bounded however long it runs (see also tests/test_long_running_bounds.py)."""

from __future__ import annotations

from frappe.tests.utils import FrappeTestCase

from cauldron_fabric.emit import unrecorded


class TestProcessMemoryBounds(FrappeTestCase):
	def test_statements_logged_once_are_remembered_up_to_a_limit(self):
		# Before: one key per distinct statement start (values included), for the process's life.
		saved = set(unrecorded.LOGGED)
		self.addCleanup(lambda: (unrecorded.LOGGED.clear(), unrecorded.LOGGED.update(saved)))
		unrecorded.LOGGED.clear()
		for n in range(3 * unrecorded.LOGGED_LIMIT):
			unrecorded.log_once(f"UPDATE `tabToDo` SET description = 'row {n}'", "not read: %s", n)
		self.assertLessEqual(len(unrecorded.LOGGED), unrecorded.LOGGED_LIMIT)
		self.assertIn(
			f"UPDATE `tabToDo` SET description = 'row {3 * unrecorded.LOGGED_LIMIT - 1}'", unrecorded.LOGGED
		)
