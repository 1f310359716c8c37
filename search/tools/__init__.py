"""Offline tools: scheduler replays over a learning-curve table (``replay``) and the cluster
launcher check (``cluster_check``)."""
