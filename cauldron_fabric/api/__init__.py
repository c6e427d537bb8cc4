"""Whitelisted API methods, one module per resource; each checks permission first."""
