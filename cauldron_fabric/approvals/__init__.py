"""Approval requests: AI agents ask people to approve an action; the decision goes back on the bus."""
