"""The ``kmon`` command, one module per command group."""
