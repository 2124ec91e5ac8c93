"""costplan: compile an LLM chargeback plan into Kubernetes, Prometheus and GitOps config."""

__version__ = "0.1.0"
