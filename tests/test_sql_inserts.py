"""Reading INSERT … VALUES statements for the rows they insert (core/sql_inserts.py): the
fabric records a raw insert's ``created`` events from the names read here, so a value decoded
wrong would name a document that does not exist. What it cannot read must read as None."""

from __future__ import annotations

import pytest

from cauldron_fabric.core.sql_inserts import parse_insert

WANTED = frozenset({"name", "parent", "parenttype", "parentfield"})


def rows(sql: str) -> list[dict]:
	statement = parse_insert(sql, WANTED)
	assert statement is not None, sql
	return list(statement.rows)


def test_a_bulk_insert_reads_as_its_table_and_the_names_of_its_rows():
	statement = parse_insert(
		"INSERT INTO `tabToDo` (`name`,`description`,`x`) VALUES ('a1','it\\'s, (x)',NULL),('a2','b',3)",
		WANTED,
	)
	assert statement.table == "tabToDo"
	assert statement.rows == ({"name": "a1"}, {"name": "a2"})


def test_child_rows_read_with_their_parent():
	assert rows(
		"INSERT INTO `tabItem Row` (`name`,`parent`,`parenttype`,`parentfield`,`qty`)"
		" VALUES ('r1','p1','Order','items',2)"
	) == [{"name": "r1", "parent": "p1", "parenttype": "Order", "parentfield": "items"}]


def test_literals_decode_as_the_database_reads_them():
	assert rows("INSERT INTO tabA (name, d) VALUES ('a\\\\b\\nc''d\\%', 1)") == [{"name": "a\\b\nc'd\\%"}]
	assert rows("insert ignore into tabA (name, idx) values (5, 1);") == [{"name": 5}]
	assert rows('INSERT INTO tabA (name) VALUE ("double"), (NULL)') == [{"name": "double"}, {"name": None}]
	# Columns this does not read may hold any expression.
	assert rows("INSERT INTO tabA (name, d) VALUES ('x', NOW())") == [{"name": "x"}]


@pytest.mark.parametrize(
	"sql",
	[
		"INSERT INTO tabA (name) SELECT name FROM tabB",
		"INSERT INTO tabA (name) VALUES ('x') ON DUPLICATE KEY UPDATE name = name",
		"INSERT INTO tabA VALUES ('x')",  # no column list
		"INSERT INTO tabA SET name = 'x'",
		"INSERT INTO tabA (name, d) VALUES (CONCAT('a', 'b'), 1)",  # a name that is no literal
		"INSERT INTO tabA (name, d) VALUES ('x')",  # fewer values than columns
		"UPDATE tabA SET name = 'x'",
	],
)
def test_what_it_cannot_read_reads_as_none(sql):
	assert parse_insert(sql, WANTED) is None
