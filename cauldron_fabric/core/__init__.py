"""The framework-free core: envelope, transports, outbox, relay.

Nothing in this package imports ``frappe``; ``tests/test_core_is_framework_free.py`` enforces it.
The Frappe layer builds on these ports and values; the core is tested against real brokers
and a real database without a Frappe site.
"""
