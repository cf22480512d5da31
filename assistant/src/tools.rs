//! Vigil's own tools, as an LLM (tool calling) and MCP clients see them: list
//! anomalies, rank root causes, slow statements, the profile of a process, a
//! metric query and the latest report. Each answers from the deterministic
//! analysis or from aggregated telemetry (summaries, at most 60 points), never
//! raw rows.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Value};
use vigil_analyzer::{anomalies, AnalysisInput};
use vigil_knowledge_graph::AliasConfig;
use vigil_model::{
    EntityFilter, EntityId, EntityKind, L7Protocol, PatrolReport, RequestMetric, ResourceMetric,
    SeriesQuery, StatementOrder, StatementQuery, TelemetrySource, TimeRange, Timestamp,
    MINUTE_SECS,
};

use crate::investigate::{investigate, signal_name, window_at, InvestigateOptions};
use crate::labels::EntityIndex;
use crate::AssistantError;

/// Where the latest patrol report comes from (the state store, in the API).
#[async_trait]
pub trait LatestReport: Send + Sync {
    /// The newest patrol report, if any.
    async fn latest(&self) -> Option<PatrolReport>;
}

/// Why a tool call failed; the message goes back to the model or MCP client.
#[derive(Debug, thiserror::Error)]
pub enum ToolCallError {
    /// No tool by that name.
    #[error("unknown tool {0:?}")]
    UnknownTool(String),
    /// The arguments do not fit the tool's schema.
    #[error("invalid arguments for {tool}: {message}")]
    Arguments {
        /// The tool.
        tool: String,
        /// What is wrong.
        message: String,
    },
    /// The analysis failed.
    #[error(transparent)]
    Assistant(#[from] AssistantError),
}

/// A tool as offered: name, description, JSON schema of its arguments.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolDefinition {
    /// Name, `snake_case`.
    pub name: &'static str,
    /// What it does, for the model.
    pub description: &'static str,
    /// JSON schema of the arguments object.
    pub parameters: Value,
}

/// A clock for tools: the present, or a fixed instant (tests, replays).
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        Timestamp(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
        )
    })
}

/// The tools over one telemetry source.
#[derive(Clone)]
pub struct Tools {
    source: Arc<dyn TelemetrySource>,
    reports: Option<Arc<dyn LatestReport>>,
    options: InvestigateOptions,
    aliases: AliasConfig,
    clock: Clock,
}

