// The IQS dashboard: read-only figures from the API (Connect JSON on the same origin),
// called with an API key kept in this tab's sessionStorage. No library, no build step.
"use strict";

const KEY_ITEM = "iqs-api-key";
const SVG = "http://www.w3.org/2000/svg";
const COLORS = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563"];
const DAY_MS = 24 * 3600 * 1000;

/** Calls one RPC as Connect JSON; a refusal becomes an Error with the API's message. */
async function call(key, service, method, request) {
  const response = await fetch(`/${service}/${method}`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
    body: JSON.stringify(request),
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(`${method}: ${body.message || response.statusText} (${body.code || response.status})`);
    error.code = body.code;
    throw error;
  }
  return body;
}

const analytics = (key, method, request) => call(key, "iqs.analytics.v1.AnalyticsService", method, request);

// Figures as the page shows them; the page test formats the API's answers the same way.
const one = (x) => (x === undefined || x === null ? "–" : Number(x).toFixed(1));
const two = (x) => (x === undefined || x === null ? "–" : Number(x).toFixed(2));
const percent = (x) => (x === undefined || x === null ? "–" : `${(Number(x) * 100).toFixed(0)}%`);
const between = (low, high) => (low === undefined && high === undefined ? "–" : `${two(low)} to ${two(high)}`);
const month = (timestamp) => timestamp.slice(0, 7);
const day = (date) => date.toISOString().slice(0, 10);

