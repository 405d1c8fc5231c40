"""The part of Estuary's data that notifications are about."""

from django.db import models


class Member(models.Model):
    ROLES = [("client", "client"), ("practitioner", "practitioner")]

    name = models.CharField(max_length=200)
    email = models.EmailField()
    timezone = models.CharField(max_length=64, default="UTC")  # an IANA zone name
    role = models.CharField(max_length=20, choices=ROLES)


class Service(models.Model):
    practitioner = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="services")
    name = models.CharField(max_length=200)


class Booking(models.Model):
    PENDING, CONFIRMED, CANCELLED = "pending", "confirmed", "cancelled"
    STATUSES = [(PENDING, PENDING), (CONFIRMED, CONFIRMED), (CANCELLED, CANCELLED)]

    client = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="bookings")
    practitioner = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="sessions")
    service = models.ForeignKey(Service, on_delete=models.CASCADE)
    start_time = models.DateTimeField()
    end_time = models.DateTimeField()
    meeting_url = models.URLField(blank=True)
    status = models.CharField(max_length=20, choices=STATUSES, default=PENDING)
    changed_by = models.CharField(max_length=20, blank=True)  # client, practitioner or system
    cancel_reason = models.TextField(blank=True)


class Payment(models.Model):
    PENDING, SUCCEEDED = "pending", "succeeded"

    booking = models.ForeignKey(Booking, null=True, on_delete=models.SET_NULL)
    client = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="payments")
    practitioner = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="earnings")
    amount = models.PositiveIntegerField()  # minor units
    practitioner_amount = models.PositiveIntegerField()
    currency = models.CharField(max_length=3, default="EUR")
    status = models.CharField(max_length=20, default=PENDING)


class Message(models.Model):
    conversation_id = models.CharField(max_length=100)
    sender = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="sent_messages")
    recipient = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="received_messages")
    body = models.TextField()
