"""Names checked by a pattern are refused with a line break at their end.

In Python's regular expressions ``$`` also matches just before a final line break, so patterns
checked with ``re.match`` and ending in ``$`` let ``name\\n`` through; they end in ``\\Z``.
"""

from __future__ import annotations

import pytest

from cauldron_fabric.core.delivery.matching import PatternError, compile_pattern
from cauldron_fabric.core.delivery.paths import parse_path
from cauldron_fabric.core.envelope import TYPE_PATTERN
from cauldron_fabric.core.naming import invalid_topic_names


def test_a_topic_name_ending_in_a_line_break_is_invalid():
	assert invalid_topic_names(["orders", "orders\n", ".\n", "..\n"]) == ["orders\n", ".\n", "..\n"]


def test_an_event_type_ending_in_a_line_break_does_not_match_the_type_pattern():
	assert TYPE_PATTERN.match("todo.updated")
	assert not TYPE_PATTERN.match("todo.updated\n")


def test_a_word_of_a_type_pattern_ending_in_a_line_break_is_refused():
	with pytest.raises(PatternError):
		compile_pattern("todo\n.updated")


def test_a_path_segment_ending_in_a_line_break_is_refused():
	assert parse_path("payload.items.0")[-2:] == ("items", 0)
	with pytest.raises(ValueError, match="is not a dotted path"):
		parse_path("payload\n.items")
