#!/usr/bin/env python3
"""Prints every metric name the Grafana dashboard's PromQL uses, one a line.

    python3 deploy/grafana/metric_names.py [DASHBOARD.json]

Reads every `expr` field anywhere in the dashboard (panels, rows' nested
panels, targets) and prints the metric names exactly as written, sorted and
without repeats: histogram series keep their `_bucket` / `_sum` / `_count`
suffix, since that is how they appear in a `/metrics` scrape. The default
dashboard is dashboards/flashsale.json next to this script. Exits 1 when the
dashboard has no expression at all. Standard library only.
"""

import json
import os
import re
import sys

# Words of PromQL that look like identifiers but are not metric names.
KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right",
    "and", "or", "unless", "bool", "offset", "atan2", "inf", "nan",
}

IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
COMMENT = re.compile(r"#[^\n]*")
# Label lists of grouping and vector-matching modifiers: by (le, route), on(x) ...
LABEL_LIST = re.compile(
    r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", re.IGNORECASE
)
# Durations outside brackets (offset 5m, 1h30m), before numbers so `m` is not left over.
DURATION = re.compile(r"\b(\d+(ms|s|m|h|d|w|y))+\b")
NUMBER = re.compile(r"\b0[xX][0-9a-fA-F]+\b|\b\d+(\.\d*)?([eE][+-]?\d+)?\b|\.\d+([eE][+-]?\d+)?\b")


def expressions(node):
    """Yields every string under an `expr` key, at any depth."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                yield value
            else:
                yield from expressions(value)
    elif isinstance(node, list):
        for item in node:
            yield from expressions(item)


def strip_brackets(expr, open_ch, close_ch):
    """Drops everything between matching open_ch/close_ch (label matchers, ranges)."""
    out, depth = [], 0
    for ch in expr:
        if ch == open_ch:
            depth += 1
            out.append(" ")
        elif ch == close_ch and depth:
            depth -= 1
            out.append(" ")
        elif depth == 0:
            out.append(ch)
    return "".join(out)


def metric_names(expr):
    """The metric names one PromQL expression refers to."""
    s = STRING.sub(" ", expr)
    s = COMMENT.sub(" ", s)
    s = strip_brackets(s, "{", "}")  # label matchers
    s = strip_brackets(s, "[", "]")  # range and subquery selectors, $__rate_interval
    s = LABEL_LIST.sub(" ", s)
    s = re.sub(r"\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*", " ", s)  # Grafana variables
    s = DURATION.sub(" ", s)
    s = NUMBER.sub(" ", s)
    names = set()
    for m in IDENT.finditer(s):
        word = m.group(0)
        rest = s[m.end():].lstrip()
        if rest.startswith("("):  # a function or aggregation: rate(, sum(, histogram_quantile(
            continue
        if word.lower() in KEYWORDS:
            continue
        names.add(word)
    return names


def main(argv):
    here = os.path.dirname(os.path.abspath(__file__))
    path = argv[1] if len(argv) > 1 else os.path.join(here, "dashboards", "flashsale.json")
    with open(path, encoding="utf-8") as f:
        dashboard = json.load(f)
    exprs = list(expressions(dashboard))
    if not exprs:
        print(f"{path}: no PromQL expressions found", file=sys.stderr)
        return 1
    names = set()
    for expr in exprs:
        names |= metric_names(expr)
    for name in sorted(names):
        print(name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
