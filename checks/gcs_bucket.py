"""Layer `gcs`: no checks registered yet."""
