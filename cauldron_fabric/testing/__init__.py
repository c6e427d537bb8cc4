"""Helpers shared by the core suite and the Frappe suite: real brokers, started and stopped,
and the events tests send through them."""
