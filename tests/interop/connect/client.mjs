// Drives a running `iqs serve` with connect-es, the Connect and gRPC-Web client of
// https://connectrpc.com, over three transports: Connect JSON over HTTP/1.1, Connect
// binary over HTTP/2 without TLS (h2c), and gRPC-Web binary over HTTP/1.1. Each one
// creates and publishes a rubric, submits evaluations keyed by helpdesk ids, reads them
// back, waits for the agent's analytics to count them, exports them as a server stream
// and checks a refused rating's BadRequest and a call without a key; the HTTP/2
// transport also imports evaluations as a client stream.
//
// Env: IQS_URL (http://127.0.0.1:PORT), IQS_API_KEY. The code under gen/ is generated
// from proto/ by protoc-gen-es (buf.gen.yaml). Exits non-zero on any mismatch.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import http from "node:http";
import { setTimeout as sleep } from "node:timers/promises";

import { timestampDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcWebTransport,
  Http2SessionManager,
} from "@connectrpc/connect-node";

import { AnalyticsService } from "./gen/iqs/analytics/v1/analytics_pb.js";
import {
  EvaluationKind,
  EvaluationService,
  EvaluationState,
} from "./gen/iqs/evaluation/v1/evaluation_pb.js";
import { RubricService, RubricState } from "./gen/iqs/rubric/v1/rubric_pb.js";
import { BadRequestSchema } from "./gen/google/rpc/error_details_pb.js";

const baseUrl = process.env.IQS_URL;
const apiKey = process.env.IQS_API_KEY;
assert.ok(baseUrl && apiKey, "set IQS_URL and IQS_API_KEY");

// Helpdesk ids are opaque: returned byte for byte, whatever they hold.
const SOURCE = "Zendesk";
const AGENT = "jane+qa@acme.com";
const TEAM = "Tier 2 · Zürich";
const REVIEWER = "qa-lead@acme.com";

const withKey = (next) => async (req) => {
  req.header.set("authorization", `Bearer ${apiKey}`);
  return next(req);
};

/** Counts the HTTP/1.1 connections a transport opens, to show it used node:http. */
class CountingAgent extends http.Agent {
  constructor() {
    super({ keepAlive: true });
    this.connections = 0;
  }
  createConnection(...args) {
    this.connections += 1;
    return super.createConnection(...args);
  }
}

function transports() {
  const jsonAgent = new CountingAgent();
  const webAgent = new CountingAgent();
  const h2 = new Http2SessionManager(baseUrl);
  const common = { baseUrl, defaultTimeoutMs: 15_000 };
  return [
    {
      name: "connect-json-http1.1",
      contentType: "application/json",
      make: (interceptors) =>
        createConnectTransport({
          ...common,
          httpVersion: "1.1",
          useBinaryFormat: false,
          nodeOptions: { agent: jsonAgent },
          interceptors,
        }),
      used: () => assert.ok(jsonAgent.connections > 0, "no HTTP/1.1 connection was opened"),
      close: () => jsonAgent.destroy(),
    },
    {
      name: "connect-proto-h2c",
      contentType: "application/proto",
      streamsUpload: true,
      make: (interceptors) =>
        createConnectTransport({
          ...common,
          httpVersion: "2",
          useBinaryFormat: true,
          sessionManager: h2,
          interceptors,
        }),
      used: () =>
        assert.ok(["open", "idle"].includes(h2.state()), `HTTP/2 session is ${h2.state()}`),
      close: () => h2.abort(),
    },
    {
      name: "grpc-web-proto-http1.1",
      contentType: "application/grpc-web+proto",
      make: (interceptors) =>
        createGrpcWebTransport({
          ...common,
          httpVersion: "1.1",
          useBinaryFormat: true,
          nodeOptions: { agent: webAgent },
          interceptors,
        }),
      used: () => assert.ok(webAgent.connections > 0, "no HTTP/1.1 connection was opened"),
      close: () => webAgent.destroy(),
    },
  ];
}

/** Some independent checks failed: their messages say all there is to say. */
class Checks extends Error {}

async function failure(promise) {
  try {
    await promise;
  } catch (err) {
    return ConnectError.from(err);
  }
  assert.fail("the call succeeded");
}

/** Unary answers' Content-Type, to show which protocol answered. */
function recordingContentTypes(seen) {
  return (next) => async (req) => {
    const res = await next(req);
    if (!req.stream) seen.add(res.header.get("content-type"));
    return res;
  };
}

