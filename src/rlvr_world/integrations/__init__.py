"""Adapters to the RL engines used at paper scale: the domains' data and verifiable rewards, in their formats.

`rows` turns a language domain's transitions into engine-neutral rows and
scores a response against one; `export` writes them as verl or TRL datasets
(`rlvr-world export`); `verl.compute_score` and `trl.reward_function` are the
same rewards in each engine's contract.
"""
