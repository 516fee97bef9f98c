"""Offline tools that produce constants and weights committed in the product."""
