"""The daemon as a service: lifecycle, health, metrics, systemd notify."""
