"""Reading UPDATE statements for the tables, columns and rows they write (core/sql_statements.py):
the fabric records a raw SQL update's events from this reading, so a wrong guess would be a
wrong event. What it cannot read must read as None."""

from __future__ import annotations

import pytest

from cauldron_fabric.core.sql_statements import parse_delete, parse_truncate, parse_update


def targets(sql: str) -> dict[str, set[str]]:
	statement = parse_update(sql)
	assert statement is not None, sql
	return {target.table: set(target.columns) for target in statement.targets}


def selects(sql: str) -> list[str]:
	statement = parse_update(sql)
	assert statement is not None, sql
	return [statement.select_before(target) for target in statement.targets]


def test_a_query_builder_update_reads_as_its_table_columns_and_rows():
	sql = (
		"UPDATE `tabToDo` SET `status`='Closed',`priority`=`priority` "
		"WHERE `name`='x' AND `status` IN ('Open','a\\'b')"
	)
	assert targets(sql) == {"tabToDo": {"status", "priority"}}
	assert selects(sql) == [
		"SELECT `tabToDo`.`name` AS `name`, `tabToDo`.`priority` AS `priority`, "
		"`tabToDo`.`status` AS `status` FROM `tabToDo` WHERE `name`='x' AND `status` IN ('Open','a\\'b')"
	]


def test_keywords_inside_strings_comments_and_parentheses_are_not_the_statements():
	sql = (
		"\n\t\tupdate tabToDo /* SET x = 1 WHERE */ set description = 'a; WHERE b LIMIT 1', "
		"priority = (select max(p) from tabOther where q = 1) where name like 'a%' "
		"order by modified desc limit 5;"
	)
	assert targets(sql) == {"tabToDo": {"description", "priority"}}
	(select,) = selects(sql)
	assert " FROM tabToDo " in select
	assert select.endswith(" WHERE name like 'a%' order by modified desc limit 5")


def test_a_statement_without_where_reads_every_row():
	assert selects("UPDATE tabA SET x = CASE WHEN y = 1 THEN 2 ELSE 3 END") == [
		"SELECT `tabA`.`name` AS `name`, `tabA`.`x` AS `x` FROM tabA"
	]


def test_modifiers_and_an_alias_with_as():
	sql = "UPDATE LOW_PRIORITY IGNORE tabA AS a SET a.x = 1 WHERE a.n IN (SELECT n FROM tabD)"
	assert targets(sql) == {"tabA": {"x"}}
	assert selects(sql) == [
		"SELECT `a`.`name` AS `name`, `a`.`x` AS `x` FROM tabA AS a WHERE a.n IN (SELECT n FROM tabD)"
	]


def test_a_join_writes_each_table_its_qualified_columns_name():
	sql = (
		"update `tabSales Order Item` soi inner join `tabSales Order` so on so.name = soi.parent "
		"set soi.delivered_qty = 0, so.per_delivered = 0 where so.name = 'SO-1'"
	)
	assert targets(sql) == {"tabSales Order Item": {"delivered_qty"}, "tabSales Order": {"per_delivered"}}
	assert [select.split(" FROM ")[0] for select in selects(sql)] == [
		"SELECT DISTINCT `soi`.`name` AS `name`, `soi`.`delivered_qty` AS `delivered_qty`",
		"SELECT DISTINCT `so`.`name` AS `name`, `so`.`per_delivered` AS `per_delivered`",
	]


def test_a_derived_table_is_read_never_written():
	sql = (
		"UPDATE `tabEvent Delivery` t JOIN (SELECT 1 AS seq UNION ALL SELECT 2) v "
		"ON t.name = v.seq SET t.status = v.seq"
	)
	assert targets(sql) == {"tabEvent Delivery": {"status"}}
	assert parse_update("UPDATE tabA a JOIN (SELECT 1 AS n) v ON a.n = v.n SET v.n = 2") is None


def test_comma_joins_and_quoted_aliases():
	assert targets("UPDATE tabA a, `tabB` `b` SET a.x = b.y, `b`.`z` = 1 WHERE a.n = b.n") == {
		"tabA": {"x"},
		"tabB": {"z"},
	}


