"""The domain core: plain Python, no framework or I/O imports (checked by import-linter)."""
