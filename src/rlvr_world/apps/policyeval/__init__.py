"""Real2Sim policy evaluation: robot policies run inside a video world model, against their true success.

`data` simulates labelled Meta-World episodes and runs policies for real,
`nets` holds the small frame networks, `policies` the evaluated set,
`detector` judges success from frames, `imagine` rolls a policy out inside a
world model, and `experiment` compares the estimates with the truth
(`rlvr-world policy-eval`).
"""
