"""Where webhooks may go: the SSRF guard, and a requests adapter that connects where it checked.

A webhook URL is resolved once per attempt and every address it resolves to is checked; one
refused address refuses the host (a name resolving to both a public and a private address is
the classic trick). Refused: loopback, private, link-local, multicast, reserved, unspecified,
shared (carrier-grade NAT), IPv6 site-local and other non-global addresses, and cloud metadata
endpoints, for IPv4 and IPv6, including IPv4 addresses embedded in IPv6 (mapped, 6to4, Teredo,
NAT64).
An admin allow-list of networks (CIDRs) and host names (``n8n.internal``, or ``.internal`` for
a whole domain) lifts the refusal for the receivers they run themselves.

The request then goes to the checked address, not to a second DNS answer (DNS rebinding):
the URL carries the IP, the ``Host`` header the name, and for HTTPS the adapter presents the
name for SNI and certificate verification.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import queue
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from requests.adapters import HTTPAdapter

from cauldron_fabric.core.delivery.deadlines import POOL_CLASSES
from cauldron_fabric.core.errors import ConfigurationError, PermanentError, RetryableError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
METADATA_HOSTS = frozenset(
	{"metadata", "metadata.google.internal", "metadata.goog", "instance-data", "instance-data.ec2.internal"}
)
METADATA_ADDRESSES = frozenset(
	ipaddress.ip_address(a)
	for a in ("169.254.169.254", "169.254.170.2", "100.100.100.200", "192.0.0.192", "fd00:ec2::254")
)
NAT64 = ipaddress.ip_network("64:ff9b::/96")
Resolver = Callable[[str, int], list[str]]


class AddressRefused(PermanentError):
	"""A webhook host that resolves to an address webhooks may not reach."""


class HostUnresolvable(RetryableError):
	"""A webhook host name that DNS could not resolve (maybe only for now)."""


class HostResolutionSlow(HostUnresolvable):
	"""A webhook host name whose lookup took longer than the caller would wait."""


def system_resolver(host: str, port: int) -> list[str]:
	"""Returns the addresses ``host`` resolves to, in the system resolver's order."""
	infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
	return list(dict.fromkeys(str(info[4][0]) for info in infos))


class _Lookup:
	"""One resolver call under way, which every attempt for the same name waits on."""

	__slots__ = ("done", "ok", "value")

	def __init__(self) -> None:
		self.done = threading.Event()
		self.ok = False
		self.value: list[str] | BaseException | None = None


class _ResolverThreads:
	"""Resolves host names on daemon threads, so that a caller can stop waiting.

	getaddrinfo cannot be interrupted, and glibc waits 5 s per DNS server and try; the thread
	finishes the lookup on its own while the attempt goes on without it. An attempt for a name
	already being looked up waits on that lookup, and any other name gets an idle thread or a new
	one: a fixed pool was held by a name whose DNS never answered, one thread per attempt given
	up on, while the lookups of every other webhook queued behind them and failed too. A thread
	idle for IDLE_SECONDS ends. Daemon threads, unlike a ThreadPoolExecutor's, do not hold up the
	process's exit.
	"""

	IDLE_SECONDS = 60.0

	def __init__(self) -> None:
		self._lock = threading.Lock()
		self._under_way: dict[tuple[Resolver, str, int], _Lookup] = {}
		self._jobs: queue.SimpleQueue = queue.SimpleQueue()
		self._idle = 0  # threads waiting for a job, less the jobs queued for them

	def resolve(self, resolver: Resolver, host: str, port: int, seconds: float) -> list[str]:
		"""Returns ``resolver(host, port)``; raises TimeoutError when it takes over ``seconds``."""
		key = (resolver, host, port)
		with self._lock:
			lookup = self._under_way.get(key)
			if lookup is None:
				lookup = self._under_way[key] = _Lookup()
				self._jobs.put((key, lookup))
				if self._idle:
					self._idle -= 1
				else:
					threading.Thread(target=self._serve, name="fabric-dns", daemon=True).start()
		if not lookup.done.wait(seconds):
			raise TimeoutError
		if not lookup.ok:
			raise lookup.value
		return list(lookup.value)

	def _serve(self) -> None:
		while (job := self._next_job()) is not None:
			(resolver, host, port), lookup = job
			try:
				lookup.value, lookup.ok = resolver(host, port), True
			except BaseException as exc:
				lookup.value = exc
			with self._lock:
				del self._under_way[job[0]]
				self._idle += 1
			lookup.done.set()

	def _next_job(self) -> tuple[tuple[Resolver, str, int], _Lookup] | None:
		"""Returns the next lookup to make, or None when this thread is to end (idle too long)."""
		while True:
			try:
				return self._jobs.get(timeout=self.IDLE_SECONDS)
			except queue.Empty:
				with self._lock:
					if self._idle:  # else a job was queued for this thread just now
						self._idle -= 1
						return None


