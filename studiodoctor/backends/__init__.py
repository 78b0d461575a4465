"""One connection module per backend (postgres, redis, gcs, kubernetes): how the doctor reaches it,
shared by every layer and by ``preflight``. Layers keep only what is theirs."""
