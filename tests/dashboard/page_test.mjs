// Loads the dashboard of a running `iqs serve` (IQS_URL) in headless Chromium
// (IQS_CHROMIUM), pastes the key (IQS_API_KEY), waits for the charts, saves a
// screenshot (IQS_SCREENSHOT) and checks every figure the page shows against the same
// request sent to the API by this script.
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { chromium } from "playwright-core";

const url = process.env.IQS_URL;
const key = process.env.IQS_API_KEY;
const screenshot = process.env.IQS_SCREENSHOT;
assert.ok(url && key && screenshot && process.env.IQS_CHROMIUM, "IQS_URL, IQS_API_KEY, IQS_SCREENSHOT and IQS_CHROMIUM are needed");

// How the page formats figures (src/dashboard/assets/dashboard.js), written again here.
const one = (x) => (x === undefined || x === null ? "–" : Number(x).toFixed(1));
const two = (x) => (x === undefined || x === null ? "–" : Number(x).toFixed(2));
const between = (low, high) => (low === undefined && high === undefined ? "–" : `${two(low)} to ${two(high)}`);
const percent = (x) => (x === undefined || x === null ? "–" : `${(Number(x) * 100).toFixed(0)}%`);

async function api(service, method, request) {
  const response = await fetch(`${url}/${service}/${method}`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
    body: JSON.stringify(request),
  });
  const body = await response.json();
  assert.ok(response.ok, `${method}: ${JSON.stringify(body)}`);
  return body;
}
const analytics = (method, request) => api("iqs.analytics.v1.AnalyticsService", method, request);

