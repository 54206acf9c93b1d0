"""alertbridge: a durable webhook bridge for incident tooling."""

__version__ = "0.1.0"
