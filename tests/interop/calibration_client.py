"""Checks GetCalibrationReport against an independent reference: the `krippendorff`
package from PyPI.

Random sessions (reviewers skipping interactions, N/A ratings) are scored through the
real server with a grpcio-tools client; every alpha of the report must equal the
package's on the same reliability data, and exact agreement a direct count. Exits
non-zero on any difference.
"""
import itertools
import random
import sys
import uuid

import grpc
import krippendorff
import numpy as np
from iqs.analytics.v1 import analytics_pb2 as apb
from iqs.analytics.v1 import analytics_pb2_grpc as apb_grpc
from iqs.evaluation.v1 import evaluation_pb2 as epb
from iqs.evaluation.v1 import evaluation_pb2_grpc as epb_grpc
from iqs.rubric.v1 import rubric_pb2 as rpb
from iqs.rubric.v1 import rubric_pb2_grpc as rpb_grpc

from rubric_client import criterion, with_server

TOLERANCE = 1e-9
CRITERIA = [("accuracy", 0, 4, True), ("tone", 1, 5, False), ("verified", 0, 1, False)]
SESSIONS = 8


def reference_alpha(matrix, level):
    """The package's alpha, or None where the report leaves it out (no variation or too
    few pairable values)."""
    data = np.array(matrix, dtype=float)
    pairable = [column[~np.isnan(column)] for column in data.T]
    pairable = [values for values in pairable if len(values) >= 2]
    if sum(len(v) for v in pairable) < 2 or len({x for v in pairable for x in v}) < 2:
        return None
    return krippendorff.alpha(reliability_data=data, level_of_measurement=level)


def exact_agreement(matrix):
    agreeing = total = 0
    for column in np.array(matrix, dtype=float).T:
        values = [v for v in column if not np.isnan(v)]
        for a, b in itertools.combinations(values, 2):
            total += 1
            agreeing += a == b
    return agreeing / total if total else None


def same(report_value, has_value, expected, what):
    actual = report_value if has_value else None
    if expected is None or actual is None:
        assert expected is None and actual is None, f"{what}: report {actual}, reference {expected}"
    else:
        assert abs(actual - expected) < TOLERANCE, f"{what}: report {actual}, reference {expected}"


def check_calibration(_address, channel):
    rubrics = rpb_grpc.RubricServiceStub(channel)
    evaluations = epb_grpc.EvaluationServiceStub(channel)
    calibrations = epb_grpc.CalibrationServiceStub(channel)
    analytics = apb_grpc.AnalyticsServiceStub(channel)
    rubric = rubrics.CreateRubric(rpb.CreateRubricRequest(rubric=rpb.Rubric(
        display_name="Calibration interop", draft=rpb.RubricDraft(criteria=[
            criterion(key, 1, low, high, allow_not_applicable=na) for key, low, high, na in CRITERIA]))))
    rubrics.PublishRubric(rpb.PublishRubricRequest(id=rubric.id))
    rng = random.Random(20261130)
    checked = 0
    for number in range(SESSIONS):
        units = rng.randint(3, 25)
        coders = [f"rev-{c}" for c in range(rng.randint(2, 6))]
        skip = rng.choice([0.0, 0.2, 0.4])
        interactions = [
            evaluations.UpsertInteraction(epb.UpsertInteractionRequest(interaction=epb.Interaction(
                source="interop", external_id=f"cal-{number}-{u}-{uuid.uuid4()}", channel="chat",
                agent_id="agent-1", team_id="t1", region="emea"))).id
            for u in range(units)]
        session = calibrations.CreateCalibrationSession(epb.CreateCalibrationSessionRequest(
            session=epb.CalibrationSession(display_name=f"interop {number}", rubric_id=rubric.id,
                                           interaction_ids=interactions, reviewer_ids=coders)))
        matrices = {key: [[np.nan] * units for _ in coders] for key, *_ in CRITERIA}
        scores = [[np.nan] * units for _ in coders]
        for (c, coder), (u, interaction) in itertools.product(enumerate(coders), enumerate(interactions)):
            if rng.random() < skip:
                continue
            ratings = []
            for key, low, high, na in CRITERIA:
                if na and rng.random() < 0.15:
                    ratings.append(epb.Rating(criterion_key=key, not_applicable=True))
                else:
                    value = rng.randint(low, high)
                    matrices[key][c][u] = value
                    ratings.append(epb.Rating(criterion_key=key, value=value))
            stored = evaluations.SubmitEvaluation(epb.SubmitEvaluationRequest(
                request_id=str(uuid.uuid4()), interaction_id=interaction, rubric_id=rubric.id,
                reviewer_id=coder, kind=epb.EVALUATION_KIND_CALIBRATION, ratings=ratings,
                calibration_session_id=session.id))
            scores[c][u] = stored.score
        report = analytics.GetCalibrationReport(apb.GetCalibrationReportRequest(session_id=session.id))
        by_key = {c.criterion_key: c for c in report.criteria}
        for key, *_ in CRITERIA:
            if all(np.isnan(v) for row in matrices[key] for v in row):
                continue
            agreement = by_key[key]
            for level, field in [("nominal", "alpha_nominal"), ("ordinal", "alpha_ordinal"),
                                 ("interval", "alpha_interval")]:
                same(getattr(agreement, field), agreement.HasField(field),
                     reference_alpha(matrices[key], level), f"session {number} {key} {level}")
                checked += 1
            same(agreement.exact_agreement, agreement.HasField("exact_agreement"),
                 exact_agreement(matrices[key]), f"session {number} {key} exact agreement")
        same(report.score_alpha_interval, report.HasField("score_alpha_interval"),
             reference_alpha(scores, "interval"), f"session {number} score alpha")
        checked += 1
    print(f"interop: {checked} calibration alphas of {SESSIONS} random sessions equal the "
          f"krippendorff package's within {TOLERANCE}")


if __name__ == "__main__":
    with_server(sys.argv[1], check_calibration)
