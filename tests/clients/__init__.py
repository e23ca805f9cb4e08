"""Client programs and helpers the client-compatibility tests run (some in their own virtualenv)."""