def test_a_double_dash_without_a_space_is_no_comment():
	# A negative value after a minus, as a client writes "qty-%s" with -5: MariaDB reads
	# "qty--5" as qty - (-5), and "-- " (with a space) alone as a comment.
	assert selects("UPDATE tabBin SET qty = qty--5 WHERE name = 'x'") == [
		"SELECT `tabBin`.`name` AS `name`, `tabBin`.`qty` AS `qty` FROM tabBin WHERE name = 'x'"
	]
	assert deleted("DELETE FROM tabBin WHERE qty < 0--1 AND name = 'x'") == [
		"SELECT `tabBin`.`name` AS `name` FROM tabBin WHERE qty < 0--1 AND name = 'x'"
	]
	assert targets("UPDATE tabA SET x = 1 -- WHERE a comment\n WHERE n = 1") == {"tabA": {"x"}}


def test_an_executable_comment_is_read_as_unreadable():
	# MariaDB runs what /*! … */ and /*M! … */ hold: no comment to skip.
	assert parse_update("UPDATE tabA SET x = 1 /*! WHERE n = 1 */") is None
	assert parse_delete("DELETE FROM tabA /*M!100000 WHERE n = 1 */") is None


@pytest.mark.parametrize(
	"sql",
	[
		"UPDATE tabA a, tabB b SET x = 1",  # which table x is in is the database's to know
		"UPDATE tabA SET x = 1 WHERE (a = 1",  # unbalanced
		"UPDATE tabA SET WHERE x = 1",
		"UPDATE SET x = 1",
		"UPDATE tabA a SET b.x = 1",  # no such alias
		"SELECT 1",
	],
)
def test_what_it_cannot_read_reads_as_none(sql):
	assert parse_update(sql) is None


def deleted(sql: str) -> list[str]:
	statement = parse_delete(sql)
	assert statement is not None, sql
	return [statement.select_before(target) for target in statement.targets]


def test_a_delete_from_one_table_reads_the_names_it_deletes():
	assert deleted("DELETE FROM `tabToDo` WHERE `name`='zz'") == [
		"SELECT `tabToDo`.`name` AS `name` FROM `tabToDo` WHERE `name`='zz'"
	]
	assert deleted("delete quick from tabToDo AS t where t.status = 'x' order by modified limit 3;") == [
		"SELECT `t`.`name` AS `name` FROM tabToDo AS t WHERE t.status = 'x' order by modified limit 3"
	]
	assert deleted("DELETE FROM tabA") == ["SELECT `tabA`.`name` AS `name` FROM tabA"]


def test_a_multi_table_delete_deletes_from_the_tables_before_from():
	assert deleted("DELETE a FROM tabA a JOIN tabB b ON a.n = b.n WHERE b.z = 1") == [
		"SELECT DISTINCT `a`.`name` AS `name` FROM tabA a JOIN tabB b ON a.n = b.n WHERE b.z = 1"
	]
	assert [
		select.split(" FROM ")[0] for select in deleted("DELETE a.*, b FROM tabA a, tabB b WHERE a.n = b.n")
	] == [
		"SELECT DISTINCT `a`.`name` AS `name`",
		"SELECT DISTINCT `b`.`name` AS `name`",
	]


@pytest.mark.parametrize(
	"sql",
	[
		"DELETE FROM USING tabA JOIN tabB",  # no table to delete from
		"DELETE a FROM tabA USING tabA",  # both forms at once
		"DELETE FROM tabC USING tabA JOIN tabB",  # deletes from a table it does not join
		"DELETE FROM tabA a, tabB b",  # several tables need the names before FROM
		"DELETE c FROM tabA a",  # no such alias
		"DELETE tabA",
	],
)
def test_deletes_it_cannot_read_read_as_none(sql):
	assert parse_delete(sql) is None


