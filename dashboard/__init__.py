"""The marketing dashboard at /dashboard: a page over the Stats API (``api.stats``).

``app.py`` serves the page, its built assets (``static/``, from ``frontend/``) and
the sign-in that exchanges an API token for a session cookie; ``security.py`` holds
the headers and checks every dashboard response and state change goes through.
"""
