"""One small tree of errors: every failure is either worth retrying or not.

Each message says what went wrong and what to do about it, because these messages end up in
the Event Log and in Fabric Settings where an admin reads them.
"""


class FabricError(Exception):
	"""Base of every error the fabric raises on purpose."""

	retryable: bool = False

	def __init__(self, message: str, *, hint: str | None = None):
		self.hint = hint
		super().__init__(f"{message} {hint}" if hint else message)


class RetryableError(FabricError):
	"""A failure that may go away by itself: broker down, timeout, throttling."""

	retryable = True


class PermanentError(FabricError):
	"""A failure that retrying will not fix: bad input, bad configuration, refused message."""

	retryable = False


class InvalidEnvelope(PermanentError):
	"""An event that is not a well-formed envelope; ``problems`` lists every defect found."""

	def __init__(self, problems: list[str]):
		self.problems = problems
		super().__init__(
			"Invalid event envelope: " + "; ".join(problems) + ".",
			hint="Send the structure of section 3.2 (id, type, source, time, data, metadata).",
		)


class HandlerCrashed(PermanentError):
	"""An event during whose handlers the consumer process stopped, again and again."""


class ConfigurationError(PermanentError):
	"""A setting that cannot work as given."""


class TransportUnavailable(RetryableError):
	"""The broker could not be reached or did not acknowledge in time."""


class BrokerUnreachable(TransportUnavailable):
	"""No connection to the broker could be made (refused, unanswered, credentials or vhost
	refused), or it took no message in time: every message to it fails alike until that is fixed."""


class MessageRejected(PermanentError):
	"""The broker refused one message for a reason that a retry will not change."""


class UnknownTransport(ConfigurationError):
	"""No transport adapter is registered for a URL scheme."""
