"""`shopsmart-demo --live`: the demo sources receiving orders as time passes.

Each hour is drawn exactly as the batch generator draws it (same random stream, same ids), and
its rows are written as the clock passes their moments: sign-ups, interactions, orders with
their items and their dirty rows. When the hour ends, its late updates are applied and it is
recorded as generated. An hour interrupted half-way (Ctrl-C, a crash) is taken back when the
simulator starts again and drawn anew, identically, so the sources never hold an order twice.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from shopsmart_assets.demo.generator import (
    DemoConfig,
    HourDraw,
    SourceState,
    draw_hour,
    finish_hour,
    last_generated_hour,
    live_hours,
    pending_updates,
    write_rows,
)
from shopsmart_assets.sources.tables import customers, interactions, order_items, orders

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def naive_utc(moment: datetime) -> datetime:
    return moment.astimezone(timezone.utc).replace(tzinfo=None)


@dataclass
class _Current:
    draw: HourDraw
    written_until: datetime | None = None  # naive UTC


class LiveSource:
    """Writes the demo sources' activity up to the clock's present, hour after hour."""

    def __init__(
        self, crm: sa.Engine, orders_db: sa.Engine, config: DemoConfig, clock: Clock = utc_now
    ) -> None:
        self.crm = crm
        self.orders_db = orders_db
        self.config = config
        self.clock = clock
        self.current: _Current | None = None
        self.counts: Counter[str] = Counter()

    def take_back_unfinished(self) -> int:
        """Delete the rows of an hour a previous simulator left half-written; returns how
        many such hours there were (0 or 1)."""
        with self.orders_db.connect() as c:
            rows = c.execute(sa.select(live_hours)).all()
        for row in rows:
            with self.crm.begin() as c:
                c.execute(
                    customers.delete().where(customers.c.customer_id >= row.first_customer_id)
                )
                c.execute(
                    interactions.delete().where(
                        interactions.c.interaction_id >= row.first_interaction_id
                    )
                )
            with self.orders_db.begin() as c:
                c.execute(order_items.delete().where(order_items.c.order_id >= row.first_order_id))
                c.execute(orders.delete().where(orders.c.order_id >= row.first_order_id))
                c.execute(
                    pending_updates.delete().where(pending_updates.c.order_id >= row.first_order_id)
                )
                c.execute(live_hours.delete().where(live_hours.c.hour_start == row.hour_start))
        return len(rows)

    def step(self) -> Counter[str]:
        """Write what happened since the last step; close the hours that have ended (every
        one of them, in order, if the clock jumped)."""
        now = naive_utc(self.clock())
        written: Counter[str] = Counter()
        while True:
            current = self.current or self._open_next(now)
            if current is None:
                break
            end = current.draw.hour_start + timedelta(hours=1)
            until = min(now, end)
            due = current.draw.due(current.written_until, until)
            written.update(write_rows(self.crm, self.orders_db, due))
            current.written_until = until
            if now < end:
                self.current = current
                break
            written["late_updates"] += self._close(current)
        self.counts.update(written)
        return written

    def _open_next(self, now: datetime) -> _Current | None:
        """Draw the hour after the last generated one, if it has begun, and record that it is
        being written."""
        last = last_generated_hour(self.orders_db)
        if last is None:
            raise RuntimeError("the live demo continues existing sources: run `make demo` first")
        hour_start = naive_utc(last + timedelta(hours=1))
        if hour_start > now:
            return None
        state = SourceState(self.crm, self.orders_db)
        first_ids = {
            "first_order_id": state.next_order_id,
            "first_customer_id": state.next_customer_id,
            "first_interaction_id": state.next_interaction_id,
        }
        draw = draw_hour(state, hour_start.replace(tzinfo=timezone.utc), self.config)
        with self.orders_db.begin() as c:
            c.execute(live_hours.insert(), {"hour_start": hour_start, **first_ids})
        self.counts.update(draw.counts)
        return _Current(draw)

    def _close(self, current: _Current) -> int:
        self.current = None
        changed = finish_hour(self.orders_db, current.draw.hour_start)
        with self.orders_db.begin() as c:
            c.execute(live_hours.delete().where(live_hours.c.hour_start == current.draw.hour_start))
        return changed
