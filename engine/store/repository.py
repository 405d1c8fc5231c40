"""What the runtime does with the database: `Store`, one object made of the store's rooms.

Each public method is one transaction and its docstring says what it promises. The rooms, one
concept each:
  ingest.py        events stored and the decisions made for them applied
  outbox.py        the claim state machine: due rows queued, claimed, finished, paused
  digests.py       items collected per period, then closed into one send
  people.py        recipients' profiles and preferences
  receipts.py      Courier's delivery statuses and the signatures of signed requests
  reads.py         rows, a row's history, statistics, what falls due next
  retention.py     what is past its period deleted or stripped of personal data
and beside them, functions over a whole store: duties.py (erasure, re-encryption) and
retries.py (`engine retry`). Every write goes through `Transactions._write` (transactions.py).
"""

from __future__ import annotations

from .digests import Digests
from .ingest import Ingest, IngestResult
from .outbox import PAUSED, PENDING, Claimed, Counts, Outbox
from .people import People
from .reads import Reads
from .receipts import Receipt, Receipts
from .retention import Retention
from .transactions import utc

__all__ = ["PAUSED", "PENDING", "Claimed", "Counts", "IngestResult", "Receipt", "Store", "utc"]


class Store(Ingest, Outbox, Digests, People, Receipts, Reads, Retention):
    """The store of one database (SQLite or PostgreSQL): `Store(engine, codec)`."""
