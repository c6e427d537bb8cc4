"""Webhook delivery over HTTP(S), signed by the Standard Webhooks scheme.

Every request carries ``webhook-id`` (the delivery id, one per event and subscription and the
same on every retry, so receivers drop duplicates; see records.delivery_id), and, with a
secret, ``webhook-timestamp`` and ``webhook-signature`` (signing.py).

Responses: 2xx is delivered; 408, 429, 5xx, timeouts and connection errors are retried (after
``Retry-After`` when the receiver sends one, in seconds or as an HTTP date, capped); any other
status is permanent and the delivery goes straight to the dead letters. Redirects are not
followed, since the next hop would escape the address check. One pooled Session serves every
receiver; environment proxies are ignored because a proxy would resolve the host itself.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import http.client
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

import requests
import urllib3

from cauldron_fabric.core.delivery.addresses import AddressPolicy, PinnedAddressAdapter, pinned_url
from cauldron_fabric.core.delivery.connection_errors import connection_problem
from cauldron_fabric.core.delivery.deadlines import (
	CONNECT_TIMEOUT,
	RequestProgress,
	cut_at,
	request_deadline,
)
from cauldron_fabric.core.delivery.records import Outcome, excerpt, without
from cauldron_fabric.core.delivery.signing import secret_key, signature_headers
from cauldron_fabric.core.delivery.webhook_headers import check_header, reserved_header_problem
from cauldron_fabric.core.errors import ConfigurationError, FabricError
from cauldron_fabric.core.markup import plain
from cauldron_fabric.core.urls import redact_text, redact_url

METHODS = ("POST", "PUT", "PATCH")
MAX_RESPONSE_READ = 64 * 1024
USER_AGENT = "cauldron-fabric-webhooks/1"


def parse_retry_after(value: str | None, now: dt.datetime | None = None) -> float | None:
	"""Returns the seconds a ``Retry-After`` header asks to wait (delay or HTTP date), or None."""
	if not value or not value.strip():
		return None
	text = value.strip()
	if text.isascii() and text.isdigit():  # "²" and "٣" are digits to str.isdigit
		return float(text)
	try:
		moment = email.utils.parsedate_to_datetime(text)
	except (TypeError, ValueError, OverflowError):  # a year or offset beyond any clock
		return None
	if moment.tzinfo is None:
		moment = moment.replace(tzinfo=dt.timezone.utc)
	return max(0.0, (moment - (now or dt.datetime.now(dt.timezone.utc))).total_seconds())


@dataclass(frozen=True, slots=True)
class WebhookTarget:
	"""Where and how to call a receiver."""

	url: str
	method: str = "POST"
	headers: tuple[tuple[str, str], ...] = ()
	timeout: float = 10.0
	secret: str | None = None

	def validate(self) -> None:
		"""Raises ConfigurationError when the URL, method, headers, timeout or secret cannot work."""
		try:
			parts = urlsplit(self.url)
		except ValueError as exc:  # brackets around no IPv6 address; the URL may hold a password
			raise ConfigurationError(
				f"Webhook URL is not a well-formed URL ({exc}).",
				hint="Write an IPv6 host in brackets, e.g. https://[2001:db8::1]/hook, or use a host name.",
			) from exc
		shown = redact_url(self.url)
		if problem := authority_problem(self.url):
			raise ConfigurationError(problem, hint="In a path, write a backslash as %5C.")
		if parts.scheme not in ("http", "https") or not parts.hostname:
			raise ConfigurationError(
				f"Webhook URL {shown!r} must be an absolute http:// or https:// URL.",
				hint="Copy the receiver's URL, e.g. the n8n Webhook node's Production URL.",
			)
		try:
			parts.port  # noqa: B018 (raises ValueError for a malformed port)
		except ValueError as exc:
			raise ConfigurationError(f"Webhook URL {shown!r} has an invalid port.") from exc
		if self.method.upper() not in METHODS:
			raise ConfigurationError(
				f"Webhook method {self.method!r} is not allowed.", hint=f"Use one of {', '.join(METHODS)}."
			)
		for name, value in self.headers:
			check_header(name, value)
		if not 0 < self.timeout <= 300:
			raise ConfigurationError(
				f"Webhook timeout {self.timeout!r} s must be more than 0 and at most 300 seconds."
			)
		if self.secret:
			for secret in self.secret.split():
				secret_key(secret)

	def secret_values(self) -> list[str]:
		"""Returns the header values (all stored encrypted), and the long parts of one such as
		``Bearer <token>``, that a record of the receiver's answer must not repeat."""
		values = [value for _name, value in self.headers if len(value) >= 4]
		return values + [part for value in values for part in value.split() if len(part) >= 8]


