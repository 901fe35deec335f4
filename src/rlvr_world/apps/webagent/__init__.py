"""A MiniWoB++ web agent that plans with a web world model (model-predictive control), measured in the real browser.

`policy` proposes candidate actions, `worlds` predicts the page each leads to
(a trained world model, in process or over HTTP, or the real browser as an
oracle), `value` scores predicted pages against the instruction, `mpc` runs
episodes and `experiment` compares agents on the same seeded episodes
(`rlvr-world agent`).
"""