impl std::fmt::Debug for Tools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tools")
            .field("backend", &self.source.backend())
            .field("reports", &self.reports.is_some())
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntityArgs {
    entity: Option<String>,
    at: Option<i64>,
    minutes: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatementArgs {
    server: Option<String>,
    protocol: Option<String>,
    minutes: Option<u32>,
    at: Option<i64>,
    limit: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricArgs {
    entity: String,
    metric: String,
    minutes: Option<u32>,
    at: Option<i64>,
}

fn object(properties: Value, required: &[&str]) -> Value {
    json!({"type": "object", "properties": properties, "required": required, "additionalProperties": false})
}

impl Tools {
    /// Tools reading `source`, with the system clock and no reports.
    pub fn new(source: Arc<dyn TelemetrySource>, options: InvestigateOptions) -> Self {
        Self {
            source,
            reports: None,
            options,
            aliases: AliasConfig::default(),
            clock: system_clock(),
        }
    }

    /// With the latest patrol report available.
    pub fn with_reports(mut self, reports: Arc<dyn LatestReport>) -> Self {
        self.reports = Some(reports);
        self
    }

    /// With configured aliases for entity names.
    pub fn with_aliases(mut self, aliases: AliasConfig) -> Self {
        self.aliases = aliases;
        self
    }

    /// With another clock (a fixed time for tests and replays).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The telemetry source.
    pub fn source(&self) -> &Arc<dyn TelemetrySource> {
        &self.source
    }

    /// The investigation options.
    pub fn options(&self) -> &InvestigateOptions {
        &self.options
    }

    /// The configured aliases.
    pub fn aliases(&self) -> &AliasConfig {
        &self.aliases
    }

    /// The present, by this tools' clock.
    pub fn now(&self) -> Timestamp {
        (self.clock)()
    }

    /// The latest patrol report, if a report source is set and holds one.
    pub async fn latest_report(&self) -> Option<PatrolReport> {
        match &self.reports {
            Some(reports) => reports.latest().await,
            None => None,
        }
    }

    /// The tools offered, with their argument schemas.
    pub fn definitions() -> Vec<ToolDefinition> {
        let at = json!({"type": "integer", "description": "Unix seconds; default now"});
        let minutes = json!({"type": "integer", "minimum": 1, "maximum": 1440, "description": "Window length in minutes; default 60"});
        vec![
            ToolDefinition {
                name: "list_anomalies",
                description: "Anomalies (latency, errors, traffic, CPU, memory, slow statements) found by Vigil's detectors in a window, for one entity's dependency closure or for every service.",
                parameters: object(
                    json!({"entity": {"type": "string", "description": "Entity id or name (e.g. service:order-api, redis, 订单服务); all services when absent"}, "at": at, "minutes": minutes}),
                    &[],
                ),
            },
            ToolDefinition {
                name: "rank_root_causes",
                description: "Ranked root-cause candidates for a symptom entity at a time, with evidence, slow statements, affected callers and the propagation path.",
                parameters: object(
                    json!({"entity": {"type": "string", "description": "The symptom: entity id or name"}, "at": at, "minutes": minutes}),
                    &["entity"],
                ),
            },
            ToolDefinition {
                name: "slow_statements",
                description: "Slowest SQL statement shapes or Redis commands (by p99) of one server or all, in a window.",
                parameters: object(
                    json!({"server": {"type": "string", "description": "Database or cache entity id or name"}, "protocol": {"type": "string", "enum": ["mysql", "postgres", "redis"]}, "at": at, "minutes": minutes, "limit": {"type": "integer", "minimum": 1, "maximum": 50}}),
                    &[],
                ),
            },
            ToolDefinition {
                name: "process_profile",
                description: "The hottest on-CPU stacks of a service, container or process in a window (top 10, share of samples).",
                parameters: object(
                    json!({"entity": {"type": "string"}, "at": at, "minutes": minutes}),
                    &["entity"],
                ),
            },
            ToolDefinition {
                name: "metric_query",
                description: "Summary (min, mean, max, last) and at most 60 points of one metric of one entity: requests, errors, error-ratio, latency-mean, latency-p50, latency-p90, latency-p99, cpu-cores, memory-bytes, tcp-retransmits, tcp-resets.",
                parameters: object(
                    json!({"entity": {"type": "string"}, "metric": {"type": "string"}, "at": at, "minutes": minutes}),
                    &["entity", "metric"],
                ),
            },
            ToolDefinition {
                name: "latest_report",
                description: "The latest patrol report: health score, open findings with their top root cause, resolved findings.",
                parameters: object(json!({}), &[]),
            },
        ]
    }

    /// Runs the tool `name` with JSON `arguments`.
    pub async fn call(&self, name: &str, arguments: Value) -> Result<Value, ToolCallError> {
        let arguments = if arguments.is_null() {
            json!({})
        } else {
            arguments
        };
        let bad = |message: String| ToolCallError::Arguments {
            tool: name.to_owned(),
            message,
        };
        match name {
            "list_anomalies" => {
                let args: EntityArgs =
                    serde_json::from_value(arguments).map_err(|e| bad(e.to_string()))?;
                self.list_anomalies(args).await
            }
            "rank_root_causes" => {
                let args: EntityArgs =
                    serde_json::from_value(arguments).map_err(|e| bad(e.to_string()))?;
                let entity = args
                    .entity
                    .ok_or_else(|| bad("entity is required".to_owned()))?;
                let at = args.at.map_or_else(|| self.now(), Timestamp);
                let entity = self.resolve(&entity, at).await?;
                let mut options = self.options.clone();
                if let Some(minutes) = args.minutes {
                    options.lookback_minutes = minutes.clamp(1, 1440);
                }
                let found = investigate(self.source.as_ref(), &entity, at, &options).await?;
                Ok(serde_json::to_value(&found).unwrap_or(Value::Null))
            }
            "slow_statements" => {
                let args: StatementArgs =
                    serde_json::from_value(arguments).map_err(|e| bad(e.to_string()))?;
                self.slow_statements(args).await
            }
            "process_profile" => {
                let args: EntityArgs =
                    serde_json::from_value(arguments).map_err(|e| bad(e.to_string()))?;
                let entity = args
                    .entity
                    .ok_or_else(|| bad("entity is required".to_owned()))?;
                let range = self.range(args.at, args.minutes);
                let entity = self.resolve_any(&entity, range.end).await?;
                let profile = self
                    .source
                    .profile(&entity, range)
                    .await
                    .map_err(AssistantError::from)?;
                let total = profile.total().max(1) as f64;
                let mut stacks = profile.stacks;
                stacks.sort_by(|a, b| b.value.cmp(&a.value).then_with(|| a.frames.cmp(&b.frames)));
                let top: Vec<Value> = stacks
                    .iter()
                    .take(10)
                    .map(|s| json!({"stack": s.frames, "share": s.value as f64 / total}))
                    .collect();
                Ok(json!({"entity": entity, "range": range, "unit": profile.unit, "stacks": top}))
            }
            "metric_query" => {
                let args: MetricArgs =
                    serde_json::from_value(arguments).map_err(|e| bad(e.to_string()))?;
                self.metric_query(args).await
            }
            "latest_report" => Ok(match self.latest_report().await {
                Some(report) => report_summary(&report),
                None => json!({"report": null, "note": "no patrol report has been stored yet"}),
            }),
            other => Err(ToolCallError::UnknownTool(other.to_owned())),
        }
    }

    fn range(&self, at: Option<i64>, minutes: Option<u32>) -> TimeRange {
        let end = at
            .map_or_else(|| self.now(), Timestamp)
            .floor_to(MINUTE_SECS);
        let minutes = i64::from(minutes.unwrap_or(60).clamp(1, 1440));
        TimeRange {
            start: end.plus_secs(-minutes * 60),
            end: end.plus_secs(60),
        }
    }

    /// An index of the topology around `at`.
    pub async fn index(&self, at: Timestamp) -> Result<EntityIndex, AssistantError> {
        let range = TimeRange {
            start: at.plus_secs(-3600),
            end: at.plus_secs(60),
        };
        let topology = self.source.topology(range).await?;
        Ok(EntityIndex::new(&topology, &self.aliases))
    }

    /// An entity named by id or name, at its service or server level.
    async fn resolve(&self, text: &str, at: Timestamp) -> Result<EntityId, AssistantError> {
        let index = self.index(at).await?;
        index
            .resolve(text)
            .map(|(id, _)| id)
            .ok_or_else(|| AssistantError::Unmapped {
                tried: text.to_owned(),
            })
    }

    /// An entity named by id (kept as is) or by name.
    async fn resolve_any(&self, text: &str, at: Timestamp) -> Result<EntityId, AssistantError> {
        if let Ok(id) = text.parse::<EntityId>() {
            return Ok(id);
        }
        self.resolve(text, at).await
    }

    async fn list_anomalies(&self, args: EntityArgs) -> Result<Value, ToolCallError> {
        let at = args.at.map_or_else(|| self.now(), Timestamp);
        let mut options = self.options.clone();
        options.lookback_minutes = args.minutes.unwrap_or(60).clamp(1, 1440);
        if let Some(entity) = args.entity {
            let entity = self.resolve(&entity, at).await?;
            let found = investigate(self.source.as_ref(), &entity, at, &options).await?;
            let mut items: Vec<Value> = found
                .suggestions
                .iter()
                .flat_map(|s| s.evidence.iter())
                .chain(found.symptom_evidence.iter())
                .map(|e| serde_json::to_value(e).unwrap_or(Value::Null))
                .collect();
            items.dedup();
            return Ok(
                json!({"entity": entity, "window": found.window, "anomalies": items, "missing": found.missing}),
            );
        }
        let window = window_at(at, &options);
        let range = TimeRange {
            start: window
                .start
                .plus_secs(-86_400 * i64::from(options.history_days.max(1))),
            end: window.end,
        };
        let kinds = [EntityKind::Service, EntityKind::Database, EntityKind::Cache];
        let query = SeriesQuery {
            filter: EntityFilter::kinds(&kinds),
            range,
            step_secs: MINUTE_SECS,
        };
        let (topology, requests) = tokio::join!(
            self.source.topology(range),
            self.source.request_series(&query)
        );
        let input = AnalysisInput {
            window,
            topology: topology.map_err(AssistantError::from)?,
            requests: requests.map_err(AssistantError::from)?,
            edges: Vec::new(),
            resources: Vec::new(),
            statements: Vec::new(),
            events: Vec::new(),
        };
        let mut found = anomalies(&input, &options.analyzer);
        found.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then_with(|| a.entity.cmp(&b.entity))
        });
        found.truncate(30);
        let items: Vec<Value> = found
            .iter()
            .map(|a| {
                json!({"entity": a.entity, "signal": signal_name(&a.signal), "since": a.window.start,
                       "baseline": a.evidence.baseline, "observed": a.evidence.observed,
                       "score": a.score, "summary": a.evidence.summary})
            })
            .collect();
        Ok(json!({"window": window, "anomalies": items, "services_read": input.requests.len()}))
    }

    async fn slow_statements(&self, args: StatementArgs) -> Result<Value, ToolCallError> {
        let range = self.range(args.at, args.minutes);
        let server = match args.server {
            Some(text) => Some(self.resolve(&text, range.end).await?),
            None => None,
        };
        let protocol = match args.protocol.as_deref() {
            None => None,
            Some("mysql") => Some(L7Protocol::Mysql),
            Some("postgres") => Some(L7Protocol::Postgres),
            Some("redis") => Some(L7Protocol::Redis),
            Some(other) => {
                return Err(ToolCallError::Arguments {
                    tool: "slow_statements".to_owned(),
                    message: format!("protocol {other:?}: expected mysql, postgres or redis"),
                })
            }
        };
        let rows = self
            .source
            .top_statements(&StatementQuery {
                server: server.clone(),
                protocol,
                range,
                order: StatementOrder::P99,
                limit: args.limit.unwrap_or(10).clamp(1, 50),
            })
            .await
            .map_err(AssistantError::from)?;
        let rows: Vec<Value> = rows
            .iter()
            .map(|s| {
                json!({"server": s.server, "protocol": s.protocol.name(), "type": s.request_type,
                       "shape": s.shape, "count": s.count, "errors": s.errors,
                       "mean_ms": s.latency_mean_ms, "p99_ms": s.latency_p99_ms, "max_ms": s.latency_max_ms})
            })
            .collect();
        Ok(json!({"range": range, "server": server, "statements": rows}))
    }

    async fn metric_query(&self, args: MetricArgs) -> Result<Value, ToolCallError> {
        let range = self.range(args.at, args.minutes);
        let entity = self.resolve_any(&args.entity, range.end).await?;
        let query = SeriesQuery {
            filter: EntityFilter::ids(std::slice::from_ref(&entity)),
            range,
            step_secs: MINUTE_SECS,
        };
        let series = if let Some(metric) = RequestMetric::ALL
            .into_iter()
            .find(|m| m.as_str() == args.metric)
        {
            self.source
                .request_series(&query)
                .await
                .map_err(AssistantError::from)?
                .into_iter()
                .find(|s| s.entity == entity)
                .map(|s| s.metrics.series(metric))
        } else if let Some(metric) = ResourceMetric::parse(&args.metric) {
            self.source
                .resource_series(&query, metric)
                .await
                .map_err(AssistantError::from)?
                .into_iter()
                .find(|s| s.entity == entity)
                .map(|s| s.series)
        } else {
            return Err(ToolCallError::Arguments {
                tool: "metric_query".to_owned(),
                message: format!("unknown metric {:?}", args.metric),
            });
        };
        let Some(series) = series else {
            return Ok(
                json!({"entity": entity, "metric": args.metric, "range": range, "points": [], "note": "no data for this entity and metric in the range"}),
            );
        };
        let finite: Vec<f64> = series
            .values
            .iter()
            .copied()
            .filter(|v| v.is_finite())
            .collect();
        if finite.is_empty() {
            return Ok(
                json!({"entity": entity, "metric": args.metric, "range": range, "points": [], "note": "the series has only gaps in the range"}),
            );
        }
        let mean = finite.iter().sum::<f64>() / finite.len() as f64;
        let min = finite.iter().copied().fold(f64::INFINITY, f64::min);
        let max = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let stride = series.values.len().div_ceil(60).max(1);
        let points: Vec<Value> = series
            .values
            .iter()
            .enumerate()
            .step_by(stride)
            .map(|(i, v)| {
                json!([
                    series.time_at(i),
                    if v.is_finite() { json!(v) } else { Value::Null }
                ])
            })
            .collect();
        Ok(
            json!({"entity": entity, "metric": args.metric, "range": range,
                  "min": min, "mean": mean, "max": max, "last": finite.last(),
                  "gaps": series.values.len() - finite.len(), "points": points}),
        )
    }
}

/// A compact summary of a report for a model or a chat answer.
pub fn report_summary(report: &PatrolReport) -> Value {
    let findings: Vec<Value> = report
        .findings
        .iter()
        .take(20)
        .map(|f| {
            json!({"title": f.finding.title, "entity": f.finding.entity, "severity": f.finding.severity,
                   "status": f.status, "top_cause": f.finding.candidates.first().map(|c| &c.entity)})
        })
        .collect();
    json!({"id": report.id, "playbook": report.playbook_id, "generated": report.generated,
           "window": report.window, "health_score": report.health_score,
           "findings": findings, "resolved": report.resolved.len(),
           "summary": report.summary})
}
