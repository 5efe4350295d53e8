"""SQL tables derived only from the log: tasks, workers, task_counts."""
