"""The domain-agnostic engine: token ids, masks and rewards, nothing else.

Nothing in this package imports a domain, a dataset or a metric.
"""
