"""vidseg-search's search of SimVP's configurations with Ray Tune, Optuna and ASHA.

The commands are the modules at the top: ``run_search.py`` (the search), ``replay`` (schedulers
replayed over a learning-curve table), ``curves`` (a table rebuilt from a search's folders) and
``cluster_check`` (a cluster launcher file checked offline). What they are built of lives in four
packages, each importing only those before it:

- ``space``: the searched dimensions, the profiles, the reference configurations;
- ``results``: how a trial ended, a row per trial, the leaderboard and report, TensorBoard, the
  terminal's table, the learning-curve table, the Optuna journal;
- ``run``: settings, saved state and resume, data preparation, and the Ray Tune wiring (trainable,
  schedulers, Optuna study, the adapters to Ray's and Optuna's internals);
- ``tools``: the offline tools behind ``replay`` and ``cluster_check``.
"""
