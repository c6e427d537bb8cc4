"""Cauldron Fabric: the event fabric of the Cauldron enterprise system on Frappe."""

__version__ = "0.1.0"
