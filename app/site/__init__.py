"""The public site: home, the language switch, health (/healthz, /readyz), help and privacy."""
