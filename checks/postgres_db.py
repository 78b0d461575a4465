"""Layer `postgres`: no checks registered yet."""
