"""One file per model network; each returns a dict of task outputs and defines its loss."""
