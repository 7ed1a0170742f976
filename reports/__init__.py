"""E-mailed reports and traffic-spike notices: the figures (read with the Stats API's
query functions), the mails (HTML and plain text), their sending over SMTP, the
scheduler that runs inside ``beacon serve``, and the unsubscribe route. Who gets what
is stored by ``storage.reports``. Mails carry aggregates only."""
