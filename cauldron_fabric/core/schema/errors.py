"""Errors of the schema registry, in the fabric's tree: all permanent, each saying what to fix.

An event that violates its schema, a schema that is not a JSON Schema and a schema change that
breaks consumers are all refused for good: sending the same thing again cannot succeed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cauldron_fabric.core.errors import PermanentError

if TYPE_CHECKING:
	from cauldron_fabric.core.schema.compatibility import CompatibilityResult

# Long lists of violations are cut in the message (the full list stays on the error).
MESSAGE_VIOLATIONS = 10


@dataclass(frozen=True, slots=True)
class Violation:
	"""One way an event breaks its schema: where (``$.data.payload.items[0].qty``), which rule, what to fix."""

	path: str
	rule: str
	message: str

	def __str__(self) -> str:
		return f"{self.path}: {self.message} [{self.rule}]"


class SchemaViolation(PermanentError):
	"""An event payload that does not match its registered schema; ``violations`` lists every defect."""

	def __init__(self, subject: str, version: int | None, violations: Sequence[Violation]):
		self.subject = subject
		self.version = version
		self.violations = tuple(violations)
		shown = "; ".join(str(v) for v in self.violations[:MESSAGE_VIOLATIONS])
		more = len(self.violations) - MESSAGE_VIOLATIONS
		if more > 0:
			shown += f"; and {more} more"
		label = f"{subject} version {version}" if version is not None else subject
		super().__init__(
			f"The event does not match the schema of {label}: {shown}.",
			hint="Fix the payload (or register a new schema version) and send the event again.",
		)


class InvalidSchema(PermanentError):
	"""A document that is not a usable JSON Schema; ``problems`` lists every defect found."""

	def __init__(self, problems: Sequence[str]):
		self.problems = tuple(problems)
		super().__init__(
			"Invalid JSON Schema: " + "; ".join(self.problems) + ".",
			hint="Write a JSON Schema of draft 2020-12 (or draft-07) whose $refs point inside the document.",
		)


class IncompatibleSchema(PermanentError):
	"""A new schema version refused because it breaks readers or writers under the subject's mode."""

	def __init__(self, subject: str, result: CompatibilityResult):
		self.subject = subject
		self.result = result
		reasons = "; ".join(f"{r.path}: {r.message}" for r in result.reasons[:MESSAGE_VIOLATIONS])
		super().__init__(
			f"The new schema of {subject} is not {result.mode.value} compatible: {reasons}.",
			hint="Make the change compatible (for example add optional fields only), or change the "
			"subject's compatibility mode if every consumer is upgraded at once.",
		)
