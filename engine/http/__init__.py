"""The HTTP hook (Starlette)."""
