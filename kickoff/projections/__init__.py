"""SQL tables derived only from the log (tasks, workers, task_counts): their schema, how
events change them, their queries, the rebuild, and the start-up checkpoint they hold. They
read the log through store/; the unit that writes both together is kickoff/database.py."""
