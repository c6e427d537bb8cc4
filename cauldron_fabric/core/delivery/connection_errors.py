"""What went wrong on a webhook's connection, told as the receiver's admin needs it.

requests and urllib3 wrap the socket's or TLS's error in their own text: the pool's repr, "Max
retries exceeded" of an attempt that made one try, the connection object; for an https:// URL
to a port serving plain HTTP, only "[SSL: WRONG_VERSION_NUMBER]".
"""

from __future__ import annotations

import http.client
import ssl

import urllib3


def connection_problem(exc: BaseException) -> str:
	"""Returns, as the end of a sentence, what the socket, TLS or HTTP parser said under ``exc``."""
	cause = _innermost(exc)
	if isinstance(cause, ssl.SSLCertVerificationError):
		return (
			f"its TLS certificate was not accepted ({cause.verify_message or cause.reason or cause}); "
			"retrying. Renew or fix the receiver's certificate, or check the URL's host name."
		)
	if isinstance(cause, ssl.SSLError):
		return (
			f"the TLS handshake failed ({cause.reason or cause}); retrying. If that port serves plain "
			"HTTP, the URL should start with http://, or name the port that serves HTTPS."
		)
	if isinstance(cause, OSError) and cause.strerror:
		return f"{cause.strerror}; retrying."
	if isinstance(cause, http.client.RemoteDisconnected):
		return "it closed the connection without answering; retrying."
	if isinstance(cause, http.client.HTTPException):
		return f"its answer is not HTTP ({cause!r}); retrying."
	return f"{exc}; retrying."


def _innermost(exc: BaseException) -> BaseException:
	"""Follows what requests and urllib3 wrapped (MaxRetryError's reason, a ProtocolError's cause)."""
	seen = set()
	while id(exc) not in seen:
		seen.add(id(exc))
		inner = getattr(exc, "reason", None) if isinstance(exc, urllib3.exceptions.MaxRetryError) else None
		if inner is None:
			inner = next((a for a in reversed(exc.args) if isinstance(a, BaseException)), None)
		if inner is None:
			inner = exc.__cause__
		if not isinstance(inner, BaseException):
			return exc
		exc = inner
	return exc
