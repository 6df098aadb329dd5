"""Static checks of the monitoring configuration (run by .ci/monitoring-checks).

1. Every metric named in a rule expression (deploy/monitoring/prometheus/rules) or a dashboard
   query (deploy/monitoring/grafana/dashboards) is in docs/metrics.md, a recording rule defined in
   the rules, or a Prometheus built-in (up, ALERTS, ...). Histogram series (_bucket, _sum,
   _count) are checked under their base name.
2. Every alert has framework, severity (critical|warning|info) and component labels, summary,
   description and a runbook_url whose file and heading exist under docs/runbooks/.
3. Every alert appears in the promtool tests (deploy/monitoring/prometheus/tests) at least once
   with expected alerts and once with exp_alerts: [] (must not fire).
"""
import glob
import json
import re
import sys

import yaml

ROOT = sys.argv[1] if len(sys.argv) > 1 else "."
PROM = f"{ROOT}/deploy/monitoring/prometheus"
BUILTIN = {"up", "ALERTS", "ALERTS_FOR_STATE", "scrape_duration_seconds", "scrape_samples_scraped"}
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
            "offset", "bool", "inf", "nan", "Inf", "NaN", "atan2"}
LABEL_LIST = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
errors = []


def metric_names(expr):
    """Metric names in a PromQL expression (a lexer good enough for our own expressions)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)  # strings
    e = re.sub(r"\{[^}]*\}", "", e)  # label matchers
    e = re.sub(r"\[[^\]]*\]", "", e)  # ranges and subqueries
    e = LABEL_LIST.sub(" ", e)
    e = re.sub(r"\$\w+", "", e)  # Grafana variables
    e = re.sub(r"\b\d+(\.\d+)?([eE][+-]?\d+)?[smhdwy]?\b", " ", e)  # numbers, durations
    names = set()
    for m in IDENT.finditer(e):
        word = m.group(0)
        rest = e[m.end():].lstrip()
        if rest.startswith("(") or word in KEYWORDS:
            continue  # a function or a keyword
        names.add(word)
    return names


def base(name):
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


try:
    catalogue_text = open(f"{ROOT}/docs/metrics.md").read()
except OSError as err:
    sys.exit(f"docs/metrics.md: {err}")
catalogue = set(re.findall(r"^\|\s*`([a-zA-Z_:][a-zA-Z0-9_:]*)`", catalogue_text, re.M))
if not catalogue:
    sys.exit("docs/metrics.md lists no metric (rows like | `medai_name_total` | counter | ... |)")

rules = []  # (file, rule)
for path in sorted(glob.glob(f"{PROM}/rules/*.yml")):
    for group in yaml.safe_load(open(path))["groups"]:
        rules += [(path, r) for r in group["rules"]]
recorded = {r["record"] for _, r in rules if "record" in r}
known = catalogue | recorded | BUILTIN


def check_expr(where, expr):
    for name in sorted(metric_names(expr)):
        if name not in known and base(name) not in known:
            errors.append(f"{where}: metric {name} is not in docs/metrics.md")


alerts = []
for path, r in rules:
    name = r.get("alert") or r.get("record")
    check_expr(f"{path}: {name}", r["expr"])
    if "alert" not in r:
        continue
    alerts.append(name)
    labels, ann = r.get("labels", {}), r.get("annotations", {})
    if labels.get("framework") not in ("HIPAA", "FDA", "ISO27001", "availability"):
        errors.append(f"{path}: {name}: framework label must be HIPAA, FDA, ISO27001 or availability")
    if labels.get("severity") not in ("critical", "warning", "info"):
        errors.append(f"{path}: {name}: severity label must be critical, warning or info")
    if not labels.get("component"):
        errors.append(f"{path}: {name}: no component label (inhibition matches on it)")
    for key in ("summary", "description", "runbook_url"):
        if not ann.get(key):
            errors.append(f"{path}: {name}: no {key} annotation")
    m = re.search(r"/(docs/runbooks/[\w.-]+\.md)#([\w-]+)$", ann.get("runbook_url", ""))
    if not m:
        errors.append(f"{path}: {name}: runbook_url must point to docs/runbooks/FILE.md#anchor")
        continue
    try:
        runbook = open(f"{ROOT}/{m.group(1)}").read()
    except OSError:
        errors.append(f"{path}: {name}: runbook {m.group(1)} does not exist")
        continue
    anchors = {re.sub(r"[^\w -]", "", h.strip().lower()).replace(" ", "-")
               for h in re.findall(r"^#+\s+(.*)$", runbook, re.M)}
    if m.group(2) not in anchors:
        errors.append(f"{path}: {name}: {m.group(1)} has no heading for #{m.group(2)}")

if len(set(alerts)) != len(alerts):
    errors.append("two alerts share a name")

fires, silent = set(), set()
for path in sorted(glob.glob(f"{PROM}/tests/*.yml")):
    for test in yaml.safe_load(open(path))["tests"]:
        for case in test.get("alert_rule_test") or []:
            (fires if case.get("exp_alerts") else silent).add(case["alertname"])
for name in alerts:
    if name not in fires:
        errors.append(f"alert {name}: no promtool test where it fires")
    if name not in silent:
        errors.append(f"alert {name}: no promtool test where it must not fire (exp_alerts: [])")

dashboards = sorted(glob.glob(f"{ROOT}/deploy/monitoring/grafana/dashboards/*.json"))
queries = 0


def walk_panels(panels):
    for p in panels:
        yield p
        yield from walk_panels(p.get("panels", []))


for path in dashboards:
    board = json.load(open(path))
    for p in walk_panels(board.get("panels", [])):
        for t in p.get("targets", []):
            if t.get("expr"):
                queries += 1
                check_expr(f"{path}: panel '{p.get('title')}'", t["expr"])
for title in ("Compliance", "Clinical performance", "Security and access", "System health",
              "Healthcare operations", "Alerts"):
    if not any(json.load(open(p))["title"].endswith(title) for p in dashboards):
        errors.append(f"no dashboard titled '{title}'")

if errors:
    print("\n".join(errors), file=sys.stderr)
    sys.exit(1)
print(f"catalogue: {len(catalogue)} metrics; {len(rules)} rules ({len(alerts)} alerts, each tested firing "
      f"and silent, each with a runbook); {len(dashboards)} dashboards, {queries} queries: all names catalogued")
