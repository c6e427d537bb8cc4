"""Consumers on a Frappe site: events from the bus run the handlers apps register in their hooks."""
