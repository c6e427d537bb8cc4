"""Signing by the Standard Webhooks scheme.

``webhook-timestamp`` is the Unix seconds of the attempt and ``webhook-signature`` is ``v1,``
followed by the base64 HMAC-SHA256 of ``id.timestamp.body`` under the secret, which is written
``whsec_`` + base64 (``generate_secret``). Several secrets separated by spaces sign with each of
them, so a receiver can rotate its secret without a gap. The official ``standardwebhooks``
library verifies these signatures.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import os
import time

from cauldron_fabric.core.errors import ConfigurationError

SECRET_PREFIX = "whsec_"
MIN_SECRET_BYTES = 16


def generate_secret(size: int = 32) -> str:
	"""Returns a new random signing secret in the ``whsec_`` form."""
	return SECRET_PREFIX + base64.b64encode(os.urandom(size)).decode()


@functools.lru_cache(maxsize=1024)
def secret_key(secret: str) -> bytes:
	"""Returns the key bytes of a ``whsec_`` secret; raises ConfigurationError when it is not one."""
	text = secret.strip().removeprefix(SECRET_PREFIX)
	try:
		key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
	except (binascii.Error, ValueError) as exc:
		raise ConfigurationError(
			"The webhook secret is not base64 (the Standard Webhooks 'whsec_…' form).",
			hint="Generate one in the subscription, or paste the receiver's whsec_ secret.",
		) from exc
	if len(key) < MIN_SECRET_BYTES:
		raise ConfigurationError(
			f"The webhook secret is too short ({len(key)} bytes; at least {MIN_SECRET_BYTES}).",
			hint="Generate a new one in the subscription.",
		)
	return key


def sign(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
	"""Returns one ``v1,<base64>`` signature of ``message_id.timestamp.body``."""
	digest = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
	return "v1," + base64.b64encode(digest).decode()


def signature_headers(
	secret: str, message_id: str, body: bytes, timestamp: int | None = None
) -> dict[str, str]:
	"""Returns the three Standard Webhooks headers, signed with every secret in ``secret``."""
	stamp = int(time.time()) if timestamp is None else timestamp
	signatures = " ".join(sign(secret_key(s), message_id, stamp, body) for s in secret.split())
	return {"webhook-id": message_id, "webhook-timestamp": str(stamp), "webhook-signature": signatures}