RESOLVER_THREADS = _ResolverThreads()
# A forked worker (RQ's work horse) has none of the parent's threads.
os.register_at_fork(after_in_child=RESOLVER_THREADS.__init__)


@functools.lru_cache(maxsize=4096)
def refusal_reason(address: Address) -> str | None:
	"""Returns why webhooks may not reach ``address`` ("a loopback address", ...), or None."""
	if isinstance(address, ipaddress.IPv6Address):
		if address.ipv4_mapped is not None:
			# A mapped address is the IPv4 address itself, whatever ::ffff:0:0/96 counts as.
			reason = refusal_reason(address.ipv4_mapped)
			return f"{reason} (embedded in {address})" if reason else None
		embedded = address.sixtofour or (address.teredo or (None, None))[1]
		if embedded is None and address in NAT64:
			embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
		reason = refusal_reason(embedded) if embedded is not None else None
		if reason:
			return f"{reason} (embedded in {address})"
	if address in METADATA_ADDRESSES:
		return "a cloud metadata address"
	for reason, test in (
		("a loopback address", address.is_loopback),
		("a link-local address", address.is_link_local),
		# fec0::/10, deprecated but still routed inside some networks; Python counts it global.
		("a site-local address", getattr(address, "is_site_local", False)),
		("a multicast address", address.is_multicast),
		("an unspecified address", address.is_unspecified),
		("a reserved address", address.is_reserved),
		("a private address", address.is_private),
		("an address that is not publicly routable", not address.is_global),
	):
		if test:
			return reason
	return None


