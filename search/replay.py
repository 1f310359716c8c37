"""``python -m search.replay``: replay schedulers over a learning-curve table (``search.tools.replay``)."""

from search.tools.replay import main

if __name__ == "__main__":
    raise SystemExit(main())