class WebhookSender:
	"""Sends signed webhooks through one pooled, address-pinning Session (thread-safe)."""

	def __init__(
		self,
		policy: AddressPolicy | None = None,
		*,
		pool_size: int = 32,
		max_retry_after: float = 3600.0,
		verify: bool | str = True,
	):
		self.policy = policy or AddressPolicy()
		self.max_retry_after = max_retry_after
		self.verify = verify
		self.session = requests.Session()
		self.session.trust_env = False
		# Only what receivers need: no Accept or Accept-Encoding (excerpts are read raw), and
		# HTTP/1.1 keeps connections alive without a Connection header. Headers cost CPU per request.
		self.session.headers.clear()
		adapter = PinnedAddressAdapter(pool_connections=pool_size, pool_maxsize=pool_size, max_retries=0)
		self.session.mount("http://", adapter)
		self.session.mount("https://", adapter)

	def send(
		self,
		target: WebhookTarget,
		message_id: str,
		body: bytes,
		content_type: str = "application/json",
		extra_headers: Sequence[tuple[str, str]] = (),
	) -> Outcome:
		"""Makes one attempt; never raises for a receiver's failure, the Outcome says what happened.

		The target's timeout bounds the whole attempt: resolving the host, connecting, the upload
		and reading the answer.
		"""
		started = time.perf_counter()
		if problem := authority_problem(target.url):
			return Outcome(False, False, problem, latency_ms=_elapsed(started))
		if problem := reserved_header_problem(target.headers):
			problem += " Remove it from the subscription's headers, then retry the dead letter."
			return Outcome(False, False, problem, latency_ms=_elapsed(started))
		with request_deadline(target.timeout) as progress:
			return self._attempt(target, message_id, body, content_type, extra_headers, progress, started)

	def _attempt(
		self,
		target: WebhookTarget,
		message_id: str,
		body: bytes,
		content_type: str,
		extra_headers: Sequence[tuple[str, str]],
		progress: RequestProgress,
		started: float,
	) -> Outcome:
		parts = urlsplit(target.url)
		try:
			address = self.policy.resolve(
				parts.hostname or "",
				parts.port or (443 if parts.scheme == "https" else 80),
				within=progress.seconds_left(),
			)
		except FabricError as exc:
			return Outcome(False, exc.retryable, str(exc), latency_ms=_elapsed(started))
		url, host = pinned_url(target.url, address)
		headers = {"User-Agent": USER_AGENT, **dict(target.headers), **dict(extra_headers)}
		headers.update({"Host": host, "Content-Type": content_type})
		if target.secret:
			headers.update(signature_headers(target.secret, message_id, body))
		else:
			headers["webhook-id"] = message_id
		try:
			response = self.session.request(
				target.method.upper(),
				url,
				data=body,
				headers=headers,
				timeout=(min(target.timeout, CONNECT_TIMEOUT), target.timeout),
				allow_redirects=False,
				stream=True,
				verify=self.verify,
			)
		except (requests.Timeout, urllib3.exceptions.TimeoutError):
			return _timed_out(target, started, progress)
		except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
			if _elapsed(started) >= target.timeout * 1000:  # cut at the deadline (deadlines.py)
				return _timed_out(target, started, progress)
			reason = plain(redact_text(connection_problem(exc), target.url))  # may quote its status line
			return Outcome(
				False,
				True,
				f"Could not reach {redact_url(target.url)}: {reason}",
				latency_ms=_elapsed(started),
			)
		except (ValueError, http.client.HTTPException) as exc:
			# http.client refuses a request it cannot write (a header value outside Latin-1 raises
			# UnicodeEncodeError); the same request fails the same way, so it is not retried.
			return Outcome(
				False,
				False,
				f"The request to {redact_url(target.url)} could not be sent ({type(exc).__name__}); "
				"check the subscription's headers, then retry the dead letter.",
				latency_ms=_elapsed(started),
			)
		try:
			content = _read_capped(response, progress.deadline)
		except (requests.RequestException, urllib3.exceptions.HTTPError, OSError):
			# The status line is the answer: a 2xx took the event, and retrying it because the
			# body was slow or cut short would deliver it twice. The body is only for the record.
			content = b""
		return self._classify(target, response, content, _elapsed(started))

	def _classify(self, target: WebhookTarget, response, content: bytes, latency: float) -> Outcome:
		"""Turns the receiver's answer into an outcome; the subscription's header values it repeats
		(an echo endpoint, a framework's error page) are hidden, since more users read deliveries
		and dead letters than may read those values, stored encrypted."""
		outcome = self._answered(target, response, excerpt(content, hiding=target.secret_values()), latency)
		if outcome.error:
			outcome = replace(outcome, error=without(outcome.error, target.secret_values()))
		return outcome

	def _answered(self, target: WebhookTarget, response, text: str | None, latency: float) -> Outcome:
		code = response.status_code
		shown = redact_url(target.url)
		if 200 <= code < 300:
			return Outcome(True, status_code=code, latency_ms=latency, response_excerpt=text)
		if code in (408, 429) or code >= 500:
			wait = parse_retry_after(response.headers.get("Retry-After"))
			wait = None if wait is None else min(wait, self.max_retry_after)
			error = f"{shown} answered {code} {plain(response.reason)}".rstrip() + "; retrying."
			return Outcome(False, True, error, code, latency, text, wait)
		if 300 <= code < 400 and not response.headers.get("Location"):
			# 300 and 304 name no next hop: "redirected to ''" sent admins looking for one.
			error = (
				f"{shown} answered {code} {plain(response.reason)}".rstrip() + ", which is no success and "
				"names no other URL; this is not retried. Fix the receiver, then retry the dead letter."
			)
		elif 300 <= code < 400:
			error = (
				f"{shown} redirected ({code}) to {plain(response.headers.get('Location'))!r}; redirects are not "
				"followed. Put the final URL in the subscription."
			)
		elif code == 410:
			# Its own message: the engine adds what becomes of the subscription (DeliveryAttempt.gone).
			error = (
				f"{shown} answered 410 {plain(response.reason)}".rstrip()
				+ ", so the receiver says this URL is gone for good; this is not retried."
			)
		else:
			error = (
				f"{shown} refused the event with {code} {plain(response.reason)}".rstrip()
				+ "; this is not retried. Fix the receiver or the subscription, then retry the dead letter."
			)
		return Outcome(False, False, error, code, latency, text)

	def close(self) -> None:
		"""Closes the pooled connections."""
		self.session.close()


