//! Server-rendered pages: overview (health, open findings), incidents with
//! their suggestions and feedback buttons, reports, the service graph with
//! anomalies coloured (inline SVG), and chat. No external assets; the little
//! JavaScript there is inline.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use vigil_model::{EntityId, EntityKind, RelationKind, Severity, TimeRange};
use vigil_store::embedded::IncidentStatus;

use crate::error::ApiError;
use crate::state::{latest_report, AppState, IncidentPayload};

type Shared = State<Arc<AppState>>;

/// Escapes text for HTML.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI','Noto Sans CJK SC',sans-serif;margin:0;color:#1f2328;background:#f6f8fa}\
header{background:#24292f;color:#fff;padding:10px 20px;display:flex;gap:18px;align-items:center}\
header a{color:#fff;text-decoration:none}header strong{margin-right:12px}\
main{padding:20px;max-width:1200px}section{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:14px 18px;margin-bottom:16px}\
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #eaeef2;padding:6px 8px;text-align:left;vertical-align:top}\
.critical{color:#cf222e;font-weight:600}.warning{color:#9a6700;font-weight:600}.info{color:#0969da}\
.score{font-size:40px;font-weight:700}.muted{color:#57606a}button{padding:6px 12px;margin-right:8px;cursor:pointer}\
#answer{white-space:pre-wrap;background:#f6f8fa;border-radius:6px;padding:12px;min-height:40px}\
input[type=text]{width:70%;padding:8px;font-size:15px}code{background:#eaeef2;padding:1px 4px;border-radius:4px}";

fn page(title: &str, body: &str) -> Response {
    let html = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{} · Vigil</title>\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><style>{STYLE}</style>\
         <link rel=\"icon\" href=\"data:,\"></head><body><header><strong>Vigil</strong>\
         <a href=\"/\">Overview</a><a href=\"/incidents\">Incidents</a><a href=\"/reports\">Reports</a>\
         <a href=\"/graph\">Service graph</a><a href=\"/chat\">Chat</a></header><main>{body}</main></body></html>",
        escape(title)
    );
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data:",
            ),
        ],
        html,
    )
        .into_response()
}

fn severity_class(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "critical",
        Severity::Warning => "warning",
        Severity::Info => "info",
    }
}

fn time(t: vigil_model::Timestamp) -> String {
    // `2024-01-02T03:04:05Z` → `2024-01-02 03:04 UTC`.
    let text = crate::alerts::format_rfc3339(t);
    format!("{} {} UTC", &text[..10], &text[11..16])
}

/// `GET /`: health and open findings of the latest report, open incidents.
pub async fn overview(State(state): Shared) -> Result<Response, ApiError> {
    let mut body = String::new();
    match latest_report(&state.store).await {
        Some(report) => {
            let _ = write!(
                body,
                "<section id=\"health\"><h2>Health</h2><div class=\"score\">{}</div>\
                 <p class=\"muted\">{} · {} – {}</p></section>",
                report.health_score,
                escape(&report.playbook_name.en),
                time(report.window.start),
                time(report.window.end)
            );
            body.push_str("<section id=\"findings\"><h2>Open findings</h2>");
            if report.findings.is_empty() {
                body.push_str("<p>No open findings.</p>");
            } else {
                body.push_str("<table><tr><th>Severity</th><th>Finding</th><th>Entity</th><th>Most likely cause</th></tr>");
                for f in &report.findings {
                    let _ = write!(
                        body,
                        "<tr><td class=\"{}\">{:?}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                        severity_class(f.finding.severity),
                        f.finding.severity,
                        escape(&f.finding.title),
                        escape(f.finding.entity.as_str()),
                        f.finding
                            .candidates
                            .first()
                            .map(|c| escape(c.entity.as_str()))
                            .unwrap_or_default()
                    );
                }
                body.push_str("</table>");
            }
            body.push_str("</section>");
        }
        None => body.push_str(
            "<section id=\"health\"><h2>Health</h2><p>No patrol report yet: run a patrol or wait for the schedule.</p></section>",
        ),
    }
    let open = state
        .store
        .list_incidents(Some(IncidentStatus::Open), 10)
        .await?;
    let _ = write!(
        body,
        "<section id=\"incidents\"><h2>Open incidents ({})</h2>",
        open.len()
    );
    incident_table(&mut body, &open);
    body.push_str("</section>");
    Ok(page("Overview", &body))
}

