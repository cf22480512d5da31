//! Running a playbook end to end: evaluate over telemetry, compare with the
//! previous run, store the report and its renderings, keep incidents in step
//! with findings, and notify. Used by `vigil patrol run`, `vigil demo` and the
//! scheduler inside `vigil serve`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use async_trait::async_trait;
use serde_json::json;
use vigil_model::{
    FindingStatus, Language, PatrolOutcome, PatrolReport, PatrolRun, Severity, TelemetrySource,
    Timestamp,
};
use vigil_notify::{Message, MessageKind, Notifier, NotifyConfig};
use vigil_playbooks::{
    assemble, evaluate, Evaluation, EvaluationOptions, Playbook, PreviousFinding, PreviousState,
    ReportIdentity,
};
use vigil_report::{render_html, render_json, render_markdown, RenderOptions};
use vigil_scheduler::{HistoryError, Job, JobContext, JobError, JobSummary, RunHistory};
use vigil_store::embedded::{EmbeddedStore, Incident, IncidentStatus, ReportContent, StoredReport};

/// Everything a patrol run needs, built once and shared by all runs.
pub struct Patrols {
    /// Where telemetry is read.
    pub source: Arc<dyn TelemetrySource>,
    /// Vigil's state: reports, incidents, marks, deliveries, runs.
    pub state: EmbeddedStore,
    /// Detector and ranking settings.
    pub options: EvaluationOptions,
    /// How reports are rendered (time zone, link base).
    pub render: RenderOptions,
    /// Directory the HTML reports are also written to, when set.
    pub report_dir: Option<PathBuf>,
    /// Base URL of `vigil serve`, for links in notifications.
    pub base_url: Option<String>,
    /// One notifier per playbook, restricted to the routes it names.
    notifiers: BTreeMap<String, Notifier>,
}

/// What one run produced.
pub struct PatrolOutput {
    /// The evaluation (findings, tables, timings).
    pub evaluation: Evaluation,
    /// The report in the primary language, when the playbook writes reports.
    pub report: Option<PatrolReport>,
    /// HTML files written, per language.
    pub files: Vec<(Language, PathBuf)>,
    /// Incidents opened by this run.
    pub opened: usize,
    /// Incidents resolved by this run.
    pub resolved: usize,
    /// Notifications delivered / attempted.
    pub delivered: (usize, usize),
}

impl Patrols {
    /// Wires the parts; `notify` routes are split per playbook here so a bad
    /// route name fails at start, not at the first finding.
    pub fn new(
        source: Arc<dyn TelemetrySource>,
        state: EmbeddedStore,
        playbooks: &[Playbook],
        notify: &NotifyConfig,
    ) -> anyhow::Result<Self> {
        let mut notifiers = BTreeMap::new();
        if !notify.channels.is_empty() {
            for playbook in playbooks {
                let mut config = notify.clone();
                if !playbook.routes.is_empty() {
                    for route in &playbook.routes {
                        anyhow::ensure!(
                            notify.routes.iter().any(|r| &r.name == route),
                            "playbook {}: routes names {route:?}, which notify.routes does not define",
                            playbook.id
                        );
                    }
                    config.routes.retain(|r| playbook.routes.contains(&r.name));
                }
                let notifier = Notifier::new(config)
                    .with_context(|| format!("notifications of playbook {}", playbook.id))?;
                notifiers.insert(playbook.id.clone(), notifier);
            }
        }
        Ok(Self {
            source,
            state,
            options: EvaluationOptions::default(),
            render: RenderOptions::default(),
            report_dir: None,
            base_url: None,
            notifiers,
        })
    }

