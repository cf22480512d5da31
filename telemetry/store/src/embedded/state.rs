//! Vigil's own state: patrol runs, reports and incidents.
//!
//! Rows are typed structs; free-form parts (report bodies in JSON, incident
//! payloads and feedback) are stored as JSON text so later features can grow
//! them without a migration. Ids are chosen by the caller (any unique text),
//! so a run or incident can be referred to before it is first saved.

use rusqlite::{params, Row};
use serde::{Deserialize, Serialize};
use vigil_model::{DeliveryRecord, FindingMark, MarkKind, PatrolOutcome, PatrolRun, Timestamp};

use super::database::Database;
use super::error::StoreError;

/// A report's body: rendered text in a format, or structured JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "format", content = "content")]
pub enum ReportContent {
    /// Markdown, as chat tools and the web page render it.
    Markdown(String),
    /// A standalone HTML page.
    Html(String),
    /// Plain text.
    Text(String),
    /// Structured data for other tools.
    Json(serde_json::Value),
}

impl ReportContent {
    fn format(&self) -> &'static str {
        match self {
            Self::Markdown(_) => "markdown",
            Self::Html(_) => "html",
            Self::Text(_) => "text",
            Self::Json(_) => "json",
        }
    }
}

/// A report as kept for later reading.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredReport {
    /// Unique id.
    pub id: String,
    /// The playbook that produced it, if any.
    pub playbook_id: Option<String>,
    /// The patrol run that produced it, if any.
    pub patrol_run_id: Option<String>,
    /// When it was written.
    pub created: Timestamp,
    /// Language tag of the text, e.g. `en` or `zh-CN`.
    pub language: String,
    /// One-line title.
    pub title: String,
    /// The body.
    pub content: ReportContent,
}

/// Whether an incident still needs attention.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IncidentStatus {
    /// Still happening or not yet confirmed over.
    Open,
    /// Over.
    Resolved,
}

impl IncidentStatus {
    /// The status's name as stored.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Resolved => "resolved",
        }
    }
}

/// What an operator said about an incident's suggested causes; kept so later
/// ranking can learn from it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IncidentFeedback {
    /// Whether the top suggestion was the real cause.
    pub correct: bool,
    /// The real root-cause entity id, when the operator named another one.
    pub actual_cause: Option<String>,
    /// Free text.
    pub comment: String,
    /// When the feedback was given.
    pub given: Timestamp,
}

/// A problem tracked from first detection to resolution; the same fingerprint
/// seen again while open is the same incident.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    /// Unique id.
    pub id: String,
    /// Stable identity of the problem (e.g. fault kind + root entity), for deduplication.
    pub fingerprint: String,
    /// Open or resolved.
    pub status: IncidentStatus,
    /// When it was first detected.
    pub opened: Timestamp,
    /// When it was resolved.
    pub resolved: Option<Timestamp>,
    /// Findings and root-cause suggestions as the analysis produced them.
    pub payload: serde_json::Value,
    /// The operator's feedback, once given.
    pub feedback: Option<IncidentFeedback>,
}

fn damaged(path: &str, table: &'static str, detail: String) -> StoreError {
    StoreError::Damaged {
        path: path.to_owned(),
        table,
        detail,
    }
}

fn to_json<T: Serialize>(what: &'static str, value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|source| StoreError::Encode { what, source })
}

impl Database {
    /// Inserts or replaces a patrol run.
    pub fn save_patrol_run(&self, run: &PatrolRun) -> Result<(), StoreError> {
        self.connection
            .prepare_cached(
                "INSERT INTO patrol_run (id, playbook_id, started_at, ended_at, outcome, findings, error)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (id) DO UPDATE SET playbook_id = excluded.playbook_id,
                    started_at = excluded.started_at, ended_at = excluded.ended_at,
                    outcome = excluded.outcome, findings = excluded.findings, error = excluded.error",
            )
            .and_then(|mut upsert| {
                upsert.execute(params![
                    run.id,
                    run.playbook_id,
                    run.started.secs(),
                    run.ended.map(Timestamp::secs),
                    run.outcome.as_str(),
                    run.findings,
                    run.error
                ])
            })
            .map_err(self.error("patrol_run"))?;
        Ok(())
    }

