"""Utilities every layer uses, one copy each: validation, optional imports, files, specs."""
