"""Layer `path`: no checks registered yet."""
