"""Storage backends. The embedded default is SQLite; others come from plugins."""
