"""Layer `traefik`: no checks registered yet."""
