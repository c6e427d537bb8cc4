"""Reading a MariaDB ``INSERT … VALUES`` statement for the rows it inserts: the table, and the
values of a few columns (``name``, and a child row's ``parent``, ``parenttype``, ``parentfield``)
of each row, decoded from the statement's text with its values in place.

Covered: ``INSERT [LOW_PRIORITY | DELAYED | HIGH_PRIORITY] [IGNORE] [INTO] table (columns)
VALUES (…), (…)`` (``VALUE`` too), as ``frappe.db.bulk_insert`` and raw patches write it,
the ``INSERT … SET column = value, …`` form (one row), and either with ``ON DUPLICATE KEY
UPDATE …`` after it (an insert that updates the rows already stored: ``upsert``; one whose
update sets ``name`` is not read). Not read (None): ``RETURNING``, a statement without its
column list, and values that are not plain literals in a column this reads.

``INSERT … (columns) SELECT …``, which patches write to copy documents from one table into
another, is read by ``parse_insert_select``: its table, column list and SELECT, which the
fabric runs itself before the statement for the names it is about to insert.

``REPLACE`` takes the same forms; ``replace_as_insert`` writes it as the INSERT whose rows it
inserts, for the readers above (what it does to a row stored under the same key is the
caller's to tell).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cauldron_fabric.core.sql_statements import _assignments, _started
from cauldron_fabric.core.sql_tokens import _TOKEN, _picks_at_random, _text, _top_level, _without_semicolon

_INSERT_MODIFIERS = frozenset({"LOW_PRIORITY", "DELAYED", "HIGH_PRIORITY", "IGNORE"})
# A query in parentheses, where an INSERT's SELECT may stand: ``(SELECT …)``, ``((WITH …))``.
_IS_QUERY = re.compile(r"\((?:\s*\()*\s*(?:SELECT|WITH)\b", re.IGNORECASE)
# What a backslash before these characters stands for in a MariaDB string literal.
_ESCAPES = {"0": "\0", "b": "\b", "n": "\n", "r": "\r", "t": "\t", "Z": "\x1a"}
_NULL = object()


@dataclass(frozen=True)
class InsertStatement:
	"""The table an INSERT writes and, per row, the values of the columns asked for."""

	table: str
	rows: tuple[dict[str, object], ...]
	# ON DUPLICATE KEY UPDATE: a row whose key is stored already updates that row instead.
	upsert: bool = False


def parse_insert(sql: str, wanted: frozenset[str]) -> InsertStatement | None:
	"""Reads an INSERT … VALUES statement (or the ``INSERT … SET`` form, one row): its table
	and, per row, the ``wanted`` columns it gives (a plain literal each: a string, a number or
	NULL, decoded). None when it is not one this module can read."""
	head = _insert_head(sql, ("VALUES", "VALUE"))
	if head is None:
		return _parse_insert_set(sql, wanted)
	tokens, position, table, columns = head
	positions = {column: index for index, column in enumerate(columns) if column in wanted}
	rows = []
	expect_row = True
	upsert = False
	for index in range(position + 1, len(tokens)):
		token = tokens[index]
		if not expect_row and token.upper == "ON":
			upsert = _updates_on_duplicate(sql, tokens, index)
			if not upsert:
				return None
			break
		if expect_row and token.kind == "group":
			values = _items(token.text)
			if len(values) != len(columns):
				return None
			row = {}
			for column, index in positions.items():
				value = _literal(values[index])
				if value is None:
					return None
				row[column] = None if value is _NULL else value
			rows.append(row)
			expect_row = False
		elif not expect_row and token.text == ",":
			expect_row = True
		elif token.text == ";":
			break
		else:
			return None  # RETURNING, or not a VALUES list
	return InsertStatement(table, tuple(rows), upsert) if rows and not expect_row else None


def replace_as_insert(sql: str) -> str | None:
	"""Returns a ``REPLACE [LOW_PRIORITY | DELAYED] [INTO] …`` statement with INSERT in place of
	its first word, which parse_insert and parse_insert_select read alike; None for another
	statement."""
	tokens = _top_level(sql)
	if not tokens or tokens[0].upper != "REPLACE":
		return None
	return f"{sql[: tokens[0].start]}INSERT{sql[tokens[0].end :]}"


def _parse_insert_set(sql: str, wanted: frozenset[str]) -> InsertStatement | None:
	"""Reads ``INSERT … [INTO] table SET column = value, …`` as parse_insert reads one row."""
	started = _into(sql, 1)
	if started is None or started[0][started[1] + 1].upper != "SET":
		return None
	tokens, position = started
	stop = _without_semicolon(tokens)
	if any(token.upper == "RETURNING" for token in tokens[position + 2 : stop]):
		return None
	on = next((index for index in range(position + 2, stop) if tokens[index].upper == "ON"), None)
	upsert = on is not None
	if upsert and not _updates_on_duplicate(sql, tokens, on):
		return None
	end = tokens[on].start if upsert else len(sql)
	assignments = _assignments(sql, tokens[position + 2 : on if upsert else stop], end)
	if not assignments or any(qualifier is not None for qualifier, _, _ in assignments):
		return None
	row = {}
	for _, column, value in assignments:
		column = column.lower()
		if column in wanted:
			decoded = _literal(value)
			if decoded is None:
				return None
			row[column] = None if decoded is _NULL else decoded
	return InsertStatement(tokens[position].name, (row,), upsert)


def _updates_on_duplicate(sql: str, tokens: list, index: int) -> bool:
	"""Tells whether ``ON DUPLICATE KEY UPDATE`` followed by a SET list that leaves ``name``
	alone (and nothing after it) starts at token ``index``."""
	words = [token.upper for token in tokens[index : index + 4]]
	rest = tokens[index + 4 : _without_semicolon(tokens)]
	if words != ["ON", "DUPLICATE", "KEY", "UPDATE"] or any(token.upper == "RETURNING" for token in rest):
		return False
	assignments = _assignments(sql, rest, len(sql))
	return bool(assignments) and all(column.lower() != "name" for _, column, _ in assignments)


@dataclass(frozen=True)
class InsertSelect:
	"""An INSERT … SELECT: the table, its column list (as written, unquoted), and the SELECT."""

	table: str
	columns: tuple[str, ...]
	select: str


def parse_insert_select(sql: str) -> InsertSelect | None:
	"""Reads an ``INSERT … [INTO] table (columns) SELECT …`` statement, the query also after WITH
	or in parentheses; None when it is not one this module can read: without a column list,
	with ``ON DUPLICATE KEY UPDATE`` or ``RETURNING``, or a query that calls a random function
	(RAND(), UUID(): a read of it before the statement would give other rows)."""
	head = _insert_head(sql, ("SELECT", "WITH"), _IS_QUERY)
	if head is None:
		return None
	tokens, position, table, columns = head
	stop = _without_semicolon(tokens)
	if any(token.upper in ("DUPLICATE", "RETURNING") or token.text == ";" for token in tokens[position:stop]):
		return None
	select = _text(sql, tokens, position, stop)
	if _picks_at_random(select):
		return None
	return InsertSelect(table, tuple(columns), select)


def _insert_head(
	sql: str, words: tuple[str, ...], group: re.Pattern | None = None
) -> tuple[list, int, str, list[str]] | None:
	"""Reads the start of ``INSERT … [INTO] table (columns) <word>``, the word one of ``words``
	(or, given ``group``, a parenthesised group whose text it matches): returns the statement's
	top-level tokens, where that word stands, the table and the columns (unquoted); None for
	another statement."""
	started = _into(sql, 2)
	if started is None:
		return None
	tokens, position = started
	columns_group, word = tokens[position + 1], tokens[position + 2]
	if columns_group.kind != "group":
		return None
	if word.upper not in words and not (group and word.kind == "group" and group.match(word.text)):
		return None
	columns = [item.strip().strip("`").replace("``", "`") for item in _items(columns_group.text)]
	return tokens, position + 2, tokens[position].name, columns


def _into(sql: str, following: int) -> tuple[list, int] | None:
	"""Reads ``INSERT [modifiers] [INTO] table`` followed by at least ``following`` tokens: the
	statement's top-level tokens and where the table stands; None for another statement."""
	started = _started(sql, "INSERT", _INSERT_MODIFIERS)
	if started is None:
		return None
	tokens, position = started
	if position < len(tokens) and tokens[position].upper == "INTO":
		position += 1
	if position + following >= len(tokens) or tokens[position].kind not in ("word", "quoted"):
		return None
	return tokens, position


