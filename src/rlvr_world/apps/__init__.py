"""Applications: what users do with trained world models, through the same public API a user would call.

`webagent`: a MiniWoB++ web agent that plans with a web world model (model-predictive control).
"""
