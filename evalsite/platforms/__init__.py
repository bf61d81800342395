"""Crowd platforms driven through their APIs: Prolific (REST) and Amazon Mechanical Turk (boto3).

Publishing, reading submissions, approving / rejecting / returning them by the quality rule,
bonuses paid exactly once, more places, closing, and reclaiming the leases of participants who
returned or timed out. Every write is an action in :mod:`.actions` with an audit-log entry.
"""
