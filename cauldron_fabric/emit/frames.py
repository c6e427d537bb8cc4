"""Reading what a hook is not told from the call that fires it: an argument, the object called,
or the call itself."""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import FrameType
from typing import Any


def argument_of(method: str, owner: object, name: str) -> Any:
	"""Returns argument ``name`` of the ``owner.method(...)`` call this code runs inside, or None.

	Some hooks are told less than the call that fires them knows (Document.insert's
	ignore_if_duplicate, LoginManager.logout's user): the value is read off that call's frame,
	a few frames up the stack, in a few microseconds.
	"""
	frame = sys._getframe(1)
	while frame is not None:
		if frame.f_code.co_name == method and frame.f_locals.get("self") is owner:
			return frame.f_locals.get(name)
		frame = frame.f_back
	return None


def caller_of(method: str, matches: Callable[[object], bool]) -> object | None:
	"""Returns the ``self`` of the innermost ``method`` call this code runs inside for which
	``matches`` holds, or None."""
	frame = sys._getframe(1)
	while frame is not None:
		if frame.f_code.co_name == method:
			owner = frame.f_locals.get("self")
			if owner is not None and matches(owner):
				return owner
		frame = frame.f_back
	return None


def callers_of(method: str) -> list[object]:
	"""Returns the ``self`` of every ``method`` call this code runs inside, innermost first."""
	owners = []
	frame = sys._getframe(1)
	while frame is not None:
		if frame.f_code.co_name == method:
			owners.append(frame.f_locals.get("self"))
		frame = frame.f_back
	return owners


def call_of(function: Callable) -> FrameType | None:
	"""Returns the frame of the innermost call of ``function`` this code runs inside, or None."""
	code = function.__code__
	frame = sys._getframe(1)
	while frame is not None:
		if frame.f_code is code:
			return frame
		frame = frame.f_back
	return None


def inside_any(codes: frozenset) -> bool:
	"""Tells whether this code runs inside a call of any function whose code is in ``codes``."""
	frame = sys._getframe(1)
	while frame is not None:
		if frame.f_code in codes:
			return True
		frame = frame.f_back
	return False
