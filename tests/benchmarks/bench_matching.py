"""Matching cost: events/s through subscription matching with 1,000 subscriptions.

The subscriptions mix what admins write: exact types, ``doctype.*``, ``*.action``, ``agent.**``
and a few catch-alls, a third of them with DocType filters and a third with content filters.
The index (word trie + per (type, DocType) candidate cache + compiled conditions) is compared
with testing every subscription's filter, the naive way, in the same run.
Target: at least 20,000 events/s through the index.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parents[2])]

from cauldron_fabric.core.delivery.matching import SubscriptionIndex, compile_filter  # noqa: E402
from conftest import make_envelope  # noqa: E402

DOCTYPES = [f"Doc Type {n}" for n in range(60)] + ["Sales Invoice", "Purchase Order", "Customer", "Item"]
ACTIONS = ["created", "updated", "submitted", "cancelled", "deleted", "renamed", "updated_after_submit"]
CONDITIONS = [
	"data.payload.grand_total > {n}",
	'data.payload.status == "Paid" and data.payload.grand_total >= {n}',
	'"vip" in data.payload.tags or data.payload.priority in ["High", "Urgent"]',
	"exists(data.payload.customer) and not data.payload.is_return",
	'startswith(data.entityId, "SINV-") and data.payload.grand_total < {n}',
]


def snake(doctype: str) -> str:
	return doctype.lower().replace(" ", "_")


def subscriptions(count: int, rng: random.Random) -> list[tuple[int, object]]:
	made = []
	for n in range(count):
		doctype, action = rng.choice(DOCTYPES), rng.choice(ACTIONS)
		shape = rng.random()
		if shape < 0.60:
			patterns = [f"{snake(doctype)}.{action}", f"{snake(doctype)}.{rng.choice(ACTIONS)}"]
		elif shape < 0.80:
			patterns = [f"{snake(doctype)}.*"]
		elif shape < 0.92:
			patterns = [f"*.{action}"]
		elif shape < 0.98:
			patterns = ["agent.**", "agent.task.*"]
		else:
			patterns = ["*"]
		doctypes = [doctype] if rng.random() < 0.33 else []
		condition = rng.choice(CONDITIONS).format(n=rng.randint(10, 5000)) if rng.random() < 0.33 else None
		made.append((n, compile_filter(patterns, doctypes, condition)))
	return made


def events(count: int, rng: random.Random):
	made = []
	for n in range(count):
		if rng.random() < 0.05:
			made.append(make_envelope("Agent Task", f"T-{n}", "created"))
			continue
		doctype = rng.choice(DOCTYPES)
		made.append(
			make_envelope(
				doctype, f"SINV-{n}", rng.choice(ACTIONS), grand_total=rng.randint(1, 10_000),
				status=rng.choice(["Paid", "Unpaid"]), tags=rng.sample(["vip", "eu", "us", "new"], 2),
				priority=rng.choice(["Low", "High"]), customer=rng.choice([None, "ACME"]), is_return=False,
			)
		)  # fmt: skip
	return made


def rate(match, sample, total: int) -> tuple[float, int]:
	matched = 0
	started = time.perf_counter()
	for n in range(total):
		matched += len(match(sample[n % len(sample)]))
	return total / (time.perf_counter() - started), matched


def main() -> None:
	parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
	parser.add_argument("--subscriptions", type=int, default=1000)
	parser.add_argument("--events", type=int, default=100_000)
	args = parser.parse_args()
	rng = random.Random(42)
	entries = subscriptions(args.subscriptions, rng)
	sample = events(5000, rng)
	index = SubscriptionIndex(entries)

	def naive(envelope):
		document = envelope.to_dict()
		return [key for key, event_filter in entries if event_filter.accepts(envelope, document)]

	naive_total = max(2000, args.events // 50)
	assert all(sorted(index.match(e)) == naive(e) for e in sample[:2000]), (
		"the index and the naive scan disagree"
	)
	indexed_rate, matched = rate(index.match, sample, args.events)
	naive_rate, _ = rate(naive, sample, naive_total)
	print(f"subscriptions: {len(entries)}, events: {args.events}, deliveries matched: {matched} "
		f"({matched / args.events:.1f} per event)")  # fmt: skip
	print(f"index:      {indexed_rate:,.0f} events/s")
	print(f"naive scan: {naive_rate:,.0f} events/s ({naive_total} events)")
	print(f"ratio index/naive: {indexed_rate / naive_rate:.1f}x; target >= 20,000 events/s: "
		f"{'met' if indexed_rate >= 20_000 else 'NOT met'}")  # fmt: skip


if __name__ == "__main__":
	main()
