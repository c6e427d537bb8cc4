"""The tokens of a MariaDB statement's text, as the statement readers (``sql_statements.py``,
``sql_inserts.py``, ``sql_kinds.py``) walk it: its top level, where each parenthesised group is
one token, and the searches over those tokens they share.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import pairwise

# One token of MariaDB's SQL: a quoted string or identifier (backslash escapes, as the client
# writes them), a comment, a parenthesis, a word, or any other character. "--" opens a comment
# only before a space or control character: "qty--5" (a client's "qty-%s" with -5) is a
# subtraction. "/*!" and "/*M!" hold SQL that MariaDB runs (``executable``).
_TOKEN = re.compile(
	r"""
	(?P<string>'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.|"")*")
	|(?P<quoted>`(?:[^`]|``)*`)
	|(?P<executable>/\*M?!)
	|(?P<comment>/\*.*?\*/|--(?=[\x00-\x20]|$)[^\n]*|\#[^\n]*)
	|(?P<open>\()
	|(?P<close>\))
	|(?P<word>[A-Za-z0-9_$]+)
	|(?P<space>\s+)
	|(?P<other>.)
	""",
	re.VERBOSE | re.DOTALL,
)


@dataclass(frozen=True)
class Token:
	kind: str
	text: str
	start: int
	end: int

	@property
	def upper(self) -> str:
		return self.text.upper() if self.kind == "word" else ""

	@property
	def name(self) -> str:
		"""The identifier this token spells, unquoted."""
		return self.text[1:-1].replace("``", "`") if self.kind == "quoted" else self.text


def _top_level(sql: str) -> list[Token] | None:
	"""Returns the statement's tokens outside parentheses (each parenthesised group is one
	``group`` token), without spaces and comments; None when its parentheses do not match or
	it holds an executable comment."""
	tokens: list[Token] = []
	depth = 0
	group_start = 0
	for match in _TOKEN.finditer(sql):
		kind = match.lastgroup
		if kind == "executable":
			return None
		if kind in ("space", "comment"):
			continue
		if kind == "open":
			if depth == 0:
				group_start = match.start()
			depth += 1
		elif kind == "close":
			depth -= 1
			if depth < 0:
				return None
			if depth == 0:
				tokens.append(Token("group", sql[group_start : match.end()], group_start, match.end()))
		elif depth == 0:
			tokens.append(Token(kind, match.group(), match.start(), match.end()))
	return tokens if depth == 0 else None


# Functions whose every call differs: rows picked with them (WHERE RAND() < 0.1, ORDER BY RAND()
# LIMIT 5) are others at each run, so a read before the statement would be a guess.
_RANDOM = frozenset({"RAND", "UUID", "UUID_SHORT", "SYS_GUID"})


def _picks_at_random(*texts: str) -> bool:
	"""Tells whether any of ``texts`` (the parts that pick the rows) calls a random function."""
	for text in texts:
		words = [m for m in _TOKEN.finditer(text) if m.lastgroup not in ("space", "comment")]
		for word, following in pairwise(words):
			if word.lastgroup == "word" and word.group().upper() in _RANDOM and following.group() == "(":
				return True
	return False


def _text(sql: str, tokens: list[Token], first: int, stop: int) -> str:
	"""Returns the statement's text from token ``first`` to the end of the token before ``stop``:
	never a comment after it, which would hide what the read puts next ("" when none)."""
	return sql[tokens[first].start : tokens[stop - 1].end] if stop > first else ""


def _without_semicolon(tokens: list[Token]) -> int:
	"""Returns how many tokens the statement has, a closing semicolon left out."""
	return len(tokens) - 1 if tokens[-1].text == ";" else len(tokens)


def _find(tokens: list[Token], start: int, word: str) -> int | None:
	for index in range(start, len(tokens)):
		if tokens[index].upper == word:
			return index
	return None


def _find_tail(tokens: list[Token], start: int) -> int | None:
	"""Returns where ORDER BY or LIMIT starts, if anywhere from ``start``."""
	for index in range(start, len(tokens)):
		word = tokens[index].upper
		if word == "LIMIT" or (
			word == "ORDER" and index + 1 < len(tokens) and tokens[index + 1].upper == "BY"
		):
			return index
	return None


def _identifier(tokens: list[Token], index: int) -> tuple[list[str], int]:
	"""Reads a dotted identifier (``a``, ``a.b``, `` `a`.`b` ``) from ``index``: its parts and
	the index after it."""
	parts = [tokens[index].name]
	index += 1
	while (
		index + 1 < len(tokens) and tokens[index].text == "." and tokens[index + 1].kind in ("word", "quoted")
	):
		parts.append(tokens[index + 1].name)
		index += 2
	return parts, index