def test_a_truncate_reads_as_the_delete_of_every_row():
	for sql, refs in [
		("truncate `tabToDo`", "`tabToDo`"),  # frappe.db.truncate's
		("TRUNCATE TABLE tabToDo;", "tabToDo"),
		("/* purge */ truncate table `site`.`tabToDo` NOWAIT", "`site`.`tabToDo`"),
		("TRUNCATE tabToDo WAIT 5 -- then the rest", "tabToDo"),
	]:
		statement = parse_truncate(sql)
		assert (
			statement.select_before(statement.targets[0]) == f"SELECT `tabToDo`.`name` AS `name` FROM {refs}"
		)


@pytest.mark.parametrize(
	"sql", ["TRUNCATE", "TRUNCATE TABLE", "TRUNCATE tabA, tabB", "TRUNCATE tabA WAIT", "TRUNCATE tabA x"]
)
def test_truncates_it_cannot_read_read_as_none(sql):
	assert parse_truncate(sql) is None


def test_a_locking_read_reads_for_update_on_a_line_of_its_own():
	statement = parse_update("UPDATE tabA SET x = 1 WHERE n = 1 LIMIT 2 -- the last two")
	assert statement.select_before(statement.targets[0], lock=True) == (
		"SELECT `tabA`.`name` AS `name`, `tabA`.`x` AS `x` FROM tabA WHERE n = 1 LIMIT 2\nFOR UPDATE"
	)


def test_a_comment_ending_a_part_hides_nothing_after_it_in_the_read():
	# Each part of the read ends at its last token: a "--" comment closing the table
	# references or the WHERE would otherwise hide the WHERE, or the ORDER BY and LIMIT.
	sql = "UPDATE tabA -- the orders\nSET x = 1 WHERE n = 1 # the first\nORDER BY n LIMIT 1 -- done\n;"
	assert selects(sql) == [
		"SELECT `tabA`.`name` AS `name`, `tabA`.`x` AS `x` FROM tabA WHERE n = 1 ORDER BY n LIMIT 1"
	]
	assert deleted("DELETE FROM tabA -- all\nWHERE n = 1 -- the first\nLIMIT 1") == [
		"SELECT `tabA`.`name` AS `name` FROM tabA WHERE n = 1 LIMIT 1"
	]


def test_a_delete_returning_reads_the_rows_it_deletes():
	# MariaDB's DELETE … RETURNING: the list returned picks no rows, and is no part of the read.
	assert deleted("DELETE FROM tabA WHERE n = 1 ORDER BY n LIMIT 2 RETURNING name, n") == [
		"SELECT `tabA`.`name` AS `name` FROM tabA WHERE n = 1 ORDER BY n LIMIT 2"
	]
	assert deleted("DELETE FROM tabA RETURNING *") == ["SELECT `tabA`.`name` AS `name` FROM tabA"]


@pytest.mark.parametrize(
	"sql",
	[
		"DELETE FROM tabA WHERE n = 1 ORDER BY RAND() LIMIT 2",
		"DELETE FROM tabA WHERE rand ( ) < 0.1",
		"UPDATE tabA SET x = 1 WHERE name IN (SELECT name FROM tabA ORDER BY uuid() LIMIT 3)",
	],
)
def test_rows_picked_at_random_read_as_unreadable(sql):
	# A second run of the same WHERE or ORDER BY picks other rows: a read of them is a guess.
	assert (parse_delete(sql) if sql.startswith("DELETE") else parse_update(sql)) is None


def test_a_random_value_written_is_read_as_any_other():
	assert targets("UPDATE tabA SET token = UUID(), x = RAND() WHERE n = 'rand()'") == {
		"tabA": {"token", "x"}
	}


def new_names(sql: str) -> dict[str, str | None]:
	statement = parse_update(sql)
	assert statement is not None, sql
	return {target.table: target.new_name for target in statement.targets}


