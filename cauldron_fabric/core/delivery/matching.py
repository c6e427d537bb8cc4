"""Which subscriptions an event goes to: type patterns, a DocType filter and a content filter.

Event type patterns work on the dot-separated words of a type (``sales_invoice.submitted``):

* a word matches itself: ``sales_invoice.submitted``;
* ``*`` matches exactly one word and never crosses a dot: ``sales_invoice.*``, ``*.submitted``,
  ``agent.task.*`` (but ``agent.*`` does not match ``agent.task.created``);
* ``**`` matches any number of words, none included: ``agent.**`` matches ``agent.task.created``,
  ``**.submitted`` matches every submission;
* ``*`` or ``**`` alone matches every event (no type has a single word, so a lone ``*`` would
  otherwise match nothing, which nobody means).

Wildcards stand for whole words: ``sales_*`` is refused rather than guessed at.

``SubscriptionIndex`` files the patterns in a word trie, so an event's candidates are found by
walking its words (exact child, ``*`` child, ``**`` child) instead of testing every subscription;
the candidates per (type, DocType) are cached, as both come from small sets. Only the content
filters of the remaining candidates are evaluated, each at most once per event.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from cauldron_fabric.core.delivery.conditions import Condition, compile_condition
from cauldron_fabric.core.delivery.paths import event_document
from cauldron_fabric.core.envelope import Envelope
from cauldron_fabric.core.errors import ConfigurationError

WORD = re.compile(r"^[a-z0-9_]+\Z")
ONE, ANY = "*", "**"
CACHE_LIMIT = 20_000
T = TypeVar("T", bound=Hashable)


class PatternError(ConfigurationError):
	"""An event type pattern that cannot be used."""


@dataclass(frozen=True, slots=True)
class TypePattern:
	"""One compiled event type pattern."""

	text: str
	words: tuple[str, ...]

	def matches(self, event_type: str) -> bool:
		"""Tells whether ``event_type`` matches this pattern."""
		return _words_match(self.words, tuple(event_type.split(".")))


def compile_pattern(text: str) -> TypePattern:
	"""Validates a pattern and returns it compiled; raises PatternError explaining the fix."""
	cleaned = text.strip()
	if cleaned in (ONE, ANY):
		return TypePattern(cleaned, (ANY,))
	words = tuple(cleaned.split("."))
	for word in words:
		if word in (ONE, ANY) or WORD.match(word):
			continue
		if "*" in word:
			raise PatternError(
				f"Event type pattern {text!r}: wildcards stand for whole words, not part of {word!r}.",
				hint="Use '*' for one word or '**' for any number of words, e.g. 'sales_invoice.*'.",
			)
		raise PatternError(
			f"Event type pattern {text!r}: {word!r} is not a lower-case word (a-z, 0-9, _).",
			hint="Write types such as 'sales_invoice.submitted', with '*' or '**' as wildcards.",
		)
	return TypePattern(cleaned, words)


def _words_match(pattern: Sequence[str], words: Sequence[str]) -> bool:
	"""Walks the words keeping every pattern position reached, so each ``**`` costs once, not per skip."""
	reached = _past_globstars(pattern, {0})
	for word in words:
		following = set()
		for position in reached:
			head = pattern[position] if position < len(pattern) else None
			if head == ANY:
				following.add(position)
			elif head is not None and (head == ONE or head == word):
				following.add(position + 1)
		reached = _past_globstars(pattern, following)
		if not reached:
			return False
	return len(pattern) in reached


def _past_globstars(pattern: Sequence[str], reached: set[int]) -> set[int]:
	"""Adds the positions after each ``**`` reached, as a ``**`` may match no word."""
	for position in sorted(reached):
		while position < len(pattern) and pattern[position] == ANY:
			position += 1
			reached.add(position)
	return reached


@dataclass(frozen=True, slots=True)
class EventFilter:
	"""Everything a subscription says about which events it wants."""

	patterns: tuple[TypePattern, ...]
	doctypes: frozenset[str] = frozenset()
	condition: Condition | None = None

	def accepts_type(self, event_type: str) -> bool:
		"""Tells whether any of the type patterns matches."""
		return any(p.matches(event_type) for p in self.patterns)

	def accepts(self, envelope: Envelope, document: dict[str, Any] | None = None) -> bool:
		"""Tells whether the event passes patterns, DocType filter and content filter."""
		if not self.accepts_type(envelope.type):
			return False
		if self.doctypes and envelope.data.entity not in self.doctypes:
			return False
		return self.condition is None or self.condition.matches(document or event_document(envelope))


def compile_filter(
	patterns: Iterable[str], doctypes: Iterable[str] = (), condition: str | None = None
) -> EventFilter:
	"""Compiles a subscription's patterns, DocTypes and condition; raises on the first bad one."""
	compiled = tuple(compile_pattern(p) for p in patterns if p and p.strip())
	if not compiled:
		raise PatternError(
			"A subscription needs at least one event type pattern.",
			hint="Use for example 'sales_invoice.submitted', 'sales_invoice.*' or '*' for everything.",
		)
	wanted = frozenset(d.strip() for d in doctypes if d and d.strip())
	return EventFilter(
		compiled, wanted, compile_condition(condition) if condition and condition.strip() else None
	)


