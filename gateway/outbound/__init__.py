"""Outbound mail: render templates, compose headers, queue in the outbox, deliver."""
