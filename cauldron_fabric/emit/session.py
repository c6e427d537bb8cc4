"""``user.login`` and ``user.logout`` from Frappe's session hooks."""

from __future__ import annotations

import frappe

from cauldron_fabric.core.naming import USER_LOGIN, USER_LOGOUT
from cauldron_fabric.emit.policy import current_policy
from cauldron_fabric.emit.recorder import new_envelope, record


# The schemas' limits. The client chooses its headers (Frappe takes X-Forwarded-For as the IP
# unchecked) and a full name joins three 140-character fields: none of them may fail a login
# or leave its event Invalid.
PAYLOAD_LIMITS = {"fullName": 140, "ip": 45, "userAgent": 4000}


def on_login(login_manager=None) -> None:
	"""Records a successful login (guests excluded)."""
	_record_session_event(USER_LOGIN, "login", getattr(login_manager, "user", None))


def on_logout(login_manager=None) -> None:
	"""Records a logout."""
	_record_session_event(USER_LOGOUT, "logout", getattr(login_manager, "user", None))


def _record_session_event(event_type: str, action: str, user: str | None) -> None:
	user = user or frappe.session.user
	if not user or user == "Guest" or not current_policy().enabled or not current_policy().user_events:
		return
	request = getattr(frappe.local, "request", None)
	payload = {
		"user": user,
		"fullName": frappe.utils.get_fullname(user),
		"ip": getattr(frappe.local, "request_ip", None),
		"userAgent": request.headers.get("User-Agent") if request is not None else None,
	}
	for key, limit in PAYLOAD_LIMITS.items():
		if isinstance(payload[key], str):
			payload[key] = payload[key][:limit]
	record([new_envelope(event_type, "User", user, action, payload, user=user)])
