"""What used to call send_booking_confirmation(booking) and its siblings now queues an event.

Each receiver looks at what changed (the state the instance was loaded with, against the one
saved) and queues the catalog's event with emit_on_commit: it is written in the same transaction
as the change, so a rolled-back change sends nothing, and `manage.py relay_events` posts it.
"""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_init, post_save
from django.dispatch import receiver
from engine_client.django import emit_on_commit

from . import events
from .models import Booking, Member, Message, Payment


@receiver(post_init, sender=Booking)
@receiver(post_init, sender=Payment)
def remember_state(sender: type, instance: Any, **kwargs: Any) -> None:
    instance._was = _state(instance) if instance.pk else None


def _state(instance: Any) -> dict[str, Any]:
    if isinstance(instance, Booking):
        return {"status": instance.status, "start_time": instance.start_time}
    return {"status": instance.status}


@receiver(post_save, sender=Member)
def member_registered(sender: type, instance: Member, created: bool, **kwargs: Any) -> None:
    if created:
        emit_on_commit(events.user_registered(instance))


@receiver(post_save, sender=Booking)
def booking_changed(sender: type, instance: Booking, **kwargs: Any) -> None:
    was = instance._was or {"status": None, "start_time": None}
    now = instance.status
    if now == Booking.CONFIRMED and was["status"] != Booking.CONFIRMED:
        emit_on_commit(events.booking_confirmed(instance))
    elif now == Booking.CONFIRMED and was["start_time"] != instance.start_time:
        emit_on_commit(events.booking_rescheduled(instance, was["start_time"]))
    elif now == Booking.CANCELLED and was["status"] != Booking.CANCELLED:
        emit_on_commit(events.booking_cancelled(instance))
    instance._was = _state(instance)  # a second save of this instance compares with this one


@receiver(post_save, sender=Payment)
def payment_changed(sender: type, instance: Payment, **kwargs: Any) -> None:
    was = instance._was or {"status": None}
    if instance.status == Payment.SUCCEEDED and was["status"] != Payment.SUCCEEDED:
        emit_on_commit(events.payment_succeeded(instance))
    instance._was = _state(instance)


@receiver(post_save, sender=Message)
def message_sent(sender: type, instance: Message, created: bool, **kwargs: Any) -> None:
    if created:
        emit_on_commit(events.message_sent(instance))
