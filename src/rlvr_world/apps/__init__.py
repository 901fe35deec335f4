"""Applications: what users do with trained world models, through the same public API a user would call.

`webagent`: a MiniWoB++ web agent that plans with a web world model (model-predictive control).
`policyeval`: robot policies evaluated inside a video world model (Real2Sim), against their true success.
"""
