"""The outbox's far side: claim due deliveries, send them, record and schedule what happened."""
