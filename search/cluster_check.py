"""``python -m search.cluster_check``: check a Ray cluster-launcher YAML offline (``search.tools.cluster_check``)."""

from search.tools.cluster_check import main

if __name__ == "__main__":
    raise SystemExit(main())
