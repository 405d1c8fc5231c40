"""The catalog's event data, built from the models (the shapes are in the engine's rules/events.yaml)."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from .models import Booking, Member, Message, Payment


def person(member: Member) -> dict[str, Any]:
    return {"id": f"usr_{member.pk}", "email": member.email, "name": member.name, "timezone": member.timezone}


def user(member: Member) -> dict[str, Any]:
    return {**person(member), "role": member.role}


def booking(b: Booking) -> dict[str, Any]:
    where = {"meeting_url": b.meeting_url} if b.meeting_url else {}
    return {"id": f"bk_{b.pk}", "start_time": b.start_time, "end_time": b.end_time,
            "service": {"id": f"svc_{b.service_id}", "name": b.service.name}, **where}


def parties(b: Booking) -> dict[str, Any]:
    return {"booking": booking(b), "client": person(b.client), "practitioner": person(b.practitioner)}


def user_registered(member: Member) -> dict[str, Any]:
    return {"type": "user.registered",
            "data": {"user": user(member), "verification_url": f"{settings.FRONTEND_URL}/verify?member={member.pk}"}}


def booking_confirmed(b: Booking) -> dict[str, Any]:
    return {"type": "booking.confirmed", "data": parties(b)}


def booking_rescheduled(b: Booking, previous_start: Any) -> dict[str, Any]:
    return {"type": "booking.rescheduled",
            "data": {**parties(b), "previous_start_time": previous_start, "rescheduled_by": b.changed_by or "client"}}


def booking_cancelled(b: Booking) -> dict[str, Any]:
    reason = {"reason": b.cancel_reason} if b.cancel_reason else {}
    return {"type": "booking.cancelled", "data": {**parties(b), "cancelled_by": b.changed_by or "system", **reason}}


def payment_succeeded(p: Payment) -> dict[str, Any]:
    data = {"payment": {"id": f"pay_{p.pk}", "amount": p.amount, "currency": p.currency,
                        "receipt_url": f"{settings.FRONTEND_URL}/receipts/{p.pk}",
                        "practitioner_amount": p.practitioner_amount},
            "client": person(p.client), "practitioner": person(p.practitioner)}
    if p.booking is not None:
        data["booking"] = booking(p.booking)
    return {"type": "payment.succeeded", "data": data}


def message_sent(m: Message) -> dict[str, Any]:
    return {"type": "message.sent",
            "data": {"message": {"id": f"msg_{m.pk}", "conversation_id": m.conversation_id, "preview": m.body[:140]},
                     "sender": person(m.sender), "recipient": user(m.recipient)}}
