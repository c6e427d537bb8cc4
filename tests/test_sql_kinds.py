"""What kind of statement a raw SQL text is (core/sql_kinds.py): every frappe.db.sql call is
checked so, and a write taken for something else is a write with no event."""

from __future__ import annotations

import pytest

from cauldron_fabric.core.sql_kinds import (
	TRANSACTION,
	doctypes_named,
	statement_body,
	statement_kind,
	transaction_step,
	unlimited,
	write_kind,
)


def test_write_kind_looks_at_the_first_word_only():
	assert write_kind("  /* note */ UPDATE tabA SET x = 1") == "update"
	assert write_kind("\n\tupdate `tabA` set x = 1") == "update"
	assert write_kind("Delete FROM tabA") == "delete"
	assert write_kind("SELECT 'update' FROM tabA") is None
	assert write_kind("updated_at") is None
	assert write_kind("deleted") is None
	assert write_kind("truncate `tabA`") == "truncate"
	assert write_kind("truncated") is None
	assert write_kind("REPLACE INTO tabA (name) VALUES ('a')") == "replace"
	assert write_kind("replaced") is None
	assert write_kind("LOAD DATA LOCAL INFILE 'x.csv' INTO TABLE `tabA`") == "load"
	assert write_kind("load xml infile 'x.xml' into table tabA") == "load"
	assert write_kind("LOAD INDEX INTO CACHE tabA") is None
	assert write_kind("update_log_entries()") is None  # a first word that only begins like one


@pytest.mark.parametrize(
	"sql",
	[
		"-- why the patch does this\nUPDATE tabA SET x = 1",
		"# a note\n\n  update tabA set x = 1",
		"/* a */ -- b\n# c\nUPDATE tabA SET x = 1",
		"--\tno space but a tab\nUPDATE tabA SET x = 1",
	],
)
def test_write_kind_looks_past_line_comments(sql):
	assert write_kind(sql) == "update"


def test_a_double_dash_without_space_is_no_comment():
	# MariaDB reads "--1" as minus minus one, not as a comment: no statement starts so.
	assert write_kind("--1\nUPDATE tabA SET x = 1") is None


def test_set_statement_reads_as_the_statement_after_for():
	sql = "SET STATEMENT max_statement_time = 60, sql_mode = 'FOR UPDATE x' FOR DELETE FROM tabA WHERE x = 1"
	assert write_kind(sql) == "delete"
	assert statement_body(sql) == "DELETE FROM tabA WHERE x = 1"
	assert write_kind("SET STATEMENT max_statement_time = 1 FOR SELECT * FROM tabA") is None
	assert write_kind("SET @x = 1") is None
	assert statement_body("UPDATE tabA SET x = 1") == "UPDATE tabA SET x = 1"
	assert statement_body("-- n\nset statement a = (1) for\nupdate tabA set x = 1") == "update tabA set x = 1"
	assert statement_body("SET @x = 1") == "SET @x = 1"


def test_statement_kind_tells_writes_transactions_and_the_rest():
	assert statement_kind("select `name` from `tabToDo` where name = %s") is None
	assert statement_kind("SELECT 'commit'") is None
	assert statement_kind("show tables") is None
	assert statement_kind("committed") is None
	assert statement_kind("-- x\nUPDATE tabA SET x = 1") == "update"
	assert statement_kind("set statement a = 1 for delete from tabA") == "delete"
	assert statement_kind("LOAD DATA INFILE 'x' INTO TABLE tabA") == "load"
	# Only its first word is read: transaction_step then tells a step from the rest.
	assert statement_kind("COMMIT AND CHAIN") is TRANSACTION
	assert transaction_step("COMMIT AND CHAIN") is None


SAVEPOINT_STEPS = [
	("savepoint fabric_x", ("savepoint", "fabric_x")),
	("SAVEPOINT `A b`", ("savepoint", "a b")),
	("ROLLBACK TO SAVEPOINT Sp", ("rollback", "sp")),
	("rollback work to sp;", ("rollback", "sp")),
	("ROLLBACK WORK TO `SP`", ("rollback", "sp")),
	("-- why\nRELEASE SAVEPOINT x1 ", ("release", "x1")),
	("RELEASE x", None),
	("savepoint a b", None),
	("SELECT 'savepoint x'", None),
]
TRANSACTION_ENDS = [
	("commit", ("commit", None)),
	("COMMIT WORK;", ("commit", None)),
	("/* n */ COMMIT WORK;", ("commit", None)),
	("  -- done\nRollback ", ("rollback", None)),
	("rollback", ("rollback", None)),
	("rollback to savepoint x", ("rollback", "x")),
	("COMMIT AND CHAIN", None),
	("committed", None),
	("SELECT 'commit'", None),
]


@pytest.mark.parametrize(("sql", "step"), SAVEPOINT_STEPS)
def test_savepoint_steps_read_with_their_names_without_case(sql, step):
	assert transaction_step(sql) == step


@pytest.mark.parametrize(("sql", "end"), TRANSACTION_ENDS)
def test_a_plain_commit_or_rollback_reads_as_the_transactions_end(sql, end):
	assert transaction_step(sql) == end


# The SQL wrap reaches transaction_step only for a statement statement_kind calls a
# TRANSACTION: a step taken for anything else is a savepoint or a commit not followed.
@pytest.mark.parametrize("sql", [sql for sql, step in SAVEPOINT_STEPS + TRANSACTION_ENDS if step])
def test_every_transaction_step_is_a_transaction_statement(sql):
	assert transaction_step(sql) is not None
	assert statement_kind(sql) is TRANSACTION
	assert write_kind(sql) is None


def test_the_fabrics_read_is_exempt_from_the_join_size_limit():
	assert unlimited("SELECT name FROM tabA") == "SET STATEMENT sql_big_selects = 1 FOR SELECT name FROM tabA"


def test_doctypes_named_finds_every_table_quoted_or_not():
	assert doctypes_named("UPDATE `tabSales Order` so, tabToDo SET so.x = (SELECT 1 FROM `tabA``b`)") == {
		"Sales Order",
		"ToDo",
		"A`b",
	}