def test_a_rename_reads_each_rows_new_name_before_it_runs():
	sql = "UPDATE `tabItem` SET name = CONCAT('NEW-', name), item_code = CONCAT('NEW-', name) WHERE name LIKE 'OLD-%'"
	assert new_names(sql) == {"tabItem": "CONCAT('NEW-', name)"}
	(select,) = selects(sql)
	assert select == (
		"SELECT `tabItem`.`name` AS `name`, `tabItem`.`item_code` AS `item_code`, "
		"(CONCAT('NEW-', name)) AS `__fabric_new_name` FROM `tabItem` WHERE name LIKE 'OLD-%'"
	)
	assert new_names("UPDATE tabA SET `NAME` = 'b', x = 1 WHERE name = 'a'") == {"tabA": "'b'"}
	# A statement that sets no name reads no new one.
	assert new_names("UPDATE tabA SET x = 1") == {"tabA": None}
	assert "__fabric_new_name" not in selects("UPDATE tabA SET x = 1")[0]


@pytest.mark.parametrize(
	"sql",
	[
		# Set from left to right: the new name reads the title this statement sets first.
		"UPDATE tabA SET title = 'x', name = CONCAT(title, '-1') WHERE name = 'a'",
		"UPDATE tabA SET `title` = 'x', name = CONCAT(`TITLE`, '-1')",
		# A new name drawn at random is another one at each read.
		"UPDATE tabA SET name = UUID() WHERE name = 'a'",
		# A join sets its tables in an order of its own.
		"UPDATE tabA a JOIN tabB b ON b.a = a.name SET a.name = b.code, b.code = 'x'",
	],
)
def test_a_new_name_the_read_could_get_wrong_is_not_read(sql):
	assert set(new_names(sql).values()) == {None}


def test_a_new_name_may_read_what_is_set_after_it_and_another_table():
	assert new_names("UPDATE tabA SET name = CONCAT(title, '-1'), title = 'x'") == {
		"tabA": "CONCAT(title, '-1')"
	}
	assert new_names("UPDATE tabA a JOIN tabB b ON b.a = a.name SET a.name = b.code, b.x = 1") == {
		"tabA": "b.code",
		"tabB": None,
	}


COLUMNS = {
	"tabSales Order": {"name", "status", "per_billed"},
	"tabSales Order Item": {"name", "parent", "billed_amt"},
	"tabItem": {"name", "status"},
}


def test_an_unqualified_column_of_a_join_is_the_one_table_that_has_it():
	sql = (
		"UPDATE `tabSales Order` so JOIN `tabSales Order Item` soi ON soi.parent = so.name "
		"SET per_billed = 100, billed_amt = 0, so.status = 'Completed' WHERE soi.name = 'r1'"
	)
	assert parse_update(sql) is None  # without the tables' columns it cannot tell
	statement = parse_update(sql, COLUMNS.get)
	assert {target.table: set(target.columns) for target in statement.targets} == {
		"tabSales Order": {"per_billed", "status"},
		"tabSales Order Item": {"billed_amt"},
	}


@pytest.mark.parametrize(
	"sql",
	[
		"UPDATE `tabSales Order` so JOIN tabItem i ON i.name = so.name SET status = 'x'",  # both have it
		"UPDATE `tabSales Order` so JOIN tabItem i ON i.name = so.name SET nowhere = 1",
		"UPDATE `tabSales Order` so JOIN tabUnknown u ON u.a = so.name SET per_billed = 1",
		"UPDATE `tabSales Order` so JOIN (SELECT 1 AS per_billed) d SET per_billed = 1",  # derived
	],
)
def test_a_join_column_no_one_table_has_reads_as_unreadable(sql):
	assert parse_update(sql, COLUMNS.get) is None


def test_the_using_form_deletes_from_the_tables_before_using():
	statement = parse_delete(
		"DELETE FROM o, `i` USING `tabOrder` o JOIN `tabOrder Item` i ON i.parent = o.name WHERE o.x = 1"
	)
	assert [(target.table, target.reference) for target in statement.targets] == [
		("tabOrder", "`o`"),
		("tabOrder Item", "`i`"),
	]
	assert statement.select_before(statement.targets[0]) == (
		"SELECT DISTINCT `o`.`name` AS `name` FROM `tabOrder` o JOIN `tabOrder Item` i ON i.parent = o.name "
		"WHERE o.x = 1"
	)
