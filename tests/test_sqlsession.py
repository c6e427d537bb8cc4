"""How the stores tell the database's errors apart (core/sqlsession.py): the error number is read
through the exceptions frameworks raise for a driver's error, on errors MariaDB really gives."""

import pymysql
import pytest

from cauldron_fabric.core.sqlsession import error_code, is_connection_error, is_transient_error
from conftest import connect_db


@pytest.fixture
def lock_wait_timeout(database):
	"""Returns the error a statement gets waiting 1 s on a row another connection holds."""
	holder, waiter = connect_db(), connect_db()
	try:
		with holder.cursor() as cur:
			cur.execute("CREATE TABLE IF NOT EXISTS session_errors (n int primary key)")
			cur.execute("INSERT IGNORE INTO session_errors VALUES (1)")
			holder.commit()
			cur.execute("SELECT n FROM session_errors WHERE n = 1 FOR UPDATE")
		with waiter.cursor() as cur:
			cur.execute("SET SESSION innodb_lock_wait_timeout = 1")
			with pytest.raises(pymysql.err.OperationalError) as raised:
				cur.execute("UPDATE session_errors SET n = 1 WHERE n = 1")
		return raised.value
	finally:
		holder.rollback()
		holder.close()
		waiter.close()


def test_the_error_number_is_read_through_exceptions_raised_for_it(lock_wait_timeout):
	assert error_code(lock_wait_timeout) == 1205
	assert is_transient_error(lock_wait_timeout) and not is_connection_error(lock_wait_timeout)

	class Wrapping(Exception):  # as Frappe's QueryTimeoutError(e) from e
		pass

	def raised(make):
		try:
			make()
		except Exception as exc:
			return exc
		raise AssertionError("nothing raised")

	def wrapped():
		raise Wrapping(lock_wait_timeout) from lock_wait_timeout

	def from_it():
		raise RuntimeError("the statement failed") from lock_wait_timeout

	def while_handling():  # as frappe.throw(…, InReadOnlyMode) in Frappe's except block
		try:
			raise lock_wait_timeout
		except pymysql.err.OperationalError:
			raise RuntimeError("try again later")  # noqa: B904

	def unrelated():
		try:
			raise lock_wait_timeout
		except pymysql.err.OperationalError:
			raise ValueError("not about the database") from None

	for make in (wrapped, from_it, while_handling):
		assert error_code(raised(make)) == 1205, make.__name__
		assert is_transient_error(raised(make)), make.__name__
	assert error_code(raised(unrelated)) is None
	assert error_code(ValueError("no number")) is None
