"""The gateway: configuration, the inbound mail pipeline, the intake and outbound mail."""