fn incident_table(body: &mut String, incidents: &[vigil_store::embedded::Incident]) {
    if incidents.is_empty() {
        body.push_str("<p>None.</p>");
        return;
    }
    body.push_str("<table><tr><th>Opened</th><th>Alert</th><th>Symptom</th><th>Top suggestion</th><th>Status</th></tr>");
    for incident in incidents {
        let payload: Option<IncidentPayload> =
            serde_json::from_value(incident.payload.clone()).ok();
        let (title, symptom, top) = payload.map_or_else(
            || (String::new(), String::new(), String::new()),
            |p| {
                (
                    p.title,
                    p.symptom.map(|s| s.to_string()).unwrap_or_default(),
                    p.suggestions
                        .first()
                        .map(|s| s.entity.to_string())
                        .unwrap_or_default(),
                )
            },
        );
        let _ = write!(
            body,
            "<tr><td>{}</td><td><a href=\"/incidents/{}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            time(incident.opened),
            escape(&incident.id),
            escape(&title),
            escape(&symptom),
            escape(&top),
            incident.status.as_str()
        );
    }
    body.push_str("</table>");
}

/// `GET /incidents`
pub async fn incidents(State(state): Shared) -> Result<Response, ApiError> {
    let all = state.store.list_incidents(None, 200).await?;
    let mut body = String::from("<section><h2>Incidents</h2>");
    incident_table(&mut body, &all);
    body.push_str("</section>");
    Ok(page("Incidents", &body))
}

