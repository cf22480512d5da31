//! Report rendering: a [`vigil_model::PatrolReport`] as a self-contained HTML
//! page (inline SVG charts, no external assets), a Markdown digest for chat
//! tools, and JSON for machines, in English or Chinese.
//!
//! Owns presentation only: pure functions from the model to text. Does not
//! own what goes into a report (playbooks) or where it is stored or sent.

mod chart;
mod flame;
mod format;
mod graph;
mod html;
mod i18n;
mod json;
mod markdown;

use vigil_model::PatrolReport;

pub use json::SCHEMA_VERSION;

/// How to present a report to its readers (not what is in it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderOptions {
    /// Readers' offset from UTC in minutes, for every time shown (+480 for China).
    pub utc_offset_minutes: i32,
    /// Where the full HTML report can be read; linked from the Markdown digest.
    pub report_url: Option<String>,
    /// Byte limit of the Markdown digest (WeCom refuses markdown over 4096 bytes).
    pub max_markdown_bytes: usize,
}

impl Default for RenderOptions {
    /// China time, no link, and a digest that fits WeCom with room to spare.
    fn default() -> Self {
        Self {
            utc_offset_minutes: 480,
            report_url: None,
            max_markdown_bytes: 3800,
        }
    }
}

/// Why rendering failed: only a broken built-in template can cause it, which
/// the tests catch, so [`render_html`] falls back to a plain page instead of
/// failing a patrol.
#[derive(Debug, thiserror::Error)]
enum ReportError {
    /// The HTML template did not parse or render.
    #[error("report template: {0}")]
    Template(#[from] minijinja::Error),
}

/// The report as one self-contained HTML page (inline CSS and SVG, no
/// external assets), in the report's language.
pub fn render_html(report: &PatrolReport, options: &RenderOptions) -> String {
    match html::render(report, options) {
        Ok(page) => page,
        Err(error) => fallback_page(report, options, &error),
    }
}

/// A plain page with the Markdown digest, so readers still get the facts if
/// the template is ever broken.
fn fallback_page(report: &PatrolReport, options: &RenderOptions, error: &ReportError) -> String {
    let digest = render_markdown(
        report,
        &RenderOptions {
            max_markdown_bytes: usize::MAX,
            ..options.clone()
        },
    );
    format!(
        "<!DOCTYPE html><html lang=\"{}\"><head><meta charset=\"utf-8\"><title>Vigil report</title></head><body><p>{}</p><pre>{}</pre></body></html>",
        i18n::strings(report.language).html_lang,
        format::xml_escape(&error.to_string()),
        format::xml_escape(&digest)
    )
}

/// A short Markdown digest for chat tools (DingTalk, Feishu, WeCom, Slack):
/// new findings first, cut to `options.max_markdown_bytes`.
pub fn render_markdown(report: &PatrolReport, options: &RenderOptions) -> String {
    markdown::render(report, options)
}

/// The report as JSON for machines, with a `schema_version` field.
pub fn render_json(report: &PatrolReport) -> serde_json::Value {
    json::render(report)
}
