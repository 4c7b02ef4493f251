"""BI over SQL with clients a BI tool would use: psql and the psycopg DB-API driver.

Two tenants get evaluations through the real server; `iqs bi grant` makes a login for
each. Through psycopg each login must see exactly its tenant's evaluations in
`reporting.evaluations` (counted independently with psql as IQS's own user), the
rollups must give the API's IQS, and every attempt to cross the line must be refused:
base tables, the other tenant's rows by name, writes, new tables. psql connects with the
printed URL as a BI tool's connector would. Exits non-zero on any difference.
"""
import os
import subprocess
import sys
import time
import uuid

import grpc
import psycopg
from iqs.analytics.v1 import analytics_pb2 as apb
from iqs.analytics.v1 import analytics_pb2_grpc as apb_grpc
from iqs.evaluation.v1 import evaluation_pb2 as epb
from iqs.evaluation.v1 import evaluation_pb2_grpc as epb_grpc
from iqs.rubric.v1 import rubric_pb2 as rpb
from iqs.rubric.v1 import rubric_pb2_grpc as rpb_grpc

from rubric_client import BearerKey, criterion, start_server

BINARY = sys.argv[1]
ADMIN_URL = os.environ["IQS_DATABASE_URL_FOR_TEST"]
PSQL = os.environ.get("PSQL", "psql")


def iqs(*args):
    env = dict(os.environ, DATABASE_URL=ADMIN_URL)
    env.pop("REDIS_URL", None)
    return subprocess.run([BINARY, *args], env=env, check=True, capture_output=True, text=True).stdout


def psql(url, sql):
    return subprocess.run([PSQL, url, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql],
                          check=True, capture_output=True, text=True).stdout.strip()


def fill(address, key, agent, count):
    channel = grpc.intercept_channel(grpc.insecure_channel(address), BearerKey(key))
    rubrics = rpb_grpc.RubricServiceStub(channel)
    rubric = rubrics.CreateRubric(rpb.CreateRubricRequest(rubric=rpb.Rubric(
        display_name="BI interop", draft=rpb.RubricDraft(criteria=[
            criterion("greeting", 1, 0, 1), criterion("resolution", 2, 1, 5)]))))
    rubrics.PublishRubric(rpb.PublishRubricRequest(id=rubric.id))
    evaluations = epb_grpc.EvaluationServiceStub(channel)
    for index in range(count):
        evaluations.SubmitEvaluation(epb.SubmitEvaluationRequest(
            request_id=str(uuid.uuid4()),
            interaction=epb.Interaction(source="Zendesk", external_id=f"#{index}-{uuid.uuid4().hex[:6]}",
                                        channel="email", agent_id=agent, team_id="tier 2", region="emea"),
            rubric_id=rubric.id, reviewer_id="qa-1", kind=epb.EVALUATION_KIND_MANUAL,
            ratings=[epb.Rating(criterion_key="greeting", value=index % 2),
                     epb.Rating(criterion_key="resolution", value=1 + index % 5)]))
    analytics = apb_grpc.AnalyticsServiceStub(channel)
    deadline = time.time() + 10
    while True:
        summary = analytics.GetAgentScore(apb.GetAgentScoreRequest(agent_id=agent))
        if summary.evaluation_count == count:
            return summary
        assert time.time() < deadline, f"{agent}: {summary.evaluation_count} of {count}"
        time.sleep(0.05)


def refused(connection, sql, sqlstates):
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql)
            cursor.fetchall()
    except psycopg.Error as err:
        assert err.sqlstate in sqlstates, f"{sql}: {err.sqlstate} {err}"
        connection.rollback()
        return
    raise AssertionError(f"{sql} was allowed")


def main():
    tenants = {"bi-north": ("jane+qa@acme.com", 7), "bi-south": ("jane+qa@acme.com", 3)}
    keys = {}
    for name in tenants:
        iqs("tenant", "create", name)
        keys[name] = iqs("key", "create", "--tenant", name, "--role", "admin").strip().splitlines()[-1]
    proc, address = start_server(BINARY)
    try:
        summaries = {name: fill(address, keys[name], agent, count) for name, (agent, count) in tenants.items()}
    finally:
        proc.terminate()
        proc.wait(timeout=60)

    urls = {name: iqs("bi", "grant", "--tenant", name).strip().splitlines()[-1] for name in tenants}
    for name, (agent, count) in tenants.items():
        other = next(n for n in tenants if n != name)
        # Counted independently as IQS's own user, straight from the tables.
        expected = int(psql(ADMIN_URL, f"""
            SELECT count(*) FROM evaluation.evaluations e JOIN access.tenants t USING (tenant_id)
            WHERE t.name = '{name}' AND e.state <> 'superseded'"""))
        assert expected == count, (name, expected)
        assert psql(urls[name], "SELECT count(*) FROM reporting.evaluations") == str(count), name
        with psycopg.connect(urls[name]) as connection:
            with connection.cursor() as cursor:
                cursor.execute("SELECT DISTINCT tenant, agent_id FROM reporting.evaluations")
                assert cursor.fetchall() == [(name, agent)], name
                cursor.execute("SELECT count(*) FROM reporting.evaluations WHERE tenant = %s", (other,))
                assert cursor.fetchone() == (0,), f"{name} sees {other}'s rows"
                cursor.execute("""SELECT sum(score_sum) / sum(scored_count), sum(evaluation_count)
                                  FROM reporting.daily_scores WHERE agent_id = %s AND kind = 'manual'""", (agent,))
                iqs_value, evaluations = cursor.fetchone()
                assert evaluations == count and abs(iqs_value - summaries[name].iqs) < 1e-9, (iqs_value, summaries[name])
                cursor.execute("SELECT count(*) FROM reporting.criterion_scores")
                assert cursor.fetchone() == (2 * count,)
            connection.rollback()
            for sql in ("SELECT * FROM evaluation.evaluations", "SELECT * FROM analytics.daily_scores",
                        "SELECT * FROM access.bi_logins", "SELECT * FROM access.api_keys"):
                refused(connection, sql, {"42501"})
            for sql in ("UPDATE reporting.daily_scores SET score_sum = 0", "DELETE FROM reporting.daily_scores",
                        "CREATE TABLE reporting.mine (x int)", "CREATE TABLE public.mine (x int)"):
                refused(connection, sql, {"42501", "25006"})
        print(f"interop: psql and psycopg as {name}'s BI login saw its {count} evaluations, the API's IQS, "
              f"none of {other}'s rows, and were refused base tables and writes")
    for name in tenants:
        iqs("bi", "revoke", "--tenant", name)
        try:
            psycopg.connect(urls[name]).close()
            raise AssertionError(f"{name}'s revoked login still connects")
        except psycopg.OperationalError:
            pass


if __name__ == "__main__":
    main()
