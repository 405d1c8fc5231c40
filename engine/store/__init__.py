"""The store: the source of truth for events, recipients, preferences and every notification."""