/// `GET /incidents/{id}`: suggestions with evidence, similar incidents, feedback buttons.
pub async fn incident(State(state): Shared, Path(id): Path<String>) -> Result<Response, ApiError> {
    let incident = state
        .store
        .incident(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("incident {id}")))?;
    let payload: IncidentPayload = serde_json::from_value(incident.payload.clone())
        .map_err(|e| ApiError::Internal(format!("incident {id}: {e}")))?;
    let mut body = String::new();
    let _ = write!(
        body,
        "<section><h2>{}</h2><p>Symptom: <b>{}</b> · opened {} · {} · received {} times</p>",
        escape(&payload.title),
        escape(
            &payload
                .symptom
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_else(|| "not mapped".to_owned())
        ),
        time(incident.opened),
        incident.status.as_str(),
        payload.occurrences
    );
    if let Some(summary) = &payload.summary {
        let _ = write!(body, "<p>{}</p>", escape(summary));
    }
    for note in &payload.missing {
        let _ = write!(body, "<p class=\"muted\">Note: {}</p>", escape(note));
    }
    body.push_str("</section><section id=\"suggestions\"><h2>Suggested root causes</h2>");
    if payload.suggestions.is_empty() {
        body.push_str("<p>No candidate: nothing anomalous was found around the symptom.</p>");
    }
    for s in &payload.suggestions {
        let _ = write!(
            body,
            "<h3>{}. {} <span class=\"muted\">confidence {:.0}%</span></h3><ul>",
            s.rank,
            escape(s.entity.as_str()),
            s.confidence * 100.0
        );
        for e in &s.evidence {
            let _ = write!(
                body,
                "<li>{}: {}</li>",
                escape(e.entity.as_str()),
                escape(&e.summary)
            );
        }
        for st in s.slow_statements.iter().take(3) {
            let _ = write!(
                body,
                "<li>slow: <code>{}</code> p99 {:.1} ms{}</li>",
                escape(&st.shape),
                st.p99_ms,
                st.p99_day_before_ms
                    .map(|b| format!(" (a day before {b:.1} ms)"))
                    .unwrap_or_default()
            );
        }
        if let Some(stack) = &s.hot_stack {
            let _ = write!(
                body,
                "<li>hottest stack: <code>{}</code></li>",
                escape(stack)
            );
        }
        if s.path.len() > 1 {
            let path: Vec<String> = s.path.iter().map(|p| escape(p.as_str())).collect();
            let _ = write!(body, "<li>path: {}</li>", path.join(" → "));
        }
        body.push_str("</ul>");
    }
    body.push_str("</section><section id=\"similar\"><h2>Similar past incidents</h2>");
    if payload.similar.is_empty() {
        body.push_str("<p>None.</p>");
    }
    for similar in &payload.similar {
        let _ = write!(
            body,
            "<p><a href=\"/incidents/{0}\">{0}</a> ({1}) — confirmed cause: {2}</p>",
            escape(&similar.id),
            escape(&similar.reason),
            escape(
                similar
                    .confirmed_cause
                    .as_deref()
                    .unwrap_or("not confirmed")
            )
        );
    }
    let feedback = incident
        .feedback
        .as_ref()
        .map(|f| {
            format!(
                "Feedback given: {}{}",
                if f.correct {
                    "top suggestion confirmed"
                } else {
                    "top suggestion rejected"
                },
                f.actual_cause
                    .as_ref()
                    .map(|c| format!(", actual cause {}", escape(c)))
                    .unwrap_or_default()
            )
        })
        .unwrap_or_default();
    let id_json = serde_json::to_string(&incident.id).unwrap_or_default();
    let _ = write!(
        body,
        "</section><section id=\"feedback\"><h2>Feedback</h2><p id=\"feedback-state\">{feedback}</p>\
         <button id=\"confirm\" type=\"button\">Confirm top cause</button>\
         <button id=\"reject\" type=\"button\">Reject</button>\
         <input type=\"text\" id=\"actual\" placeholder=\"actual cause, e.g. database:mysqld@10.0.0.9:3306\" style=\"width:40%\">\
         <script>\
         const id = {id_json};\
         async function send(correct) {{\
           const actual = document.getElementById('actual').value.trim();\
           const body = {{correct: correct}};\
           if (!correct && actual) body.actual_cause = actual;\
           const r = await fetch('/api/v1/incidents/' + encodeURIComponent(id) + '/feedback', {{method: 'POST', headers: {{'content-type': 'application/json'}}, body: JSON.stringify(body)}});\
           const j = await r.json();\
           document.getElementById('feedback-state').textContent = r.ok ? 'Thank you: feedback recorded.' : ('Error: ' + j.error.message);\
         }}\
         document.getElementById('confirm').addEventListener('click', () => send(true));\
         document.getElementById('reject').addEventListener('click', () => send(false));\
         </script></section>"
    );
    Ok(page(&payload.title, &body))
}

/// `GET /reports`
pub async fn reports(State(state): Shared) -> Result<Response, ApiError> {
    let reports = state.store.list_reports(None, 100).await?;
    let mut body = String::from("<section><h2>Reports</h2>");
    if reports.is_empty() {
        body.push_str("<p>No report stored yet.</p>");
    } else {
        body.push_str(
            "<table><tr><th>Created</th><th>Title</th><th>Language</th><th>Playbook</th></tr>",
        );
        for r in &reports {
            let _ = write!(
                body,
                "<tr><td>{}</td><td><a href=\"/api/v1/reports/{}\">{}</a></td><td>{}</td><td>{}</td></tr>",
                time(r.created),
                escape(&r.id),
                escape(&r.title),
                escape(&r.language),
                escape(r.playbook_id.as_deref().unwrap_or(""))
            );
        }
        body.push_str("</table>");
    }
    body.push_str("</section>");
    Ok(page("Reports", &body))
}