const browser = await chromium.launch({ executablePath: process.env.IQS_CHROMIUM, args: ["--no-sandbox"] });
let checked = 0;
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const problems = [];
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  // The refused calls of the wrong key below are logged by Chromium itself; nothing else may be.
  page.on("console", (message) => {
    if (message.type() === "error" && !/status of 401/.test(message.text())) problems.push(`console: ${message.text()}`);
  });

  await page.goto(url + "/");
  assert.equal(await page.getAttribute("body", "data-state"), "waiting-for-key");
  // A wrong key is refused with the API's message and asks again.
  await page.fill("#key", "iqs_not_a_key");
  await page.click("#key-form button[type=submit]");
  await page.waitForSelector("body[data-state=error]");
  assert.match(await page.textContent("#status"), /unauthenticated/);

  await page.fill("#key", key);
  await page.click("#key-form button[type=submit]");
  await page.waitForSelector("body[data-state=ready]", { timeout: 60_000 });
  assert.equal(await page.inputValue("#key"), "", "the key does not stay in the form");
  mkdirSync(dirname(screenshot), { recursive: true });
  await page.screenshot({ path: screenshot, fullPage: true });

  const request = async (section) => JSON.parse(await page.getAttribute(`#${section}`, "data-request"));
  const cells = (selector) =>
    page.$$eval(selector, (rows) => rows.map((row) => [...row.querySelectorAll("td")].map((td) => td.textContent)));

  // Trend: one row per team, one column per month, and a point per figure.
  {
    const { rows } = await analytics("QueryScores", await request("trend"));
    const months = [...new Set(rows.map((r) => r.bucketStart.slice(0, 7)))].sort();
    const teams = [...new Set(rows.map((r) => r.dimensions.team))].sort();
    assert.ok(teams.length >= 2 && months.length >= 4, `${teams.length} teams over ${months.length} months`);
    const iqs = new Map(rows.map((r) => [`${r.dimensions.team}|${r.bucketStart.slice(0, 7)}`, r.iqs]));
    const expected = teams.map((team) => [team, ...months.map((m) => one(iqs.get(`${team}|${m}`)))]);
    assert.deepEqual(await cells("#trend tbody tr"), expected, "trend table");
    const points = await page.$$eval("#trend circle", (dots) => dots.map((d) => [d.dataset.team, d.dataset.month, d.dataset.iqs]));
    assert.deepEqual(
      points.sort(),
      rows.filter((r) => r.iqs !== undefined).map((r) => [r.dimensions.team, r.bucketStart.slice(0, 7), one(r.iqs)]).sort(),
      "trend points",
    );
    checked += expected.flat().length + points.length;
  }

  // Leaderboard: best IQS first, with pass rate and count.
  {
    const { rows } = await analytics("QueryScores", await request("leaderboard"));
    const expected = rows
      .filter((r) => r.iqs !== undefined)
      .sort((a, b) => b.iqs - a.iqs || a.dimensions.agent.localeCompare(b.dimensions.agent))
      .map((r, i) => [String(i + 1), r.dimensions.agent, one(r.iqs), percent(r.passRate), String(r.evaluationCount)]);
    assert.ok(expected.length >= 10, `${expected.length} agents`);
    assert.deepEqual(await cells("#leaderboard tbody tr"), expected, "leaderboard");
    checked += expected.flat().length;
  }

  // Weakest criteria and root causes.
  {
    const answer = await analytics("GetCriterionBreakdown", await request("criteria"));
    const expected = answer.criteria.filter((c) => c.averageScore !== undefined).slice(0, 8).map((c) => [c.criterionKey, one(c.averageScore)]);
    assert.ok(expected.length >= 3);
    const bars = await page.$$eval("#criteria rect", (rects) => rects.map((r) => [r.dataset.criterion, r.dataset.score]));
    assert.deepEqual(bars, expected, "weakest criteria");
    const causes = await page.$$eval("#criteria .root-causes li", (items) => items.map((li) => li.textContent));
    assert.deepEqual(causes, (answer.rootCauses || []).map((c) => `${c.criterionKey}: ${c.rootCause} (${c.count})`), "root causes");
    assert.ok(causes.length > 0, "the demo data has root causes");
    checked += bars.length * 2 + causes.length;
  }

  // IQS against CSAT.
  {
    const answer = await analytics("GetCsatCorrelation", await request("csat"));
    assert.equal(
      await page.textContent("#csat .stats"),
      `Pearson r ${two(answer.pearsonR)} · Spearman ρ ${two(answer.spearmanRho)} · ${answer.pairs} agents`,
    );
    const dots = await page.$$eval("#csat circle", (circles) => circles.map((c) => [c.dataset.agent, c.dataset.iqs, c.dataset.csat]));
    assert.deepEqual(dots.sort(), answer.points.map((p) => [p.groupId, one(p.iqs), two(p.avgCsat)]).sort(), "scatter");
    checked += dots.length * 3 + 3;
  }

  // Calibration: the latest closed session's report.
  {
    const { sessions } = await api("iqs.evaluation.v1.CalibrationService", "ListCalibrationSessions",
      { pageSize: 1, state: "CALIBRATION_SESSION_STATE_CLOSED" });
    assert.equal(sessions.length, 1, "the demo data has a closed calibration session");
    const pageRequest = await request("calibration");
    assert.deepEqual(pageRequest, { sessionId: sessions[0].id });
    const report = await analytics("GetCalibrationReport", pageRequest);
    assert.equal(
      await page.textContent("#calibration .summary"),
      `${sessions[0].displayName}: ${report.reviewerCount} reviewers, ${report.unitCount} interactions, ` +
        `score α ${two(report.scoreAlphaInterval)} (95% ${between(report.scoreAlphaIntervalLow, report.scoreAlphaIntervalHigh)})`,
    );
    const expected = report.criteria.map((c) => [c.criterionKey, two(c.alphaInterval), between(c.alphaIntervalLow, c.alphaIntervalHigh), percent(c.exactAgreement)]);
    assert.deepEqual(await cells("#calibration tbody tr"), expected, "calibration criteria");
    checked += expected.flat().length + 1;
  }

  // The key stays in this tab only: not in the address, but still there after a reload.
  assert.ok(!page.url().includes(key));
  await page.reload();
  await page.waitForSelector("body[data-state=ready]", { timeout: 60_000 });
  // A key in the address is taken and removed from it.
  const other = await browser.newPage();
  await other.goto(`${url}/#key=${encodeURIComponent(key)}`);
  await other.waitForSelector("body[data-state=ready]", { timeout: 60_000 });
  assert.ok(!other.url().includes("key="), other.url());

  assert.deepEqual(problems, [], "no errors in the page");
} finally {
  await browser.close();
}
console.log(`dashboard: ${checked} figures shown equal the API's; screenshot ${screenshot}`);
