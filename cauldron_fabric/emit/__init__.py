"""The Frappe side of emitting: hooks that turn document work into events in the outbox."""