def _items(group: str) -> list[str]:
	"""Splits a parenthesised list's text at its top-level commas."""
	items, depth, start = [], 0, 1
	inner_end = len(group) - 1
	for match in _TOKEN.finditer(group, 1, inner_end):
		kind = match.lastgroup
		if kind == "open":
			depth += 1
		elif kind == "close":
			depth -= 1
		elif kind == "other" and match.group() == "," and depth == 0:
			items.append(group[start : match.start()])
			start = match.end()
	items.append(group[start:inner_end])
	return items


def _literal(text: str):
	"""Decodes a plain SQL literal: a string, a number, or NULL (as ``_NULL``); None otherwise."""
	text = text.strip()
	if text.upper() == "NULL":
		return _NULL
	if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
		match = _TOKEN.match(text)
		if match is None or match.lastgroup != "string" or match.end() != len(text):
			return None
		return _unescape(text[1:-1], text[0])
	try:
		number = float(text)
	except ValueError:
		return None
	return int(number) if number.is_integer() and "." not in text and "e" not in text.lower() else text


def _unescape(body: str, quote: str) -> str:
	"""Returns a string literal's value: backslash escapes and doubled quotes decoded."""
	out, index = [], 0
	while index < len(body):
		char = body[index]
		if char == "\\" and index + 1 < len(body):
			following = body[index + 1]
			# \% and \_ keep their backslash (they mean the same outside LIKE).
			out.append(_ESCAPES.get(following, "\\" + following if following in "%_" else following))
			index += 2
		elif char == quote and body[index + 1 : index + 2] == quote:
			out.append(quote)
			index += 2
		else:
			out.append(char)
			index += 1
	return "".join(out)