    fn patrol_run_of(&self, row: &Row<'_>) -> Result<PatrolRun, StoreError> {
        let table = "patrol_run";
        let outcome: String = row.get(4).map_err(self.error(table))?;
        let outcome = PatrolOutcome::ALL
            .into_iter()
            .find(|known| known.as_str() == outcome)
            .ok_or_else(|| damaged(&self.path, table, format!("unknown outcome {outcome:?}")))?;
        Ok(PatrolRun {
            id: row.get(0).map_err(self.error(table))?,
            playbook_id: row.get(1).map_err(self.error(table))?,
            started: Timestamp(row.get(2).map_err(self.error(table))?),
            ended: row
                .get::<_, Option<i64>>(3)
                .map_err(self.error(table))?
                .map(Timestamp),
            outcome,
            findings: row.get(5).map_err(self.error(table))?,
            error: row.get(6).map_err(self.error(table))?,
        })
    }

    /// The patrol run `id`, if stored.
    pub fn patrol_run(&self, id: &str) -> Result<Option<PatrolRun>, StoreError> {
        let table = "patrol_run";
        let mut select = self
            .connection
            .prepare_cached(
                "SELECT id, playbook_id, started_at, ended_at, outcome, findings, error
                 FROM patrol_run WHERE id = ?1",
            )
            .map_err(self.error(table))?;
        let mut rows = select.query([id]).map_err(self.error(table))?;
        match rows.next().map_err(self.error(table))? {
            Some(row) => Ok(Some(self.patrol_run_of(row)?)),
            None => Ok(None),
        }
    }

