"""The running server's parts that are neither the flow nor the API: probes (`probes.py`), hot
reload of what the API saves (`live.py`) and of what other replicas saved (`reload.py`), and the
start-up and shut-down sequence (`lifespan.py`). `app.create_app` assembles them."""
