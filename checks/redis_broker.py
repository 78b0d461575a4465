"""Layer `redis`: no checks registered yet."""
