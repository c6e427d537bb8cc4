"""Approval texts from outside stored before they were kept plain: their markup becomes look-alike brackets.

A request's agent, task, action summary and reason, the description of its approvers' ToDos and its
timeline notes (Info comments) quote what an agent or an approver sent, and Desk renders them
as HTML; Frappe's sanitizing keeps links and images. New ones are kept plain (see
create_approval_request and add_note); these are those stored before. The timeline's other
comments are people's own, written in Desk's editor, and are left alone.

An agent and task with markup are kept as sent first, as a new request keeps them:
approval.response gives the agent back its own names, and after the rewrite only the look-alikes
would be left.
"""

import frappe

from cauldron_fabric.patches import keep_markup_as_brackets


def keep_names_as_sent() -> None:
	"""Copies each agent and task that holds ``<`` or ``>`` into its empty ``…_as_sent`` column."""
	for column in ("agent", "task"):
		frappe.db.sql(
			f"""UPDATE `tabApproval Request` SET `{column}_as_sent` = `{column}`
			WHERE `{column}_as_sent` IS NULL AND (`{column}` LIKE %s OR `{column}` LIKE %s)""",
			("%<%", "%>%"),
		)


def execute() -> None:
	keep_names_as_sent()
	for column in ("agent", "task", "action_summary", "reason"):
		keep_markup_as_brackets("tabApproval Request", column)
	keep_markup_as_brackets("tabToDo", "description", "reference_type = 'Approval Request'")
	keep_markup_as_brackets(
		"tabComment", "content", "reference_doctype = 'Approval Request' AND comment_type = 'Info'"
	)