/// Query of the graph page.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphQuery {
    /// Entity id to centre on.
    pub focus: Option<String>,
    /// Unix seconds; now when absent.
    pub at: Option<i64>,
}

/// `GET /graph`: services, databases and caches with their calls; anomalous
/// ones coloured (red: suspected cause, orange: symptom).
pub async fn graph(
    State(state): Shared,
    Query(query): Query<GraphQuery>,
) -> Result<Response, ApiError> {
    let now = query.at.map_or_else(|| state.now(), vigil_model::Timestamp);
    let range = TimeRange {
        start: now.plus_secs(-3600),
        end: now.plus_secs(60),
    };
    let topology = state
        .source
        .topology(range)
        .await
        .map_err(|e| ApiError::Unavailable(format!("telemetry: {e}")))?;
    let serving = |id: &EntityId| {
        matches!(
            id.kind(),
            EntityKind::Service | EntityKind::Database | EntityKind::Cache
        )
    };
    let nodes: BTreeSet<EntityId> = topology
        .entities
        .iter()
        .filter(|e| serving(&e.id))
        .map(|e| e.id.clone())
        .collect();
    let edges: Vec<(EntityId, EntityId)> = topology
        .relations
        .iter()
        .filter(|r| {
            r.kind == RelationKind::Calls && nodes.contains(&r.from) && nodes.contains(&r.to)
        })
        .map(|r| (r.from.clone(), r.to.clone()))
        .collect();
    // Colours from open incidents and the latest report.
    let mut causes: BTreeSet<EntityId> = BTreeSet::new();
    let mut symptoms: BTreeSet<EntityId> = BTreeSet::new();
    for incident in state
        .store
        .list_incidents(Some(IncidentStatus::Open), 100)
        .await?
    {
        if let Ok(p) = serde_json::from_value::<IncidentPayload>(incident.payload) {
            symptoms.extend(p.symptom);
            causes.extend(p.suggestions.first().map(|s| s.entity.clone()));
        }
    }
    if let Some(report) = latest_report(&state.store).await {
        for f in &report.findings {
            symptoms.insert(f.finding.entity.clone());
            causes.extend(f.finding.candidates.first().map(|c| c.entity.clone()));
        }
    }
    let focus: Option<EntityId> = query.focus.as_deref().and_then(|f| f.parse().ok());
    let shown: BTreeSet<EntityId> =
        if let Some(focus) = focus.as_ref().filter(|f| nodes.contains(*f)) {
            let mut shown = BTreeSet::from([focus.clone()]);
            let mut queue = VecDeque::from([focus.clone()]);
            while let Some(next) = queue.pop_front() {
                for (from, to) in &edges {
                    if *from == next && shown.insert(to.clone()) {
                        queue.push_back(to.clone());
                    }
                }
            }
            shown.extend(
                edges
                    .iter()
                    .filter(|(_, to)| to == focus)
                    .map(|(from, _)| from.clone()),
            );
            shown
        } else if nodes.len() <= 80 {
            nodes.clone()
        } else {
            let marked: BTreeSet<EntityId> = causes.union(&symptoms).cloned().collect();
            let mut shown = marked.clone();
            for (from, to) in &edges {
                if marked.contains(from) || marked.contains(to) {
                    shown.insert(from.clone());
                    shown.insert(to.clone());
                }
            }
            shown.into_iter().take(120).collect()
        };
    let svg = render_svg(&shown, &edges, &causes, &symptoms);
    let mut body = String::new();
    let _ = write!(
        body,
        "<section><h2>Service graph</h2><p class=\"muted\">{} of {} services and servers · \
         <span style=\"color:#cf222e\">■</span> suspected cause · <span style=\"color:#bc4c00\">■</span> symptom</p>{svg}</section>",
        shown.len(),
        nodes.len()
    );
    Ok(page("Service graph", &body))
}