@dataclass
class _Node:
	children: dict[str, _Node] = field(default_factory=dict)
	terminal: list[int] = field(default_factory=list)


class SubscriptionIndex(Generic[T]):
	"""Finds the subscriptions (any hashable values) whose filters accept an event."""

	def __init__(self, entries: Iterable[tuple[T, EventFilter]]):
		self.entries: list[tuple[T, EventFilter]] = list(entries)
		self._root = _Node()
		for position, (_, event_filter) in enumerate(self.entries):
			for pattern in event_filter.patterns:
				self._insert(pattern.words, position)
		self._cache: dict[tuple[str, str], tuple] = {}
		self._lock = threading.Lock()

	def __len__(self) -> int:
		return len(self.entries)

	def _insert(self, words: tuple[str, ...], position: int) -> None:
		node = self._root
		for word in words:
			node = node.children.setdefault(word, _Node())
		if position not in node.terminal:
			node.terminal.append(position)

	def positions_for_type(self, event_type: str) -> list[int]:
		"""Returns, in subscription order, the positions whose type patterns match ``event_type``."""
		found: set[int] = set()
		self._walk(self._root, event_type.split("."), 0, found, set())
		return sorted(found)

	def _walk(
		self, node: _Node, words: list[str], index: int, found: set[int], seen: set[tuple[int, int]]
	) -> None:
		# Several '**' reach the same node at the same word many ways; walking it once is enough.
		if (id(node), index) in seen:
			return
		seen.add((id(node), index))
		globstar = node.children.get(ANY)
		if globstar is not None:
			for skip in range(index, len(words) + 1):
				self._walk(globstar, words, skip, found, seen)
		if index == len(words):
			found.update(node.terminal)
			return
		exact = node.children.get(words[index])
		if exact is not None:
			self._walk(exact, words, index + 1, found, seen)
		single = node.children.get(ONE)
		if single is not None:
			self._walk(single, words, index + 1, found, seen)

	def _candidates(self, event_type: str, entity: str) -> tuple[tuple[T, ...], tuple[tuple[T, Any], ...]]:
		"""Returns the subscriptions that pass type and DocType: those without a content filter, and
		those with one (paired with its compiled evaluator); cached per (type, DocType)."""
		key = (event_type, entity)
		cached = self._cache.get(key)
		if cached is None:
			passing = [
				self.entries[p]
				for p in self.positions_for_type(event_type)
				if not self.entries[p][1].doctypes or entity in self.entries[p][1].doctypes
			]
			cached = (
				tuple(s for s, f in passing if f.condition is None),
				tuple((s, f.condition.evaluate) for s, f in passing if f.condition is not None),
			)
			with self._lock:
				if len(self._cache) >= CACHE_LIMIT:
					self._cache.clear()
				self._cache[key] = cached
		return cached

	def match(self, envelope: Envelope) -> list[T]:
		"""Returns the subscriptions that want this event: those without a content filter first,
		then those whose filter holds, each group in the order given."""
		unfiltered, filtered = self._candidates(envelope.type, envelope.data.entity)
		matched = list(unfiltered)
		if filtered:
			document = event_document(envelope)
			matched += [subscription for subscription, evaluate in filtered if evaluate(document)]
		return matched
