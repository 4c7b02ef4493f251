#!/usr/bin/env python3
"""Runs each IQS scenario beside its physical baseline, in the same run on the same
machine, and writes BENCHMARKS.md. Every figure is reported as min/median/max over the
repetitions, and every target as a ratio of medians, because shared machines drift."""

import argparse
import datetime
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.parse

IMPORT_TABLES = ["interactions", "evaluations", "ratings", "outbox"]


def db_url(base, name):
    parts = urllib.parse.urlsplit(base)
    return urllib.parse.urlunsplit(parts._replace(path="/" + name))


class Bench:
    def __init__(self, args):
        self.args = args
        self.iqs = os.path.abspath(args.iqs)
        # The benchmarks measure IQS, not its per-key rate limits: lift the admin's.
        self.config = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
        self.config.write("[rate_limits.admin]\nper_second = 1000000.0\nburst = 1000000.0\n")
        self.config.close()

    def psql(self, url, *commands):
        cmd = [self.args.psql, url, "-v", "ON_ERROR_STOP=1", "-q", "-X"]
        for command in commands:
            cmd += ["-c", command]
        env = dict(os.environ, PGOPTIONS="-c client_min_messages=warning")
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)

    def fresh_database(self, name):
        self.psql(self.args.database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
                  f'CREATE DATABASE "{name}"')
        return db_url(self.args.database_url, name)

    def drop_database(self, name):
        self.psql(self.args.database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def start_server(self, url, redis_url=None):
        env = dict(os.environ, DATABASE_URL=url, IQS_LISTEN_ADDR="127.0.0.1:0", IQS_CONFIG=self.config.name,
                   IQS_LOG_FORMAT="json", RUST_LOG="warn,iqs::server=info")
        env.pop("REDIS_URL", None)
        if redis_url:
            env["REDIS_URL"] = redis_url
        proc = subprocess.Popen([self.iqs, "serve"], env=env, stderr=subprocess.PIPE, text=True)
        found = threading.Event()
        address = {}

        def read_logs():
            for line in proc.stderr:
                match = re.search(r'"address":"([^"]+)"', line)
                if match and not found.is_set():
                    address["value"] = match.group(1)
                    found.set()

        threading.Thread(target=read_logs, daemon=True).start()
        if not found.wait(60):
            proc.kill()
            raise SystemExit("iqs serve did not log its address")
        return proc, "http://" + address["value"]

    def admin_key(self, url):
        """A tenant and an admin key in the database at `url`, made by the iqs CLI."""
        env = dict(os.environ, DATABASE_URL=url)
        subprocess.run([self.iqs, "tenant", "create", "bench"], env=env, check=True, stdout=subprocess.DEVNULL)
        out = subprocess.run([self.iqs, "key", "create", "--tenant", "bench", "--role", "admin"], env=env,
                             check=True, capture_output=True, text=True).stdout
        return out.strip().splitlines()[-1]

    @staticmethod
    def peak_rss_mb(pid):
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    @staticmethod
    def stop_server(proc):
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)

    def import_scenario(self, rows, reps):
        """ImportEvaluations through gRPC against psql \\copy of the same rows into the
        same tables (same schema, indexes and constraints)."""
        iqs_rates, copy_rates, rss = [], [], []
        for rep in range(reps):
            name = f"iqs_bench_import_{rep}"
            url = self.fresh_database(name)
            proc, target = self.start_server(url)
            key = self.admin_key(url)
            report = run_json([self.iqs, "bench", "import", "--target", target, "--key", key, "--rows", str(rows),
                                  "--prefix", f"rep{rep}", "--json"])
            assert report["accepted"] == rows, report
            rss.append(self.peak_rss_mb(proc.pid))
            self.stop_server(proc)
            iqs_rates.append(report["rows_per_second"])

            with tempfile.TemporaryDirectory() as tmp:
                for table in IMPORT_TABLES:
                    self.psql(url, f"\\copy evaluation.{table} TO '{tmp}/{table}.csv' WITH (FORMAT csv)")
                copy_name = f"iqs_bench_copy_{rep}"
                copy_url = self.fresh_database(copy_name)
                subprocess.run([self.iqs, "migrate"], env=dict(os.environ, DATABASE_URL=copy_url),
                               check=True, stdout=subprocess.DEVNULL)
                commands = [f"\\copy evaluation.{table} FROM '{tmp}/{table}.csv' WITH (FORMAT csv)"
                            for table in IMPORT_TABLES]
                started = time.perf_counter()
                self.psql(copy_url, *commands)
                copy_rates.append(rows / (time.perf_counter() - started))
                self.drop_database(copy_name)
            self.drop_database(name)
            print(f"import rep {rep + 1}/{reps}: iqs {iqs_rates[-1]:.0f} rows/s, "
                  f"\\copy {copy_rates[-1]:.0f} rows/s, server peak RSS {rss[-1]:.0f} MB", flush=True)
        return {"rows": rows, "iqs": iqs_rates, "copy": copy_rates, "rss": rss}


    def freshness_scenario(self, count, reps):
        """Submit, then poll GetAgentScore (cached in Redis) until the evaluation counts."""
        reports = []
        for rep in range(reps):
            name = f"iqs_bench_fresh_{rep}"
            url = self.fresh_database(name)
            proc, target = self.start_server(url, self.args.redis_url)
            key = self.admin_key(url)
            report = run_json([self.iqs, "bench", "freshness", "--target", target, "--key", key, "--count", str(count),
                                  "--prefix", f"fresh{rep}", "--json"])
            report["rss"] = self.peak_rss_mb(proc.pid)
            self.stop_server(proc)
            self.drop_database(name)
            reports.append(report)
            print(f"freshness rep {rep + 1}/{reps}: p50 {report['p50_ms']:.1f} ms, "
                  f"p99 {report['p99_ms']:.1f} ms, max {report['max_ms']:.1f} ms", flush=True)
        return {"count": count, "reports": reports}


    def cached_read_scenario(self, seconds, reps, concurrency=16):
        """GetAgentScore of one agent (served from the cache after the first call) under
        closed-loop load, beside the echo baseline: the same client, concurrency, answer
        size and machine."""
        name = "iqs_bench_cached"
        url = self.fresh_database(name)
        proc, target = self.start_server(url, self.args.redis_url)
        key = self.admin_key(url)
        # A few evaluations of agent-cached (freshness names its agent after the prefix).
        run_json([self.iqs, "bench", "freshness", "--target", target, "--key", key, "--count", "30",
                  "--prefix", "cached", "--json"])
        echo = subprocess.Popen([self.iqs, "bench", "echo-server", "--listen", "127.0.0.1:0"],
                                stdout=subprocess.PIPE, text=True)
        echo_target = "http://" + echo.stdout.readline().split()[-1]
        load = ["--concurrency", str(concurrency), "--duration-ms", str(seconds * 1000), "--json"]
        iqs, baseline = [], []
        for rep in range(reps):
            iqs.append(run_json([self.iqs, "bench", "agent-score", "--target", target, "--key", key,
                                 "--agent-id", "agent-cached"] + load))
            baseline.append(run_json([self.iqs, "bench", "echo", "--target", echo_target] + load))
            print(f"cached read rep {rep + 1}/{reps}: GetAgentScore {iqs[-1]['requests_per_second']:,.0f}/s "
                  f"p99 {iqs[-1]['p99_ms']:.2f} ms ({iqs[-1]['errors']} errors); echo "
                  f"{baseline[-1]['requests_per_second']:,.0f}/s p99 {baseline[-1]['p99_ms']:.2f} ms", flush=True)
        rss = self.peak_rss_mb(proc.pid)
        echo.terminate()
        echo.wait(timeout=30)
        self.stop_server(proc)
        self.drop_database(name)
        return {"concurrency": concurrency, "seconds": seconds, "iqs": iqs, "echo": baseline, "rss": rss}

    def timed_sql(self, url, sql):
        """Runs one statement with psql and returns its server-side time in ms."""
        out = subprocess.run([self.args.psql, url, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", "\\timing on", "-c", sql],
                             check=True, capture_output=True, text=True,
                             env=dict(os.environ, PGOPTIONS="-c client_min_messages=warning")).stdout
        return float(re.findall(r"Time: ([0-9.]+) ms", out)[-1])

    def query_scenario(self, evaluations, reps):
        """QueryScores team x week over one quarter, from rollups, beside a plain GROUP BY
        over the evaluations table, on `evaluations` generated evaluations."""
        name = "iqs_bench_query"
        url = self.fresh_database(name)
        subprocess.run([self.iqs, "migrate"], env=dict(os.environ, DATABASE_URL=url), check=True,
                       stdout=subprocess.DEVNULL)
        key = self.admin_key(url)
        tenant = subprocess.run([self.iqs, "tenant", "create", "bench"], env=dict(os.environ, DATABASE_URL=url),
                                check=True, capture_output=True, text=True).stdout.split()[-1]
        here = os.path.dirname(os.path.abspath(__file__))
        started = time.perf_counter()
        subprocess.run([self.args.psql, url, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-v", f"tenant={tenant}",
                        "-f", os.path.join(here, "bench_interactions.sql")], check=True)
        chunk = 1_000_000
        for first in range(0, evaluations, chunk):
            n = min(chunk, evaluations - first)
            subprocess.run([self.args.psql, url, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-v", f"tenant={tenant}",
                            "-v", f"first={first}", "-v", f"n={n}", "-f", os.path.join(here, "bench_data.sql")],
                           check=True)
            print(f"query data: {first + n:,} of {evaluations:,} evaluations generated", flush=True)
        self.psql(url, "VACUUM ANALYZE")
        generated = time.perf_counter() - started
        started = time.perf_counter()
        subprocess.run([self.iqs, "analytics", "rebuild"], env=dict(os.environ, DATABASE_URL=url), check=True,
                       stdout=subprocess.DEVNULL)
        replay = time.perf_counter() - started
        self.psql(url, "VACUUM ANALYZE")
        print(f"query data: generated in {generated:.0f} s, projected in {replay:.0f} s "
              f"({evaluations / replay:,.0f} events/s)", flush=True)
        start, end = "2026-07-01T00:00:00Z", "2026-10-01T00:00:00Z"
        baseline_sql = (
            "SELECT team_id, date_trunc('week', first_create_time AT TIME ZONE 'UTC') AS week, avg(score), "
            "count(*), avg(passed::int) FROM evaluation.evaluations "
            f"WHERE tenant_id = '{tenant}' AND kind = 'manual' AND state = 'active' "
            f"AND first_create_time >= '{start}' AND first_create_time < '{end}' GROUP BY 1, 2")
        iqs_p95, iqs_p50, baseline = [], [], []
        proc, target = self.start_server(url)
        for rep in range(reps):
            report = run_json([self.iqs, "bench", "query", "--target", target, "--key", key, "--start", start,
                                  "--end", end, "--requests", "200", "--json"])
            iqs_p95.append(report["p95_ms"])
            iqs_p50.append(report["p50_ms"])
            baseline.append(self.timed_sql(url, baseline_sql))
            print(f"query rep {rep + 1}/{reps}: QueryScores p50 {report['p50_ms']:.1f} ms, p95 "
                  f"{report['p95_ms']:.1f} ms ({report['rows']} rows); plain GROUP BY {baseline[-1]:.0f} ms",
                  flush=True)
        query_rss = self.peak_rss_mb(proc.pid)
        self.stop_server(proc)
        # Export from a server of its own, so its peak memory is the export's alone.
        export_rows = min(evaluations, 1_000_000)
        proc, target = self.start_server(url)
        export = run_json([self.iqs, "bench", "export", "--target", target, "--key", key, "--rows",
                              str(export_rows), "--json"])
        export["rss"] = self.peak_rss_mb(proc.pid)
        self.stop_server(proc)
        print(f"export: {export['rows']:,} rows at {export['rows_per_second']:,.0f} rows/s, "
              f"server peak RSS {export['rss']:.0f} MB", flush=True)
        self.drop_database(name)
        return {"evaluations": evaluations, "p95": iqs_p95, "p50": iqs_p50, "baseline": baseline,
                "rss": query_rss, "replay_rate": evaluations / replay, "export": export}


def run_json(command):
    """Runs an `iqs bench` command and returns its JSON report; on failure, shows why."""
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[:3])} failed: {done.stderr.strip() or done.stdout.strip()}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def spread(values, unit, digits=0):
    return (f"{min(values):.{digits}f} / {statistics.median(values):.{digits}f} / "
            f"{max(values):.{digits}f} {unit}")


