"""Layer `dns`: no checks registered yet."""
