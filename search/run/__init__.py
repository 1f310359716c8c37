"""Running a search: its settings and saved state (``settings``, ``state``, ``resume``), why it
stops early (``stops``: signals, a full disk), the data it trains on (``prepare``), and the Ray Tune
wiring (``tuner``): the trainable, the schedulers, the Optuna study, and the adapters to Ray's and
Optuna's internals."""
