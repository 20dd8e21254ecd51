"""The stages that join fetch → store → tag → outbox: feeds, quotes, replay."""
