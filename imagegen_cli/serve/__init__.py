"""``imagegen serve``: a warm local engine behind OpenAI's images API (an optional extra: ``imagegen-cli[serve]``).

``worker`` runs pipeline calls (one worker per device, compatible requests batched, the model unloaded after
``--keep-alive``), ``app`` is the ASGI application (Starlette), ``metrics`` its Prometheus counters. Nothing here
is imported unless the ``serve`` command runs.
"""
