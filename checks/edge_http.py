"""Layer `cloudflare`: no checks registered yet."""
