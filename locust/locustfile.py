"""Load test for tollgate that also checks the limits hold.

User classes: FreeUser, PaidUser, AnonymousUser (no key; each user its own client IP through
X-Forwarded-For when the gateway trusts it) and AbusiveUser (one free key hammered far above its
limit). Every response is checked:

  * only 2xx and 429 are acceptable (anything else, or a connection error, is a failure);
  * a 429 carries `Retry-After` (whole seconds >= 1), `X-RateLimit-Remaining: 0` and a
    problem+json body with status 429;
  * a 2xx of a limited tier carries RateLimit-Policy / RateLimit / X-RateLimit-* naming one of the
    tier's configured limits, with 0 <= remaining < limit and `r=` equal to X-RateLimit-Remaining.

Every admitted request is recorded per identity with the interval [sent, answered], which contains
the moment the store decided. At the end each identity is checked against every limit of its
tier, and the run fails when an over-admission is *proven* by those intervals (client-side timing
noise can hide an over-admission, never invent one):

  * sliding_log: no L+1 admissions inside any window shorter than W;
  * token_bucket (GCRA): no more than L + d/T + 1 admissions in any span d (T = W/L);
  * fixed_window / sliding_window: no more than L admissions inside one aligned window.

Environment:
  TOLLGATE_KEYS_FILE  key file written by locust/gen_config.py (default: the demo keys of
                      conf/tollgate.yaml: free-demo-key, paid-demo-key)
  LOCUST_FREE_RPS, LOCUST_PAID_RPS, LOCUST_ANON_RPS, LOCUST_ABUSIVE_RPS
                      requests per second of one user of each class (4, 30, 2, 50)
  LOCUST_ABUSIVE_USERS  how many abusive users (default 1)
  LOCUST_REPORT       write the verdict as JSON to this file
  LOCUST_MIN_RPS, LOCUST_MAX_P95_MS  optional: also fail below this throughput / above this p95

The accounting lives in this process: run it as one process (no --processes / workers), or give
each worker its own keys.
"""

import itertools
import json
import os
import time
from collections import defaultdict, deque

from locust import FastHttpUser, constant_throughput, events, task

# ------------------------------------------------------------------------------------------ keys

DEMO_SPEC = {
    "tiers": {
        "free": {
            "limits": [{"name": "per_minute", "requests": 60, "window_ms": 60000, "algorithm": "sliding_log"}],
            "keys": ["free-demo-key"],
        },
        "paid": {
            "limits": [
                {"name": "burst", "requests": 20, "window_ms": 1000, "algorithm": "token_bucket"},
                {"name": "per_minute", "requests": 600, "window_ms": 60000, "algorithm": "sliding_log"},
            ],
            "keys": ["paid-demo-key"],
        },
        "anonymous": {
            "limits": [{"name": "per_minute", "requests": 10, "window_ms": 60000, "algorithm": "sliding_log"}],
            "xff": False,
        },
    },
    "abusive": {"tier": "free", "keys": ["free-demo-key"]},
}


def load_spec():
    path = os.environ.get("TOLLGATE_KEYS_FILE")
    if not path:
        return DEMO_SPEC
    with open(path) as f:
        return json.load(f)


SPEC = load_spec()
TIERS = SPEC["tiers"]
_pools = {name: itertools.cycle(t["keys"]) for name, t in TIERS.items() if t.get("keys")}
_pools["__abusive__"] = itertools.cycle(SPEC["abusive"]["keys"])
_anon_ids = itertools.count(1)


def env_float(name, default):
    v = os.environ.get(name)
    return float(v) if v else default


# ------------------------------------------------------------------------------------ accounting

ADMITTED = defaultdict(list)  # identity -> [(sent, answered)]
IDENTITY_TIER = {}  # identity -> tier name
COUNTS = defaultdict(lambda: defaultdict(int))  # tier -> {"admitted","limited"}
FAILURES = defaultdict(int)  # reason -> count
EXAMPLES = {}  # reason -> one example


def fail(resp, reason, detail=""):
    FAILURES[reason] += 1
    EXAMPLES.setdefault(reason, detail)
    resp.failure(f"{reason}: {detail}" if detail else reason)


def parse_policy(value):
    """`"name";q=600;w=60` -> (name, q, w)."""
    parts = [p.strip() for p in value.split(";")]
    name = parts[0].strip('"')
    params = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
    return name, int(params["q"]), int(params["w"])


def parse_state(value):
    parts = [p.strip() for p in value.split(";")]
    params = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
    return parts[0].strip('"'), int(params["r"]), int(params["t"])


