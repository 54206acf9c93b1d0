"""Endpoints and targets made through the admin API: `routes` (HTTP), `service.Objects` (saved,
loaded, synced, put live), `checks` (checked with the file's models, secrets sealed)."""
