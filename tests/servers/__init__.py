"""Real loopback HTTP servers that stand in for remote services in tests."""
