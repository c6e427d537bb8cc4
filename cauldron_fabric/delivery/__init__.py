"""Subscriptions on a Frappe site: routing recorded events to their destinations."""
