"""Jobs: the job tracker and the long work it runs (retraining, batch scoring)."""
