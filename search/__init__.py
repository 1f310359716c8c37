"""vidseg-search's search: the space, the Ray Tune trainable, the entry script and its report."""
