"""Reading INSERT … VALUES statements for the rows they insert (core/sql_inserts.py): the
fabric records a raw insert's ``created`` events from the names read here, so a value decoded
wrong would name a document that does not exist. What it cannot read must read as None."""

from __future__ import annotations

import pytest

from cauldron_fabric.core.sql_inserts import parse_insert, parse_insert_select, replace_as_insert

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
		# An update on duplicate that renames, or that is no SET list, or with more after it.
		"INSERT INTO tabA (name) VALUES ('x') ON DUPLICATE KEY UPDATE name = name",
		"INSERT INTO tabA (name) VALUES ('x') ON DUPLICATE KEY UPDATE d = 1, `NAME` = 'y'",
		"INSERT INTO tabA (name) VALUES ('x') ON DUPLICATE KEY UPDATE",
		"INSERT INTO tabA (name) VALUES ('x') ON DUPLICATE KEY UPDATE d = 1 RETURNING name",
		"INSERT INTO tabA (name) VALUES ('x') ON DUPLICATE d = 1",
		"INSERT INTO tabA (name) VALUES ('x') RETURNING name",
		"INSERT INTO tabA VALUES ('x')",  # no column list
		"INSERT INTO tabA SET name = CONCAT('x', 'y')",  # a name that is no literal
		"INSERT INTO tabA SET a.name = 'x'",
		"INSERT INTO tabA SET name = 'x', d = 1 RETURNING name",
		"INSERT INTO tabA SET name = 'x' ON DUPLICATE KEY UPDATE name = 'y'",
		"INSERT INTO tabA SET",
		"INSERT INTO tabA (name, d) VALUES (CONCAT('a', 'b'), 1)",  # a name that is no literal
		"INSERT INTO tabA (name, d) VALUES ('x')",  # fewer values than columns
		"UPDATE tabA SET name = 'x'",
	],
)
def test_what_it_cannot_read_reads_as_none(sql):
	assert parse_insert(sql, WANTED) is None


def test_an_insert_that_updates_on_duplicate_reads_as_an_upsert():
	statement = parse_insert(
		"INSERT INTO `tabToDo` (`name`, `status`) VALUES ('a1', 'Open'), ('a2', 'Closed')\n"
		"ON DUPLICATE KEY UPDATE `status` = VALUES(`status`), modified = NOW();",
		WANTED,
	)
	assert (statement.table, statement.rows, statement.upsert) == (
		"tabToDo",
		({"name": "a1"}, {"name": "a2"}),
		True,
	)
	assert parse_insert("INSERT INTO tabA (name) VALUES ('x')", WANTED).upsert is False


def test_the_set_form_reads_as_one_row():
	statement = parse_insert(
		"INSERT IGNORE INTO `tabToDo` SET `NAME` = 'a1', description = CONCAT('a', ','), `parent` = NULL;",
		WANTED,
	)
	assert (statement.table, statement.rows, statement.upsert) == (
		"tabToDo",
		({"name": "a1", "parent": None},),
		False,
	)
	upsert = parse_insert("INSERT INTO tabA SET name = 'x', d = 1 ON DUPLICATE KEY UPDATE d = d + 1", WANTED)
	assert (upsert.rows, upsert.upsert) == (({"name": "x"},), True)
	# Without name, the database names the row (an autoincrement DocType's).
	assert rows("INSERT INTO tabA SET d = 1") == [{}]


def test_an_insert_select_reads_as_its_table_columns_and_select():
	statement = parse_insert_select(
		"INSERT IGNORE INTO `tabToDo` (`name`, description, `odd``one`)\n"
		"SELECT CONCAT('copy-', name), (SELECT 1 FROM tabB LIMIT 1), x FROM `tabToDo` WHERE d = 'a;b' ;"
	)
	assert statement.table == "tabToDo"
	assert statement.columns == ("name", "description", "odd`one")
	assert statement.select == (
		"SELECT CONCAT('copy-', name), (SELECT 1 FROM tabB LIMIT 1), x FROM `tabToDo` WHERE d = 'a;b'"
	)
	union = parse_insert_select("insert into tabA (name) select name from tabB union select name from tabC")
	assert union.select == "select name from tabB union select name from tabC"


def test_a_query_after_with_or_in_parentheses_is_read_as_it_stands():
	# The query runs as it is written: a SELECT after WITH, or in parentheses, is a query too.
	with_cte = parse_insert_select("INSERT INTO tabA (name) WITH b AS (SELECT 1 AS n) SELECT n FROM b;")
	assert with_cte.select == "WITH b AS (SELECT 1 AS n) SELECT n FROM b"
	parenthesised = parse_insert_select("INSERT INTO tabA (name) ( (select name from tabB) ) -- copied")
	assert parenthesised.select == "( (select name from tabB) )"
	union = parse_insert_select("INSERT INTO tabA (name) (SELECT name FROM tabB) UNION (SELECT 'x')")
	assert union.select == "(SELECT name FROM tabB) UNION (SELECT 'x')"


@pytest.mark.parametrize(
	"sql",
	[
		"INSERT INTO tabA (name) VALUES ('x')",  # parse_insert's
		"INSERT INTO tabA SELECT name FROM tabB",  # no column list
		"INSERT INTO tabA (name) ('x')",  # a group that is no query
		"INSERT INTO tabA (name) (SELECT RAND())",
		"INSERT INTO tabA (name) WITH b AS (SELECT UUID() AS n) SELECT n FROM b",
		"INSERT INTO tabA (name) SELECT name FROM tabB ON DUPLICATE KEY UPDATE name = VALUES(name)",
		"INSERT INTO tabA (name) SELECT name FROM tabB RETURNING name",
		"INSERT INTO tabA (name) SELECT UUID() FROM tabB",
		"INSERT INTO tabA (name) SELECT name FROM tabB ORDER BY RAND() LIMIT 3",
		"INSERT INTO tabA (name) SELECT name FROM tabB; DELETE FROM tabA",
		"INSERT INTO tabA (name) /*!SELECT*/ name FROM tabB",
	],
)
def test_an_insert_select_it_cannot_read_reads_as_none(sql):
	assert parse_insert_select(sql) is None


def test_a_replace_reads_as_the_insert_of_its_rows():
	sql = "REPLACE LOW_PRIORITY INTO `tabToDo` (`name`, `x`) VALUES ('a1', 'REPLACE'), ('a2', 2)"
	as_insert = replace_as_insert(sql)
	assert as_insert == "INSERT LOW_PRIORITY INTO `tabToDo` (`name`, `x`) VALUES ('a1', 'REPLACE'), ('a2', 2)"
	assert parse_insert(as_insert, WANTED).rows == ({"name": "a1"}, {"name": "a2"})
	selecting = parse_insert_select(replace_as_insert("replace tabToDo (name) SELECT name FROM tabNote"))
	assert (selecting.table, selecting.columns) == ("tabToDo", ("name",))
	assert parse_insert(replace_as_insert("REPLACE tabToDo SET name = 'b1', x = 1"), WANTED).rows == (
		{"name": "b1"},
	)
	assert replace_as_insert("INSERT INTO tabToDo (name) VALUES ('a')") is None
