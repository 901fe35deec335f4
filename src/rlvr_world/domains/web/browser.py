"""A real headless Chromium, driven through chromedriver and the DevTools protocol.

The page is read as its accessibility tree (`Accessibility.getFullAXTree`) and
written as WebArena-style lines, one element a line, indented by depth:

    [12] button 'Submit' focused: True

The id is the element's DOM backend node id: stable for as long as the element
lives, so the same element keeps its id from one observation to the next, and
actions name elements by it. Actions are WebArena's:

    click [id]   hover [id]   type [id] [text] [1 = press Enter after]   press [key]   scroll [up|down]

Rendering rules (ours, in WebArena's spirit): unnamed layout nodes (generic,
none, LabelText, paragraph, ...) and ignored nodes are left out and their
children move up a level; inline text boxes, line breaks and whitespace-only
text are dropped; a text node that only repeats its parent's name is dropped;
only properties that describe state are kept (checked, selected, expanded,
disabled, required, focused, ...), booleans written as True / False.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from dataclasses import dataclass

from ...engine.errors import UserError

UNNAMED_LAYOUT = {"generic", "none", "LabelText", "paragraph", "Section", "group", "list", "listitem", "div",
                  "strong", "emphasis", "Canvas", "presentation", "Legend", "time", "mark", "Abbr"}
ALWAYS_DROPPED = {"InlineTextBox", "LineBreak", "ListMarker"}
KEPT_PROPERTIES = ("checked", "selected", "expanded", "pressed", "disabled", "required", "focused", "hasPopup",
                   "level", "valuemin", "valuemax", "valuetext", "multiselectable", "orientation", "autocomplete",
                   "modal")
KEYS = {"Enter": ("Enter", 13, "\r"), "Tab": ("Tab", 9, ""), "Escape": ("Escape", 27, ""),
        "Backspace": ("Backspace", 8, ""), "ArrowDown": ("ArrowDown", 40, ""), "ArrowUp": ("ArrowUp", 38, ""),
        "ArrowLeft": ("ArrowLeft", 37, ""), "ArrowRight": ("ArrowRight", 39, ""), "Space": (" ", 32, " ")}
ACTION_RE = re.compile(r"^\s*(click|hover|type|press|scroll)\s*((?:\[[^\]]*\]\s*)*)$", re.S)


class BrowserError(UserError, RuntimeError):
    """The browser could not be started, or a page crashed or hung."""


def _value(prop) -> object:
    v = prop.get("value", {}).get("value")
    if v in ("true", "false"):
        return v == "true"
    return v


def render(nodes: list[dict]) -> str:
    """CDP accessibility nodes (`Accessibility.getFullAXTree`) -> WebArena-style tree lines."""
    by_id = {n["nodeId"]: n for n in nodes}
    roots = [n for n in nodes if not n.get("parentId") or n["parentId"] not in by_id]
    lines: list[str] = []

    def visit(node: dict, depth: int, parent_name: str) -> None:
        role = (node.get("role") or {}).get("value", "")
        name = str((node.get("name") or {}).get("value") or "").strip()
        shown = not node.get("ignored") and node.get("backendDOMNodeId") is not None and role not in ALWAYS_DROPPED
        if shown and role in UNNAMED_LAYOUT and not name:
            shown = False
        if shown and role == "StaticText" and (not name or name == parent_name):
            shown = False
        if shown:
            props = [f"{p['name']}: {_value(p)}" for p in node.get("properties", [])
                     if p.get("name") in KEPT_PROPERTIES and _value(p) not in (None, "")]
            lines.append("\t" * depth + " ".join([f"[{node['backendDOMNodeId']}] {role} {name!r}", *props]))
        for child in node.get("childIds", []):
            if child in by_id:
                visit(by_id[child], depth + 1 if shown else depth, name if shown else parent_name)

    for root in roots:
        visit(root, 0, "")
    return "\n".join(lines)


@dataclass(frozen=True)
class Action:
    """One WebArena-style action."""

    kind: str  # click, hover, type, press, scroll
    node: int | None = None  # the element's id (click, hover, type)
    text: str = ""  # typed text (type), key (press) or direction (scroll)
    enter: bool = False  # type: press Enter afterwards

    def __str__(self) -> str:
        if self.kind in ("click", "hover"):
            return f"{self.kind} [{self.node}]"
        if self.kind == "type":
            return f"type [{self.node}] [{self.text}] [{int(self.enter)}]"
        return f"{self.kind} [{self.text}]"

    @classmethod
    def parse(cls, text: str) -> Action:
        """`str(action)` back to the action; raises ValueError with a one-line reason."""
        m = ACTION_RE.match(text)
        if not m:
            raise ValueError(f"not an action: {text!r}")
        kind, args = m.group(1), re.findall(r"\[([^\]]*)\]", m.group(2))
        need = {"click": 1, "hover": 1, "type": 2, "press": 1, "scroll": 1}[kind]
        if len(args) < need:
            raise ValueError(f"{kind} needs {need} argument(s): {text!r}")
        if kind in ("click", "hover", "type") and not args[0].strip().isdigit():
            raise ValueError(f"element id must be a number: {text!r}")
        if kind in ("click", "hover"):
            return cls(kind, int(args[0]))
        if kind == "type":
            return cls(kind, int(args[0]), args[1], len(args) > 2 and args[2].strip() == "1")
        return cls(kind, text=args[0])


def find_executable(names: list[str], env: str) -> str:
    """The first of `names` on PATH, or the path in environment variable `env`."""
    if os.environ.get(env):
        return os.environ[env]
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    raise BrowserError(f"none of {', '.join(names)} found on PATH (install Debian's chromium and chromium-driver, "
                       f"or set {env})")


class Browser:
    """One headless Chromium page: open a URL, read its accessibility tree, act on it."""

    def __init__(self, width: int = 500, height: int = 700, timeout_s: float = 20.0):
        try:
            from selenium import webdriver
            from selenium.webdriver.chrome.service import Service
        except ImportError as e:  # pragma: no cover - selenium is a dependency
            raise BrowserError(f"selenium is not installed: {e}") from None
        opts = webdriver.ChromeOptions()
        opts.binary_location = find_executable(["chromium", "chromium-browser", "google-chrome"], "RLVR_CHROMIUM")
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-extensions", "--mute-audio", f"--window-size={width},{height}"):
            opts.add_argument(arg)
        service = Service(find_executable(["chromedriver"], "RLVR_CHROMEDRIVER"))
        try:
            self.driver = webdriver.Chrome(service=service, options=opts)
        except Exception as e:
            raise BrowserError(f"could not start Chromium: {str(e).splitlines()[0]}") from None
        self.driver.set_page_load_timeout(timeout_s)
        self.driver.set_script_timeout(timeout_s)
        self.driver.command_executor.client_config.timeout = timeout_s  # a hung CDP call fails, not waits forever

    def close(self) -> None:
        try:
            self.driver.quit()
        except Exception:
            pass

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def open(self, url: str) -> None:
        self.driver.get(url)

    def js(self, script: str, *args):
        return self.driver.execute_script(script, *args)

    def cdp(self, cmd: str, params: dict | None = None) -> dict:
        return self.driver.execute_cdp_cmd(cmd, params or {})

    def tree(self) -> str:
        """The page's accessibility tree as WebArena-style lines."""
        return render(self.cdp("Accessibility.getFullAXTree")["nodes"])

    def _center(self, node: int) -> tuple[float, float]:
        self.cdp("DOM.getDocument", {"depth": 0})
        self.cdp("DOM.scrollIntoViewIfNeeded", {"backendNodeId": node})
        quad = self.cdp("DOM.getBoxModel", {"backendNodeId": node})["model"]["border"]  # x1 y1 .. x4 y4
        return sum(quad[0::2]) / 4, sum(quad[1::2]) / 4

    def _mouse(self, kind: str, x: float, y: float) -> None:
        params = {"type": kind, "x": x, "y": y}
        if kind != "mouseMoved":
            params |= {"button": "left", "clickCount": 1}
        self.cdp("Input.dispatchMouseEvent", params)

    def _key(self, key: str) -> None:
        name, code, text = KEYS.get(key, (key, 0, key if len(key) == 1 else ""))
        down = {"type": "keyDown", "key": name, "code": name, "windowsVirtualKeyCode": code}
        self.cdp("Input.dispatchKeyEvent", down | ({"text": text} if text else {}))
        self.cdp("Input.dispatchKeyEvent", {"type": "keyUp", "key": name, "code": name, "windowsVirtualKeyCode": code})

    def act(self, action: Action) -> None:
        """Carry out an action the way a user would: mouse events at the element's centre, key events, text input."""
        if action.kind in ("click", "hover", "type"):
            x, y = self._center(action.node)
            self._mouse("mouseMoved", x, y)
            if action.kind in ("click", "type"):
                self._mouse("mousePressed", x, y)
                self._mouse("mouseReleased", x, y)
            if action.kind == "type":
                self.cdp("DOM.focus", {"backendNodeId": action.node})
                obj = self.cdp("DOM.resolveNode", {"backendNodeId": action.node})["object"]["objectId"]
                self.cdp("Runtime.callFunctionOn", {"objectId": obj, "functionDeclaration":
                                                    "function() { if ('value' in this) this.value = ''; }"})
                self.cdp("Input.insertText", {"text": action.text})
                if action.enter:
                    self._key("Enter")
        elif action.kind == "press":
            self._key(action.text)
        elif action.kind == "scroll":
            self.js("window.scrollBy(0, arguments[0])", 300 if action.text.strip() == "down" else -300)
        else:
            raise ValueError(f"unknown action kind {action.kind!r}")

    def settle(self, seconds: float) -> None:
        """Give the page's own scripts time to react (animations, delayed updates)."""
        time.sleep(seconds)
