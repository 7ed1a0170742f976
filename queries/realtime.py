"""Current visitors (``/api/v1/stats/realtime/visitors``): visitors with any counted
event in the last five minutes, from the raw events (five minutes of one site's rows)."""

from __future__ import annotations

from datetime import datetime, timedelta

from queries.sessions import COUNTED, VISITOR_KEY
from queries.sql import Params
from storage.clickhouse import Store

WINDOW = timedelta(minutes=5)


def realtime_visitors(store: Store, site: str, now: datetime) -> int:
    params = Params()
    sql = (
        f"SELECT uniqExact({VISITOR_KEY}) FROM beacon.events "
        f"WHERE site = {params.text(site)} AND ts > {params.time(now - WINDOW)} AND ts <= {params.time(now)} "
        f"AND {COUNTED}"
    )
    return int(store.rows(sql, params.values)[0][0])