function element(tag, attributes = {}, text) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function svgElement(tag, attributes = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

function row(cells) {
  const tr = element("tr");
  for (const cell of cells) tr.append(element("td", {}, cell));
  return tr;
}

/** The periods every section uses, fixed once per load so all sections agree. */
function periods(now) {
  const end = new Date(Math.ceil(now.getTime() / 60000) * 60000);
  const trendStart = new Date(Date.UTC(end.getUTCFullYear(), end.getUTCMonth() - 11, 1));
  const recentStart = new Date(end.getTime() - 90 * DAY_MS);
  return {
    trend: { startTime: trendStart.toISOString(), endTime: end.toISOString() },
    recent: { startTime: recentStart.toISOString(), endTime: end.toISOString() },
  };
}

function describe(range) {
  return `${day(new Date(range.startTime))} – ${day(new Date(new Date(range.endTime).getTime() - 1))}`;
}

function showRequest(section, request) {
  section.dataset.request = JSON.stringify(request);
}

async function trend(key, range) {
  const section = document.getElementById("trend");
  const request = { filter: { timeRange: range }, groupBy: ["DIMENSION_TEAM"], interval: "INTERVAL_MONTH" };
  showRequest(section, request);
  section.querySelector(".period").textContent = `(${describe(range)})`;
  const { rows = [] } = await analytics(key, "QueryScores", request);
  const months = [...new Set(rows.map((r) => month(r.bucketStart)))].sort();
  const teams = [...new Set(rows.map((r) => r.dimensions.team))].sort();
  const iqs = new Map(rows.map((r) => [`${r.dimensions.team}|${month(r.bucketStart)}`, r.iqs]));
  const values = rows.map((r) => r.iqs).filter((v) => v !== undefined && v !== null);

  const chart = section.querySelector(".chart");
  chart.replaceChildren();
  const legend = element("div", { class: "legend" });
  teams.forEach((team, i) => {
    const item = element("span");
    const swatch = element("i");
    swatch.style.background = COLORS[i % COLORS.length];
    item.append(swatch, document.createTextNode(team));
    legend.append(item);
  });
  chart.append(legend);
  const [w, h, left, right, top, bottom] = [900, 260, 40, 40, 10, 26];
  const low = Math.max(0, Math.floor((Math.min(...values, 100) - 5) / 10) * 10);
  const high = Math.min(100, Math.ceil((Math.max(...values, 0) + 5) / 10) * 10);
  const x = (i) => left + (months.length < 2 ? 0 : (i * (w - left - right)) / (months.length - 1));
  const y = (v) => top + ((high - v) * (h - top - bottom)) / Math.max(high - low, 1);
  const svg = svgElement("svg", { viewBox: `0 0 ${w} ${h}`, role: "img", "aria-label": "IQS by team and month" });
  for (let v = low; v <= high; v += 10) {
    svg.append(svgElement("line", { class: "axis", x1: left, x2: w - right, y1: y(v), y2: y(v) }));
    svg.append(svgElement("text", { x: 4, y: y(v) + 4 }, v));
  }
  months.forEach((m, i) => svg.append(svgElement("text", { x: x(i), y: h - 6, "text-anchor": "middle" }, m)));
  teams.forEach((team, t) => {
    const color = COLORS[t % COLORS.length];
    const points = months
      .map((m, i) => [i, m, iqs.get(`${team}|${m}`)])
      .filter(([, , v]) => v !== undefined && v !== null);
    svg.append(svgElement("polyline", {
      points: points.map(([i, , v]) => `${x(i)},${y(v)}`).join(" "),
      fill: "none", stroke: color, "stroke-width": 2,
    }));
    for (const [i, m, v] of points) {
      const dot = svgElement("circle", { cx: x(i), cy: y(v), r: 3.5, fill: color, "data-team": team, "data-month": m, "data-iqs": one(v) });
      dot.append(svgElement("title", {}, `${team} ${m}: IQS ${one(v)}`));
      svg.append(dot);
    }
  });
  chart.append(svg);

  const head = element("tr");
  head.append(element("th", {}, "team"));
  for (const m of months) head.append(element("th", {}, m));
  section.querySelector("thead").replaceChildren(head);
  section.querySelector("tbody").replaceChildren(
    ...teams.map((team) => row([team, ...months.map((m) => one(iqs.get(`${team}|${m}`)))])),
  );
}

async function leaderboard(key, range) {
  const section = document.getElementById("leaderboard");
  const request = { filter: { timeRange: range }, groupBy: ["DIMENSION_AGENT"] };
  showRequest(section, request);
  section.querySelector(".period").textContent = `(${describe(range)})`;
  const { rows = [] } = await analytics(key, "QueryScores", request);
  const ranked = rows
    .filter((r) => r.iqs !== undefined && r.iqs !== null)
    .sort((a, b) => b.iqs - a.iqs || a.dimensions.agent.localeCompare(b.dimensions.agent));
  section.querySelector("tbody").replaceChildren(
    ...ranked.map((r, i) => {
      const tr = row([String(i + 1), r.dimensions.agent, one(r.iqs), percent(r.passRate), String(r.evaluationCount)]);
      tr.dataset.agent = r.dimensions.agent;
      return tr;
    }),
  );
}

async function criteria(key, range) {
  const section = document.getElementById("criteria");
  const request = { filter: { timeRange: range }, rootCauseLimit: 5 };
  showRequest(section, request);
  section.querySelector(".period").textContent = `(${describe(range)})`;
  const answer = await analytics(key, "GetCriterionBreakdown", request);
  const weakest = (answer.criteria || []).filter((c) => c.averageScore !== undefined && c.averageScore !== null).slice(0, 8);
  const [w, barHeight, label] = [560, 24, 150];
  const svg = svgElement("svg", { viewBox: `0 0 ${w} ${weakest.length * barHeight + 4}`, role: "img", "aria-label": "Weakest criteria" });
  weakest.forEach((c, i) => {
    const width = ((w - label - 50) * c.averageScore) / 100;
    const bar = svgElement("rect", { class: "bar", x: label, y: i * barHeight + 4, width, height: barHeight - 8, "data-criterion": c.criterionKey, "data-score": one(c.averageScore) });
    bar.append(svgElement("title", {}, `${c.criterionKey}: ${one(c.averageScore)} over ${c.ratedCount} ratings`));
    svg.append(svgElement("text", { x: 0, y: i * barHeight + 17 }, c.criterionKey));
    svg.append(bar);
    svg.append(svgElement("text", { x: label + width + 6, y: i * barHeight + 17 }, one(c.averageScore)));
  });
  section.querySelector(".chart").replaceChildren(svg);
  section.querySelector(".root-causes").replaceChildren(
    ...(answer.rootCauses || []).map((cause) => {
      const li = element("li", {}, `${cause.criterionKey}: ${cause.rootCause} (${cause.count})`);
      li.dataset.criterion = cause.criterionKey;
      return li;
    }),
  );
}

async function csat(key, range) {
  const section = document.getElementById("csat");
  const request = { filter: { timeRange: range }, groupBy: "DIMENSION_AGENT" };
  showRequest(section, request);
  section.querySelector(".period").textContent = `(${describe(range)})`;
  const answer = await analytics(key, "GetCsatCorrelation", request);
  const points = answer.points || [];
  section.querySelector(".stats").textContent =
    `Pearson r ${two(answer.pearsonR)} · Spearman ρ ${two(answer.spearmanRho)} · ${answer.pairs} agents`;
  const [w, h, left, bottom] = [560, 300, 36, 44];
  const iqsLow = Math.max(0, Math.floor(Math.min(...points.map((p) => p.iqs), 100) / 10) * 10);
  const iqsHigh = Math.min(100, Math.ceil(Math.max(...points.map((p) => p.iqs), 0) / 10) * 10);
  const x = (v) => left + 10 + ((v - iqsLow) * (w - left - 30)) / Math.max(iqsHigh - iqsLow, 1);
  const y = (v) => 8 + ((5 - v) * (h - bottom - 8)) / 4;
  const svg = svgElement("svg", { viewBox: `0 0 ${w} ${h}`, role: "img", "aria-label": "IQS against CSAT" });
  for (let c = 1; c <= 5; c++) {
    svg.append(svgElement("line", { class: "axis", x1: left, x2: w - 10, y1: y(c), y2: y(c) }));
    svg.append(svgElement("text", { x: 8, y: y(c) + 4 }, c));
  }
  for (let v = iqsLow; v <= iqsHigh; v += 10) {
    svg.append(svgElement("text", { x: x(v), y: h - 26, "text-anchor": "middle" }, v));
  }
  svg.append(svgElement("text", { x: (left + w) / 2, y: h - 6, "text-anchor": "middle" }, "IQS (x) · mean CSAT (y)"));
  for (const p of points) {
    const dot = svgElement("circle", { class: "point", cx: x(p.iqs), cy: y(p.avgCsat), r: 5, "data-agent": p.groupId, "data-iqs": one(p.iqs), "data-csat": two(p.avgCsat) });
    dot.append(svgElement("title", {}, `${p.groupId}: IQS ${one(p.iqs)}, CSAT ${two(p.avgCsat)}`));
    svg.append(dot);
  }
  section.querySelector(".chart").replaceChildren(svg);
}

async function calibration(key) {
  const section = document.getElementById("calibration");
  const summary = section.querySelector(".summary");
  const listed = await call(key, "iqs.evaluation.v1.CalibrationService", "ListCalibrationSessions",
    { pageSize: 1, state: "CALIBRATION_SESSION_STATE_CLOSED" });
  const session = (listed.sessions || [])[0];
  if (!session) {
    section.dataset.request = "";
    summary.textContent = "No closed calibration session yet.";
    section.querySelector("tbody").replaceChildren();
    return;
  }
  const request = { sessionId: session.id };
  showRequest(section, request);
  const report = await analytics(key, "GetCalibrationReport", request);
  summary.textContent = `${session.displayName}: ${report.reviewerCount} reviewers, ${report.unitCount} interactions, ` +
    `score α ${two(report.scoreAlphaInterval)} (95% ${between(report.scoreAlphaIntervalLow, report.scoreAlphaIntervalHigh)})`;
  section.querySelector("tbody").replaceChildren(
    ...(report.criteria || []).map((c) => {
      const tr = row([c.criterionKey, two(c.alphaInterval), between(c.alphaIntervalLow, c.alphaIntervalHigh), percent(c.exactAgreement)]);
      tr.dataset.criterion = c.criterionKey;
      return tr;
    }),
  );
}

async function show(key) {
  const status = document.getElementById("status");
  const main = document.querySelector("main");
  document.body.dataset.state = "loading";
  status.className = "";
  status.textContent = "Loading…";
  const range = periods(new Date());
  try {
    await Promise.all([
      trend(key, range.trend),
      leaderboard(key, range.recent),
      criteria(key, range.recent),
      csat(key, range.recent),
      calibration(key),
    ]);
    main.hidden = false;
    status.textContent = "";
    document.getElementById("as-of").textContent = new Date().toISOString().slice(0, 16).replace("T", " ") + " UTC";
    document.getElementById("forget").hidden = false;
    document.body.dataset.state = "ready";
  } catch (error) {
    status.className = "error";
    status.textContent = error.message;
    if (error.code === "unauthenticated") sessionStorage.removeItem(KEY_ITEM);
    document.body.dataset.state = "error";
  }
}

function start() {
  // A key may come in the address (#key=…), as the first run prints it: kept in this
  // tab, then removed from the address bar and history.
  const fragment = new URLSearchParams(location.hash.slice(1));
  if (fragment.get("key")) {
    sessionStorage.setItem(KEY_ITEM, fragment.get("key"));
    history.replaceState(null, "", location.pathname);
  }
  const form = document.getElementById("key-form");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const key = form.elements.key.value.trim();
    if (!key) return;
    sessionStorage.setItem(KEY_ITEM, key);
    form.elements.key.value = "";
    show(key);
  });
  document.getElementById("forget").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_ITEM);
    location.reload();
  });
  const key = sessionStorage.getItem(KEY_ITEM);
  if (key) show(key);
  else document.body.dataset.state = "waiting-for-key";
}

start();
