"""What kind of statement a raw SQL text is, at the cost of a regular expression: a write the
fabric reads (and which), a savepoint step or a transaction's end; and the DocTypes it names.

``frappe.db.sql`` runs these checks on every statement (emit/watch.py): a SELECT pays one match
of its first word and a set lookup. A statement is read past the comments before it
(``/* … */``, ``-- ``, ``#``) and MariaDB's ``SET STATEMENT … FOR``.
"""

from __future__ import annotations

import re

from cauldron_fabric.core.sql_tokens import _top_level

UPDATE = "update"
DELETE = "delete"
INSERT = "insert"
TRUNCATE = "truncate"
REPLACE = "replace"
LOAD = "load"  # LOAD DATA … INFILE … INTO TABLE
# A statement opening with SAVEPOINT, ROLLBACK, RELEASE or COMMIT: transaction_step reads it.
TRANSACTION = "transaction"


def write_kind(sql: str) -> str | None:
	"""Returns ``update``, ``delete``, ``insert``, ``replace``, ``truncate`` or ``load`` (LOAD
	DATA, XML too) for such a statement, else None: a look at its first word."""
	kind = statement_kind(sql)
	return None if kind is TRANSACTION else kind


def statement_kind(sql: str) -> str | None:
	"""Returns what write_kind returns for a write, ``TRANSACTION`` for a statement that may be a
	savepoint step or a transaction's end (see transaction_step), else None: one look at its
	first word, so that a SELECT pays no second match."""
	match = _FIRST_WORD.match(sql)
	if match is not None and match.group(1).lower() == "set":
		body = statement_body(sql)
		match = _FIRST_WORD.match(body) if body is not sql else None
		sql = body
	if match is None:
		return None
	word = match.group(1).lower()
	if word == LOAD:
		return LOAD if _LOADS.match(sql, match.end()) else None
	if word in _TRANSACTION_WORDS:
		return TRANSACTION
	return word if word in _WRITES else None


def statement_body(sql: str) -> str:
	"""Returns the statement ``sql`` runs: ``sql`` itself, or what follows ``FOR`` in MariaDB's
	``SET STATEMENT variable = value, … FOR statement`` (the settings hold for that one)."""
	if not _STARTS_SET.match(sql):
		return sql
	tokens = _top_level(sql)
	if not tokens or len(tokens) < 3 or tokens[1].upper != "STATEMENT":
		return sql
	for index in range(2, len(tokens) - 1):
		if tokens[index].upper == "FOR":
			return sql[tokens[index + 1].start :]
	return sql


def unlimited(select: str) -> str:
	"""Returns the fabric's read ``select`` of the rows a statement is about to write, exempt from
	the session's ``max_join_size`` (``sql_big_selects``): that limit refuses a SELECT expected
	to examine many rows, not the UPDATE or DELETE examining the same ones, which then ran with
	no event."""
	return f"SET STATEMENT sql_big_selects = 1 FOR {select}"


def transaction_step(sql: str) -> tuple[str, str | None] | None:
	"""Returns ``("savepoint", name)``, ``("rollback", name)`` or ``("release", name)`` for
	``SAVEPOINT name``, ``ROLLBACK [WORK] TO [SAVEPOINT] name`` and ``RELEASE SAVEPOINT name``;
	``("commit", None)`` or ``("rollback", None)`` for a plain ``COMMIT [WORK]`` or ``ROLLBACK
	[WORK]``; else None. A name is unquoted and lowercased: MariaDB compares savepoint names
	without case."""
	match = _TRANSACTION_STEP.match(sql)
	if match is None:
		return None
	savepoint, rollback_to, release, name, end = match.groups()
	if end is not None:
		return end.lower(), None
	if name.startswith("`"):
		name = name[1:-1].replace("``", "`")
	return (savepoint or rollback_to or release).lower(), name.lower()


# Comments before a statement: /* … */, and "-- " or "#" to the end of the line.
_LEADING = r"\s*(?:(?:/\*.*?\*/|--(?=[\x00-\x20])[^\n]*|\#[^\n]*)\s*)*"
_FIRST_WORD = re.compile(_LEADING + r"(\w+)", re.DOTALL)
_WRITES = frozenset({UPDATE, DELETE, INSERT, REPLACE, TRUNCATE})
_TRANSACTION_WORDS = frozenset({"savepoint", "rollback", "release", "commit"})
_LOADS = re.compile(r"\s+(?:data|xml)\b", re.IGNORECASE)
_STARTS_SET = re.compile(_LEADING + r"SET\b", re.IGNORECASE | re.DOTALL)
_TRANSACTION_STEP = re.compile(
	_LEADING
	+ r"(?:(?:(savepoint)|(rollback)(?:\s+work)?\s+to(?:\s+savepoint)?|(release)\s+savepoint)"
	+ r"\s+(`(?:[^`]|``)+`|[A-Za-z0-9_$]+)|(commit|rollback)(?:\s+work)?)\s*;?\s*$",
	re.IGNORECASE | re.DOTALL,
)
# Names of the form `tabSomething` (or tabSomething) a statement mentions: the DocTypes it may write.
_TABLE_NAMES = re.compile(r"`tab((?:[^`]|``)+)`|\btab(\w+)")


def doctypes_named(sql: str) -> set[str]:
	"""Returns the DocTypes whose tables (``tab`` + name) ``sql`` names anywhere: a superset of
	those it writes, found at the speed of a regular expression."""
	return {(quoted or "").replace("``", "`") or plain for quoted, plain in _TABLE_NAMES.findall(sql)}