def _read_capped(response: requests.Response, deadline: float) -> bytes:
	"""Reads at most MAX_RESPONSE_READ bytes until ``deadline`` (``time.monotonic``), or until
	the connection fails.

	A longer or slower body's connection is dropped, not drained. The read timeout bounds each
	read only: a receiver trickling a byte at a time would otherwise hold the attempt for days,
	and one read waiting for a silent receiver would outlast the deadline.
	"""
	raw = response.raw
	chunks: list[bytes] = []
	size, ended = 0, False
	try:
		with cut_at(deadline, raw.connection):
			while size <= MAX_RESPONSE_READ and time.monotonic() < deadline and not ended:
				chunk = raw.read1(MAX_RESPONSE_READ + 1 - size, decode_content=True)
				chunks.append(chunk)
				size, ended = size + len(chunk), not chunk
	except (requests.RequestException, urllib3.exceptions.HTTPError, OSError):
		# Reset mid-body, or cut at the deadline: the part that came is the receiver's explanation.
		raw.close()
		return b"".join(chunks)[:MAX_RESPONSE_READ]
	except Exception:
		raw.close()
		raise
	if ended:  # read to the end: back to the pool (the pool took it when cut_at disarmed)
		raw.release_conn()
		return b"".join(chunks)
	raw.close()
	return b"".join(chunks)[:MAX_RESPONSE_READ]


def authority_problem(url: str) -> str | None:
	"""Returns why the URL's host is ambiguous, or None.

	urlsplit, which the address check reads, ends the host part at ``/``, ``?`` or ``#``;
	urllib3, which connects, also at a backslash: ``http://127.0.0.1\\@public.example/`` is
	checked as public.example and dialled as 127.0.0.1.
	"""
	if "\\" in urlsplit(url).netloc:
		return (
			f"Webhook URL {redact_url(url)!r} has a backslash before its path, so it names two different "
			"hosts; it is refused. Remove the backslash in the subscription, then retry the dead letter."
		)
	return None


def _elapsed(started: float) -> float:
	return (time.perf_counter() - started) * 1000


def _timed_out(target: WebhookTarget, started: float, progress: RequestProgress | None) -> Outcome:
	if progress is not None and not progress.connected and progress.handshake_seconds is not None:
		# TCP was accepted, TLS never finished: something listens on the port, but does not
		# speak TLS there, or is too busy to; the host is up, so "did not accept" misled.
		error = (
			f"{redact_url(target.url)} accepted the connection but did not finish the TLS handshake "
			f"within {round(progress.handshake_seconds, 1):g} s (it is overloaded, or that port does "
			"not serve HTTPS: check the URL's port); retrying."
		)
	elif progress is not None and not progress.connected:
		# Nothing was sent: a longer timeout would not help, the connection has CONNECT_TIMEOUT
		# at most, less what resolving the name took.
		allowed = progress.connect_seconds or min(target.timeout, CONNECT_TIMEOUT)
		error = (
			f"{redact_url(target.url)} did not accept the connection within {round(allowed, 1):g} s "
			"(its host is down, or a firewall drops the connection); retrying."
		)
	elif progress is not None and not progress.sent:
		error = (
			f"{redact_url(target.url)} did not take the whole request within {target.timeout:g} s "
			"(it read the body too slowly); retrying. If it needs longer for large events, raise the "
			"subscription's timeout."
		)
	else:
		error = f"{redact_url(target.url)} did not answer within {target.timeout:g} s."
	return Outcome(False, True, error, latency_ms=_elapsed(started))
