"""Executors take leases from the ledger and hand them to something that renders."""
