"""Built-in check layers: one module per layer, each registering its checks (nothing else lives here)."""
