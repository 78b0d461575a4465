"""Parsers: readers of the languages the stack speaks, pure functions on text.

- ``cachecontrol``: a ``Cache-Control`` header as RFC 9111 reads it;
- ``cfrules``: CloudFlare's Rules language (the subset cache rules use);
- ``nginx_conf``: just enough of an nginx configuration (``nginx -T``) to see method limits.

May import: nothing of studiodoctor (the standard library only).
"""