    /// Latest patrol runs first, of one playbook or all.
    pub fn list_patrol_runs(
        &self,
        playbook_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<PatrolRun>, StoreError> {
        let table = "patrol_run";
        let mut select = self
            .connection
            .prepare_cached(
                "SELECT id, playbook_id, started_at, ended_at, outcome, findings, error
                 FROM patrol_run WHERE (?1 IS NULL OR playbook_id = ?1)
                 ORDER BY started_at DESC, id DESC LIMIT ?2",
            )
            .map_err(self.error(table))?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut rows = select
            .query(params![playbook_id, limit])
            .map_err(self.error(table))?;
        let mut runs = Vec::new();
        while let Some(row) = rows.next().map_err(self.error(table))? {
            runs.push(self.patrol_run_of(row)?);
        }
        Ok(runs)
    }

    /// Inserts or replaces a report.
    pub fn save_report(&self, report: &StoredReport) -> Result<(), StoreError> {
        let content = match &report.content {
            ReportContent::Markdown(text)
            | ReportContent::Html(text)
            | ReportContent::Text(text) => text.clone(),
            ReportContent::Json(value) => to_json("report content", value)?,
        };
        self.connection
            .prepare_cached(
                "INSERT OR REPLACE INTO report
                    (id, playbook_id, patrol_run_id, created_at, language, title, format, content)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .and_then(|mut upsert| {
                upsert.execute(params![
                    report.id,
                    report.playbook_id,
                    report.patrol_run_id,
                    report.created.secs(),
                    report.language,
                    report.title,
                    report.content.format(),
                    content
                ])
            })
            .map_err(self.error("report"))?;
        Ok(())
    }

    fn report_of(&self, row: &Row<'_>) -> Result<StoredReport, StoreError> {
        let table = "report";
        let id: String = row.get(0).map_err(self.error(table))?;
        let format: String = row.get(6).map_err(self.error(table))?;
        let text: String = row.get(7).map_err(self.error(table))?;
        let content = match format.as_str() {
            "markdown" => ReportContent::Markdown(text),
            "html" => ReportContent::Html(text),
            "text" => ReportContent::Text(text),
            "json" => ReportContent::Json(
                serde_json::from_str(&text)
                    .map_err(|error| damaged(&self.path, table, format!("report {id}: {error}")))?,
            ),
            other => {
                return Err(damaged(
                    &self.path,
                    table,
                    format!("report {id}: unknown format {other:?}"),
                ))
            }
        };
        Ok(StoredReport {
            playbook_id: row.get(1).map_err(self.error(table))?,
            patrol_run_id: row.get(2).map_err(self.error(table))?,
            created: Timestamp(row.get(3).map_err(self.error(table))?),
            language: row.get(4).map_err(self.error(table))?,
            title: row.get(5).map_err(self.error(table))?,
            content,
            id,
        })
    }

    /// The report `id`, if stored.
    pub fn report(&self, id: &str) -> Result<Option<StoredReport>, StoreError> {
        let table = "report";
        let mut select = self
            .connection
            .prepare_cached(
                "SELECT id, playbook_id, patrol_run_id, created_at, language, title, format, content
                 FROM report WHERE id = ?1",
            )
            .map_err(self.error(table))?;
        let mut rows = select.query([id]).map_err(self.error(table))?;
        match rows.next().map_err(self.error(table))? {
            Some(row) => Ok(Some(self.report_of(row)?)),
            None => Ok(None),
        }
    }

    /// Latest reports first, of one playbook or all.
    pub fn list_reports(
        &self,
        playbook_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StoredReport>, StoreError> {
        let table = "report";
        let mut select = self
            .connection
            .prepare_cached(
                "SELECT id, playbook_id, patrol_run_id, created_at, language, title, format, content
                 FROM report WHERE (?1 IS NULL OR playbook_id = ?1)
                 ORDER BY created_at DESC, id DESC LIMIT ?2",
            )
            .map_err(self.error(table))?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut rows = select
            .query(params![playbook_id, limit])
            .map_err(self.error(table))?;
        let mut reports = Vec::new();
        while let Some(row) = rows.next().map_err(self.error(table))? {
            reports.push(self.report_of(row)?);
        }
        Ok(reports)
    }

    /// Inserts or replaces an incident.
    pub fn save_incident(&self, incident: &Incident) -> Result<(), StoreError> {
        let payload = to_json("incident payload", &incident.payload)?;
        let feedback = incident
            .feedback
            .as_ref()
            .map(|feedback| to_json("incident feedback", feedback))
            .transpose()?;
        self.connection
            .prepare_cached(
                "INSERT OR REPLACE INTO incident
                    (id, fingerprint, status, opened_at, resolved_at, payload, feedback)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .and_then(|mut upsert| {
                upsert.execute(params![
                    incident.id,
                    incident.fingerprint,
                    incident.status.as_str(),
                    incident.opened.secs(),
                    incident.resolved.map(Timestamp::secs),
                    payload,
                    feedback
                ])
            })
            .map_err(self.error("incident"))?;
        Ok(())
    }

    fn incident_of(&self, row: &Row<'_>) -> Result<Incident, StoreError> {
        let table = "incident";
        let id: String = row.get(0).map_err(self.error(table))?;
        let status: String = row.get(2).map_err(self.error(table))?;
        let status = match status.as_str() {
            "open" => IncidentStatus::Open,
            "resolved" => IncidentStatus::Resolved,
            other => {
                return Err(damaged(
                    &self.path,
                    table,
                    format!("incident {id}: unknown status {other:?}"),
                ))
            }
        };
        let payload: String = row.get(5).map_err(self.error(table))?;
        let payload = serde_json::from_str(&payload).map_err(|error| {
            damaged(&self.path, table, format!("incident {id} payload: {error}"))
        })?;
        let feedback: Option<String> = row.get(6).map_err(self.error(table))?;
        let feedback = feedback
            .map(|text| serde_json::from_str(&text))
            .transpose()
            .map_err(|error| {
                damaged(
                    &self.path,
                    table,
                    format!("incident {id} feedback: {error}"),
                )
            })?;
        Ok(Incident {
            fingerprint: row.get(1).map_err(self.error(table))?,
            status,
            opened: Timestamp(row.get(3).map_err(self.error(table))?),
            resolved: row
                .get::<_, Option<i64>>(4)
                .map_err(self.error(table))?
                .map(Timestamp),
            payload,
            feedback,
            id,
        })
    }

    fn incidents_where(
        &self,
        condition: &str,
        arguments: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<Incident>, StoreError> {
        let table = "incident";
        let sql = format!(
            "SELECT id, fingerprint, status, opened_at, resolved_at, payload, feedback
             FROM incident WHERE {condition}"
        );
        let mut select = self
            .connection
            .prepare_cached(&sql)
            .map_err(self.error(table))?;
        let mut rows = select.query(arguments).map_err(self.error(table))?;
        let mut incidents = Vec::new();
        while let Some(row) = rows.next().map_err(self.error(table))? {
            incidents.push(self.incident_of(row)?);
        }
        Ok(incidents)
    }

    /// The incident `id`, if stored.
    pub fn incident(&self, id: &str) -> Result<Option<Incident>, StoreError> {
        Ok(self.incidents_where("id = ?1", &[&id])?.into_iter().next())
    }

    /// The open incident with `fingerprint`, if any (the latest when several are).
    pub fn open_incident(&self, fingerprint: &str) -> Result<Option<Incident>, StoreError> {
        Ok(self
            .incidents_where(
                "fingerprint = ?1 AND status = 'open' ORDER BY opened_at DESC, id DESC LIMIT 1",
                &[&fingerprint],
            )?
            .into_iter()
            .next())
    }

    /// Latest incidents first, with one status or any.
    pub fn list_incidents(
        &self,
        status: Option<IncidentStatus>,
        limit: usize,
    ) -> Result<Vec<Incident>, StoreError> {
        let status = status.map(IncidentStatus::as_str);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.incidents_where(
            "(?1 IS NULL OR status = ?1) ORDER BY opened_at DESC, id DESC LIMIT ?2",
            &[&status, &limit],
        )
    }

    /// Records feedback on an incident; `false` when there is no such incident.
    pub fn set_incident_feedback(
        &self,
        id: &str,
        feedback: &IncidentFeedback,
    ) -> Result<bool, StoreError> {
        let feedback = to_json("incident feedback", feedback)?;
        let changed = self
            .connection
            .prepare_cached("UPDATE incident SET feedback = ?2 WHERE id = ?1")
            .and_then(|mut update| update.execute(params![id, feedback]))
            .map_err(self.error("incident"))?;
        Ok(changed > 0)
    }

    /// Marks an open incident resolved at `at`; `false` when it is not open or does not exist.
    pub fn resolve_incident(&self, id: &str, at: Timestamp) -> Result<bool, StoreError> {
        let changed = self
            .connection
            .prepare_cached(
                "UPDATE incident SET status = 'resolved', resolved_at = ?2 WHERE id = ?1 AND status = 'open'",
            )
            .and_then(|mut update| update.execute(params![id, at.secs()]))
            .map_err(self.error("incident"))?;
        Ok(changed > 0)
    }
}

impl Database {
    /// Records an acknowledgement or suppression.
    pub fn save_mark(&self, mark: &FindingMark) -> Result<(), StoreError> {
        self.connection
            .prepare_cached(
                "INSERT OR REPLACE INTO finding_mark
                    (fingerprint, kind, reason, marked_by, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .and_then(|mut insert| {
                insert.execute(params![
                    mark.fingerprint,
                    mark.kind.as_str(),
                    mark.reason,
                    mark.by,
                    mark.created.secs(),
                    mark.expires.secs()
                ])
            })
            .map_err(self.error("finding_mark"))?;
        Ok(())
    }

    /// Marks in force at `now`, latest first (at most one per fingerprint: the latest).
    pub fn active_marks(&self, now: Timestamp) -> Result<Vec<FindingMark>, StoreError> {
        let table = "finding_mark";
        let mut select = self
            .connection
            .prepare_cached(
                "SELECT fingerprint, kind, reason, marked_by, created_at, expires_at
                 FROM finding_mark WHERE created_at <= ?1 AND expires_at > ?1
                 ORDER BY created_at DESC",
            )
            .map_err(self.error(table))?;
        let mut rows = select
            .query(params![now.secs()])
            .map_err(self.error(table))?;
        let mut marks: Vec<FindingMark> = Vec::new();
        while let Some(row) = rows.next().map_err(self.error(table))? {
            let kind: String = row.get(1).map_err(self.error(table))?;
            let kind = match kind.as_str() {
                "acknowledged" => MarkKind::Acknowledged,
                "suppressed" => MarkKind::Suppressed,
                other => {
                    return Err(damaged(
                        &self.path,
                        table,
                        format!("unknown mark kind {other:?}"),
                    ))
                }
            };
            let mark = FindingMark {
                fingerprint: row.get(0).map_err(self.error(table))?,
                kind,
                reason: row.get(2).map_err(self.error(table))?,
                by: row.get(3).map_err(self.error(table))?,
                created: Timestamp(row.get(4).map_err(self.error(table))?),
                expires: Timestamp(row.get(5).map_err(self.error(table))?),
            };
            if !marks.iter().any(|m| m.fingerprint == mark.fingerprint) {
                marks.push(mark);
            }
        }
        Ok(marks)
    }

    /// Ends the marks of `fingerprint` at `now`; returns how many were in force.
    pub fn clear_marks(&self, fingerprint: &str, now: Timestamp) -> Result<usize, StoreError> {
        self.connection
            .prepare_cached(
                "UPDATE finding_mark SET expires_at = ?2
                 WHERE fingerprint = ?1 AND created_at <= ?2 AND expires_at > ?2",
            )
            .and_then(|mut update| update.execute(params![fingerprint, now.secs()]))
            .map_err(self.error("finding_mark"))
    }

    /// Appends delivery records.
    pub fn save_deliveries(&mut self, records: &[DeliveryRecord]) -> Result<(), StoreError> {
        let path = self.path.clone();
        let transaction = self
            .connection
            .transaction()
            .map_err(|source| StoreError::sqlite(&path, "delivery", source))?;
        {
            let mut insert = transaction
                .prepare_cached(
                    "INSERT INTO delivery
                        (message_id, channel, route, attempts, outcome, http_status, at, elapsed_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .map_err(|source| StoreError::sqlite(&path, "delivery", source))?;
            for record in records {
                let outcome = to_json("delivery outcome", &record.outcome)?;
                insert
                    .execute(params![
                        record.message_id,
                        record.channel,
                        record.route,
                        record.attempts,
                        outcome,
                        record.http_status,
                        record.at.secs(),
                        i64::try_from(record.elapsed_ms).unwrap_or(i64::MAX)
                    ])
                    .map_err(|source| StoreError::sqlite(&path, "delivery", source))?;
            }
        }
        transaction
            .commit()
            .map_err(|source| StoreError::sqlite(&path, "delivery", source))
    }

    /// Up to `limit` delivery records, latest first.
    pub fn list_deliveries(&self, limit: usize) -> Result<Vec<DeliveryRecord>, StoreError> {
        let table = "delivery";
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut select = self
            .connection
            .prepare_cached(
                "SELECT message_id, channel, route, attempts, outcome, http_status, at, elapsed_ms
                 FROM delivery ORDER BY at DESC, rowid DESC LIMIT ?1",
            )
            .map_err(self.error(table))?;
        let mut rows = select.query(params![limit]).map_err(self.error(table))?;
        let mut records = Vec::new();
        while let Some(row) = rows.next().map_err(self.error(table))? {
            let outcome: String = row.get(4).map_err(self.error(table))?;
            let outcome = serde_json::from_str(&outcome)
                .map_err(|error| damaged(&self.path, table, format!("outcome: {error}")))?;
            records.push(DeliveryRecord {
                message_id: row.get(0).map_err(self.error(table))?,
                channel: row.get(1).map_err(self.error(table))?,
                route: row.get(2).map_err(self.error(table))?,
                attempts: row.get(3).map_err(self.error(table))?,
                outcome,
                http_status: row.get(5).map_err(self.error(table))?,
                at: Timestamp(row.get(6).map_err(self.error(table))?),
                elapsed_ms: u64::try_from(row.get::<_, i64>(7).map_err(self.error(table))?)
                    .unwrap_or(0),
            });
        }
        Ok(records)
    }
}
