"""Where the read side's aggregates are written: the visit builder closes visits into
beacon.visits and rolls closed days up into beacon.stats_daily and beacon.stats_pairs.

A writer beside the read side: it builds visits with the read side's one definition
(``queries.sessions``) and rolls up the properties ``queries.properties`` declares,
so the aggregates path and the raw path give the same numbers.
"""
