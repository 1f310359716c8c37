"""What a search records and shows: how each trial ended (``outcome``), a typed row per trial
(``rows``), the leaderboard and report (``report``), TensorBoard (``board``), the terminal's table
(``progress``), the learning-curve table (``curves``) and the Optuna journal (``journal``)."""