    /// Runs `playbook` for the window ending at `at` as run `run_id`.
    pub async fn run(
        &self,
        playbook: &Playbook,
        run_id: &str,
        at: Timestamp,
    ) -> anyhow::Result<PatrolOutput> {
        let evaluation = evaluate(playbook, self.source.as_ref(), at, &self.options)
            .await
            .with_context(|| format!("evaluating playbook {}", playbook.id))?;
        // Reports are dated and marks judged by the wall clock; the window
        // may end earlier (catch-up runs, replays of past days).
        let now = crate::cli::patrol::now().max(at);
        let previous = self.previous_state(playbook).await?;
        let marks = self.state.active_marks(now).await?;
        let languages = playbook
            .report
            .as_ref()
            .map_or_else(|| vec![Language::En], |r| r.languages.clone());
        let primary = languages.first().copied().unwrap_or_default();
        let identity = |language| ReportIdentity {
            report_id: run_id.to_owned(),
            run_id: run_id.to_owned(),
            language,
            generated: now,
        };
        let report = assemble(playbook, &evaluation, &previous, &marks, &identity(primary));

        let mut files = Vec::new();
        if playbook.report.is_some() {
            self.state
                .save_report(&StoredReport {
                    id: run_id.to_owned(),
                    playbook_id: Some(playbook.id.clone()),
                    patrol_run_id: Some(run_id.to_owned()),
                    created: now,
                    language: primary.as_str().to_owned(),
                    title: report.playbook_name.get(primary).to_owned(),
                    content: ReportContent::Json(render_json(&report)),
                })
                .await?;
            for language in &languages {
                let localized = PatrolReport {
                    language: *language,
                    ..report.clone()
                };
                let render = self.render_options(run_id, *language);
                let html = render_html(&localized, &render);
                self.state
                    .save_report(&StoredReport {
                        id: format!("{run_id}-{language}"),
                        playbook_id: Some(playbook.id.clone()),
                        patrol_run_id: Some(run_id.to_owned()),
                        created: now,
                        language: language.as_str().to_owned(),
                        title: localized.playbook_name.get(*language).to_owned(),
                        content: ReportContent::Html(html.clone()),
                    })
                    .await?;
                if let Some(dir) = &self.report_dir {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("cannot create {}", dir.display()))?;
                    let path = dir.join(format!("{run_id}.{language}.html"));
                    std::fs::write(&path, html)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    files.push((*language, path));
                }
            }
        }
        let (opened, resolved) = self.sync_incidents(playbook, &report, now).await?;
        let delivered = self.notify(playbook, &report, run_id, now).await?;
        Ok(PatrolOutput {
            evaluation,
            report: playbook.report.is_some().then_some(report),
            files,
            opened,
            resolved,
            delivered,
        })
    }

    fn render_options(&self, run_id: &str, language: Language) -> RenderOptions {
        RenderOptions {
            report_url: self
                .base_url
                .as_ref()
                .map(|base| format!("{}/reports/{run_id}-{language}", base.trim_end_matches('/'))),
            ..self.render.clone()
        }
    }

    /// The previous report of a report playbook; for the others, the open
    /// incidents this playbook opened.
    async fn previous_state(&self, playbook: &Playbook) -> anyhow::Result<PreviousState> {
        if playbook.report.is_some() {
            for stored in self.state.list_reports(Some(&playbook.id), 8).await? {
                if let ReportContent::Json(value) = stored.content {
                    match serde_json::from_value::<PatrolReport>(value) {
                        Ok(report) => return Ok(PreviousState::from_report(&report)),
                        Err(err) => tracing::warn!(
                            report = %stored.id,
                            "previous report is unreadable, comparing with nothing: {err}"
                        ),
                    }
                }
            }
            return Ok(PreviousState::default());
        }
        let findings = self
            .state
            .list_incidents(Some(IncidentStatus::Open), 100_000)
            .await?
            .into_iter()
            .filter(|incident| incident.payload["playbook_id"] == playbook.id.as_str())
            .filter_map(|incident| {
                let finding = &incident.payload["finding"];
                Some(PreviousFinding {
                    fingerprint: incident.fingerprint.clone(),
                    entity: finding["entity"].as_str()?.parse().ok()?,
                    title: finding["title"].as_str().unwrap_or_default().to_owned(),
                    severity: serde_json::from_value(finding["severity"].clone())
                        .unwrap_or(Severity::Warning),
                    first_seen: incident.opened,
                    last_seen: incident.opened,
                })
            })
            .collect();
        Ok(PreviousState {
            report_id: None,
            findings,
        })
    }

    /// Opens an incident per new active finding, refreshes still-open ones,
    /// resolves those of this playbook that are gone.
    async fn sync_incidents(
        &self,
        playbook: &Playbook,
        report: &PatrolReport,
        now: Timestamp,
    ) -> anyhow::Result<(usize, usize)> {
        let mut opened = 0;
        for (index, reported) in report.findings.iter().enumerate() {
            let fingerprint = &reported.finding.fingerprint;
            let payload = json!({
                "source": "patrol",
                "playbook_id": playbook.id,
                "run_id": report.run_id,
                "check_id": reported.check_id,
                "finding": reported.finding,
            });
            match self.state.open_incident(fingerprint).await? {
                Some(mut incident) => {
                    if incident.payload["playbook_id"] == playbook.id.as_str() {
                        incident.payload = payload;
                        self.state.save_incident(&incident).await?;
                    }
                }
                None => {
                    opened += 1;
                    self.state
                        .save_incident(&Incident {
                            id: format!("{}-{index}", report.run_id),
                            fingerprint: fingerprint.clone(),
                            status: IncidentStatus::Open,
                            opened: now,
                            resolved: None,
                            payload,
                            feedback: None,
                        })
                        .await?;
                }
            }
        }
        let mut resolved = 0;
        for gone in &report.resolved {
            if let Some(incident) = self.state.open_incident(&gone.fingerprint).await? {
                if incident.payload["playbook_id"] == playbook.id.as_str()
                    && self.state.resolve_incident(&incident.id, now).await?
                {
                    resolved += 1;
                }
            }
        }
        Ok((opened, resolved))
    }

    /// Report playbooks send their digest; the others send new and resolved
    /// findings. Acknowledged and suppressed findings are not notified.
    async fn notify(
        &self,
        playbook: &Playbook,
        report: &PatrolReport,
        run_id: &str,
        now: Timestamp,
    ) -> anyhow::Result<(usize, usize)> {
        let Some(notifier) = self.notifiers.get(&playbook.id) else {
            return Ok((0, 0));
        };
        let fresh: Vec<_> = report
            .findings
            .iter()
            .filter(|f| f.status == FindingStatus::New && f.mark.is_none())
            .collect();
        let mut messages = Vec::new();
        let services = |entities: &mut dyn Iterator<Item = &vigil_model::EntityId>| {
            let mut list: Vec<_> = entities.cloned().collect();
            list.sort();
            list.dedup();
            list
        };
        if playbook.report.is_some() {
            let language = report.language;
            let render = self.render_options(run_id, language);
            let digest = render_markdown(report, &render);
            let severity = report
                .findings
                .iter()
                .map(|f| f.finding.severity)
                .max()
                .unwrap_or(Severity::Info);
            messages.push(Message {
                id: run_id.to_owned(),
                kind: MessageKind::Patrol,
                title: format!(
                    "{} — {} ({} new, {} open, {} resolved)",
                    report.playbook_name.get(language),
                    report.health_score,
                    fresh.len(),
                    report.findings.len(),
                    report.resolved.len()
                ),
                severity,
                services: services(&mut report.findings.iter().map(|f| &f.finding.entity)),
                text: digest.clone(),
                markdown: digest,
                html: Some(render_html(report, &render)),
                link: render.report_url.clone(),
                created: now,
                extra: json!({ "report_id": run_id, "health_score": report.health_score }),
            });
        } else {
            for finding in &fresh {
                let top = finding
                    .finding
                    .candidates
                    .first()
                    .map(|c| format!("\n\nLikely root cause: **{}**", c.entity))
                    .unwrap_or_default();
                let body = format!(
                    "**{}**\n\n{}{top}\n\n{}",
                    finding.finding.title, finding.check_name.en, finding.runbook.en
                );
                messages.push(Message {
                    id: format!("{run_id}:{}", finding.finding.fingerprint),
                    kind: MessageKind::Alert,
                    title: finding.finding.title.clone(),
                    severity: finding.finding.severity,
                    services: vec![finding.finding.entity.clone()],
                    markdown: body.clone(),
                    text: body,
                    html: None,
                    link: self.base_url.clone(),
                    created: now,
                    extra: json!({ "fingerprint": finding.finding.fingerprint }),
                });
            }
            for gone in &report.resolved {
                messages.push(Message {
                    id: format!("{run_id}:resolved:{}", gone.fingerprint),
                    kind: MessageKind::Resolved,
                    title: format!("Resolved: {}", gone.title),
                    severity: gone.severity,
                    services: vec![gone.entity.clone()],
                    markdown: format!("Resolved: **{}**", gone.title),
                    text: format!("Resolved: {}", gone.title),
                    html: None,
                    link: self.base_url.clone(),
                    created: now,
                    extra: json!({ "fingerprint": gone.fingerprint }),
                });
            }
        }
        let mut delivered = 0;
        let mut attempted = 0;
        for message in &messages {
            let records = notifier.send(message).await;
            attempted += records.len();
            delivered += records.iter().filter(|r| r.outcome.is_delivered()).count();
            self.state.save_deliveries(&records).await?;
        }
        Ok((delivered, attempted))
    }
}

