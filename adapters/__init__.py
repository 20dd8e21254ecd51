"""Clients for the outside world.

Each module turns one kind of remote response into plain records and maps every
failure to the small error family in :mod:`adapters.errors`. Nothing here imports
``monitor``, touches the database or keeps state between polls.
"""
