"""``user.login`` and ``user.logout`` from Frappe's session hooks, and from the Activity Log
for the logouts that run none."""

from __future__ import annotations

from types import FrameType

import frappe
from frappe.sessions import clear_all_sessions, clear_sessions

from cauldron_fabric.core.naming import USER_LOGIN, USER_LOGOUT
from cauldron_fabric.emit.frames import argument_of, call_of
from cauldron_fabric.emit.policy import current_policy
from cauldron_fabric.emit.recorder import new_envelope, record

# The schemas' limits. The client chooses its headers (Frappe takes X-Forwarded-For as the IP
# unchecked) and a full name joins three 140-character fields: none of them may fail a login
# or leave its event Invalid.
PAYLOAD_LIMITS = {"fullName": 140, "ip": 45, "userAgent": 4000}


def on_login(login_manager=None) -> None:
	"""Records a successful login (guests excluded), made by the user or by an admin impersonating it."""
	user = getattr(login_manager, "user", None)
	_record_session_event(USER_LOGIN, "login", user, actor=_login_actor(login_manager, user))


def _login_actor(login_manager, user: str | None) -> str | None:
	"""Returns who logs ``user`` in: the user, or the admin in ``LoginManager.impersonate``.

	The hook runs before the new session exists. A user signing in is still Guest, so the user
	acts; an impersonation is the admin's own request, and the admin is its acting user.
	"""
	if argument_of("impersonate", login_manager, "user") is not None:
		return frappe.session.user
	return user


def on_logout(login_manager=None) -> None:
	"""Records a logout: of the session's user, or of the user whose sessions an admin ends."""
	user = _user_logged_out(login_manager)
	if user and user != frappe.session.user and not frappe.db.count("Sessions", {"user": user}):
		# Frappe ends a disabled user's sessions on every save of that user, and a deleted user's,
		# whether there are any or not: a user with none logs out of nothing.
		return
	_record_session_event(USER_LOGOUT, "logout", user)


def _user_logged_out(login_manager) -> str | None:
	"""Returns whom ``LoginManager.logout`` logs out: its ``user`` argument, else None.

	Frappe passes the hook only the login manager, whose user is the caller's; when an admin
	disables or deletes a user, ``logout(user=…)`` ends that user's sessions, not the admin's.
	"""
	return argument_of("logout", login_manager, "user") or None


def on_session_ended(activity, method=None) -> None:
	"""Records a logout of all of a user's sessions that ran no logout hook (an Activity Log's after_insert).

	A new password with "Logout From All Devices", the update-password page, ``bench
	set-password --logout-all-sessions`` and an LDAP password reset end the sessions with
	``clear_sessions(force=True)``, and ``bench destroy-all-sessions`` ends everyone's with
	``clear_all_sessions``: both leave a Logout entry in the Activity Log for each session they
	delete and call no hook. Like an admin ending another user's sessions, that is one logout
	of each user: recorded at the user's first entry of the call.
	"""
	if activity.operation != "Logout" or not activity.user:
		return
	ending = _call_ending_sessions()
	if ending is None:
		return
	logged_out = getattr(frappe.local, "fabric_logged_out", None)
	if logged_out is None or logged_out[0] is not ending:
		logged_out = frappe.local.fabric_logged_out = (ending, set())
	if activity.user in logged_out[1]:
		return
	logged_out[1].add(activity.user)
	# A password reset by its emailed key runs as Guest: the user proved who they are.
	actor = activity.user if frappe.session.user == "Guest" else None
	_record_session_event(USER_LOGOUT, "logout", activity.user, actor=actor)


def _call_ending_sessions() -> FrameType | None:
	"""Returns the call ending sessions without a logout hook, or None.

	Not clear_sessions without force: that is the user's own logout or logout(user=…), which
	on_logout recorded, or a login that ends the older sessions Frappe allows no more of, which
	leaves the user logged in. Expired sessions are no logout anyone made.
	"""
	clearing = call_of(clear_sessions)
	if clearing is not None:
		return clearing if clearing.f_locals.get("force") else None
	return call_of(clear_all_sessions)


def _record_session_event(event_type: str, action: str, user: str | None, actor: str | None = None) -> None:
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
	record([new_envelope(event_type, "User", user, action, payload, user=actor)])
