"""One row per event to hand to the engine, written in the transaction that caused it."""

from __future__ import annotations

from django.db import models

from ..events import EventEncoder


class OutboxEvent(models.Model):
    PENDING, SENT, REFUSED = "pending", "sent", "refused"
    STATUSES = [(PENDING, "pending"), (SENT, "sent"), (REFUSED, "refused by the engine")]

    id = models.BigAutoField(primary_key=True)  # the relay's order
    event_id = models.CharField(max_length=200, db_index=True)
    event_type = models.CharField(max_length=200)
    envelope = models.JSONField(encoder=EventEncoder)
    status = models.CharField(max_length=10, choices=STATUSES, default=PENDING)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")

    class Meta:
        db_table = "engine_outbox"
        ordering = ["id"]
        indexes = [models.Index(fields=["id"], condition=models.Q(status="pending"), name="engine_outbox_pending")]

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_id} ({self.status})"
