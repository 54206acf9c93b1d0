"""Templates and what they see, shared by ingress (an endpoint's labels and response) and routing
(an action's fields): `templates.py` (sandboxed Jinja2), `context.py` (the event's view, `DEAD_WHY`),
`links.py` (`links.<system>.<type>`, `MissingLink`)."""
