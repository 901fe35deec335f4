"""The web-page domain: predict how a page's accessibility tree changes after an action.

So far: real transitions from MiniWoB++ pages in headless Chromium (`browser`,
`collect`) and the WebArena-style tree difference (`acctree`). The domain
class that plugs these into the engine comes next.
"""
