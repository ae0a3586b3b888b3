"""Fakes for unit tests, one module per thing faked; each keeps the real thing's threading rules."""
