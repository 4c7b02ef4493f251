"""Checks webhook deliveries with an independent reference: the `standardwebhooks` package.

A receiver (Python's http.server) subscribes through the real server's WebhookService;
an evaluation is submitted and revised through a grpcio-tools client, and each delivery
must verify with `standardwebhooks.Webhook(secret).verify(body, headers)`, carry the
evaluation in its `data`, and keep its `webhook-id` in the body's `id`. The same
deliveries must fail verification under a wrong secret, with a body changed by one byte,
and when replayed after the library's five-minute tolerance. Exits non-zero otherwise.
The server runs with IQS_WEBHOOK_ALLOW_PRIVATE_TARGETS=true (a receiver on loopback).
"""
import base64
import datetime as dt
import http.server
import os
import sys
import threading
import time
import uuid

import standardwebhooks.webhooks as swh
from iqs.evaluation.v1 import evaluation_pb2 as epb
from iqs.evaluation.v1 import evaluation_pb2_grpc as epb_grpc
from iqs.integration.v1 import webhook_pb2 as wpb
from iqs.integration.v1 import webhook_pb2_grpc as wpb_grpc
from iqs.rubric.v1 import rubric_pb2 as rpb
from iqs.rubric.v1 import rubric_pb2_grpc as rpb_grpc

from rubric_client import criterion, with_server

RECEIVED = []


class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        RECEIVED.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_args):
        pass


def must_fail(verify, why):
    try:
        verify()
    except swh.WebhookVerificationError:
        return
    raise AssertionError(f"verified although {why}")


def check_webhooks(_address, channel):
    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    webhooks = wpb_grpc.WebhookServiceStub(channel)
    created = webhooks.CreateWebhook(wpb.CreateWebhookRequest(
        request_id=str(uuid.uuid4()),
        webhook=wpb.Webhook(
            url=f"http://127.0.0.1:{receiver.server_port}/iqs",
            event_types=["evaluation.created", "evaluation.revised"],
            description="interop receiver")))
    assert created.secret.startswith("whsec_"), created

    rubrics = rpb_grpc.RubricServiceStub(channel)
    rubric = rubrics.CreateRubric(rpb.CreateRubricRequest(rubric=rpb.Rubric(
        display_name="Webhook interop", draft=rpb.RubricDraft(criteria=[criterion("greeting", 1, 0, 1)]))))
    rubrics.PublishRubric(rpb.PublishRubricRequest(id=rubric.id))
    evaluations = epb_grpc.EvaluationServiceStub(channel)
    submitted = evaluations.SubmitEvaluation(epb.SubmitEvaluationRequest(
        request_id=str(uuid.uuid4()),
        interaction=epb.Interaction(source="interop", external_id=f"hook-{uuid.uuid4()}",
                                    channel="chat", agent_id="agent-hook", team_id="t1", region="emea"),
        rubric_id=rubric.id, reviewer_id="qa-1", kind=epb.EVALUATION_KIND_MANUAL,
        ratings=[epb.Rating(criterion_key="greeting", value=1)]))
    evaluations.ReviseEvaluation(epb.ReviseEvaluationRequest(
        id=submitted.id, request_id=str(uuid.uuid4()), reason="interop",
        ratings=[epb.Rating(criterion_key="greeting", value=0)]))

    deadline = time.time() + 30
    while len(RECEIVED) < 2 and time.time() < deadline:
        time.sleep(0.05)
    assert len(RECEIVED) == 2, f"{len(RECEIVED)} deliveries arrived"
    verifier = swh.Webhook(created.secret)
    wrong = swh.Webhook("whsec_" + base64.b64encode(os.urandom(32)).decode())
    for (headers, body), (event_type, revision) in zip(
            RECEIVED, [("evaluation.created", 1), ("evaluation.revised", 2)]):
        payload = verifier.verify(body, headers)
        assert payload["type"] == event_type, payload
        assert payload["id"] == headers["webhook-id"], payload
        assert payload["data"]["id"] == submitted.id and payload["data"]["revision"] == revision, payload
        must_fail(lambda: wrong.verify(body, headers), "the secret was wrong")
        must_fail(lambda: verifier.verify(body.replace(b'"revision"', b'"Revision"'), headers),
                  "the body was changed")
    # A delivery replayed later than the library's tolerance (five minutes) is refused.
    real_datetime = swh.datetime

    class Later(real_datetime):
        @classmethod
        def now(cls, tz=None):
            return real_datetime.now(tz) + dt.timedelta(minutes=6)

    swh.datetime = Later
    try:
        headers, body = RECEIVED[0]
        must_fail(lambda: verifier.verify(body, headers), "it was replayed six minutes later")
    finally:
        swh.datetime = real_datetime
    deliveries = webhooks.ListWebhookDeliveries(wpb.ListWebhookDeliveriesRequest(webhook_id=created.id))
    assert all(d.state == wpb.WEBHOOK_DELIVERY_STATE_DELIVERED for d in deliveries.deliveries), deliveries
    receiver.shutdown()
    print("interop: 2 webhook deliveries verify with standardwebhooks; a wrong secret, "
          "a changed body and a replay after 6 minutes do not")


if __name__ == "__main__":
    with_server(sys.argv[1], check_webhooks)