/// A playbook as a scheduler job.
pub struct PatrolJob {
    /// The shared parts.
    pub patrols: Arc<Patrols>,
    /// The playbook run by this job.
    pub playbook: Playbook,
}

#[async_trait]
impl Job for PatrolJob {
    async fn run(&self, context: JobContext) -> Result<JobSummary, JobError> {
        let run = self
            .patrols
            .run(&self.playbook, &context.run_id, context.scheduled_for);
        tokio::select! {
            result = run => match result {
                Ok(output) => Ok(JobSummary {
                    findings: u32::try_from(output.evaluation.findings.len()).unwrap_or(u32::MAX),
                }),
                Err(err) => Err(JobError::new(format!("{err:#}"))),
            },
            () = context.cancel.cancelled() => Err(JobError::new("cancelled")),
        }
    }
}

/// Patrol run history kept in the embedded store.
pub struct StoreHistory(pub EmbeddedStore);

#[async_trait]
impl RunHistory for StoreHistory {
    async fn record(&self, run: &PatrolRun) -> Result<(), HistoryError> {
        self.0.save_patrol_run(run).await.map_err(HistoryError::new)
    }

    async fn last_run(&self, job_id: &str) -> Result<Option<PatrolRun>, HistoryError> {
        Ok(self
            .0
            .list_patrol_runs(Some(job_id), 1)
            .await
            .map_err(HistoryError::new)?
            .into_iter()
            .next())
    }
}

/// The outcome a run's finding count maps to.
pub fn outcome_of(findings: usize) -> PatrolOutcome {
    if findings > 0 {
        PatrolOutcome::Findings
    } else {
        PatrolOutcome::Clean
    }
}