def machine():
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = "unknown"
    try:
        with open("/proc/meminfo") as info:
            mem = f"{int(info.readline().split()[1]) / 1024 / 1024:.0f} GiB"
    except OSError:
        pass
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores ({cpu}), {mem} RAM"


def commit():
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_report(path, results, args):
    imp = results["import"]
    ratios = [i / c for i, c in zip(imp["iqs"], imp["copy"])]
    ratio = statistics.median(imp["iqs"]) / statistics.median(imp["copy"])
    verdict = "met" if ratio >= 0.5 else "missed"
    lines = [
        "# Benchmarks",
        "",
        "Generated by `scripts/bench` — do not edit by hand; run it again instead.",
        "",
        f"- date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- commit: {commit()}",
        f"- machine: {machine()}",
        f"- mode: {'quick' if args.quick else 'full'}; {args.reps} repetitions; figures are min / median / max",
        "",
        "## Bulk import",
        "",
        f"`ImportEvaluations` streaming {imp['rows']:,} generated evaluations (6 ratings each, an inline "
        "interaction with two messages each) through the gRPC API into a fresh database, beside "
        "`psql \\copy` of the same rows (dumped from that import) into the same four tables "
        "(interactions, evaluations, ratings, outbox) of another fresh database with the same schema, "
        "indexes and constraints.",
        "",
        "| figure | min / median / max |",
        "| --- | --- |",
        f"| IQS ImportEvaluations | {spread(imp['iqs'], 'rows/s')} |",
        f"| psql \\copy baseline | {spread(imp['copy'], 'rows/s')} |",
        f"| ratio per repetition | {spread(ratios, '', 2)} |",
        f"| server peak RSS during the import | {spread(imp['rss'], 'MB')} |",
        "",
        "| target | measured | verdict |",
        "| --- | --- | --- |",
        f"| ImportEvaluations rows/s ÷ psql \\copy rows/s ≥ 0.5 | {ratio:.2f} | {verdict} |",
        "",
    ]
    fresh = results["freshness"]
    p99s = [r["p99_ms"] for r in fresh["reports"]]
    p99 = statistics.median(p99s)
    lines += [
        "## Freshness",
        "",
        f"Each of {fresh['count']:,} `SubmitEvaluation` calls, one after another, then "
        "`GetAgentScore` (cached in Redis) polled every millisecond until the evaluation counts; "
        "the time from the submit's answer to the first answer that counts it.",
        "",
        "| figure | min / median / max |",
        "| --- | --- |",
        f"| p50 | {spread([r['p50_ms'] for r in fresh['reports']], 'ms', 1)} |",
        f"| p99 | {spread(p99s, 'ms', 1)} |",
        f"| max | {spread([r['max_ms'] for r in fresh['reports']], 'ms', 1)} |",
        f"| server peak RSS | {spread([r['rss'] for r in fresh['reports']], 'MB')} |",
        "",
        "| target | measured | verdict |",
        "| --- | --- | --- |",
        f"| submit → visible in GetAgentScore, p99 < 1 s | {p99:.1f} ms | {'met' if p99 < 1000 else 'missed'} |",
        "",
    ]
    q = results["query"]
    q_p95 = statistics.median(q["p95"])
    q_ratio = q_p95 / statistics.median(q["baseline"])
    export = q["export"]
    lines += [
        "## Dashboard query and export",
        "",
        f"{q['evaluations']:,} evaluations generated in SQL (`scripts/bench_data.sql`) over six months, "
        f"their outbox events projected into the rollups by `iqs analytics rebuild` "
        f"({q['replay_rate']:,.0f} events/s). `QueryScores` grouped by team and week over the quarter "
        "2026-07-01..2026-10-01 (MANUAL evaluations), 200 calls one after another per repetition, beside "
        "the same figures from a plain `GROUP BY` over the evaluations table in the same run.",
        "",
        "| figure | min / median / max |",
        "| --- | --- |",
        f"| QueryScores p50 | {spread(q['p50'], 'ms', 1)} |",
        f"| QueryScores p95 | {spread(q['p95'], 'ms', 1)} |",
        f"| plain GROUP BY over evaluations | {spread(q['baseline'], 'ms')} |",
        f"| server peak RSS during the queries | {q['rss']:.0f} MB |",
        f"| ExportEvaluations of {export['rows']:,} rows | {export['rows_per_second']:,.0f} rows/s |",
        f"| server peak RSS during the export | {export['rss']:.0f} MB |",
        "",
        "| target | measured | verdict |",
        "| --- | --- | --- |",
        f"| QueryScores team × week over a quarter, p95 < 50 ms | {q_p95:.1f} ms | {'met' if q_p95 < 50 else 'missed'} |",
        f"| QueryScores p95 ÷ plain GROUP BY ≤ 0.05 | {q_ratio:.4f} | {'met' if q_ratio <= 0.05 else 'missed'} |",
        f"| export memory flat: server peak RSS < 150 MB | {export['rss']:.0f} MB | {'met' if export['rss'] < 150 else 'missed'} |",
        "",
    ]
    cached = results["cached_read"]
    tput = [i["requests_per_second"] / e["requests_per_second"] for i, e in zip(cached["iqs"], cached["echo"])]
    p99 = [i["p99_ms"] / e["p99_ms"] for i, e in zip(cached["iqs"], cached["echo"])]
    tput_ratio, p99_ratio = statistics.median(tput), statistics.median(p99)
    errors = sum(i["errors"] for i in cached["iqs"])
    lines += [
        "## Cached agent score",
        "",
        f"`GetAgentScore` of one agent (the helpdesk sidebar path, answered from Redis after the first "
        f"call) by {cached['concurrency']} concurrent callers on 2 connections for {cached['seconds']} s "
        "per repetition (`iqs bench agent-score`), beside `iqs bench echo` against `iqs bench echo-server` "
        "with the same client, concurrency and answer size (256 bytes).",
        "",
        "| figure | min / median / max |",
        "| --- | --- |",
        f"| GetAgentScore throughput | {spread([i['requests_per_second'] for i in cached['iqs']], 'calls/s')} |",
        f"| echo throughput | {spread([e['requests_per_second'] for e in cached['echo']], 'calls/s')} |",
        f"| GetAgentScore p99 | {spread([i['p99_ms'] for i in cached['iqs']], 'ms', 2)} |",
        f"| echo p99 | {spread([e['p99_ms'] for e in cached['echo']], 'ms', 2)} |",
        f"| GetAgentScore errors | {errors} |",
        f"| server peak RSS | {cached['rss']:.0f} MB |",
        "",
        "| target | measured | verdict |",
        "| --- | --- | --- |",
        f"| cached GetAgentScore throughput ÷ echo throughput ≥ 0.6 | {tput_ratio:.2f} | {'met' if tput_ratio >= 0.6 else 'missed'} |",
        f"| cached GetAgentScore p99 ÷ echo p99 ≤ 2 | {p99_ratio:.2f} | {'met' if p99_ratio <= 2 else 'missed'} |",
        "",
    ]
    with open(path, "w") as out:
        out.write("\n".join(lines))
    print(f"wrote {path}: import ratio {ratio:.2f} ({verdict}), freshness p99 {p99:.1f} ms, "
          f"query p95 {q_p95:.1f} ms")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iqs", required=True)
    parser.add_argument("--psql", required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--redis-url")
    parser.add_argument("--quick", action="store_true", help="fewer rows, for a run under 3 minutes")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--query-evaluations", type=int, default=0,
                        help="evaluations generated for the query and export figures (default 10M; 200k quick)")
    parser.add_argument("--output", default="BENCHMARKS.md")
    args = parser.parse_args()
    rows = 20_000 if args.quick else 100_000
    bench = Bench(args)
    results = {
        "import": bench.import_scenario(rows, args.reps),
        "freshness": bench.freshness_scenario(200 if args.quick else 1_000, args.reps),
        "cached_read": bench.cached_read_scenario(3 if args.quick else 10, args.reps),
        "query": bench.query_scenario(args.query_evaluations or (200_000 if args.quick else 10_000_000), args.reps),
    }
    write_report(args.output, results, args)


if __name__ == "__main__":
    main()
