"""The topic naming rule: what an admin may write, and the topic every accepted rule names."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cauldron_fabric.core.errors import ConfigurationError
from cauldron_fabric.core.naming import (
	document_event_type,
	invalid_topic_names,
	topic_for,
	validate_topic_template,
)


@pytest.mark.parametrize(
	"template", ["cauldron.{domain}", "{tenant}.{entity}.{type}", "{domain!s}", "x.{domain:.3}"]
)
def test_an_accepted_rule_names_a_topic_kafka_takes(template):
	validate_topic_template(template)
	assert not invalid_topic_names([topic_for(template, "sales_invoice.submitted", "Sales Invoice", "acme")])


@pytest.mark.parametrize(
	"template, problem",
	[
		("{domain:{domain}}", "placeholder inside"),
		("cauldron.{domain:{tenant}}", "placeholder inside"),
		("{domain!x}", "Unknown conversion"),
		("{domain:d}", "Unknown format code"),
		("{domain:>3000000000}", "wider than a topic name"),
		("{domain:_<0300}", "wider than a topic name"),
	],
)
def test_a_rule_that_cannot_name_a_topic_is_refused_when_saved(template, problem):
	with pytest.raises(ConfigurationError, match=problem):
		validate_topic_template(template)


PLACEHOLDERS = st.builds(
	"{{{}{}{}}}".format,
	st.sampled_from(["domain", "type", "entity", "tenant"]),
	st.sampled_from(["", "!s", "!r", "!x"]),
	st.sampled_from(["", ":d", ":.3", ":>9", ":0300", ":{domain}"]),
)
RULES = st.lists(PLACEHOLDERS | st.sampled_from(["cauldron", ".", "-", "é", " ", "{", "}"]), max_size=5)


@settings(max_examples=200, deadline=None)
@given(RULES.map("".join), st.text(max_size=8), st.text(max_size=8))
def test_any_rule_is_refused_on_save_or_names_a_topic_kafka_takes(template, entity, tenant):
	try:
		validate_topic_template(template)
	except ConfigurationError:
		return
	assert not invalid_topic_names([topic_for(template, "sales_invoice.submitted", entity, tenant)])


def test_a_document_event_type_is_the_same_however_often_it_is_asked_and_a_bad_action_always_refused():
	# The types are kept once worked out: a refusal must not be kept as an answer.
	for _ in range(2):
		assert document_event_type("Sales Invoice", "submitted") == "sales_invoice.submitted"
		assert document_event_type("ToDo", "updated_after_submit") == "todo.updated_after_submit"
		with pytest.raises(ValueError, match="unknown document action 'approved'"):
			document_event_type("Sales Invoice", "approved")
