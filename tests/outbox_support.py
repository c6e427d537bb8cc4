"""What the outbox test modules share: stores opened on one MariaDB table, one per relay, and
the events appended and settlements given to them.
"""

from cauldron_fabric.core.outbox.sql import SqlOutboxStore
from cauldron_fabric.core.ports import OutboxAppend, Settlement
from conftest import connect_db, make_envelope


class SqlSessions:
	"""Opens stores on one table; each store is one relay's connection."""

	def __init__(self, table, sequence):
		self.table, self.sequence = table, sequence
		self.opened = []

	def open(self):
		store = SqlOutboxStore(connect_db, table=self.table, sequence=self.sequence)
		self.opened.append(store)
		return store

	def append(self, entries):
		store = self.open()
		store.append(entries)
		store.commit()

	def statuses(self):
		conn = connect_db()
		with conn.cursor() as cur:
			cur.execute(f"SELECT name, status FROM `{self.table}`")
			rows = dict(cur.fetchall())
		conn.close()
		return {int(k): v for k, v in rows.items()}

	def topics(self):
		conn = connect_db()
		with conn.cursor() as cur:
			cur.execute(f"SELECT name, topic FROM `{self.table}`")
			rows = dict(cur.fetchall())
		conn.close()
		return {int(k): v for k, v in rows.items()}

	def close(self):
		for store in self.opened:
			store.close()


def events(keys_and_counts):
	return [
		OutboxAppend(make_envelope("ToDo", key, "updated", n=n))
		for key, count in keys_and_counts
		for n in range(count)
	]


def published(records):
	return [Settlement(r.seq, True, "topic", 0, i) for i, r in enumerate(records)]