async function exercise(t) {
  const passed = [];
  const contentTypes = new Set();
  const transport = t.make([withKey, recordingContentTypes(contentTypes)]);
  const rubrics = createClient(RubricService, transport);
  const evaluations = createClient(EvaluationService, transport);
  const analytics = createClient(AnalyticsService, transport);

  // The checks below depend on each other, so the first failure ends them; the
  // independent ones (an error each) are run whatever happened, and all failures are
  // reported.
  const failures = [];
  const independently = async (name, check) => {
    try {
      passed.push(await check());
    } catch (err) {
      failures.push(`${name}: ${err.message ?? err}`);
    }
  };

  // No key: refused before any handler reads the body. connect-node sends the headers,
  // then the body: over HTTP/1.1 the refusal must still reach the client, whether or not
  // the server had read the body when it answered. That is a race, so it is run 10 times.
  await independently("no key", async () => {
    const anonymous = createClient(RubricService, t.make([]));
    for (let attempt = 1; attempt <= 10; attempt++) {
      const denied = await failure(anonymous.listRubrics({}));
      assert.equal(
        denied.code,
        Code.Unauthenticated,
        `attempt ${attempt}: ${Code[denied.code]}: ${denied.message}`,
      );
    }
    return "no key=Unauthenticated (x10)";
  });

  // A rubric: greeting 0..1 (weight 1), resolution 1..5 (weight 3).
  const created = await rubrics.createRubric({
    requestId: randomUUID(),
    rubric: {
      displayName: `Connect interop ${t.name}`,
      draft: {
        criteria: [
          { key: "greeting", displayName: "Greeting", weight: 1, scaleMin: 0, scaleMax: 1 },
          {
            key: "resolution",
            displayName: "Résolution",
            weight: 3,
            scaleMin: 1,
            scaleMax: 5,
            levelLabels: ["none", "poor", "fair", "good", "great"],
          },
        ],
      },
    },
  });
  assert.equal(created.state, RubricState.ACTIVE);
  assert.equal(created.latestVersion, 0);
  assert.equal(created.draft.criteria[1].displayName, "Résolution");
  const version = await rubrics.publishRubric({ id: created.id });
  assert.equal(version.rubricId, created.id);
  assert.equal(version.version, 1);
  assert.equal(version.passThreshold, 80);
  assert.deepEqual(version.criteria[1].levelLabels, ["none", "poor", "fair", "good", "great"]);
  assert.ok(timestampDate(version.publishTime) <= new Date());
  passed.push("rubric created+published");

  const submission = (externalId, greeting, resolution) => ({
    requestId: randomUUID(),
    interactionRef: {
      case: "interaction",
      value: { source: SOURCE, externalId, channel: "email", agentId: AGENT, teamId: TEAM, region: "emea" },
    },
    rubricId: created.id,
    reviewerId: REVIEWER,
    kind: EvaluationKind.MANUAL,
    ratings: [
      { criterionKey: "greeting", value: greeting },
      { criterionKey: "resolution", value: resolution, comment: "fixed on first contact" },
    ],
  });

  // Two reviews: 100 (passes) and (0 + 3·50) / 4 = 37.5 (fails the default 80).
  const submitted = [];
  for (const [externalId, greeting, resolution, score, pass] of [
    [`#1042-${t.name}`, 1, 5, 100, true],
    [`#1043-${t.name}`, 0, 3, 37.5, false],
  ]) {
    const evaluation = await evaluations.submitEvaluation(submission(externalId, greeting, resolution));
    assert.equal(evaluation.revision, 1);
    assert.equal(evaluation.agentId, AGENT);
    assert.equal(evaluation.score, score);
    assert.equal(evaluation.passed, pass);
    submitted.push({ id: evaluation.id, interactionId: evaluation.interactionId, externalId, score, pass });
  }
  passed.push("2 evaluations submitted");

  for (const want of submitted) {
    const got = await evaluations.getEvaluation({ id: want.id });
    assert.equal(got.id, want.id);
    assert.equal(got.revision, 1);
    assert.equal(got.state, EvaluationState.ACTIVE);
    assert.equal(got.kind, EvaluationKind.MANUAL);
    assert.equal(got.agentId, AGENT);
    assert.equal(got.teamId, TEAM);
    assert.equal(got.reviewerId, REVIEWER);
    assert.equal(got.rubricId, created.id);
    assert.equal(got.rubricVersion, 1);
    assert.equal(got.score, want.score);
    assert.equal(got.passed, want.pass);
    assert.equal(got.ratings.length, 2);
    assert.equal(got.ratings[1].comment, "fixed on first contact");
    assert.deepEqual(
      got.criterionScores.map((c) => c.criterionKey).sort(),
      ["greeting", "resolution"],
    );
    const interaction = await evaluations.getInteraction({ id: got.interactionId });
    assert.equal(interaction.source, SOURCE);
    assert.equal(interaction.externalId, want.externalId);
    assert.equal(interaction.agentId, AGENT);
    assert.equal(interaction.teamId, TEAM);
  }
  passed.push("read back (ids byte-exact)");

  const scores = submitted.map((s) => s.score);
  if (t.streamsUpload) {
    // Client streaming: two good rows around a bad one, which is rejected alone.
    async function* rows() {
      yield submission(`#1044-${t.name}`, 1, 4); // (100 + 3·75) / 4 = 81.25
      await sleep(20); // the rows go out as a stream, not one buffered body
      yield submission(`#1045-${t.name}`, 1, 0); // 0 is below the scale
      yield submission(`#1046-${t.name}`, 0, 1); // 0
    }
    const imported = await evaluations.importEvaluations(rows());
    assert.equal(imported.accepted, 2n);
    assert.equal(imported.duplicates, 0n);
    assert.equal(imported.rejectedCount, 1n);
    assert.equal(imported.rejected.length, 1);
    assert.equal(imported.rejected[0].index, 1n);
    assert.match(imported.rejected[0].reason, /ratings\[1\]\.value/);
    scores.push(81.25, 0);
    passed.push("import stream 2 accepted/1 rejected");
  }

  // Analytics counts them once the projection has caught up.
  const expectedIqs = scores.reduce((a, b) => a + b, 0) / scores.length;
  const deadline = Date.now() + 10_000;
  let summary;
  for (;;) {
    summary = await analytics.getAgentScore({ agentId: AGENT, rubricId: created.id });
    if (summary.evaluationCount === BigInt(scores.length) || Date.now() > deadline) break;
    await sleep(100);
  }
  assert.equal(summary.evaluationCount, BigInt(scores.length), "GetAgentScore never counted them");
  assert.equal(summary.scoredCount, BigInt(scores.length));
  assert.ok(Math.abs(summary.iqs - expectedIqs) < 1e-9, `iqs ${summary.iqs} != ${expectedIqs}`);
  assert.ok(
    Math.abs(summary.passRate - scores.filter((s) => s >= 80).length / scores.length) < 1e-9,
    `passRate ${summary.passRate}`,
  );
  passed.push(`agent score counted ${scores.length} (iqs ${expectedIqs})`);

  // Server streaming: every row of the agent on this rubric, then resumed by cursor.
  const filter = { agentIds: [AGENT], rubricId: created.id };
  const rows = [];
  for await (const row of analytics.exportEvaluations({ filter })) rows.push(row);
  assert.equal(rows.length, scores.length);
  assert.deepEqual(
    rows.map((r) => r.score).sort((a, b) => a - b),
    [...scores].sort((a, b) => a - b),
  );
  for (const row of rows) {
    assert.equal(row.agentId, AGENT);
    assert.equal(row.teamId, TEAM);
    assert.equal(row.reviewerId, REVIEWER);
    assert.equal(row.rubricId, created.id);
    assert.equal(row.rubricVersion, 1);
    assert.equal(row.state, EvaluationState.ACTIVE);
    assert.equal(row.passed, row.score >= 80);
    assert.equal(row.criterionScores.length, 2);
    assert.ok(row.cursor.length > 0, "a row without a cursor");
  }
  const exportedIds = new Set(rows.map((r) => r.evaluationId));
  for (const s of submitted) assert.ok(exportedIds.has(s.id), `${s.id} was not exported`);
  const rest = [];
  for await (const row of analytics.exportEvaluations({ filter, cursor: rows[0].cursor })) rest.push(row);
  assert.deepEqual(
    rest.map((r) => r.evaluationId),
    rows.slice(1).map((r) => r.evaluationId),
  );
  passed.push(`export stream ${rows.length} rows (+resume)`);

  // A rating outside its scale: InvalidArgument with a google.rpc.BadRequest naming it.
  await independently("bad rating", async () => {
    const refused = await failure(
      evaluations.submitEvaluation(submission(`#1047-${t.name}`, 1, 9)),
    );
    assert.equal(refused.code, Code.InvalidArgument, `${Code[refused.code]}: ${refused.message}`);
    assert.ok(refused.details.length > 0, "no error details");
    assert.equal(refused.details[0].type, "google.rpc.BadRequest");
    const [badRequest] = refused.findDetails(BadRequestSchema);
    assert.ok(badRequest, "the detail does not decode as google.rpc.BadRequest");
    assert.deepEqual(badRequest.fieldViolations.map((v) => v.field), ["ratings[1].value"]);
    assert.ok(badRequest.fieldViolations[0].description.length > 0);
    return "bad rating=InvalidArgument+BadRequest(ratings[1].value)";
  });

  // Not found, and the protocol that answered.
  const missing = await failure(rubrics.getRubric({ id: randomUUID() }));
  assert.equal(missing.code, Code.NotFound, missing.message);
  assert.deepEqual([...contentTypes], [t.contentType]);
  t.used();
  passed.push(`unknown id=NotFound; answered as ${t.contentType}`);
  if (failures.length > 0) {
    throw new Checks(`passed: ${passed.join(", ")}\nfailed: ${failures.join("\n")}`);
  }
  return passed;
}

let failed = false;
const all = transports();
for (const t of all) {
  try {
    const passed = await exercise(t);
    console.log(`interop connect-es ${t.name}: ok: ${passed.join(", ")}`);
  } catch (err) {
    failed = true;
    console.error(`interop connect-es ${t.name}: FAILED`);
    console.error(err instanceof Checks ? err.message : err);
  }
}
for (const t of all) t.close();
process.exit(failed ? 1 : 0);