def check_limit_headers(resp, tier, limits):
    """Returns an error text, or None when the limit headers are consistent with the tier."""
    h = resp.headers
    try:
        limit = int(h.get("X-RateLimit-Limit"))
        remaining = int(h.get("X-RateLimit-Remaining"))
        int(h.get("X-RateLimit-Reset"))
        pname, q, w = parse_policy(h.get("RateLimit-Policy"))
        sname, r, _t = parse_state(h.get("RateLimit"))
    except (TypeError, ValueError, KeyError) as e:
        return f"missing or malformed rate-limit headers ({e!r})"
    known = {(lim["name"], lim["requests"], max(1, -(-lim["window_ms"] // 1000))) for lim in limits}
    if (pname, q, w) not in known:
        return f"RateLimit-Policy {pname!r};q={q};w={w} is not a limit of tier {tier}"
    if limit != q or sname != pname or r != remaining:
        return f"headers disagree: X-RateLimit-Limit={limit} q={q} r={r} X-RateLimit-Remaining={remaining}"
    if resp.status_code == 429:
        if remaining != 0:
            return f"429 with X-RateLimit-Remaining={remaining}"
    elif not 0 <= remaining < limit:
        return f"admitted with X-RateLimit-Remaining={remaining} of {limit}"
    return None


class TierUser(FastHttpUser):
    abstract = True
    tier = None
    pool = None

    def on_start(self):
        self.headers = {}
        tier = TIERS[self.tier]
        self.limits = tier.get("limits", [])
        if self.tier == "anonymous":
            n = next(_anon_ids)
            ip = f"198.18.{(n >> 8) & 255}.{n & 255}"
            if tier.get("xff"):
                self.headers["X-Forwarded-For"] = ip
                self.identity = f"ip:{ip}"
            else:
                self.identity = "ip:peer"
        else:
            key = next(_pools[self.pool or self.tier])
            self.headers["x-api-key"] = key
            self.identity = f"key:{key}"
        IDENTITY_TIER[self.identity] = self.tier

    def call(self, path):
        sent = time.time()
        with self.client.get(path, headers=self.headers, name=f"{self.label} {path.split('?')[0]}",
                             catch_response=True) as resp:
            answered = time.time()
            status = resp.status_code
            if 200 <= status < 300:
                if self.limits:
                    err = check_limit_headers(resp, self.tier, self.limits)
                    if err:
                        return fail(resp, "bad limit headers", err)
                ADMITTED[self.identity].append((sent, answered))
                COUNTS[self.label]["admitted"] += 1
                resp.success()
            elif status == 429:
                ra = resp.headers.get("Retry-After")
                if ra is None or not ra.strip().isdigit() or int(ra) < 1:
                    return fail(resp, "429 without a valid Retry-After", repr(ra))
                err = check_limit_headers(resp, self.tier, self.limits)
                if err:
                    return fail(resp, "bad limit headers on 429", err)
                try:
                    body = json.loads(resp.content)
                except ValueError:
                    body = None
                if not isinstance(body, dict) or body.get("status") != 429:
                    return fail(resp, "429 body is not a problem+json", repr(resp.content[:120]))
                COUNTS[self.label]["limited"] += 1
                resp.success()
            elif status == 0:
                fail(resp, "connection error", repr(resp.error))
            else:
                fail(resp, f"status {status}", repr(resp.content[:200]))

    @task(4)
    def bench(self):
        self.call("/bench")

    @task(1)
    def items(self):
        self.call(f"/proxy/items?id={int(time.time() * 1000) % 997}")


class FreeUser(TierUser):
    weight = 3
    tier = "free"
    label = "free"
    wait_time = constant_throughput(env_float("LOCUST_FREE_RPS", 4))


class PaidUser(TierUser):
    weight = 3
    tier = "paid"
    label = "paid"
    wait_time = constant_throughput(env_float("LOCUST_PAID_RPS", 30))


class AnonymousUser(TierUser):
    weight = 1
    tier = "anonymous"
    label = "anonymous"
    wait_time = constant_throughput(env_float("LOCUST_ANON_RPS", 2))


class AbusiveUser(TierUser):
    fixed_count = int(env_float("LOCUST_ABUSIVE_USERS", 1))
    tier = SPEC["abusive"]["tier"]
    pool = "__abusive__"
    label = "abusive"
    wait_time = constant_throughput(env_float("LOCUST_ABUSIVE_RPS", 50))


# -------------------------------------------------------------------------------------- verdict


def check_sliding_log(adm, limit, window_s):
    """Proven violation: L+1 admissions whose intervals all fit in a span shorter than W.
    Returns (violations, max admissions seen in one window by interval midpoints)."""
    n = len(adm)
    violations = 0
    if n > limit:
        ends = deque()  # indexes with decreasing end, for the max end of adm[i..i+limit]
        for j in range(n):
            while ends and adm[ends[-1]][1] <= adm[j][1]:
                ends.pop()
            ends.append(j)
            i = j - limit
            if i < 0:
                continue
            while ends[0] < i:
                ends.popleft()
            if adm[ends[0]][1] - adm[i][0] < window_s:
                violations += 1
    mids = sorted((s + e) / 2 for s, e in adm)
    best, i = 0, 0
    for j, m in enumerate(mids):
        while m - mids[i] >= window_s - 1e-6:
            i += 1
        best = max(best, j - i + 1)
    return violations, best


def check_token_bucket(adm, limit, window_s):
    """GCRA admits at most L + d/T in any span d. Proven violation (one admission of slack for
    rounding): admissions i..j (sorted by send time) with j - i + 1 > L + 1 + d / T, where
    d = sent_j - answered_i bounds their true span from below (and j - i > L, so a negative d
    needs no clamp). One pass with a prefix minimum of i - answered_i / T."""
    t = window_s / limit
    violations = 0
    best = float("inf")
    for j in range(len(adm)):
        i = j - limit - 1
        if i >= 0:
            best = min(best, i - adm[i][1] / t)
        if best < j - adm[j][0] / t - limit:
            violations += 1
    return violations, None


def check_aligned(adm, limit, window_s):
    """fixed_window and sliding_window: at most L admitted inside one aligned window."""
    per = defaultdict(int)
    for s, e in adm:
        a, b = int(s // window_s), int(e // window_s)
        if a == b:
            per[a] += 1
    worst = max(per.values(), default=0)
    return sum(1 for c in per.values() if c > limit), worst


CHECKS = {
    "sliding_log": check_sliding_log,
    "token_bucket": check_token_bucket,
    "fixed_window": check_aligned,
    "sliding_window": check_aligned,
}


def verdict(environment):
    problems = []
    per_limit = {}
    for identity, adm in ADMITTED.items():
        tier = IDENTITY_TIER[identity]
        adm.sort()
        for lim in TIERS[tier].get("limits", []):
            algo = lim.get("algorithm", "sliding_log")
            v, seen = CHECKS[algo](adm, lim["requests"], lim["window_ms"] / 1000.0)
            k = f"{tier}/{lim['name']} ({algo} {lim['requests']}/{lim['window_ms']}ms)"
            row = per_limit.setdefault(k, {"identities": 0, "violations": 0, "max_in_window": 0})
            row["identities"] += 1
            row["violations"] += v
            if seen is not None:
                row["max_in_window"] = max(row["max_in_window"], seen)
            if v:
                problems.append(f"over-admission: {identity[:16]}... tier {tier} limit {lim['name']}: "
                                f"{v} proven excess admission(s)")
    total = environment.stats.total
    rps = total.total_rps
    p95 = total.get_response_time_percentile(0.95)
    for reason, n in FAILURES.items():
        problems.append(f"{n} x {reason} (e.g. {EXAMPLES[reason]})")
    if total.num_failures and not FAILURES:
        problems.append(f"{total.num_failures} failed requests")
    if total.num_requests == 0:
        problems.append("no request was made")
    abusive = COUNTS.get("abusive", {})
    if AbusiveUser.fixed_count and total.num_requests and not abusive.get("limited"):
        problems.append("the abusive client was never limited")
    min_rps = env_float("LOCUST_MIN_RPS", 0)
    max_p95 = env_float("LOCUST_MAX_P95_MS", 0)
    if min_rps and rps < min_rps:
        problems.append(f"throughput {rps:.0f} req/s < LOCUST_MIN_RPS {min_rps:.0f}")
    if max_p95 and p95 > max_p95:
        problems.append(f"p95 {p95:.1f} ms > LOCUST_MAX_P95_MS {max_p95:.0f}")
    return {
        "requests": total.num_requests,
        "failures": total.num_failures,
        "rps": round(rps, 1),
        "p50_ms": total.get_response_time_percentile(0.50),
        "p95_ms": p95,
        "p99_ms": total.get_response_time_percentile(0.99),
        "by_class": {k: dict(v) for k, v in COUNTS.items()},
        "limits": per_limit,
        "problems": problems,
        "ok": not problems,
    }


@events.quitting.add_listener
def _on_quitting(environment, **_kw):
    result = verdict(environment)
    print("\n== tollgate limit check")
    for cls, c in sorted(result["by_class"].items()):
        print(f"  {cls:10s} admitted {c.get('admitted', 0):7d}  limited {c.get('limited', 0):7d}")
    for k, row in sorted(result["limits"].items()):
        seen = row["max_in_window"] if not k.split("(")[1].startswith("token_bucket") else "-"
        print(f"  {k:55s} identities {row['identities']:4d}  max in one window {seen}  "
              f"proven over-admissions {row['violations']}")
    print(f"  {result['requests']} requests, {result['rps']} req/s, p50 {result['p50_ms']} ms, "
          f"p95 {result['p95_ms']} ms, p99 {result['p99_ms']} ms")
    for p in result["problems"]:
        print(f"  PROBLEM: {p}")
    print("  verdict: " + ("ok" if result["ok"] else "FAILED"))
    report = os.environ.get("LOCUST_REPORT")
    if report:
        with open(report, "w") as f:
            json.dump(result, f, indent=1)
    if not result["ok"]:
        environment.process_exit_code = 1
