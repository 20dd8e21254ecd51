"""Alerts: route signals to channels through a durable outbox, and send them."""
