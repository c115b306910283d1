"""Inbound mail: receive, spool, parse, classify, route, thread, extract, authorise, store."""
