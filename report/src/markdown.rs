//! The Markdown digest for chat tools: what an on-call engineer needs from a
//! phone screen (score, counts, new findings with their likely root cause),
//! then a link to the full page. It uses only the Markdown every target
//! (DingTalk, Feishu, WeCom, Slack) renders: headings, bold, lists, links,
//! code spans, and stays under a byte limit, cut between lines.

use vigil_model::{FindingStatus, Language, PatrolReport, ReportedFinding};

use crate::format::{self, ellipsize, percent};
use crate::i18n;
use crate::RenderOptions;

/// Untrusted text made safe for one Markdown line: no line breaks, no markup
/// characters, no `<…>` (Slack reads that as a link).
fn clean(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
    {
        match c {
            '*' | '_' | '[' | ']' | '`' | '#' | '|' | '~' => {
                out.push('\\');
                out.push(c);
            }
            '<' => out.push('‹'),
            '>' => out.push('›'),
            _ => out.push(c),
        }
    }
    out
}

/// An entity id as a code span (backticks removed so the span cannot be closed early).
fn code(text: &str) -> String {
    format!("`{}`", text.replace(['`', '\n', '\r'], ""))
}

fn finding_line(f: &ReportedFinding, language: Language, detailed: bool) -> String {
    let finding = &f.finding;
    let mut line = format!(
        "- **[{}]** {} {}",
        i18n::severity(language, finding.severity),
        clean(&format::title(finding, language)),
        code(finding.entity.as_str())
    );
    if let Some(mark) = &f.mark {
        line.push_str(&format!(" ({})", i18n::mark(language, mark.kind)));
    }
    if !detailed {
        return line;
    }
    let t = i18n::strings(language);
    if let Some(top) = finding.candidates.first() {
        line.push_str(&format!(
            " — {}: {} {}",
            t.top_root_cause,
            code(top.entity.as_str()),
            percent(top.confidence, 0)
        ));
    }
    if let Some(summary) = finding
        .anomalies
        .iter()
        .map(|a| a.evidence.summary.trim())
        .find(|s| !s.is_empty())
    {
        line.push_str(&format!(" — {}", clean(&ellipsize(summary, 140))));
    }
    line
}

/// The longest prefix of `text` of at most `max` bytes that ends on a char boundary.
fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

pub(crate) fn render(report: &PatrolReport, options: &RenderOptions) -> String {
    let language = report.language;
    let t = i18n::strings(language);
    let offset = options.utc_offset_minutes;
    let new: Vec<&ReportedFinding> = report
        .findings
        .iter()
        .filter(|f| f.status == FindingStatus::New)
        .collect();
    let open: Vec<&ReportedFinding> = report
        .findings
        .iter()
        .filter(|f| f.status == FindingStatus::StillOpen)
        .collect();

    let mut head = vec![
        format!(
            "## {} · {}",
            clean(report.playbook_name.get(language)),
            t.report
        ),
        format!(
            "**{} {}/100** · {} {} · {} {} · {} {} · {} {}",
            t.health_score,
            report.health_score,
            t.new_findings,
            new.len(),
            t.still_open_findings,
            open.len(),
            t.resolved,
            report.resolved.len(),
            t.suppressed,
            report.suppressed.len()
        ),
        format!(
            "{}: {} ({})",
            t.window,
            format::range(report.window.start, report.window.end, offset),
            format::offset_label(offset)
        ),
    ];
    let c = &report.coverage;
    if c.services > 0 && c.services_with_data == 0 {
        head.push(format!("> ⚠️ {}", t.blind_warning));
    } else if !c.silent.is_empty() || !c.checks_failed.is_empty() || !c.without_data.is_empty() {
        head.push(format!("> ⚠️ {}", t.partly_blind_warning));
    }
    if new.is_empty() && open.is_empty() {
        head.push(t.no_findings.to_owned());
    }

    // Body lines; `true` marks a finding (what "… N more" counts).
    let mut body: Vec<(String, bool)> = Vec::new();
    if !new.is_empty() {
        body.push((format!("\n### {}", t.new_findings), false));
        body.extend(new.iter().map(|f| (finding_line(f, language, true), true)));
    }
    if !open.is_empty() {
        body.push((format!("\n### {}", t.still_open_findings), false));
        body.extend(
            open.iter()
                .map(|f| (finding_line(f, language, false), true)),
        );
    }

    let mut tail = Vec::new();
    if let Some(url) = &options.report_url {
        tail.push(String::new());
        tail.push(format!(
            "[{}]({})",
            t.full_report,
            url.replace([' ', ')'], "")
        ));
    }

    let joined_len = |lines: &[String]| lines.iter().map(|l| l.len() + 1).sum::<usize>();
    let max = options.max_markdown_bytes;
    let more_reserve = 64;
    // Blank lines between blocks: CommonMark renderers (Slack, Feishu) would
    // otherwise join the head lines into one paragraph.
    let mut out: Vec<String> = Vec::new();
    for line in head {
        if !out.is_empty() {
            out.push(String::new());
        }
        out.push(line);
    }
    let budget = max.saturating_sub(joined_len(&tail) + more_reserve);
    let mut used = joined_len(&out);
    let mut shown = 0usize;
    let total = body.iter().filter(|(_, f)| *f).count();
    let mut header_pending: Option<String> = None;
    for (line, is_finding) in &body {
        if !is_finding {
            header_pending = Some(line.clone());
            continue;
        }
        let extra = header_pending.as_ref().map_or(0, |h| h.len() + 1) + line.len() + 1;
        if used + extra > budget {
            break;
        }
        if let Some(h) = header_pending.take() {
            out.push(h);
        }
        out.push(line.clone());
        used += extra;
        shown += 1;
    }
    if shown < total {
        let rest = total - shown;
        out.push(match language {
            Language::En => format!("… {rest} more findings in the full report"),
            Language::Zh => format!("… 另有 {rest} 项问题，见完整报告"),
        });
    }
    out.extend(tail);
    let text = out.join("\n");
    cut(&text, max).to_owned()
}
