#!/usr/bin/env python3
"""Turns the raw rows of scripts/bench.sh into latest.json, latest.md and latest.png.

    bench/report.py --results results.jsonl --scenarios scenarios.jsonl --meta meta.json --out DIR

Re-running it on kept raw files (BENCH_KEEP=1) redraws the report without measuring again.
"""

import argparse
import json
import os
import statistics
from collections import OrderedDict, defaultdict

# (id, text, scenario, compare with, metric, minimum ratio, p99 at most this multiple or None)
TARGETS = [
    ("t1", "s1 plain: tollgate ÷ bare Pingora ≥ 1.0", "s1", "bare", 1.0, None),
    ("t2", "s2 limited: tollgate ÷ bare Pingora ≥ 0.85, p99 ≤ 1.5× bare's", "s2", "bare", 0.85, 1.5),
    ("t3", "s2 limited: tollgate ÷ nginx limit_req ≥ 0.60, p99 ≤ 2× nginx's", "s2", "nginx", 0.60, 2.0),
    ("t4", "s3 rejected: tollgate ÷ nginx limit_req ≥ 0.50", "s3", "nginx", 0.50, None),
    ("t5", "tls1 HTTPS keep-alive: tollgate ÷ nginx ssl ≥ 0.60", "tls1", "nginx", 0.60, None),
    ("t6", "tls2 HTTP/2: tollgate ÷ nginx ssl http2 ≥ 0.60", "tls2", "nginx", 0.60, None),
]
RSS_IDLE_MB = 30
RSS_LOADED_MB = 100
LOCUST_RPS = 1400
LOCUST_P95_MS = 14


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def derive(r):
    w = r["wrk"]
    req = w["requests"]
    secs = w["duration_us"] / 1e6 or 1
    cpu = r["proxy_cpu_s"]
    wall = r["wall_s"] or secs
    return {
        "requests": req,
        "rps": req / secs,
        "req_per_cpu_s": req / cpu if cpu > 0 else None,
        "proxy_cpu_pct": 100 * cpu / wall,
        "p50_ms": w["p50_us"] / 1000,
        "p99_ms": w["p99_us"] / 1000,
        "p999_ms": w["p999_us"] / 1000,
        "rss_mb": r["rss_kb"] / 1024,
        "redis_cpu_ms_per_1k": 1e6 * r["redis_cpu_s"] / req if req else None,
        "other_load_pct": max(0.0, 100 * (r["cpu_busy_s"] - cpu) / wall),
        "non_2xx": w["status_errors"],
        "socket_errors": w["connect_errors"] + w["read_errors"] + w["write_errors"] + w["timeouts"],
        "probe": r["probe"],
    }


