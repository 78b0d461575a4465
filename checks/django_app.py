"""Layer `app`: no checks registered yet."""
