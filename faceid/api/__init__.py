"""The REST API, v1: persons, enrollment, verify (1:1), identify (1:N), audit log, async jobs."""
