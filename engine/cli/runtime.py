"""The runtime commands, registered on the `engine` group."""

from . import db, recipients, send_test, serve, stats, upcoming, worker

COMMANDS = [serve.command, worker.command, upcoming.command, send_test.command, stats.command, db.command,
            recipients.command]
