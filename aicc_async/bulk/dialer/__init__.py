"""Dialer-grade campaigns."""
