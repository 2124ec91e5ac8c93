"""``costplan guard``: the controller that turns budget actions into key state.

``decide`` says what each key's state should be (pure), ``clients`` talks to
Prometheus and the Kubernetes API, ``controller`` runs the level-triggered
loop with its webhook, health and metrics endpoints.
"""
