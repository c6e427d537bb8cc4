"""Dead letters retried or discarded in bulk: letter by letter in the request, or in a background
job once there are more than Fabric Settings' *Dead letters a bulk action takes in the request*
(500 by default).

Each letter goes through its own Retry or Discard (which check the role again, and the user's
permissions on that letter), so deliveries and consumers' letters alike are put back in play by
their source; one letter that cannot be retried, or that the user's permissions leave out, is
reported and does not stop the others. Each is committed once done.

A request retries about 350-450 consumer letters a second (tests/benchmarks/bench_dead_letter_bulk.py:
2,000 in 4.6-5.4 s on a shared two-core machine, the time per letter flat from the first to the last);
it once took 70 s for 5,000, too close to a web request's timeout (gunicorn's 120 s) to answer
with a count. A larger call is run by a job on the ``long`` queue as the user who asked, who sees
its progress and then, in the notification bell, how many went and why the others did not.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import frappe
from frappe import _
from frappe.utils import cint, escape_html

from cauldron_fabric.api.permissions import require_role
from cauldron_fabric.cauldron_fabric.doctype.dead_letter.dead_letter import LetterNotPermitted
from cauldron_fabric.consume.dead_letters import shared_connections

DOCTYPE = "Dead Letter"
BACKGROUND_OVER = 500  # letters, when Fabric Settings have none stored
PROGRESS_EVERY = 50  # letters between progress messages
NAMES_SHOWN = 5  # letters named under each reason in the summary
ACTIONS = {
	"retry": (lambda doc, note: doc.retry(), "Retry"),
	"discard": (lambda doc, note: doc.discard(note), "Discard"),
}


def act_on_letters(action: str, names: list[str], note: str | None = None) -> dict[str, Any]:
	"""Runs ``action`` (retry or discard) on the letters: at once when they are few, returning how
	many went and why others did not, else in a background job, returning its id."""
	in_request = in_request_up_to()
	if len(names) <= in_request:
		return act_on_each(action, names, note)
	job_id = f"fabric-dead-letters-{frappe.generate_hash(length=10)}"
	frappe.enqueue(
		run_bulk_job,
		queue="long",
		job_id=job_id,
		now=frappe.flags.in_test,
		action=action,
		names=names,
		note=note,
	)
	title = _(ACTIONS[action][1])
	return {
		"job_id": job_id,
		"queued": len(names),
		"message": _(
			"{0} of {1} dead letters runs in the background (more than {2} take too long for one request). Its progress shows here; when it ends, your notifications say how many went and why any did not."
		).format(title, len(names), in_request),
	}


def in_request_up_to() -> int:
	"""Returns how many letters a bulk call acts on in the request, as Fabric Settings say."""
	stored = frappe.db.get_single_value("Fabric Settings", "dead_letters_in_request")
	return cint(stored) or BACKGROUND_OVER


def run_bulk_job(action: str, names: list[str], note: str | None = None) -> dict[str, Any]:
	"""Runs a bulk Retry or Discard as the user who asked, and leaves them its summary.

	The role is checked again: the user may have lost it since the call was queued.
	"""
	try:
		require_role()
		result = act_on_each(action, names, note, progress=True)
	except frappe.PermissionError as exc:
		frappe.db.rollback()
		frappe.clear_messages()
		result = {"done": 0, "failed": [], "refused": str(exc)}
	notify_summary(action, len(names), result)
	return result


def act_on_each(action: str, names: list[str], note: str | None = None, progress: bool = False) -> dict:
	"""Runs ``action`` on each letter in a transaction of its own; returns how many went and why
	others did not.

	Retry and Discard lock their letter until the transaction ends (see DeadLetter.load_locked),
	and a consumer's Retry has sent its event before that: committed once at the end, every letter
	stayed locked while the rest were sent, and a consumer whose event died again meanwhile gave
	up waiting on it; a request that failed or timed out midway left letters Dead whose events had
	gone back. Each letter is committed as soon as it is done, as Frappe's own bulk actions do.
	Consumers' letters share one connection per broker (see shared_connections).
	"""
	run, title = ACTIONS[action]
	done, failed = 0, []
	with shared_connections():
		for position, name in enumerate(names, 1):
			done += _act_on_one(name, lambda doc: run(doc, note), failed)
			if progress and (position % PROGRESS_EVERY == 0 or position == len(names)):
				frappe.publish_progress(
					position * 100 / len(names),
					title=_(title),
					description=_("{0} of {1} dead letters").format(position, len(names)),
				)
	return {"done": done, "failed": failed}


def _act_on_one(name: str, action, failed: list[dict]) -> int:
	"""Runs ``action`` on one letter and commits it; returns 1 if it went, else notes why in ``failed``.

	Retry and Discard read the letter themselves, locked (DeadLetter.load_locked; a missing one
	is "not found" there as in get_doc): the letter is handed to them unread, as loading it here
	read it, envelope and all, a second time.
	"""
	try:
		action(frappe.get_doc({"doctype": DOCTYPE, "name": name}))
		frappe.db.commit()
		return 1
	except LetterNotPermitted as exc:  # this letter only: the others may be the user's
		frappe.db.rollback()
		frappe.clear_messages()
		failed.append({"name": name, "error": str(exc)})
		return 0
	except frappe.PermissionError:  # the role (lost since a job was queued): no letter goes
		raise
	except Exception as exc:
		frappe.db.rollback()
		frappe.clear_messages()
		failed.append({"name": name, "error": str(exc)})
		return 0


def notify_summary(action: str, total: int, result: dict[str, Any]) -> None:
	"""Leaves the user a notification: how many letters went, how many did not and why."""
	title = _(ACTIONS[action][1])
	subject = _("{0} of {1} dead letters: {2} done, {3} refused.").format(
		title, total, result["done"], total - result["done"]
	)
	if result.get("refused"):
		reasons = [f"<p>{escape_html(result['refused'])}</p>"]
	else:
		reasons = [_reason(error, names) for error, names in _by_reason(result["failed"]).items()]
	frappe.get_doc(
		{
			"doctype": "Notification Log",
			"for_user": frappe.session.user,
			"from_user": frappe.session.user,
			"type": "Alert",
			"document_type": DOCTYPE,
			"subject": subject,
			"email_content": "".join(reasons),
		}
	).insert(ignore_permissions=True)
	frappe.db.commit()
	frappe.publish_realtime("fabric_dead_letters_done", {"subject": subject}, user=frappe.session.user)


def _by_reason(failed: list[dict]) -> dict[str, list[str]]:
	"""Returns the failed letters' names by the error that refused them."""
	reasons = defaultdict(list)
	for letter in failed:
		reasons[letter["error"]].append(letter["name"])
	return reasons


def _reason(error: str, names: list[str]) -> str:
	"""Returns one reason of the summary: the error, how many letters it refused and the first ones."""
	shown = ", ".join(escape_html(name) for name in names[:NAMES_SHOWN])
	more = _(" and {0} more").format(len(names) - NAMES_SHOWN) if len(names) > NAMES_SHOWN else ""
	return f"<p><b>{len(names)}</b>: {escape_html(error)} ({shown}{more})</p>"
