"""Dialer building blocks: calling hours, durations and limits, do-not-call lists.

Each module has one job and imports nothing of the campaign, the journals, the CLI
or the test tools, so the campaign can use them without a circle.
"""