def median(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def aggregate(raw):
    groups = OrderedDict()
    for r in raw:
        if "wrk" not in r:
            continue
        groups.setdefault((r["scenario"], r["label"]), []).append(r)
    rows = []
    for (scenario, label), rs in groups.items():
        ds = [derive(r) for r in rs]
        row = {"scenario": scenario, "label": label, "contender": rs[0]["contender"],
               "expect": rs[0]["expect"], "baseline": rs[0]["baseline"], "runs": len(rs)}
        for k in ds[0]:
            row[k] = median([d[k] for d in ds])
        ok = all(
            (d["non_2xx"] == 0 and d["probe"] // 100 == 2) if row["expect"] == "2xx" else d["probe"] == 429
            for d in ds
        ) and all(d["socket_errors"] == 0 for d in ds)
        row["valid"] = ok
        rows.append(row)
    return rows


def kind(contender):
    if contender.startswith("tollgate"):
        return "tollgate"
    if contender.startswith("nginx"):
        return "nginx"
    if contender == "bare-pingora":
        return "bare"
    return contender


def ratios(rows):
    by = defaultdict(dict)
    for r in rows:
        by[r["scenario"]][kind(r["contender"])] = r
    out = []
    for r in rows:
        if kind(r["contender"]) != "tollgate":
            continue
        base = by.get(r["baseline"], {})
        entry = {"scenario": r["scenario"], "label": r["label"], "baseline": r["baseline"]}
        for other in ("nginx", "bare"):
            b = base.get(other)
            if not b:
                continue
            def q(a, c):
                return a / c if a is not None and c else None
            entry[other] = {
                "label": b["label"],
                "efficiency": q(r["req_per_cpu_s"], b["req_per_cpu_s"]),
                "rps": q(r["rps"], b["rps"]),
                "p99": q(r["p99_ms"], b["p99_ms"]),
            }
        out.append(entry)
    return out


def evaluate(rats, rss, locust):
    res = []
    for tid, text, scen, other, minimum, p99_max in TARGETS:
        e = next((x for x in rats if x["scenario"] == scen and other in x), None)
        if not e:
            res.append({"id": tid, "target": text, "value": None, "met": None})
            continue
        v = e[other]
        met = v["efficiency"] is not None and v["efficiency"] >= minimum
        value = f"{v['efficiency']:.2f}"
        if p99_max is not None:
            met = met and v["p99"] is not None and v["p99"] <= p99_max
            value += f", p99 ×{v['p99']:.2f}"
        res.append({"id": tid, "target": text, "value": value, "met": met})
    for r in rss:
        res.append({"id": "rss-idle", "target": f"{r['label']}: idle RSS ≤ {RSS_IDLE_MB} MB",
                    "value": f"{r['idle_rss_kb'] / 1024:.1f} MB", "met": r["idle_rss_kb"] / 1024 <= RSS_IDLE_MB})
        res.append({"id": "rss-loaded",
                    "target": f"{r['label']}: RSS after {r['identities']:,} identities ≤ {RSS_LOADED_MB} MB",
                    "value": f"{r['rss_kb'] / 1024:.1f} MB (peak {r['hwm_kb'] / 1024:.1f})",
                    "met": r["rss_kb"] / 1024 <= RSS_LOADED_MB and r["identities"] >= 100_000})
    if locust:
        v = locust.get("verdict") or {}
        met = (locust.get("exit") == 0 and v.get("ok") and v.get("rps", 0) >= LOCUST_RPS
               and (v.get("p95_ms") or 1e9) < LOCUST_P95_MS)
        res.append({"id": "locust", "target": f"locust ≥ {LOCUST_RPS / 1000:.1f}k req/s, p95 < {LOCUST_P95_MS} ms, "
                    "no over-admission",
                    "value": f"{v.get('rps', '?')} req/s, p95 {v.get('p95_ms', '?')} ms, "
                             f"{'no over-admission/errors' if v.get('ok') else 'PROBLEMS: ' + '; '.join(v.get('problems', ['no verdict']))[:200]}",
                    "met": bool(met)})
    return res


def fmt(v, nd=0):
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:,.{nd}f}"
    return f"{v:,}"


def ratio_cell(e, other):
    v = e.get(other)
    if not v or v["efficiency"] is None:
        return "–", "–", "–"
    return f"**{v['efficiency']:.2f}**", f"{v['rps']:.2f}", f"{v['p99']:.2f}"


def markdown(meta, titles, rows, rats, targets, rss, locust):
    L = []
    w = L.append
    w("# tollgate benchmark: latest run")
    w("")
    w(f"{meta['started']} · git {meta['git']} · {meta['cpu']} ({meta['cpus']} CPUs) · kernel {meta['kernel']} · "
      f"load average at start {' '.join(meta['loadavg_at_start'])}")
    w("")
    w(f"{meta['nginx']} · {meta['redis']} · {meta['wrk']} · wrk -t{meta['wrk_threads']} -c{meta['connections']}, "
      f"{meta['warmup_s']} s warm-up + {meta['duration_s']} s measured, median of {meta['repeat']} run(s) · "
      f"proxy on CPU {meta['proxy_cpu']}, wrk + upstream + Redis on CPU {meta['load_cpu']}. "
      "How to read this: bench/NOTES.md. Rerun: scripts/bench.sh.")
    w("")
    w("## Ratios (tollgate ÷ the other proxy, same run)")
    w("")
    w("Efficiency = requests per CPU-second of the proxy (higher is better; > 1 means tollgate needs less CPU "
      "per request). p99 ratio < 1 means tollgate's p99 is lower.")
    w("")
    w("| scenario | tollgate | ÷ nginx: efficiency | req/s | p99 | ÷ bare Pingora: efficiency | req/s | p99 |")
    w("|---|---|---|---|---|---|---|---|")
    for e in rats:
        n = ratio_cell(e, "nginx")
        b = ratio_cell(e, "bare")
        note = "" if e["baseline"] == e["scenario"] else f" (vs {e['baseline']})"
        w(f"| {e['scenario']}{note} | {e['label']} | {n[0]} | {n[1]} | {n[2]} | {b[0]} | {b[1]} | {b[2]} |")
    w("")
    w("## Targets")
    w("")
    w("| target | measured | met |")
    w("|---|---|---|")
    for t in targets:
        met = {True: "yes", False: "**no**", None: "not measured"}[t["met"]]
        w(f"| {t['target']} | {t['value'] or '–'} | {met} |")
    w("")
    w("## All runs")
    w("")
    w("| scenario | contender | req/s | req per CPU-s | proxy CPU | p50 ms | p99 ms | p99.9 ms | RSS MB | "
      "Redis CPU ms / 1k req | non-2xx | other load on proxy CPU | as expected |")
    w("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        w(f"| {r['scenario']} | {r['label']} | {fmt(r['rps'])} | {fmt(r['req_per_cpu_s'])} | "
          f"{fmt(r['proxy_cpu_pct'])} % | {fmt(r['p50_ms'], 2)} | {fmt(r['p99_ms'], 2)} | {fmt(r['p999_ms'], 2)} | "
          f"{fmt(r['rss_mb'], 1)} | {fmt(r['redis_cpu_ms_per_1k'], 1)} | {fmt(r['non_2xx'])} | "
          f"{fmt(r['other_load_pct'])} % | {'yes' if r['valid'] else '**no**'} |")
    w("")
    w("Scenarios: " + "; ".join(f"**{k}** {v}" for k, v in titles.items()) + ".")
    w("")
    if rss:
        w("## Memory")
        w("")
        w("| store | idle RSS MB | identities | RSS after MB | peak MB |")
        w("|---|---|---|---|---|")
        for r in rss:
            w(f"| {r['label']} | {r['idle_rss_kb'] / 1024:.1f} | {r['identities']:,} | {r['rss_kb'] / 1024:.1f} | "
              f"{r['hwm_kb'] / 1024:.1f} |")
        w("")
    if locust:
        v = locust.get("verdict") or {}
        w("## Locust smoke")
        w("")
        w(f"exit {locust.get('exit')}: {v.get('requests', '?')} requests, {v.get('rps', '?')} req/s, "
          f"p50 {v.get('p50_ms', '?')} ms, p95 {v.get('p95_ms', '?')} ms, p99 {v.get('p99_ms', '?')} ms "
          "(locust, tollgate, Redis and the upstream unpinned on the same machine).")
        for cls, c in sorted((v.get("by_class") or {}).items()):
            w(f"- {cls}: {c.get('admitted', 0):,} admitted, {c.get('limited', 0):,} limited")
        for p in v.get("problems", []):
            w(f"- PROBLEM: {p}")
        w("")
    return "\n".join(L) + "\n"


def chart(path, titles, rows, rats):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("report: no matplotlib, no chart")
        return False
    scen = list(OrderedDict.fromkeys(r["scenario"] for r in rows))
    kinds = ["tollgate", "nginx", "bare"]
    colors = {"tollgate": "#e8590c", "nginx": "#2b8a3e", "bare": "#1971c2"}
    fig, axes = plt.subplots(1, 3, figsize=(18, 5.5))
    for ax, metric, title in ((axes[0], "req_per_cpu_s", "requests per proxy CPU-second"),
                              (axes[1], "p99_ms", "p99 latency (ms)")):
        width = 0.27
        for i, k in enumerate(kinds):
            xs, ys = [], []
            for j, s in enumerate(scen):
                r = next((r for r in rows if r["scenario"] == s and kind(r["contender"]) == k), None)
                if r and r[metric] is not None:
                    xs.append(j + (i - 1) * width)
                    ys.append(r[metric])
            ax.bar(xs, ys, width, label={"bare": "bare Pingora"}.get(k, k), color=colors[k])
        ax.set_xticks(range(len(scen)))
        ax.set_xticklabels(scen)
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
        ax.legend()
    ax = axes[2]
    labels, vn, vb = [], [], []
    for e in rats:
        labels.append(e["scenario"])
        vn.append((e.get("nginx") or {}).get("efficiency") or 0)
        vb.append((e.get("bare") or {}).get("efficiency") or 0)
    xs = range(len(labels))
    ax.bar([x - 0.2 for x in xs], vn, 0.4, label="÷ nginx", color=colors["nginx"])
    ax.bar([x + 0.2 for x in xs], vb, 0.4, label="÷ bare Pingora", color=colors["bare"])
    ax.axhline(1.0, color="black", lw=0.8)
    for y, txt in ((0.85, "0.85"), (0.60, "0.60"), (0.50, "0.50")):
        ax.axhline(y, color="grey", lw=0.6, ls="--")
        ax.text(-0.45, y, txt, va="bottom", ha="left", fontsize=8, color="grey")
    ax.set_xticks(list(xs))
    ax.set_xticklabels(labels)
    ax.set_title("tollgate efficiency ratio (req per CPU-s)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper right")
    fig.suptitle("tollgate vs nginx vs bare Pingora, one proxy core each, same run "
                 "(scenarios: see latest.md)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", required=True)
    ap.add_argument("--scenarios", required=True)
    ap.add_argument("--meta", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    raw = read_jsonl(a.results)
    titles = OrderedDict((s["id"], s["title"]) for s in read_jsonl(a.scenarios))
    with open(a.meta) as f:
        meta = json.load(f)
    rows = aggregate(raw)
    rats = ratios(rows)
    rss = [r for r in raw if r.get("scenario") == "rss"]
    locust = next((r for r in raw if r.get("scenario") == "locust"), None)
    targets = evaluate(rats, rss, locust)
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "latest.json"), "w") as f:
        json.dump({"meta": meta, "scenarios": titles, "rows": rows, "ratios": rats, "targets": targets,
                   "rss": rss, "locust": locust, "raw": raw}, f, indent=1)
    with open(os.path.join(a.out, "latest.md"), "w") as f:
        f.write(markdown(meta, titles, rows, rats, targets, rss, locust))
    chart(os.path.join(a.out, "latest.png"), titles, rows, rats)
    print(open(os.path.join(a.out, "latest.md")).read())


if __name__ == "__main__":
    main()
