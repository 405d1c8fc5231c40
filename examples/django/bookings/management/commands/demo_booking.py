"""`manage.py demo_booking`: a client books, pays, writes, reschedules and cancels; each step in a
transaction, as a request would be. One booking fails its payment and is rolled back."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone
from engine_client.django.models import OutboxEvent

from bookings.models import Booking, Member, Message, Payment, Service


class CardDeclined(Exception):
    pass


class Command(BaseCommand):
    help = "Play one booking's life; the events it queues are listed (relay them with relay_events)."

    def handle(self, *args: Any, **options: Any) -> None:
        first = OutboxEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
        with transaction.atomic():
            ann = Member.objects.create(name="Ann", email="ann@example.com", timezone="Europe/Berlin", role="client")
            bo = Member.objects.create(
                name="Bo", email="bo@example.com", timezone="America/New_York", role="practitioner"
            )
            yoga = Service.objects.create(practitioner=bo, name="Yoga")
        start = (timezone.now() + timedelta(days=3)).replace(microsecond=0)
        with transaction.atomic():
            booking = Booking.objects.create(client=ann, practitioner=bo, service=yoga, start_time=start,
                                             end_time=start + timedelta(hours=1), meeting_url="https://meet.example.com/a")
            booking.status = Booking.CONFIRMED
            booking.save()
            Payment.objects.create(booking=booking, client=ann, practitioner=bo, amount=5000, practitioner_amount=4250,
                                   status=Payment.SUCCEEDED)
        try:
            with transaction.atomic():  # confirmed, then the card is declined: nothing of it is sent
                Booking.objects.create(
                    client=ann,
                    practitioner=bo,
                    service=yoga,
                    start_time=start,
                    status=Booking.CONFIRMED,
                    end_time=start + timedelta(hours=1),
                )
                raise CardDeclined
        except CardDeclined:
            pass
        with transaction.atomic():
            Message.objects.create(conversation_id=f"conv_{booking.pk}", sender=ann, recipient=bo, body="See you then!")
        with transaction.atomic():
            booking.start_time, booking.end_time = start + timedelta(days=1), start + timedelta(days=1, hours=1)
            booking.changed_by = "client"
            booking.save()
        with transaction.atomic():
            booking.status, booking.changed_by, booking.cancel_reason = Booking.CANCELLED, "practitioner", "Ill"
            booking.save()
        for row in OutboxEvent.objects.filter(id__gt=first):
            self.stdout.write(f"{row.event_id} {row.event_type}")
