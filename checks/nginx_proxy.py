"""Layer `nginx`: no checks registered yet."""
