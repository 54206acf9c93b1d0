"""The outbox's far side: claim due deliveries, send them, record and schedule what happened."""

# What `{{ dead.why }}` renders to when an `on_dead` action is routed; the dispatcher puts why the
# delivery died in its place once it dies ("refused with 400 (…), not retried", "after 6 attempts …").
DEAD_WHY = "⟦why it died⟧"
