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
import shutil
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
        self.scratch = tempfile.TemporaryDirectory(prefix="iqs-bench-")
        # Long enough for tens of thousands of calls per load, so p99 is well sampled.
        self.seconds = 2 if args.quick else 5

    def psql(self, url, *commands):
        cmd = [self.args.psql, url, "-v", "ON_ERROR_STOP=1", "-q", "-X"]
        for command in commands:
            cmd += ["-c", command]
        env = dict(os.environ, PGOPTIONS="-c client_min_messages=warning")
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)

    def fresh_store(self, backend, name):
        """A new, empty store: a PostgreSQL database, or an embedded data directory."""
        if backend == "embedded":
            path = os.path.join(self.scratch.name, name)
            shutil.rmtree(path, ignore_errors=True)
            os.makedirs(path)
            return "embedded:" + path
        return self.fresh_database(name)

    def drop_store(self, backend, name):
        if backend == "embedded":
            shutil.rmtree(os.path.join(self.scratch.name, name), ignore_errors=True)
        else:
            self.drop_database(name)

    def fresh_database(self, name):
        self.psql(self.args.database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
                  f'CREATE DATABASE "{name}"')
        return db_url(self.args.database_url, name)

    def drop_database(self, name):
        self.psql(self.args.database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def start_server(self, url, redis_url=None, extra_env=None):
        """`iqs serve` on the database at `url`, or on the embedded store when `url` is an
        `embedded:DIR` data directory; Redis only when `redis_url` is given."""
        env = dict(os.environ, IQS_LISTEN_ADDR="127.0.0.1:0", IQS_CONFIG=self.config.name,
                   IQS_LOG_FORMAT="json", RUST_LOG="warn,iqs::server=info")
        env.pop("REDIS_URL", None)
        env.update(store_env(url))
        if redis_url:
            env["REDIS_URL"] = redis_url
        env.update(extra_env or {})
        proc = subprocess.Popen([self.iqs, "serve"], env=env, stderr=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, text=True)
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
        """A tenant and an admin key in the store at `url`, made by the iqs CLI."""
        env = dict(os.environ, **store_env(url))
        subprocess.run([self.iqs, "tenant", "create", "bench"], env=env, check=True, stdout=subprocess.DEVNULL)
        return self.another_key(url)

    def another_key(self, url):
        """One more admin key of the tenant `admin_key` made."""
        env = dict(os.environ, **store_env(url))
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

    @staticmethod
    def cpu_seconds(pid):
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def import_scenario(self, backend, rows, reps):
        """ImportEvaluations through gRPC; on PostgreSQL beside psql \\copy of the same rows
        into the same tables (same schema, indexes and constraints). Then `iqs analytics
        rebuild` derives the figures again from the imported evaluations."""
        iqs_rates, copy_rates, rss, rebuild_rates = [], [], [], []
        for rep in range(reps):
            name = f"iqs_bench_import_{rep}"
            url = self.fresh_store(backend, name)
            key = self.admin_key(url)
            proc, target = self.start_server(url)
            report = run_json([self.iqs, "bench", "import", "--target", target, "--key", key, "--rows", str(rows),
                               "--prefix", f"rep{rep}", "--json"])
            assert report["accepted"] == rows, report
            rss.append(self.peak_rss_mb(proc.pid))
            self.stop_server(proc)
            iqs_rates.append(report["rows_per_second"])
            started = time.perf_counter()
            subprocess.run([self.iqs, "analytics", "rebuild"], env=dict(os.environ, **store_env(url)), check=True,
                           stdout=subprocess.DEVNULL)
            rebuild_rates.append(rows / (time.perf_counter() - started))
            if backend == "postgres":
                copy_rates.append(self.copy_baseline(url, rows, rep))
            self.drop_store(backend, name)
            baseline = f", \\copy {copy_rates[-1]:.0f} rows/s" if copy_rates else ""
            print(f"{backend} import rep {rep + 1}/{reps}: iqs {iqs_rates[-1]:.0f} rows/s{baseline}, "
                  f"rebuild {rebuild_rates[-1]:.0f} evaluations/s, server peak RSS {rss[-1]:.0f} MB", flush=True)
        return {"rows": rows, "iqs": iqs_rates, "copy": copy_rates, "rss": rss, "rebuild": rebuild_rates}

    def copy_baseline(self, url, rows, rep):
        """psql \\copy of the rows an import wrote into a fresh database: rows/s."""
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
            rate = rows / (time.perf_counter() - started)
            self.drop_database(copy_name)
        return rate

    def pgbench_baselines(self, reps, clients):
        """pgbench at the same client count: the single-row insert of an evaluation, and
        one transaction writing every row a submission writes."""
        name = "iqs_bench_pgbench"
        url = self.fresh_database(name)
        subprocess.run([self.iqs, "migrate"], env=dict(os.environ, DATABASE_URL=url), check=True,
                       stdout=subprocess.DEVNULL)
        tenant, interaction = "00000000-0000-4000-a000-000000000001", "00000000-0000-4000-a000-000000000002"
        self.psql(url, "INSERT INTO evaluation.interactions (tenant_id, id, source, external_id, channel, agent_id, "
                       f"team_id, region, messages, attributes) VALUES ('{tenant}', '{interaction}', 'bench', 'I-0', "
                       "'chat', 'agent-0', 'team-0', 'emea', '[]', '{}')")
        here = os.path.dirname(os.path.abspath(__file__))
        results = {"row": [], "all": []}
        for rep in range(reps):
            for kind, script in (("row", "pgbench_submit_row.sql"), ("all", "pgbench_submit_all.sql")):
                out = subprocess.run(
                    [self.args.pgbench, "-n", "-M", "prepared", "-c", str(clients), "-j", "2", "-T",
                     str(self.seconds), "-D", f"tenant={tenant}", "-D", f"interaction={interaction}",
                     "-D", f"rep={rep}", "-f", os.path.join(here, script), url],
                    check=True, capture_output=True, text=True,
                    # Sessions of IQS send the outbox NOTIFY after the commit, not from the trigger
                    # inside it; the baseline's sessions skip it the same way (no server follows).
                    env=dict(os.environ, PGOPTIONS="-c iqs.outbox_notify_after_commit=on")).stdout
                results[kind].append(float(re.search(r"tps = ([0-9.]+)", out).group(1)))
            print(f"pgbench rep {rep + 1}/{reps}: single-row insert {results['row'][-1]:,.0f} tps, "
                  f"every row of a submission {results['all'][-1]:,.0f} tps", flush=True)
        self.drop_database(name)
        return results

    def perf_profile(self, pid, seconds):
        """The server's hottest functions over `seconds`, from perf, when perf can sample."""
        perf = shutil.which("perf")
        if not perf:
            return []
        data = os.path.join(self.scratch.name, "perf.data")
        done = subprocess.run([perf, "record", "-F", "499", "-p", str(pid), "-o", data, "--", "sleep",
                               str(seconds)], capture_output=True, text=True)
        if done.returncode != 0:
            return []

        def report(*options):
            out = subprocess.run([perf, "report", "-i", data, "--stdio"] + list(options),
                                 capture_output=True, text=True).stdout
            return [line.strip() for line in out.splitlines() if line.strip() and not line.startswith("#")]

        rows = []
        for line in report("--sort", "dso", "--percent-limit", "1")[:4]:
            share, dso = line.split(None, 1)
            rows.append((share, dso.strip(), "(all of it)"))
        binary = os.path.basename(self.iqs)
        for line in report("--sort", "dso,symbol", "--percent-limit", "0"):
            match = re.match(r"([0-9.]+%)\s+(\S+)\s+\[.\]\s+(.+?)(\s+-\s+-)?\s*$", line)
            if match and match.group(2) == binary and len(rows) < 12:
                rows.append((match.group(1), binary, match.group(3)[:100]))
        return rows

    def submit_scenario(self, backend, reps, concurrency=16):
        """SubmitEvaluation by `concurrency` callers, each call a new evaluation; server CPU
        time per evaluation from /proc, and on PostgreSQL a perf profile of the server."""
        name = f"iqs_bench_submit_{backend}"
        url = self.fresh_store(backend, name)
        key = self.admin_key(url)
        proc, target = self.start_server(url, self.args.redis_url if backend == "postgres" else None)
        reports, cpu_ms, profile = [], [], []
        for rep in range(reps):
            cpu_before = self.cpu_seconds(proc.pid)
            command = [self.iqs, "bench", "submit", "--target", target, "--key", key, "--concurrency",
                       str(concurrency), "--duration-ms", str(self.seconds * 1000), "--warmup", "0",
                       "--prefix", f"submit{rep}", "--json"]
            if rep == 0 and backend == "postgres":
                with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as load:
                    time.sleep(1)
                    profile = self.perf_profile(proc.pid, max(1, self.seconds - 2))
                    out, err = load.communicate()
                if load.returncode != 0:
                    raise SystemExit(f"iqs bench submit failed: {err.strip()}")
                report = json.loads(out.strip().splitlines()[-1])
            else:
                report = run_json(command)
            cpu_ms.append((self.cpu_seconds(proc.pid) - cpu_before) * 1000 / max(1, report["requests"]))
            reports.append(report)
            print(f"{backend} submit rep {rep + 1}/{reps}: {report['requests_per_second']:,.0f}/s, p99 "
                  f"{report['p99_ms']:.1f} ms ({report['errors']} errors), server CPU {cpu_ms[-1]:.2f} ms "
                  f"per evaluation", flush=True)
        rss = self.peak_rss_mb(proc.pid)
        self.stop_server(proc)
        self.drop_store(backend, name)
        return {"concurrency": concurrency, "reports": reports, "cpu_ms": cpu_ms, "rss": rss, "profile": profile}

    def freshness_scenario(self, backend, count, reps):
        """Submit, then poll GetAgentScore (cached) until the evaluation counts."""
        reports = []
        for rep in range(reps):
            name = f"iqs_bench_fresh_{rep}"
            url = self.fresh_store(backend, name)
            key = self.admin_key(url)
            proc, target = self.start_server(url, self.args.redis_url if backend == "postgres" else None)
            report = run_json([self.iqs, "bench", "freshness", "--target", target, "--key", key, "--count", str(count),
                               "--prefix", f"fresh{rep}", "--json"])
            report["rss"] = self.peak_rss_mb(proc.pid)
            self.stop_server(proc)
            self.drop_store(backend, name)
            reports.append(report)
            print(f"{backend} freshness rep {rep + 1}/{reps}: p50 {report['p50_ms']:.1f} ms, "
                  f"p99 {report['p99_ms']:.1f} ms, max {report['max_ms']:.1f} ms", flush=True)
        return {"count": count, "reports": reports}

    def freshness_under_load_scenario(self, count, reps, rate=500):
        """Freshness on PostgreSQL + Redis while other agents' submissions arrive at `rate`
        per second (`iqs bench freshness --load-rate`, the load under a key of its own)."""
        reports = []
        for rep in range(reps):
            name = f"iqs_bench_fresh_load_{rep}"
            url = self.fresh_store("postgres", name)
            key = self.admin_key(url)
            load_key = self.another_key(url)
            proc, target = self.start_server(url, self.args.redis_url)
            report = run_json([self.iqs, "bench", "freshness", "--target", target, "--key", key, "--count", str(count),
                               "--prefix", f"loaded{rep}", "--load-rate", str(rate), "--load-key", load_key, "--json"])
            self.stop_server(proc)
            self.drop_store("postgres", name)
            reports.append(report)
            print(f"freshness under load rep {rep + 1}/{reps}: p50 {report['p50_ms']:.1f} ms, p99 "
                  f"{report['p99_ms']:.1f} ms beside {report['load_rate']:.0f} submissions/s "
                  f"({report['load_errors']} failed; {report['measured_calls_shed']} measured calls shed and sent again)", flush=True)
        return {"count": count, "rate": rate, "reports": reports}

    def outbox_soak_scenario(self, rows):
        """ImportEvaluations of `rows` evaluations into PostgreSQL + Redis with the outbox
        retention at 0 s, the outbox's rows counted every second until it is empty."""
        name = "iqs_bench_outbox_soak"
        url = self.fresh_store("postgres", name)
        key = self.admin_key(url)
        proc, target = self.start_server(url, self.args.redis_url, {"IQS_OUTBOX_RETENTION_S": "0"})

        def scalar(query):
            out = subprocess.run([self.args.psql, url, "-X", "-Atqc", query], capture_output=True, text=True)
            return int(out.stdout.strip()) if out.returncode == 0 and out.stdout.strip() else None

        samples, stop = [], threading.Event()

        def sample():
            while not stop.is_set():
                count = scalar("SELECT count(*) FROM evaluation.outbox")
                if count is not None:
                    samples.append(count)
                stop.wait(1)

        sampler = threading.Thread(target=sample)
        sampler.start()
        started = time.perf_counter()
        report = run_json([self.iqs, "bench", "import", "--target", target, "--key", key, "--rows", str(rows),
                           "--prefix", "soak", "--json"])
        deadline = time.perf_counter() + 300
        while time.perf_counter() < deadline and scalar("SELECT count(*) FROM evaluation.outbox") != 0:
            time.sleep(1)
        drained = time.perf_counter() - started
        stop.set()
        sampler.join()
        result = {
            "rows": rows, "accepted": report["accepted"], "import_rows_per_second": report["rows_per_second"],
            "max_outbox_rows": max(samples or [0]), "final_outbox_rows": scalar("SELECT count(*) FROM evaluation.outbox"),
            "outbox_mb": scalar("SELECT pg_total_relation_size('evaluation.outbox')") / 2**20,
            "evaluations_mb": scalar("SELECT pg_total_relation_size('evaluation.evaluations')") / 2**20,
            "seconds": drained,
        }
        self.stop_server(proc)
        self.drop_store("postgres", name)
        print(f"outbox soak: {result['accepted']:,} imported, outbox at most {result['max_outbox_rows']:,} rows, "
              f"{result['final_outbox_rows']} at the end ({result['outbox_mb']:.1f} MB on disk)", flush=True)
        return result

    def redis_get_baseline(self, clients):
        """redis-benchmark GET at the same client count: requests/s."""
        tool = shutil.which("redis-benchmark")
        if not tool or not self.args.redis_url:
            return None
        parts = urllib.parse.urlsplit(self.args.redis_url)
        out = subprocess.run([tool, "-h", parts.hostname or "127.0.0.1", "-p", str(parts.port or 6379), "-t", "get",
                              "-c", str(clients), "-n", str(20_000 * self.seconds), "-q", "--csv"],
                             check=True, capture_output=True, text=True).stdout
        return float(re.search(r'"GET","([0-9.]+)"', out).group(1))

    def calibration_scenario(self, backend, reps, interactions=50, reviewers=10):
        """GetCalibrationReport of one session (every reviewer reviewed every interaction),
        200 calls one after another per repetition, alternating with GetCalibrationSession of
        the same session: the baseline that does everything but the statistics."""
        name = f"iqs_bench_calibration_{backend}"
        url = self.fresh_store(backend, name)
        key = self.admin_key(url)
        proc, target = self.start_server(url, self.args.redis_url if backend == "postgres" else None)
        reports = []
        for rep in range(reps):
            reports.append(run_json([self.iqs, "bench", "calibration", "--target", target, "--key", key,
                                     "--interactions", str(interactions), "--reviewers", str(reviewers),
                                     "--prefix", f"rep-{rep}", "--json"]))
            print(f"{backend} calibration rep {rep + 1}/{reps}: report p50 {reports[-1]['report_p50_ms']:.2f} ms "
                  f"p99 {reports[-1]['report_p99_ms']:.2f} ms; session p50 {reports[-1]['session_p50_ms']:.2f} ms",
                  flush=True)
        rss = self.peak_rss_mb(proc.pid)
        self.stop_server(proc)
        self.drop_store(backend, name)
        return {"interactions": interactions, "reviewers": reviewers, "reports": reports, "rss": rss}

    def sampling_scenario(self, interactions, reps):
        """RunSampling of a month of `interactions` interactions of 500 agents (10 per agent,
        stratified by channel, 20 reviewers; a new rubric each repetition, so each run does the
        same work), beside psql reading the same month's rows; then NextAssignment beside
        GetSamplingPlan, 1,000 calls each, alternating."""
        name = "iqs_bench_sampling"
        url = self.fresh_database(name)
        key = self.admin_key(url)
        tenant = subprocess.run([self.iqs, "tenant", "create", "bench"], env=dict(os.environ, DATABASE_URL=url),
                                check=True, capture_output=True, text=True).stdout.split()[-1]
        here = os.path.dirname(os.path.abspath(__file__))
        subprocess.run([self.args.psql, url, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-v", f"tenant={tenant}",
                        "-v", f"n={interactions}", "-f", os.path.join(here, "bench_sampling.sql")], check=True)
        baseline_sql = ("SELECT id, agent_id, channel, csat FROM evaluation.interactions "
                        f"WHERE tenant_id = '{tenant}' AND COALESCE(occur_time, create_time) >= '2026-10-01' "
                        "AND COALESCE(occur_time, create_time) < '2026-11-01'")
        proc, target = self.start_server(url, self.args.redis_url)
        runs, baselines = [], []
        for rep in range(reps):
            baselines.append(self.timed_sql(url, baseline_sql))
            runs.append(run_json([self.iqs, "bench", "sampling", "--target", target, "--key", key,
                                  "--period", "2026-10-15T00:00:00Z", "--json"]))
            print(f"sampling rep {rep + 1}/{reps}: RunSampling {runs[-1]['run_ms']:.0f} ms "
                  f"({runs[-1]['created']} assignments), reading the month {baselines[-1]:.0f} ms; "
                  f"NextAssignment p99 {runs[-1]['next_p99_ms']:.2f} ms", flush=True)
        self.stop_server(proc)
        self.drop_database(name)
        return {"interactions": interactions, "runs": runs, "baselines": baselines}

    def autoqa_scenario(self, reps):
        """The AutoQA engine on one core: transcripts of 20 messages parsed from JSON and
        rated by six rules, beside only parsing them (`iqs bench autoqa`)."""
        runs = [run_json([self.iqs, "bench", "autoqa", "--json"]) for _ in range(reps)]
        for rep, run in enumerate(runs):
            print(f"autoqa rep {rep + 1}/{reps}: {run['rated_per_second']:,.0f} rated/s, "
                  f"{run['parsed_per_second']:,.0f} parsed/s", flush=True)
        return runs

    def autoqa_live_scenario(self, reps, rate=500):
        """AutoQA's automatic mode on PostgreSQL: interactions upserted at `rate` under a
        rubric with auto_score, each timed from its upsert to its automated evaluation
        (`iqs bench autoqa-live`)."""
        name = "iqs_bench_autoqa_live"
        url = self.fresh_store("postgres", name)
        key = self.admin_key(url)
        proc, target = self.start_server(url, self.args.redis_url)
        runs = []
        for rep in range(reps):
            runs.append(run_json([self.iqs, "bench", "autoqa-live", "--target", target, "--key", key,
                                  "--rate", str(rate), "--seconds", str(self.seconds * 2), "--json"]))
            r = runs[-1]
            print(f"autoqa live rep {rep + 1}/{reps}: {r['upserts']} upserts at {r['upserts_per_second']:,.0f}/s, "
                  f"{r['scored']} scored, p99 {r['p99_ms']:.0f} ms", flush=True)
        self.stop_server(proc)
        self.drop_store("postgres", name)
        return {"rate": rate, "runs": runs}

    def webhooks_scenario(self, reps, rate=200):
        """Webhook delivery on PostgreSQL + Redis: submissions at `rate` with a receiver
        subscribed, each timed from its SubmitEvaluation to the receiver reading it; then
        the same beside a receiver that never answers (`iqs bench webhooks`)."""
        name = "iqs_bench_webhooks"
        url = self.fresh_store("postgres", name)
        key = self.admin_key(url)
        proc, target = self.start_server(url, self.args.redis_url,
                                         extra_env={"IQS_WEBHOOK_ALLOW_PRIVATE_TARGETS": "true"})
        runs = []
        for rep in range(reps):
            runs.append(run_json([self.iqs, "bench", "webhooks", "--target", target, "--key", key,
                                  "--rate", str(rate), "--seconds", str(self.seconds), "--json"]))
            h, d = runs[-1]["healthy"], runs[-1]["beside_dead_receiver"]
            print(f"webhooks rep {rep + 1}/{reps}: lag p99 {h['lag_p99_ms']:.0f} ms, beside a dead receiver "
                  f"{d['lag_p99_ms']:.0f} ms; submit p99 {h['submit_p99_ms']:.1f} / {d['submit_p99_ms']:.1f} ms",
                  flush=True)
        self.stop_server(proc)
        self.drop_store("postgres", name)
        return {"rate": rate, "runs": runs}

    def cached_read_scenario(self, backend, reps, concurrency=16):
        """GetAgentScore of one agent (served from the cache after the first call) under
        closed-loop load, beside the echo baseline (same client, concurrency, answer size
        and machine) and, with Redis, redis-benchmark GET."""
        name = f"iqs_bench_cached_{backend}"
        url = self.fresh_store(backend, name)
        key = self.admin_key(url)
        # The cache's backstop TTL is a minute here (1 s by default): invalidations keep
        # it fresh, and a batch of 1,000 agents is measured as cached, not as recomputed.
        proc, target = self.start_server(url, self.args.redis_url if backend == "postgres" else None,
                                         {"IQS_CACHE_TTL_MS": "60000"})
        # A few evaluations of agent-cached (freshness names its agent after the prefix).
        run_json([self.iqs, "bench", "freshness", "--target", target, "--key", key, "--count", "30",
                  "--prefix", "cached", "--json"])
        echo = subprocess.Popen([self.iqs, "bench", "echo-server", "--listen", "127.0.0.1:0"],
                                stdout=subprocess.PIPE, text=True)
        echo_target = "http://" + echo.stdout.readline().split()[-1]
        load = ["--concurrency", str(concurrency), "--duration-ms", str(self.seconds * 1000), "--json"]
        iqs, baseline, redis_get, connect_json, batch = [], [], [], [], []
        for rep in range(reps):
            iqs.append(run_json([self.iqs, "bench", "agent-score", "--target", target, "--key", key,
                                 "--agent-id", "agent-cached"] + load))
            connect_json.append(run_json([self.iqs, "bench", "agent-score", "--target", target, "--key", key,
                                          "--agent-id", "agent-cached", "--protocol", "connect-json"] + load))
            batch.append(run_json([self.iqs, "bench", "batch-scores", "--target", target, "--key", key,
                                   "--agents", "1000", "--requests", "100", "--json"]))
            baseline.append(run_json([self.iqs, "bench", "echo", "--target", echo_target] + load))
            if backend == "postgres":
                redis_get.append(self.redis_get_baseline(concurrency))
            print(f"{backend} cached read rep {rep + 1}/{reps}: GetAgentScore {iqs[-1]['requests_per_second']:,.0f}/s "
                  f"p99 {iqs[-1]['p99_ms']:.2f} ms ({iqs[-1]['errors']} errors); Connect JSON "
                  f"{connect_json[-1]['requests_per_second']:,.0f}/s p99 {connect_json[-1]['p99_ms']:.2f} ms; echo "
                  f"{baseline[-1]['requests_per_second']:,.0f}/s p99 {baseline[-1]['p99_ms']:.2f} ms; batch of 1,000 "
                  f"p95 {batch[-1]['batch_p95_ms']:.2f} ms", flush=True)
        rss = self.peak_rss_mb(proc.pid)
        echo.terminate()
        echo.wait(timeout=30)
        self.stop_server(proc)
        self.drop_store(backend, name)
        redis_get = [r for r in redis_get if r is not None]
        return {"concurrency": concurrency, "iqs": iqs, "echo": baseline, "redis_get": redis_get, "rss": rss,
                "connect_json": connect_json, "batch": batch}

    def overload_scenario(self, reps, limit=16, flood_factor=16):
        """GetAgentScore on PostgreSQL + Redis with the server limited to `limit` concurrent
        calls. A probe (2 callers, open loop at 200 calls/s) measures the latency a caller
        sees, first alone, then while a flood of `limit × flood_factor` closed-loop
        callers (who wait the RetryInfo delay when refused) keeps the server beyond its
        limit. Also: the closed-loop figures at the limit, the flood's own figures, and
        the CPU the flood's client and the server used."""
        name = "iqs_bench_overload"
        url = self.fresh_store("postgres", name)
        key = self.admin_key(url)
        proc, target = self.start_server(url, self.args.redis_url, {"IQS_MAX_CONCURRENT_CALLS": str(limit)})
        run_json([self.iqs, "bench", "freshness", "--target", target, "--key", key, "--count", "30",
                  "--prefix", "cached", "--json"])
        load = [self.iqs, "bench", "agent-score", "--target", target, "--key", key, "--agent-id", "agent-cached",
                "--json"]
        millis = min(self.seconds, 5) * 1000
        probe = load + ["--concurrency", "2", "--connections", "1", "--rate", "200", "--warmup", "0",
                        "--duration-ms", str(millis)]
        result = {"limit": limit, "flood": limit * flood_factor, "seconds": millis // 1000, "at_limit": [], "alone": [], "in_flood": [],
                  "flooded": [], "client_cpu": [], "server_cpu": []}
        for rep in range(reps):
            result["at_limit"].append(run_json(load + ["--concurrency", str(limit), "--duration-ms", str(millis)]))
            result["alone"].append(run_json(probe))
            with tempfile.TemporaryFile("w+") as out:
                flood = subprocess.Popen(load + ["--concurrency", str(limit * flood_factor),
                                                 "--duration-ms", str(millis + 2000)],
                                         stdout=out, stderr=subprocess.DEVNULL, text=True)
                server_before = self.cpu_seconds(proc.pid)
                time.sleep(1)
                result["in_flood"].append(run_json(probe))
                _, status, usage = os.wait4(flood.pid, 0)
                flood.returncode = os.waitstatus_to_exitcode(status)
                result["server_cpu"].append(self.cpu_seconds(proc.pid) - server_before)
                result["client_cpu"].append(usage.ru_utime + usage.ru_stime)
                out.seek(0)
                result["flooded"].append(json.loads(out.read().strip().splitlines()[-1]))
            f = result["flooded"][-1]
            print(f"overload rep {rep + 1}/{reps}: probe p99 {result['alone'][-1]['p99_ms']:.2f} ms alone, "
                  f"{result['in_flood'][-1]['p99_ms']:.2f} ms in the flood; flood {f['requests_per_second']:,.0f}/s "
                  f"admitted, {f['refused']:,} refused (p99 {f['refused_p99_ms']:.2f} ms); CPU s client "
                  f"{result['client_cpu'][-1]:.1f}, server {result['server_cpu'][-1]:.1f}", flush=True)
        result["rss"] = self.peak_rss_mb(proc.pid)
        self.stop_server(proc)
        self.drop_store("postgres", name)
        return result

    def bi_report(self, url, reps):
        """A BI tool's report as the tenant's BI login (`iqs bi grant`): IQS by team and
        month over the quarter from reporting.daily_scores, timed by psql."""
        env = dict(os.environ, DATABASE_URL=url)
        grant = subprocess.run([self.iqs, "bi", "grant", "--tenant", "bench"], env=env, check=True,
                               capture_output=True, text=True).stdout
        login = grant.strip().splitlines()[-1]
        sql = ("SELECT team_id, date_trunc('month', day)::date AS month, "
               "sum(score_sum) / NULLIF(sum(scored_count), 0) AS iqs, sum(evaluation_count) AS evaluations "
               f"FROM reporting.daily_scores WHERE kind = 'manual' AND day >= '{QUARTER[0][:10]}' "
               f"AND day < '{QUARTER[1][:10]}' GROUP BY 1, 2 ORDER BY 1, 2")
        times = [self.timed_sql(login, sql) for _ in range(max(reps, 3) * 3)]
        subprocess.run([self.iqs, "bi", "revoke", "--tenant", "bench"], env=env, check=True, capture_output=True)
        print(f"BI report over the quarter as the tenant's login: {', '.join(f'{t:.0f} ms' for t in times)}", flush=True)
        return times

    def timed_sql(self, url, sql):
        """Runs one statement with psql and returns its server-side time in ms."""
        out = subprocess.run([self.args.psql, url, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", "\\timing on", "-c", sql],
                             check=True, capture_output=True, text=True,
                             env=dict(os.environ, PGOPTIONS="-c client_min_messages=warning")).stdout
        return float(re.findall(r"Time: ([0-9.]+) ms", out)[-1])

    def query_reps(self, url, key, reps, baseline):
        """QueryScores team x week over the quarter, `reps` times 200 calls, each beside
        one run of `baseline()` (ms); then an export from a server of its own."""
        iqs_p95, iqs_p50, baselines = [], [], []
        proc, target = self.start_server(url)
        for rep in range(reps):
            report = run_json([self.iqs, "bench", "query", "--target", target, "--key", key, "--start", QUARTER[0],
                               "--end", QUARTER[1], "--requests", "200", "--json"])
            iqs_p95.append(report["p95_ms"])
            iqs_p50.append(report["p50_ms"])
            baselines.append(baseline())
            print(f"query rep {rep + 1}/{reps}: QueryScores p50 {report['p50_ms']:.1f} ms, p95 "
                  f"{report['p95_ms']:.1f} ms ({report['rows']} rows); plain GROUP BY {baselines[-1]:.0f} ms",
                  flush=True)
        query_rss = self.peak_rss_mb(proc.pid)
        self.stop_server(proc)
        return {"p95": iqs_p95, "p50": iqs_p50, "baseline": baselines, "rss": query_rss}

    def export(self, url, key, rows):
        """ExportEvaluations of `rows` rows from a server of its own, so its peak memory is
        the export's alone."""
        proc, target = self.start_server(url)
        export = run_json([self.iqs, "bench", "export", "--target", target, "--key", key, "--rows", str(rows),
                           "--json"])
        export["rss"] = self.peak_rss_mb(proc.pid)
        self.stop_server(proc)
        print(f"export: {export['rows']:,} rows at {export['rows_per_second']:,.0f} rows/s, "
              f"server peak RSS {export['rss']:.0f} MB", flush=True)
        return export

    def drop_secondary_indexes(self, url):
        """Drops the indexes of the generated tables that no constraint needs, and returns
        the statements that make them again: built once after the load, they cost a
        fraction of keeping eight of them up to date row by row. The queries then run
        with exactly the schema's indexes."""
        listed = subprocess.run(
            [self.args.psql, url, "-X", "-A", "-t", "-F", "\t", "-c",
             "SELECT format('%I.%I', n.nspname, i.relname), pg_get_indexdef(x.indexrelid) "
             "FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid "
             "JOIN pg_namespace n ON n.oid = t.relnamespace "
             "WHERE (n.nspname, t.relname) IN (('evaluation', 'evaluations'), ('analytics', 'evaluation_facts')) "
             "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)"],
            check=True, capture_output=True, text=True).stdout
        indexes = [line.split("\t", 1) for line in listed.splitlines() if line.strip()]
        if indexes:
            self.psql(url, "DROP INDEX " + ", ".join(name for name, _ in indexes))
        return [definition for _, definition in indexes]

    def generate_query_data(self, url, tenant, evaluations):
        """Fills the database at `url` with `evaluations` generated evaluations of `tenant`,
        their facts and their daily rollups, and returns the seconds it took; each step's
        time is printed, since this is most of a full run."""
        here = os.path.dirname(os.path.abspath(__file__))
        sql = ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-v", f"tenant={tenant}"]
        started = step = time.perf_counter()

        def lap(what):
            nonlocal step
            now = time.perf_counter()
            print(f"query data: {what} in {now - step:.0f} s", flush=True)
            step = now

        subprocess.run([self.args.psql, url] + sql + ["-f", os.path.join(here, "bench_interactions.sql")], check=True)
        # Unlogged, the generated tables skip the write-ahead log: about 17 GB of it for 10M
        # evaluations, in a database that is dropped afterwards. Reads, which are all the
        # figures measure, are the same. Ratings first: a logged table may not reference an
        # unlogged one.
        self.psql(url, *(f"ALTER TABLE {table} SET UNLOGGED"
                         for table in ("evaluation.ratings", "evaluation.evaluations", "analytics.evaluation_facts")))
        recreate = self.drop_secondary_indexes(url)
        # Chunks of 500k, two sessions at a time: one per core.
        chunk, running, done = 500_000, [], 0
        for first in list(range(0, evaluations, chunk)) + [None, None]:
            if first is not None:
                n = min(chunk, evaluations - first)
                running.append((n, subprocess.Popen(
                    [self.args.psql, url] + sql + ["-v", f"first={first}", "-v", f"n={n}", "-v",
                                                   f"total={evaluations}", "-f", os.path.join(here, "bench_data.sql")])))
            if len(running) == 2 or (first is None and running):
                n, session = running.pop(0)
                if session.wait() != 0:
                    raise SystemExit("bench_data.sql failed")
                done += n
                print(f"query data: {done:,} of {evaluations:,} evaluations generated", flush=True)
        lap("evaluations and facts written")
        self.psql(url, "SET maintenance_work_mem = '1GB'", *recreate)
        lap(f"{len(recreate)} secondary indexes built")
        subprocess.run([self.args.psql, url] + sql + ["-f", os.path.join(here, "bench_rollups.sql")], check=True)
        lap("daily rollups written")
        self.psql(url, "VACUUM ANALYZE")
        lap("vacuumed and analyzed")
        generated = time.perf_counter() - started
        print(f"query data: generated with rollups in {generated:.0f} s", flush=True)
        return generated

    def postgres_query_scenario(self, evaluations, reps):
        """QueryScores from the rollups of `evaluations` generated evaluations, beside a
        plain GROUP BY over the evaluations table."""
        name = "iqs_bench_query"
        url = self.fresh_database(name)
        key = self.admin_key(url)
        tenant = subprocess.run([self.iqs, "tenant", "create", "bench"], env=dict(os.environ, DATABASE_URL=url),
                                check=True, capture_output=True, text=True).stdout.split()[-1]
        generated = self.generate_query_data(url, tenant, evaluations)
        baseline_sql = (
            "SELECT team_id, date_trunc('week', first_create_time AT TIME ZONE 'UTC') AS week, avg(score), "
            "count(*), avg(passed::int) FROM evaluation.evaluations "
            f"WHERE tenant_id = '{tenant}' AND kind = 'manual' AND state = 'active' "
            f"AND first_create_time >= '{QUARTER[0]}' AND first_create_time < '{QUARTER[1]}' GROUP BY 1, 2")
        result = self.query_reps(url, key, reps, lambda: self.timed_sql(url, baseline_sql))
        result["bi_report_ms"] = self.bi_report(url, reps)
        result["export"] = self.export(url, key, min(evaluations, 1_000_000))
        result.update(evaluations=evaluations, generated_seconds=generated)
        self.drop_database(name)
        return result

    def embedded_query_scenario(self, evaluations, reps):
        """QueryScores on the embedded store filled by `iqs demo seed`, beside the same
        GROUP BY run by SQLite itself on the same file."""
        import sqlite3
        name = "iqs_bench_query_embedded"
        url = self.fresh_store("embedded", name)
        env = dict(os.environ, **store_env(url))
        subprocess.run([self.iqs, "demo", "seed", "--evaluations", str(evaluations), "--until", QUARTER[1][:10],
                        "--tenant", "bench"], env=env, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        out = subprocess.run([self.iqs, "key", "create", "--tenant", "bench", "--role", "admin"], env=env,
                             check=True, capture_output=True, text=True).stdout
        key = out.strip().splitlines()[-1]
        start = int(datetime.datetime.fromisoformat(QUARTER[0].replace("Z", "+00:00")).timestamp() * 1e6)
        end = int(datetime.datetime.fromisoformat(QUARTER[1].replace("Z", "+00:00")).timestamp() * 1e6)
        database = os.path.join(url.split(":", 1)[1], "iqs.db")

        def baseline():
            with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
                started = time.perf_counter()
                connection.execute(
                    "SELECT team_id, strftime('%Y-%W', first_create_time / 1000000, 'unixepoch') AS week, "
                    "avg(score), count(*), avg(passed) FROM evaluations WHERE kind = 'manual' AND state = 'active' "
                    "AND first_create_time >= ? AND first_create_time < ? GROUP BY 1, 2", (start, end)).fetchall()
                return (time.perf_counter() - started) * 1000

        result = self.query_reps(url, key, reps, baseline)
        result["export"] = self.export(url, key, evaluations)
        result["evaluations"] = evaluations
        self.drop_store("embedded", name)
        return result


QUARTER = ("2026-07-01T00:00:00Z", "2026-10-01T00:00:00Z")


def store_env(url):
    """The environment that points IQS at `url`: a database URL, or `embedded:DIR`."""
    if url.startswith("embedded:"):
        return {"IQS_DATA_DIR": url.split(":", 1)[1], "DATABASE_URL": ""}
    return {"DATABASE_URL": url}


def run_json(command):
    """Runs an `iqs bench` command and returns its JSON report; on failure, shows why."""
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[:3])} failed: {done.stderr.strip() or done.stdout.strip()}")
    if done.stderr.strip():
        print(done.stderr.strip().splitlines()[0], flush=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def spread(values, unit, digits=0):
    if not values:
        return "—"
    return (f"{min(values):,.{digits}f} / {statistics.median(values):,.{digits}f} / "
            f"{max(values):,.{digits}f} {unit}").rstrip()


def median(values):
    return statistics.median(values) if values else float("nan")


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


BACKENDS = (("postgres", "PostgreSQL + Redis"), ("embedded", "embedded (SQLite + in-process cache)"))


class Report:
    def __init__(self):
        self.lines = []
        self.targets = []

    def add(self, *lines):
        self.lines.extend(lines)

    def table(self, header, rows):
        self.add("| " + " | ".join(header) + " |", "|" + " --- |" * len(header))
        self.add(*("| " + " | ".join(str(cell) for cell in row) + " |" for row in rows))
        self.add("")

    def target(self, name, measured, met, note=""):
        self.targets.append((name, measured, "met" if met else "missed", note))


def write_client_reach(r, cached):
    """Connect JSON beside gRPC for the same cached read, and BatchGetAgentScores beside
    one GetAgentScore per agent."""
    r.add("## Reaching every client: Connect JSON and batch reads", "",
          "The same cached `GetAgentScore` as above, made as a Connect client makes it: a POST with a JSON body over "
          "HTTP/1.1, one connection per call in flight, the answer parsed as JSON "
          "(`iqs bench agent-score --protocol connect-json`), beside the gRPC runs of the same repetitions. "
          "Then `BatchGetAgentScores` of 1,000 agents (`agent-0` … `agent-999`, cached after the first call), "
          "100 calls one after another per repetition (the server's cache TTL, a backstop behind invalidation, "
          "set to 60 s for this scenario so that the batch is measured as cached), beside reading the same 1,000 agents with one "
          "`GetAgentScore` each (`iqs bench batch-scores`).", "")
    rows = []
    for backend, label in BACKENDS:
        b = cached[backend]
        ratio = median([c["requests_per_second"] for c in b["connect_json"]]) / median(
            [i["requests_per_second"] for i in b["iqs"]])
        rows.append((f"GetAgentScore over Connect JSON, {label}",
                     spread([c["requests_per_second"] for c in b["connect_json"]], "calls/s"),
                     spread([c["p99_ms"] for c in b["connect_json"]], "ms", 2),
                     sum(c["errors"] for c in b["connect_json"]), f"{ratio:.2f}"))
        r.target(f"cached GetAgentScore over Connect JSON ÷ over gRPC ≥ 0.5 ({backend})", f"{ratio:.2f}", ratio >= 0.5)
    r.table(("figure", "throughput", "p99", "errors", "÷ gRPC"), rows)
    rows = []
    for backend, label in BACKENDS:
        batch = cached[backend]["batch"]
        p95 = median([x["batch_p95_ms"] for x in batch])
        rows.append((label, spread([x["first_batch_ms"] for x in batch], "ms", 0),
                     spread([x["batch_p50_ms"] for x in batch], "ms", 2),
                     spread([x["batch_p95_ms"] for x in batch], "ms", 2),
                     spread([x["singles_sequential_ms"] for x in batch], "ms", 0),
                     spread([x["singles_concurrent_ms"] for x in batch], "ms", 0),
                     f"{median([x['singles_sequential_ms'] for x in batch]) / median([x['batch_p50_ms'] for x in batch]):.0f}×"))
        r.target(f"BatchGetAgentScores of 1,000 cached agents, p95 < 20 ms ({backend})", f"{p95:.2f} ms", p95 < 20)
    r.table(("store", "first batch (nothing cached)", "batch p50", "batch p95", "1,000 single calls, one after another",
             "1,000 single calls, 16 at a time", "batch speed-up over sequential"), rows)


def write_report(path, results, args, elapsed):
    r = Report()
    r.add("# Benchmarks", "", "Generated by `scripts/bench` — do not edit by hand; run it again instead.", "",
          f"- date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
          f"- commit: {commit()}", f"- machine: {machine()}",
          f"- mode: {'quick' if args.quick else 'full'}; {args.reps} repetitions; figures are min / median / max; "
          f"the whole run took {elapsed / 60:.1f} minutes",
          "- every IQS scenario runs twice: on PostgreSQL + Redis, and on the embedded default "
          "(SQLite and the in-process cache, no `DATABASE_URL` or `REDIS_URL`); the baselines run beside them "
          "in the same run on the same machine, and each ratio is of medians.", "")

    imp = results["import"]
    copy = imp["postgres"]["copy"]
    r.add("## Bulk import", "",
          f"`ImportEvaluations` streaming {imp['postgres']['rows']:,} generated evaluations (6 ratings each, an inline "
          "interaction with two messages each) through the gRPC API into a fresh store, beside `psql \\copy` of the "
          "same rows (dumped from the PostgreSQL import) into the same four tables (interactions, evaluations, "
          "ratings, outbox) of another fresh database with the same schema, indexes and constraints. Then "
          "`iqs analytics rebuild` derives the figures again from the imported evaluations.", "")
    rows = [("psql \\copy baseline", spread(copy, "rows/s"), "", "")]
    for backend, label in BACKENDS:
        b = imp[backend]
        ratio = median(b["iqs"]) / median(copy)
        rows.append((f"ImportEvaluations, {label}", spread(b["iqs"], "rows/s"), f"{ratio:.2f}",
                     spread(b["rss"], "MB")))
        if backend == "postgres":
            r.target("ImportEvaluations rows/s ÷ psql \\copy rows/s ≥ 0.5", f"{ratio:.2f}", ratio >= 0.5)
    for backend, label in BACKENDS:
        rows.append((f"analytics rebuild (from the evaluations), {label}", spread(imp[backend]["rebuild"], "evaluations/s"), "", ""))
    r.table(("figure", "min / median / max", "÷ \\copy", "server peak RSS"), rows)

    sub = results["submit"]
    pgb = sub["pgbench"]
    r.add("## Submit", "",
          f"`SubmitEvaluation` by {sub['postgres']['concurrency']} concurrent callers for {args.seconds} s per "
          "repetition (`iqs bench submit`), each call a new evaluation (inline interaction, six ratings), scored, "
          "stored with its outbox event and projected into the rollups meanwhile. Beside `pgbench` at the same "
          "client count: `scripts/pgbench_submit_row.sql`, the single-row insert of an evaluation row, and "
          "`scripts/pgbench_submit_all.sql`, one transaction writing every row a submission writes. Server CPU "
          "time per evaluation is from `/proc/<pid>/stat` over the load.", "")
    rows = [("pgbench single-row insert", spread(pgb["row"], "tps"), "", "", "", ""),
            ("pgbench, every row of a submission", spread(pgb["all"], "tps"), "", "", "", "")]
    for backend, label in BACKENDS:
        b = sub[backend]
        rate = [x["requests_per_second"] for x in b["reports"]]
        ratio = median(rate) / median(pgb["row"])
        rows.append((f"SubmitEvaluation, {label}", spread(rate, "calls/s"), f"{ratio:.3f}",
                     f"{median(rate) / median(pgb['all']):.2f}",
                     spread([x["p99_ms"] for x in b["reports"]], "ms", 1), spread(b["cpu_ms"], "ms", 2)))
        if backend == "postgres":
            note = "" if ratio >= 0.5 else "see *Where a target is missed*"
            r.target("SubmitEvaluation/s ÷ pgbench single-row insert tps ≥ 0.5", f"{ratio:.3f}", ratio >= 0.5, note)
    r.table(("figure", "min / median / max", "÷ single-row", "÷ every row", "p99", "server CPU per evaluation"),
            rows)
    r.add(f"Server peak RSS: {sub['postgres']['rss']:.0f} MB on PostgreSQL, {sub['embedded']['rss']:.0f} MB embedded.",
          "")
    if sub["postgres"]["profile"]:
        r.add("Where the server's own CPU goes during the PostgreSQL submit load (`perf record -p`, self time "
              "of the server's samples): first by object, then the hottest functions of the IQS binary.", "")
        r.table(("share", "object", "function"),
                [(share, obj, f"`{symbol}`") for share, obj, symbol in sub["postgres"]["profile"]])

    fresh = results["freshness"]
    r.add("## Freshness", "",
          f"Each of {fresh['postgres']['count']:,} `SubmitEvaluation` calls, one after another, then `GetAgentScore` "
          "polled every millisecond until the evaluation counts; the time from the submit's answer to the first "
          "answer that counts it.", "")
    rows = []
    for backend, label in BACKENDS:
        reports = fresh[backend]["reports"]
        p99 = median([x["p99_ms"] for x in reports])
        rows.append((label, spread([x["p50_ms"] for x in reports], "ms", 1),
                     spread([x["p99_ms"] for x in reports], "ms", 1), spread([x["max_ms"] for x in reports], "ms", 1),
                     spread([x["rss"] for x in reports], "MB")))
        r.target(f"submit → visible in GetAgentScore, p99 < 1 s ({backend})", f"{p99:.1f} ms", p99 < 1000)
    r.table(("store", "p50", "p99", "max", "server peak RSS"), rows)

    loaded = results["freshness_under_load"]
    r.add("### Under load", "",
          f"The same measurement ({loaded['count']:,} submissions of one agent, each polled until it counts) on "
          f"PostgreSQL + Redis while other agents' evaluations are submitted at {loaded['rate']} per second, paced, "
          "under an API key of their own (`iqs bench freshness --load-rate`).", "")
    reports = loaded["reports"]
    p99 = median([x["p99_ms"] for x in reports])
    r.table(("figure", "min / median / max"), [
        ("submit → visible, p50", spread([x["p50_ms"] for x in reports], "ms", 1)),
        ("submit → visible, p99", spread([x["p99_ms"] for x in reports], "ms", 1)),
        ("submit → visible, max", spread([x["max_ms"] for x in reports], "ms", 1)),
        ("other submissions achieved", spread([x["load_rate"] for x in reports], "/s")),
        ("other submissions failed (shed by the server)", spread([x["load_errors"] for x in reports], "")),
        ("measured calls shed and sent again", spread([x["measured_calls_shed"] for x in reports], "")),
    ])
    r.target(f"submit → visible in GetAgentScore beside {loaded['rate']} submissions/s, p99 < 100 ms",
             f"{p99:.1f} ms", p99 < 100)

    soak = results["outbox_soak"]
    r.add("## Outbox retention", "",
          f"`ImportEvaluations` of {soak['rows']:,} evaluations (each an outbox event) into PostgreSQL + Redis with "
          "`IQS_OUTBOX_RETENTION_S=0`: consumed events are pruned as soon as the projector and the webhook "
          "dispatcher have passed them. The outbox's rows were counted every second until it was empty.", "")
    r.table(("figure", "measured"), [
        ("evaluations imported", f"{soak['accepted']:,} at {soak['import_rows_per_second']:,.0f}/s"),
        ("outbox rows, most seen", f"{soak['max_outbox_rows']:,}"),
        ("outbox rows at the end", f"{soak['final_outbox_rows']:,}"),
        ("outbox on disk at the end (table, indexes, TOAST)", f"{soak['outbox_mb']:.1f} MB"),
        ("evaluations on disk at the end", f"{soak['evaluations_mb']:.1f} MB"),
        ("import start → outbox empty", f"{soak['seconds']:.0f} s"),
    ])
    r.target(f"outbox rows after {soak['rows']:,} evaluations ≤ 1% of them (bounded by what is in flight)",
             f"{soak['max_outbox_rows']:,} most, {soak['final_outbox_rows']:,} at the end",
             soak['max_outbox_rows'] <= soak['rows'] / 100 and soak['final_outbox_rows'] == 0)

    cached = results["cached_read"]
    r.add("## Cached agent score", "",
          f"`GetAgentScore` of one agent (the helpdesk sidebar path, answered from the cache after the first call) by "
          f"{cached['postgres']['concurrency']} concurrent callers on 2 connections for {args.seconds} s per "
          "repetition (`iqs bench agent-score`), beside `iqs bench echo` against `iqs bench echo-server` with the "
          "same client, concurrency and answer size (256 bytes), and `redis-benchmark -t get` at the same client "
          "count.", "")
    rows = []
    for backend, label in BACKENDS:
        b = cached[backend]
        tput = median([i["requests_per_second"] for i in b["iqs"]]) / median([e["requests_per_second"] for e in b["echo"]])
        p99 = median([i["p99_ms"] for i in b["iqs"]]) / median([e["p99_ms"] for e in b["echo"]])
        rows.append((f"GetAgentScore, {label}", spread([i["requests_per_second"] for i in b["iqs"]], "calls/s"),
                     spread([i["p99_ms"] for i in b["iqs"]], "ms", 2), sum(i["errors"] for i in b["iqs"]),
                     f"{b['rss']:.0f} MB"))
        rows.append((f"echo, beside the {backend} runs", spread([e["requests_per_second"] for e in b["echo"]], "calls/s"),
                     spread([e["p99_ms"] for e in b["echo"]], "ms", 2), sum(e["errors"] for e in b["echo"]), ""))
        r.target(f"cached GetAgentScore throughput ÷ echo throughput ≥ 0.6 ({backend})", f"{tput:.2f}", tput >= 0.6)
        r.target(f"cached GetAgentScore p99 ÷ echo p99 ≤ 2 ({backend})", f"{p99:.2f}", p99 <= 2)
    if cached["postgres"]["redis_get"]:
        rows.append(("redis-benchmark GET", spread(cached["postgres"]["redis_get"], "requests/s"), "", "", ""))
    r.table(("figure", "throughput", "p99", "errors", "server peak RSS"), rows)
    write_client_reach(r, cached)

    runs = results["autoqa"]
    r.add("## AutoQA engine", "",
          f"{runs[0]['interactions']:,} generated chat transcripts of {runs[0]['messages']} messages each, parsed from "
          "JSON and rated by the six rules of a typical chat scorecard (a greeting and a closing phrase, a "
          "forbidden phrase, response time, the customer's VADER sentiment shift, a card number typed by the "
          "agent) on one core, one after another (`iqs bench autoqa`), beside only parsing the same JSON.", "")
    rated = median([x["rated_per_second"] for x in runs])
    parsed = median([x["parsed_per_second"] for x in runs])
    r.table(("figure", "min / median / max"), [
        ("transcripts rated per second, one core", spread([x["rated_per_second"] for x in runs], "/s")),
        ("transcripts only parsed per second, one core", spread([x["parsed_per_second"] for x in runs], "/s")),
        ("rating's time ÷ the parse's time", f"{parsed / rated:.1f}"),
    ])
    r.target("AutoQA engine ≥ 5,000 transcripts of 20 messages per second per core", f"{rated:,.0f}/s", rated >= 5000)
    live = results["autoqa_live"]
    r.add(f"Automatic mode on PostgreSQL + Redis: interactions of 6 messages upserted at {live['rate']}/s (open loop) "
          "under a rubric with `auto_score` and three rules, each timed from its upsert to its automated evaluation "
          "by the server's clock (`iqs bench autoqa-live`).", "")
    runs = live["runs"]
    r.table(("figure", "min / median / max"), [
        ("upserts per second reached", spread([x["upserts_per_second"] for x in runs], "/s")),
        ("auto-scored ÷ upserted", spread([x["scored"] / max(x["upserts"], 1) for x in runs], "", 3)),
        ("upsert → automated evaluation, p50", spread([x["p50_ms"] for x in runs], "ms", 0)),
        ("upsert → automated evaluation, p99", spread([x["p99_ms"] for x in runs], "ms", 0)),
    ])
    p99 = median([x["p99_ms"] for x in runs])
    kept = all(x["scored"] == x["upserts"] for x in runs) and median([x["upserts_per_second"] for x in runs]) >= 0.95 * live["rate"]
    r.target(f"AutoQA automatic mode keeps up with {live['rate']} upserts/s on PostgreSQL", 
             f"{median([x['upserts_per_second'] for x in runs]):,.0f}/s, all scored" if kept else "no", kept)
    r.target("upsert → automated evaluation visible, p99 < 1 s", f"{p99:.0f} ms", p99 < 1000)

    hooks = results["webhooks"]
    r.add("## Webhooks", "",
          f"SubmitEvaluation at {hooks['rate']}/s (open loop, {args.seconds} s) on PostgreSQL + Redis with one "
          "subscription whose receiver (in the load generator) answers 204 at once; each delivery timed from "
          "sending its SubmitEvaluation to the receiver reading it. Then the same with a second subscription whose "
          "receiver accepts connections and never answers, so every attempt to it waits out its timeout "
          "(`iqs bench webhooks`).", "")
    runs = hooks["runs"]
    rows = []
    for key, name in (("healthy", "one healthy receiver"), ("beside_dead_receiver", "beside a dead receiver")):
        rows.append((f"submit → receipt p50, {name}", spread([x[key]["lag_p50_ms"] for x in runs], "ms", 0)))
        rows.append((f"submit → receipt p99, {name}", spread([x[key]["lag_p99_ms"] for x in runs], "ms", 0)))
        rows.append((f"SubmitEvaluation p99, {name}", spread([x[key]["submit_p99_ms"] for x in runs], "ms", 1)))
        rows.append((f"delivered ÷ submitted, {name}",
                     spread([x[key]["delivered"] / max(x[key]["submitted"], 1) for x in runs], "", 3)))
    r.table(("figure", "min / median / max"), rows)
    lag = median([x["healthy"]["lag_p99_ms"] for x in runs])
    r.target("delivery lag p99 < 1 s from submit to receipt", f"{lag:.0f} ms", lag < 1000)
    dead_lag = median([x["beside_dead_receiver"]["lag_p99_ms"] for x in runs])
    r.target("a dead receiver beside it: delivery lag p99 still < 1 s", f"{dead_lag:.0f} ms", dead_lag < 1000)
    slowed = median([x["beside_dead_receiver"]["submit_p99_ms"] / max(x["healthy"]["submit_p99_ms"], 1e-9)
                     for x in runs])
    r.target("a dead receiver beside it: SubmitEvaluation p99 ÷ without it ≤ 1.5", f"{slowed:.2f}", slowed <= 1.5)

    cal = results["calibration"]
    r.add("## Calibration report", "",
          f"`GetCalibrationReport` of one session of {cal['postgres']['interactions']} interactions × "
          f"{cal['postgres']['reviewers']} reviewers, every reviewer reviewing every interaction with the benchmark "
          "rubric (6 criteria): Krippendorff's alpha at three levels per criterion and on scores, a 1,000-resample "
          "bootstrap per criterion and on scores, and every reviewer's deviations (`iqs bench calibration`). 200 "
          "calls one after another per repetition, alternating with `GetCalibrationSession` of the same session, "
          "the baseline that does everything but the statistics.", "")
    rows = []
    for backend, label in BACKENDS:
        b = cal[backend]["reports"]
        p99 = median([x["report_p99_ms"] for x in b])
        ratio = median([x["report_p50_ms"] for x in b]) / median([x["session_p50_ms"] for x in b])
        rows.append((f"GetCalibrationReport, {label}", spread([x["report_p50_ms"] for x in b], "ms", 2),
                     spread([x["report_p99_ms"] for x in b], "ms", 2), f"{ratio:.1f}"))
        rows.append((f"GetCalibrationSession, {label}", spread([x["session_p50_ms"] for x in b], "ms", 2),
                     spread([x["session_p99_ms"] for x in b], "ms", 2), ""))
        r.target(f"GetCalibrationReport of 50 × 10, p99 < 100 ms ({backend})", f"{p99:.1f} ms", p99 < 100)
    r.table(("figure", "p50", "p99", "p50 ÷ reading the session"), rows)

    smp = results["sampling"]
    runs = smp["runs"]
    r.add("## Sampling and assignments", "",
          f"`RunSampling` of a monthly plan over {smp['interactions']:,} interactions of 500 agents in one month "
          "(`scripts/bench_sampling.sql`), 10 per agent stratified by channel, 20 reviewers, on PostgreSQL: it reads "
          "the month's interactions with whether each is reviewed or assigned, samples every agent, and writes the "
          "assignments in one transaction. Beside it, psql reading the same month's rows (id, agent, channel, CSAT). "
          "Each repetition samples under a new rubric, so each does the same work. Then `NextAssignment` (a reviewer's "
          "oldest open assignment) 1,000 times, alternating with `GetSamplingPlan`, a read by primary key "
          "(`iqs bench sampling`).", "")
    run_ms = median([x["run_ms"] for x in runs])
    next_p99 = median([x["next_p99_ms"] for x in runs])
    rows = [
        ("RunSampling", spread([x["run_ms"] for x in runs], "ms"),
         f"{runs[0]['created']:,} assignments", f"{run_ms / median(smp['baselines']):.1f}"),
        ("psql reading the month's interactions", spread(smp["baselines"], "ms"), "", ""),
        ("NextAssignment p99", spread([x["next_p99_ms"] for x in runs], "ms", 2),
         f"p50 {median([x['next_p50_ms'] for x in runs]):.2f} ms", ""),
        ("GetSamplingPlan p99", spread([x["plan_p99_ms"] for x in runs], "ms", 2),
         f"p50 {median([x['plan_p50_ms'] for x in runs]):.2f} ms", ""),
    ]
    r.table(("figure", "time", "", "÷ psql"), rows)
    r.target(f"RunSampling over {smp['interactions']:,} interactions and 500 agents < 5 s (PostgreSQL)",
             f"{run_ms / 1000:.2f} s", run_ms < 5000)
    r.target("NextAssignment p99 < 5 ms (PostgreSQL)", f"{next_p99:.2f} ms", next_p99 < 5)

    over = results["overload"]
    r.add("## Overload", "",
          f"`GetAgentScore` (cached) on PostgreSQL + Redis, the server started with `IQS_MAX_CONCURRENT_CALLS="
          f"{over['limit']}` and the default queue timeout. A probe (2 callers, open loop at 200 calls/s, {over['seconds']} s) "
          f"measures the latency a caller sees: alone, then while a flood of {over['flood']} closed-loop callers (who "
          "wait the `RetryInfo` delay when refused, as well-behaved clients do) holds the server beyond its limit. "
          "Latencies count admitted calls only; refusals are `RESOURCE_EXHAUSTED`. The flood's client runs on the "
          "same two cores as the server; the CPU each used during the flood is in the table.", "")
    admitted = median([x["p99_ms"] for x in over["in_flood"]]) / median([x["p99_ms"] for x in over["alone"]])
    flooded = over["flooded"] + over["in_flood"]
    r.table(("figure", "min / median / max"), [
        ("probe p99, alone", spread([x["p99_ms"] for x in over["alone"]], "ms", 2)),
        ("probe p99 of admitted calls, in the flood", spread([x["p99_ms"] for x in over["in_flood"]], "ms", 2)),
        ("probe calls refused, in the flood", spread([x["refused"] for x in over["in_flood"]], "calls")),
        (f"closed loop at the limit ({over['limit']} callers): throughput",
         spread([x["requests_per_second"] for x in over["at_limit"]], "calls/s")),
        (f"closed loop at the limit: p99", spread([x["p99_ms"] for x in over["at_limit"]], "ms", 2)),
        (f"flood ({over['flood']} callers): admitted throughput",
         spread([x["requests_per_second"] for x in over["flooded"]], "calls/s")),
        ("flood: admitted p99", spread([x["p99_ms"] for x in over["flooded"]], "ms", 2)),
        ("flood: refusals", spread([x["refused"] / x["seconds"] for x in over["flooded"]], "calls/s")),
        ("flood: p99 of a refusal", spread([x["refused_p99_ms"] for x in over["flooded"]], "ms", 2)),
        ("flood: CPU seconds of its client / of the server",
         f"{median(over['client_cpu']):.1f} / {median(over['server_cpu']):.1f} (of {2 * (over['seconds'] + 2)} available)"),
        ("errors other than refusals", str(sum(x["errors"] - x["refused"] for x in flooded + over["at_limit"]))),
        ("server peak RSS", f"{over['rss']:.0f} MB"),
    ])
    r.target("p99 of admitted calls under a flood ÷ unloaded p99 ≤ 3", f"{admitted:.2f}", admitted <= 3,
             "" if admitted <= 3 else "see *Where a target is missed*")

    q = results["query"]
    pq, eq = q["postgres"], q["embedded"]
    r.add("## Dashboard query and export", "",
          f"PostgreSQL: {pq['evaluations']:,} evaluations generated in SQL over six months (`scripts/bench_data.sql`, "
          f"time-ordered like real ones, in unlogged tables whose secondary indexes are built after the load) "
          f"with the daily rollups the projector keeps (`scripts/bench_rollups.sql`), in {pq['generated_seconds']:.0f} s. Embedded: {eq['evaluations']:,} evaluations from `iqs demo seed` "
          "through the API. `QueryScores` grouped by team and week over the quarter 2026-07-01..2026-10-01 (MANUAL "
          "evaluations), 200 calls one after another per repetition, beside the same figures from a plain "
          "`GROUP BY` over the evaluations table (by psql, or by SQLite on the same file). Then "
          "`ExportEvaluations` from a server of its own.", "")
    rows = []
    for backend, label in BACKENDS:
        b = q[backend]
        p95 = median(b["p95"])
        ratio = p95 / median(b["baseline"])
        rows.append((f"QueryScores p50, {label}", spread(b["p50"], "ms", 1)))
        rows.append((f"QueryScores p95, {label}", spread(b["p95"], "ms", 1)))
        rows.append((f"plain GROUP BY, {label}", spread(b["baseline"], "ms", 1)))
        rows.append((f"QueryScores p95 ÷ plain GROUP BY, {label}", f"{ratio:.4f}"))
        rows.append((f"server peak RSS during the queries, {label}", f"{b['rss']:.0f} MB"))
        rows.append((f"ExportEvaluations of {b['export']['rows']:,} rows, {label}",
                     f"{b['export']['rows_per_second']:,.0f} rows/s, server peak RSS {b['export']['rss']:.0f} MB"))
        if backend == "postgres":
            scale = f"{b['evaluations'] / 1e6:g}M evaluations"
            rows.append(("BI report (IQS by team and month over the quarter) from reporting.daily_scores as the "
                         "tenant's BI login, by psql", spread(b["bi_report_ms"], "ms", 0)))
            bi = median(b["bi_report_ms"])
            r.target(f"QueryScores team × week over a quarter of {scale}, p95 < 50 ms", f"{p95:.1f} ms", p95 < 50)
            r.target(f"BI report over reporting.daily_scores for a quarter of {scale} < 1 s (median)",
                     f"{bi:.0f} ms", bi < 1000)
            r.target("QueryScores p95 ÷ plain GROUP BY ≤ 0.05", f"{ratio:.4f}", ratio <= 0.05)
    r.table(("figure", "min / median / max"), rows)

    peaks = ([v for b, _ in BACKENDS for v in imp[b]["rss"]] + [sub[b]["rss"] for b, _ in BACKENDS]
             + [x["rss"] for b, _ in BACKENDS for x in fresh[b]["reports"]] + [cached[b]["rss"] for b, _ in BACKENDS]
             + [q[b]["rss"] for b, _ in BACKENDS] + [q[b]["export"]["rss"] for b, _ in BACKENDS]
             + [results["calibration"][b]["rss"] for b, _ in BACKENDS] + [results["overload"]["rss"]])
    peak = max(peaks)
    r.target("server peak RSS under any scenario < 150 MB", f"{peak:.0f} MB", peak < 150)

    lines = r.lines
    r.lines = []
    r.add("## Targets", "",
          "The targets on import, submit and query are ratios to PostgreSQL tools at PostgreSQL scale, so they "
          "are judged on the PostgreSQL deployment; the embedded store's figures are in each section for "
          "comparison. Freshness, the cached read and memory are judged on both.", "")
    r.table(("target", "measured", "verdict", ""), r.targets)
    head_end = lines.index("## Bulk import")
    missed = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_missed.md")
    tail = []
    if any(verdict == "missed" for _, _, verdict, _ in r.targets) and os.path.exists(missed):
        with open(missed) as notes:
            tail = ["", notes.read().strip(), ""]
    with open(path, "w") as out:
        out.write("\n".join(lines[:head_end] + r.lines + lines[head_end:] + tail) + "\n")
    print(f"wrote {path}")
    for name, measured, verdict, _ in r.targets:
        print(f"  {verdict:6} {name}: {measured}")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iqs", required=True)
    parser.add_argument("--psql", required=True)
    parser.add_argument("--pgbench", required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--redis-url")
    parser.add_argument("--quick", action="store_true", help="fewer rows and shorter loads, for a run under 3 minutes")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--query-evaluations", type=int, default=0,
                        help="evaluations generated for the PostgreSQL query and export figures (default 10M; 100k quick)")
    parser.add_argument("--output", default="BENCHMARKS.md")
    args = parser.parse_args()
    started = time.perf_counter()
    bench = Bench(args)
    args.seconds = bench.seconds
    rows = 10_000 if args.quick else 50_000
    results = {"import": {}, "submit": {}, "freshness": {}, "cached_read": {}, "calibration": {}, "query": {},
               "overload": {}, "sampling": {}}
    results["submit"]["pgbench"] = bench.pgbench_baselines(args.reps, 16)
    for backend, _ in BACKENDS:
        results["import"][backend] = bench.import_scenario(backend, rows, args.reps)
        results["submit"][backend] = bench.submit_scenario(backend, args.reps)
        results["freshness"][backend] = bench.freshness_scenario(backend, 100 if args.quick else 1_000, args.reps)
        results["cached_read"][backend] = bench.cached_read_scenario(backend, args.reps)
        results["calibration"][backend] = bench.calibration_scenario(backend, args.reps)
    results["freshness_under_load"] = bench.freshness_under_load_scenario(100 if args.quick else 1_000, args.reps)
    results["outbox_soak"] = bench.outbox_soak_scenario(50_000 if args.quick else 1_000_000)
    results["overload"] = bench.overload_scenario(1 if args.quick else args.reps)
    results["autoqa"] = bench.autoqa_scenario(args.reps)
    results["autoqa_live"] = bench.autoqa_live_scenario(args.reps)
    results["webhooks"] = bench.webhooks_scenario(args.reps)
    results["sampling"] = bench.sampling_scenario(100_000 if args.quick else 1_000_000, args.reps)
    results["query"]["embedded"] = bench.embedded_query_scenario(2_000 if args.quick else 20_000, args.reps)
    results["query"]["postgres"] = bench.postgres_query_scenario(
        args.query_evaluations or (100_000 if args.quick else 10_000_000), args.reps)
    write_report(args.output, results, args, time.perf_counter() - started)


if __name__ == "__main__":
    main()
