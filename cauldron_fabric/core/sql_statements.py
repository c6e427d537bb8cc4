"""Reading MariaDB ``UPDATE`` and ``DELETE`` statements for what they write: which tables,
which columns, and which rows (as a ``SELECT`` of the same rows).

The fabric turns raw SQL writes (``frappe.db.sql("UPDATE …")``, ``frappe.qb.update(…).run()``,
``frappe.db.delete(…)``) into document events: it reads the rows a statement is about to change
or delete, lets it run, and compares. This module is the reading, on the statement's text with
its values already in place (the database client's own escaping): no database, no framework.

Covered: ``UPDATE [LOW_PRIORITY] [IGNORE] refs SET col = expr, … [WHERE …] [ORDER BY …]
[LIMIT …]``, where ``refs`` is one table or several (comma or JOIN, with ON or USING), each
with or without an alias, and derived tables that are not written; ``DELETE [modifiers] FROM
table [[AS] alias] [WHERE …] [ORDER BY …] [LIMIT …] [RETURNING …]`` and ``DELETE alias, …
FROM refs [WHERE …]``. A statement this cannot read (a column whose table is ambiguous, a syntax
it does not know, rows picked at random) reads as None, never as a guess.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from cauldron_fabric.core.sql_tokens import (
	_TOKEN,
	Token,
	_find,
	_find_tail,
	_identifier,
	_picks_at_random,
	_text,
	_top_level,
	_without_semicolon,
)

_JOIN = frozenset({"JOIN", "STRAIGHT_JOIN"})
_JOIN_WORDS = frozenset({"INNER", "CROSS", "LEFT", "RIGHT", "OUTER", "NATURAL"})
_MODIFIERS = frozenset({"LOW_PRIORITY", "IGNORE", "QUICK"})


@dataclass(frozen=True)
class Target:
	"""A table one statement writes: how it names the table, and the columns it sets there
	(none for a DELETE)."""

	table: str
	reference: str  # the alias, or the table's own name, as SQL (quoted)
	columns: frozenset[str]
	# The SQL of the value an UPDATE sets ``name`` to (a rename), when a read before the
	# statement gives each row's new name: it reads no column the statement sets, and calls no
	# random function. None otherwise, and when the statement sets no ``name``.
	new_name: str | None = None


@dataclass(frozen=True)
class Statement:
	"""What an UPDATE or DELETE statement writes, and the text to read those rows before it runs."""

	refs: str
	where: str
	tail: str
	targets: tuple[Target, ...]
	joined: bool

	def select_before(self, target: Target, lock: bool = False) -> str:
		"""Returns a SELECT of the ``name`` and the columns ``target`` sets, as stored now, of the
		rows the statement is about to write (or delete) in that table; with ``lock``, a locking
		read (``FOR UPDATE``: the rows as last committed, locked as the statement locks them)."""
		columns = ", ".join(
			f"{target.reference}.{quote(column)} AS {quote(column)}"
			for column in ("name", *sorted(target.columns - {"name"}))
		)
		if target.new_name is not None:
			columns += f", ({target.new_name}) AS {quote(NEW_NAME)}"
		distinct = "DISTINCT " if self.joined else ""
		where = f" WHERE {self.where}" if self.where else ""
		tail = f" {self.tail}" if self.tail else ""
		# On a line of its own: a "--" comment closing the statement would hide it.
		locking = "\nFOR UPDATE" if lock else ""
		return f"SELECT {distinct}{columns} FROM {self.refs}{where}{tail}{locking}"


def quote(identifier: str) -> str:
	"""Returns ``identifier`` quoted for MariaDB."""
	return "`" + identifier.replace("`", "``") + "`"


# The column of select_before's read that holds a renamed row's new name.
NEW_NAME = "__fabric_new_name"


def parse_update(sql: str, columns_of: Callable[[str], set[str] | None] | None = None) -> Statement | None:
	"""Reads an UPDATE statement, or returns None when it is not one this module can read.

	``columns_of``, when given, returns a table's columns (lowercase; None when unknown): an
	unqualified SET column of a join is then the one table's that has it, as MariaDB reads it
	(it refuses a column two of them have). Without it, or with a derived table in the join,
	such a statement is not read."""
	started = _started(sql, "UPDATE")
	if started is None:
		return None
	tokens, position = started
	set_at = _find(tokens, position, "SET")
	if set_at is None or set_at == position:
		return None
	where_at = _find(tokens, set_at + 1, "WHERE")
	tail_at = _find_tail(tokens, (where_at or set_at) + 1)
	count = _without_semicolon(tokens)
	refs_text = _text(sql, tokens, position, set_at)
	aliases = _aliases(tokens[position:set_at])
	if aliases is None:
		return None
	set_end = tokens[where_at].start if where_at else tokens[tail_at].start if tail_at else len(sql)
	assignments = _assignments(sql, tokens[set_at + 1 :], set_end)
	if not assignments:
		return None
	if len(aliases) > 1 and columns_of is not None:
		assignments = _qualified(assignments, aliases, columns_of)
	targets = _targets([(qualifier, column) for qualifier, column, _ in assignments], aliases)
	if targets is None:
		return None
	where = _text(sql, tokens, where_at + 1, tail_at or count) if where_at is not None else ""
	tail = _text(sql, tokens, tail_at, count) if tail_at else ""
	if _picks_at_random(refs_text, where, tail):
		return None
	joined = len(aliases) > 1
	return Statement(refs_text, where, tail, _with_new_names(targets, assignments, aliases), joined)


def parse_delete(sql: str) -> Statement | None:
	"""Reads a DELETE statement, or returns None when it is not one this module can read."""
	started = _started(sql, "DELETE")
	if started is None:
		return None
	tokens, position = started
	from_at = _find(tokens, position, "FROM")
	if from_at is None:
		return None
	using_at = _find(tokens, from_at + 1, "USING")
	if using_at is not None:
		if from_at != position:
			return None
		# DELETE FROM a, b USING refs: DELETE a, b FROM refs, read so.
		position, from_at = from_at + 1, using_at
	returning_at = _find(tokens, from_at + 1, "RETURNING")
	if returning_at is not None:
		tokens = tokens[:returning_at]  # what it returns picks no rows
	where_at = _find(tokens, from_at + 1, "WHERE")
	tail_at = _find_tail(tokens, (where_at or from_at) + 1)
	count = _without_semicolon(tokens)
	refs_stop = where_at or tail_at or count
	refs_tokens = tokens[from_at + 1 : refs_stop]
	if not refs_tokens:
		return None
	aliases = _aliases(refs_tokens)
	if aliases is None:
		return None
	real = {alias: table for alias, table in aliases.items() if table}
	if from_at == position:
		# DELETE FROM one table: the rows of that table.
		if len(aliases) != 1 or not real:
			return None
		named = list(real)
	else:
		# DELETE a, b FROM refs: the rows of the tables (or aliases) listed before FROM.
		named = []
		for token in tokens[position:from_at]:
			if token.text in (",", ".", "*"):
				continue
			if token.kind not in ("word", "quoted") or token.name not in real:
				return None
			named.append(token.name)
	if not named:
		return None
	targets = tuple(Target(real[alias], quote(alias), frozenset()) for alias in dict.fromkeys(named))
	where = _text(sql, tokens, where_at + 1, tail_at or count) if where_at else ""
	tail = _text(sql, tokens, tail_at, count) if tail_at else ""
	refs_text = _text(sql, tokens, from_at + 1, refs_stop)
	if _picks_at_random(refs_text, where, tail):
		return None
	return Statement(refs_text, where, tail, targets, len(aliases) > 1)


def parse_truncate(sql: str) -> Statement | None:
	"""Reads ``TRUNCATE [TABLE] t [WAIT n | NOWAIT]`` as the ``DELETE FROM t`` of every row it is,
	or returns None when it is not one this module can read."""
	started = _started(sql, "TRUNCATE", frozenset({"TABLE"}))
	if started is None:
		return None
	tokens, position = started
	count = _without_semicolon(tokens)
	if count > position and tokens[count - 1].upper == "NOWAIT":
		count -= 1
	elif count > position + 1 and tokens[count - 2].upper == "WAIT" and tokens[count - 1].text.isdigit():
		count -= 2
	if count <= position or tokens[position].kind not in ("word", "quoted"):
		return None
	_, after = _identifier(tokens, position)
	if after != count:
		return None
	return parse_delete(f"DELETE FROM {_text(sql, tokens, position, count)}")


def _started(sql: str, word: str, modifiers: frozenset[str] = _MODIFIERS) -> tuple[list[Token], int] | None:
	"""Returns the top-level tokens of a statement that starts with ``word``, and where what
	follows its ``modifiers`` (LOW_PRIORITY, IGNORE, QUICK) starts; None for another statement."""
	tokens = _top_level(sql)
	if not tokens or tokens[0].upper != word:
		return None
	position = 1
	while position < len(tokens) and tokens[position].upper in modifiers:
		position += 1
	return tokens, position


def _aliases(tokens: list[Token]) -> dict[str, str] | None:
	"""Reads the table references of an UPDATE: {alias, or the table's name: table ("" for a
	derived table)}; None when they do not read as table references."""
	aliases: dict[str, str] = {}
	index, expect_table, in_condition, last = 0, True, False, None
	while index < len(tokens):
		token = tokens[index]
		word = token.upper
		if token.text == "," or word in _JOIN:
			expect_table, in_condition, last = True, False, None
		elif word in _JOIN_WORDS or word == "AS" or in_condition:
			pass
		elif word in ("ON", "USING"):
			in_condition = True
		elif expect_table and token.kind == "group":
			last, expect_table = f"({index})", False
			aliases[last] = ""  # a derived table: read, never written
		elif expect_table and token.kind in ("word", "quoted"):
			parts, index = _identifier(tokens, index)
			last, expect_table = parts[-1], False
			aliases[last] = last
			continue
		elif last is not None and token.kind in ("word", "quoted"):
			# An alias: the statement knows the table by it alone from here on.
			aliases[token.name] = aliases.pop(last)
			last = None
		else:
			return None
		index += 1
	return aliases or None


def _assignments(sql: str, tokens: list[Token], end: int) -> list[tuple[str | None, str, str]] | None:
	"""Reads the SET list: (qualifier or None, column, the SQL of its value) per assignment, in
	order."""
	assignments = []
	value_start = None
	index = 0
	while index < len(tokens) and tokens[index].start < end:
		token = tokens[index]
		if value_start is None:
			if token.kind not in ("word", "quoted"):
				return None
			parts, index = _identifier(tokens, index)
			if len(parts) > 2 or index >= len(tokens) or tokens[index].text != "=":
				return None
			assignments.append((parts[0], parts[1]) if len(parts) == 2 else (None, parts[0]))
			index += 1
			value_start = index
			continue
		if token.text == ",":
			if index == value_start:
				return None
			assignments[-1] += (sql[tokens[value_start].start : tokens[index - 1].end],)
			value_start = None
		index += 1
	if value_start is None or index == value_start:
		return None
	assignments[-1] += (sql[tokens[value_start].start : tokens[index - 1].end],)
	return assignments


def _qualified(
	assignments: list[tuple[str | None, str, str]], aliases: dict[str, str], columns_of
) -> list[tuple[str | None, str, str]]:
	"""Returns the assignments of a join with each unqualified column qualified by the alias of
	the one table that has it; left unqualified (unreadable) where none or several have it, or
	where a derived table, whose columns are unknown, is joined."""
	if any(not table for table in aliases.values()):
		return assignments
	columns = {alias: columns_of(table) for alias, table in aliases.items()}
	if any(known is None for known in columns.values()):
		return assignments
	qualified = []
	for qualifier, column, value in assignments:
		if qualifier is None:
			having = [alias for alias, known in columns.items() if column.lower() in known]
			if len(having) == 1:
				qualifier = having[0]
		qualified.append((qualifier, column, value))
	return qualified


def _with_new_names(
	targets: tuple[Target, ...], assignments: list[tuple[str | None, str, str]], aliases: dict[str, str]
) -> tuple[Target, ...]:
	"""Returns ``targets`` with the value one of them sets ``name`` to, where a read before the
	statement gives it (see Target.new_name)."""
	setting_name = [index for index, (_, column, _) in enumerate(assignments) if column.lower() == "name"]
	if len(setting_name) != 1:
		return targets  # no rename, or a join renaming in two tables: not read
	index = setting_name[0]
	qualifier, _, value = assignments[index]
	if sum(1 for table in aliases.values() if table) > 1:
		# A join: MariaDB sets its tables' columns in an order of its own.
		set_first = {column.lower() for _, column, _ in assignments} - {"name"}
	else:
		# One table: set from left to right, so the value reads those set before it as set.
		set_first = {column.lower() for _, column, _ in assignments[:index]}
	if _reads_any(value, set_first) or _picks_at_random(value):
		return targets
	return tuple(
		replace(target, new_name=value)
		if "name" in {column.lower() for column in target.columns}
		and (qualifier is None or quote(qualifier) == target.reference)
		else target
		for target in targets
	)


def _reads_any(sql: str, columns: set[str]) -> bool:
	"""Tells whether ``sql`` names any of ``columns`` (a word, quoted or not, in any case)."""
	for match in _TOKEN.finditer(sql):
		kind = match.lastgroup
		if kind == "word" and match.group().lower() in columns:
			return True
		if kind == "quoted" and match.group()[1:-1].replace("``", "`").lower() in columns:
			return True
	return False


def _targets(assignments: list[tuple[str | None, str]], aliases: dict[str, str]) -> tuple[Target, ...] | None:
	"""Groups the assigned columns by the table each writes; None when one is ambiguous."""
	real = {alias: table for alias, table in aliases.items() if table}
	columns: dict[str, set[str]] = {}
	for qualifier, column in assignments:
		if qualifier is None:
			if len(aliases) != 1 or not real:
				return None  # an unqualified column of a join: its table is the database's guess
			qualifier = next(iter(real))
		if qualifier not in real:
			return None
		columns.setdefault(qualifier, set()).add(column)
	return tuple(Target(real[alias], quote(alias), frozenset(written)) for alias, written in columns.items())
