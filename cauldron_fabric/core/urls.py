"""URLs in error texts: the password in a URL's user part is never shown.

Passwords kept in Password fields are joined into broker and webhook URLs in memory only; an
error that quoted such a URL would show the password to whoever reads the error (a connection
test, a delivery's last error, the Error Log).
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit


def redact_url(url: str) -> str:
	"""Returns ``url`` fit for error texts: a password in its user part becomes ``***``."""
	try:
		parts = urlsplit(url)
		password = parts.password
	except ValueError:  # brackets around no IPv6 address: no telling where a password ends
		return "(a malformed URL)"
	if password is None:
		return url
	userinfo, _, host = parts.netloc.rpartition("@")
	user = userinfo.partition(":")[0]
	return parts._replace(netloc=f"{user}:***@{host}").geturl()


def redact_text(text: str, url: str) -> str:
	"""Returns ``text`` with the URL's password (as written and decoded) replaced by ``***``."""
	try:
		password = urlsplit(url).password
	except ValueError:
		return text.replace(url, redact_url(url))
	if not password:
		return text
	for secret in {password, unquote(password)}:
		text = text.replace(secret, "***")
	return text
