"""A declarative notification rules engine."""

__version__ = "0.1.0"