/// Layered SVG: callers left, callees right.
pub fn render_svg(
    shown: &BTreeSet<EntityId>,
    edges: &[(EntityId, EntityId)],
    causes: &BTreeSet<EntityId>,
    symptoms: &BTreeSet<EntityId>,
) -> String {
    let edges: Vec<&(EntityId, EntityId)> = edges
        .iter()
        .filter(|(a, b)| shown.contains(a) && shown.contains(b))
        .collect();
    // Depth: longest call chain from a root, bounded (cycles cannot loop).
    let mut depth: BTreeMap<&EntityId, usize> = shown.iter().map(|id| (id, 0)).collect();
    for _ in 0..shown.len().min(12) {
        let mut changed = false;
        for (from, to) in &edges {
            let next = depth.get(from).copied().unwrap_or(0) + 1;
            if let Some(d) = depth.get_mut(to) {
                if next > *d && next < 12 {
                    *d = next;
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    let mut columns: BTreeMap<usize, Vec<&EntityId>> = BTreeMap::new();
    for (id, d) in &depth {
        columns.entry(*d).or_default().push(id);
    }
    let mut position: BTreeMap<&EntityId, (usize, usize)> = BTreeMap::new();
    for (d, ids) in &columns {
        for (row, id) in ids.iter().enumerate() {
            position.insert(id, (30 + d * 230, 30 + row * 32));
        }
    }
    let width = 30 + columns.len().max(1) * 230 + 20;
    let height = 30 + columns.values().map(Vec::len).max().unwrap_or(1) * 32 + 10;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" id=\"service-graph\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" font-size=\"11\">"
    );
    for (from, to) in &edges {
        if let (Some(a), Some(b)) = (position.get(from), position.get(to)) {
            let _ = write!(
                svg,
                "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#8c959f\" stroke-width=\"1\"/>",
                a.0 + 180,
                a.1 + 10,
                b.0,
                b.1 + 10
            );
        }
    }
    for (id, (x, y)) in &position {
        let (fill, class) = if causes.contains(*id) {
            ("#cf222e", "cause")
        } else if symptoms.contains(*id) {
            ("#bc4c00", "symptom")
        } else {
            ("#57606a", "normal")
        };
        let name: String = id.name().chars().take(26).collect();
        let _ = write!(
            svg,
            "<g class=\"node {class}\"><title>{}</title><rect x=\"{x}\" y=\"{y}\" width=\"180\" height=\"20\" rx=\"4\" fill=\"{fill}\"/>\
             <text x=\"{}\" y=\"{}\" fill=\"#fff\">{}</text></g>",
            escape(id.as_str()),
            x + 6,
            y + 14,
            escape(&name)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// `GET /chat`
pub async fn chat() -> Response {
    let body = "<section><h2>Ask Vigil</h2><p class=\"muted\">English or Chinese: “why is redis slow”, “订单服务延迟高的原因”, “who burns CPU”, “what changed today”.</p>\
        <form id=\"ask\"><input type=\"text\" id=\"question\" name=\"question\" autocomplete=\"off\" placeholder=\"why is redis slow?\">\
        <button type=\"submit\">Ask</button></form><h3>Answer</h3><div id=\"answer\"></div></section>\
        <script>\
        document.getElementById('ask').addEventListener('submit', async (event) => {\
          event.preventDefault();\
          const question = document.getElementById('question').value;\
          const out = document.getElementById('answer');\
          out.textContent = '…';\
          const params = new URLSearchParams(location.search);\
          const body = {question: question};\
          if (params.get('at')) body.at = Number(params.get('at'));\
          const r = await fetch('/api/v1/chat', {method: 'POST', headers: {'content-type': 'application/json'}, body: JSON.stringify(body)});\
          const j = await r.json();\
          out.textContent = r.ok ? j.text : ('Error: ' + j.error.message);\
          out.dataset.done = '1';\
        });\
        const preset = new URLSearchParams(location.search).get('q');\
        if (preset) {\
          document.getElementById('question').value = preset;\
          document.getElementById('ask').requestSubmit();\
        }\
        </script>";
    page("Chat", body)
}
