"""Layer `kubernetes`: no checks registered yet."""
