"""Built-in plugins. They load through the same entry points as third-party plugins."""
