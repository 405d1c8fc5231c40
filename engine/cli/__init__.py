"""The `engine` command line: one small module per command."""