@dataclass(frozen=True, slots=True)
class AddressPolicy:
	"""Decides which addresses webhooks may reach; built from the admin's allow-list."""

	networks: tuple[Network, ...] = ()
	hosts: frozenset[str] = frozenset()
	resolver: Resolver = field(default=system_resolver, compare=False)

	@classmethod
	def from_allow_list(cls, entries: Iterable[str], resolver: Resolver = system_resolver) -> AddressPolicy:
		"""Parses CIDRs (``10.0.0.0/8``, ``::1``) and host names (``n8n.local``, ``.internal``)."""
		networks, hosts = [], set()
		for raw in entries:
			entry = raw.strip().lower()
			if not entry:
				continue
			try:
				networks.append(ipaddress.ip_network(entry, strict=False))
				continue
			except ValueError:
				pass
			name = entry.removeprefix("*")
			if not all(
				part.replace("-", "").replace("_", "").isalnum() for part in name.strip(".").split(".")
			):
				raise ConfigurationError(
					f"Webhook allow-list entry {raw!r} is neither a network nor a host name.",
					hint="Use CIDRs such as 10.0.0.0/8 or ::1/128, host names, or .domain for a whole domain.",
				)
			hosts.add(name)
		return cls(tuple(networks), frozenset(hosts), resolver)

	def allows_host(self, host: str, exactly: bool = False) -> bool:
		"""Tells whether the host name itself is allow-listed (exactly, or by a ``.domain`` entry
		unless ``exactly``)."""
		host = host.lower().rstrip(".")
		if host in self.hosts:
			return True
		return not exactly and any(e.startswith(".") and host.endswith(e) for e in self.hosts)

	def refusal(self, address: Address) -> str | None:
		"""Returns why ``address`` is refused, or None when it is public or allow-listed.

		A cloud metadata address hands out the server's own credentials: only an entry naming
		that address alone (``/32``, ``/128``) lifts its refusal, never a network around it
		(``169.254.0.0/16`` for link-local receivers).
		"""
		reason = refusal_reason(address)
		if reason is None:
			return None
		candidates = [address]
		if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
			candidates.append(address.ipv4_mapped)
		networks = [n for n in self.networks if n.num_addresses == 1 or not _is_metadata(address)]
		allowed = any(c in net for c in candidates for net in networks if c.version == net.version)
		return None if allowed else reason

	def resolve(self, host: str, port: int, within: float | None = None) -> str:
		"""Returns the address to connect to; raises AddressRefused or HostUnresolvable (also when
		the name takes longer than ``within`` seconds to resolve)."""
		host = host.strip("[]")
		try:
			addresses = [ipaddress.ip_address(host)]
		except ValueError:
			if host.lower().rstrip(".") in METADATA_HOSTS and not self.allows_host(host, exactly=True):
				raise AddressRefused(f"Webhook host {host!r} is a cloud metadata endpoint.") from None
			try:
				if within is None:
					found = self.resolver(host, port)
				else:
					found = RESOLVER_THREADS.resolve(self.resolver, host, port, within)
				addresses = [ipaddress.ip_address(a.split("%")[0]) for a in found]
			except TimeoutError:
				raise HostResolutionSlow(
					f"Webhook host {host!r} did not resolve within {round(within, 1):g} s (its DNS servers are slow "
					"or unreachable).",
					hint="Check the URL and the server's DNS; the delivery is retried.",
				) from None
			except (OSError, UnicodeError) as exc:
				raise HostUnresolvable(
					f"Cannot resolve webhook host {host!r} ({exc}).",
					hint="Check the URL; the delivery is retried.",
				) from exc
		if not addresses:
			raise HostUnresolvable(f"Webhook host {host!r} resolves to no address.")
		exact = self.allows_host(host, exactly=True)
		named = self.allows_host(host)
		for address in addresses:
			# An allowed name lifts every refusal but a metadata address's: a .domain entry (.internal)
			# would otherwise open metadata.google.internal too.
			reason = None if named and (exact or not _is_metadata(address)) else self.refusal(address)
			if reason:
				raise AddressRefused(
					f"Webhook host {host!r} resolves to {address}, {reason}; webhooks to such addresses are refused.",
					hint="If the receiver is yours, add its host or network to the webhook allow-list in Fabric Settings (Private addresses webhooks may reach).",
				)
		return _connectable(addresses[0])


def _is_metadata(address: Address) -> bool:
	"""Tells whether ``address`` is a cloud metadata address, itself or mapped into IPv6."""
	return address in METADATA_ADDRESSES or getattr(address, "ipv4_mapped", None) in METADATA_ADDRESSES


def _connectable(address: Address) -> str:
	"""Returns the address to dial: an IPv4-mapped IPv6 address as plain IPv4."""
	mapped = getattr(address, "ipv4_mapped", None)
	return str(mapped or address)


def pinned_url(url: str, address: str) -> tuple[str, str]:
	"""Returns the URL with its host replaced by ``address``, and the ``Host`` header to send."""
	parts = urlsplit(url)
	literal = f"[{address}]" if ":" in address else address
	port = f":{parts.port}" if parts.port else ""
	userinfo = parts.netloc.rpartition("@")[0]
	netloc = f"{userinfo}@{literal}{port}" if userinfo else f"{literal}{port}"
	host_header = parts.netloc.rpartition("@")[2]
	return parts._replace(netloc=netloc).geturl(), host_header


class PinnedAddressAdapter(HTTPAdapter):
	"""Keeps TLS on the host name while the URL carries the checked IP address.

	The connection pool is keyed by address and name, so connections are reused per receiver.
	Its connections keep the deadline of ``deadlines.request_deadline``.
	Needs requests 2.32.2 or later (``build_connection_pool_key_attributes``).
	"""

	def init_poolmanager(self, *args, **kwargs):
		super().init_poolmanager(*args, **kwargs)
		self.poolmanager.pool_classes_by_scheme = POOL_CLASSES

	def build_connection_pool_key_attributes(self, request, verify, cert=None):
		host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
		host_header = request.headers.get("Host")
		if host_params.get("scheme") == "https" and host_header:
			name = urlsplit(f"//{host_header}").hostname
			pool_kwargs["server_hostname"] = name
			pool_kwargs["assert_hostname"] = name
		return host_params, pool_kwargs
