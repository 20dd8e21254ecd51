"""Alerts: route signals to channels through a durable outbox, and send them."""

# The states of a delivery (an outbox row): waiting to be sent, sent, given up on, or
# written for the record only (a repeat suppressed by its route).
PENDING = "pending"
SENT = "sent"
DEAD = "dead"
SUPPRESSED = "suppressed"
STATUSES = (PENDING, SENT, DEAD, SUPPRESSED)
