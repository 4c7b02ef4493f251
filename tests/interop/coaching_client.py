"""Checks GetCoachingImpact against an independent reference: Welch's t-test of `scipy`.

Random histories of an agent's MANUAL evaluations, dated before and after a coaching
session, are imported through the real server with a grpcio-tools client; the impact's
t statistic, degrees of freedom and p-value must equal
`scipy.stats.ttest_ind(after, before, equal_var=False)` on the scores the server stored.
Exits non-zero on any difference.
"""
import random
import sys
import time
import uuid

from google.protobuf.timestamp_pb2 import Timestamp
from iqs.analytics.v1 import analytics_pb2 as apb
from iqs.analytics.v1 import analytics_pb2_grpc as apb_grpc
from iqs.evaluation.v1 import evaluation_pb2 as epb
from iqs.evaluation.v1 import evaluation_pb2_grpc as epb_grpc
from iqs.rubric.v1 import rubric_pb2 as rpb
from iqs.rubric.v1 import rubric_pb2_grpc as rpb_grpc
from scipy import stats

from rubric_client import criterion, with_server

TOLERANCE = 1e-9
DAY = 86_400
SESSIONS = 10


def at(seconds):
    stamp = Timestamp()
    stamp.FromSeconds(int(seconds))
    return stamp


def check_coaching(_address, channel):
    rubrics = rpb_grpc.RubricServiceStub(channel)
    evaluations = epb_grpc.EvaluationServiceStub(channel)
    coaching = epb_grpc.CoachingServiceStub(channel)
    analytics = apb_grpc.AnalyticsServiceStub(channel)
    rubric = rubrics.CreateRubric(rpb.CreateRubricRequest(rubric=rpb.Rubric(
        display_name="Coaching interop", draft=rpb.RubricDraft(criteria=[
            criterion("greeting", 1, 0, 4), criterion("resolution", 3, 1, 5)]))))
    rubrics.PublishRubric(rpb.PublishRubricRequest(id=rubric.id))
    rng = random.Random(20261202)
    now = time.time()
    checked = 0
    for number in range(SESSIONS):
        agent = f"coached-agent-{number}-{uuid.uuid4().hex[:8]}"
        session_time = now - 30 * DAY
        before_n, after_n = rng.randint(2, 15), rng.randint(2, 15)
        lift = rng.choice([0, 1, 2])
        rows = []
        for side, count in (("before", before_n), ("after", after_n)):
            for index in range(count):
                offset = rng.uniform(0.01, 27.9) * DAY
                when = session_time - offset if side == "before" else session_time + offset
                bonus = lift if side == "after" else 0
                rows.append(epb.SubmitEvaluationRequest(
                    request_id=str(uuid.uuid4()),
                    interaction=epb.Interaction(
                        source="interop", external_id=f"coach-{number}-{side}-{index}-{uuid.uuid4()}",
                        channel="chat", agent_id=agent, team_id="t1", region="emea"),
                    rubric_id=rubric.id, reviewer_id="qa-1", kind=epb.EVALUATION_KIND_MANUAL,
                    ratings=[
                        epb.Rating(criterion_key="greeting", value=min(4, rng.randint(0, 4) + bonus)),
                        epb.Rating(criterion_key="resolution", value=min(5, rng.randint(1, 5) + bonus)),
                    ],
                    create_time=at(when)))
        imported = evaluations.ImportEvaluations(iter(rows))
        assert imported.accepted == len(rows), imported
        session = coaching.CreateCoachingSession(epb.CreateCoachingSessionRequest(
            request_id=str(uuid.uuid4()), session=epb.CoachingSession(
                agent_id=agent, coach_id="lead-1", criterion_keys=["greeting"],
                session_time=at(session_time))))
        impact = analytics.GetCoachingImpact(apb.GetCoachingImpactRequest(session_id=session.id))
        stored = evaluations.ListEvaluations(epb.ListEvaluationsRequest(
            agent_id=agent, kinds=[epb.EVALUATION_KIND_MANUAL], page_size=100))
        before = [e.score for e in stored.evaluations if e.create_time.seconds < session_time]
        after = [e.score for e in stored.evaluations if e.create_time.seconds >= session_time]
        assert impact.before.count == len(before) and impact.after.count == len(after), impact
        if len(set(before)) < 2 and len(set(after)) < 2:
            assert not impact.HasField("p_value"), impact
            continue
        reference = stats.ttest_ind(after, before, equal_var=False)
        for name, actual, expected in [
            ("t", impact.t_statistic, reference.statistic),
            ("df", impact.degrees_of_freedom, reference.df),
            ("p", impact.p_value, reference.pvalue),
        ]:
            assert abs(actual - expected) < TOLERANCE * max(1.0, abs(expected)), \
                f"session {number} {name}: server {actual}, scipy {expected}"
        checked += 1
    assert checked >= SESSIONS // 2, f"only {checked} sessions had a test"
    print(f"interop: Welch's t-test of {checked} coaching sessions equals scipy's within {TOLERANCE}")


if __name__ == "__main__":
    with_server(sys.argv[1], check_coaching)
