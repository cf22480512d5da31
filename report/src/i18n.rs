//! Every fixed string of the rendered reports, in English and Chinese, so a
//! report never mixes languages and a missing translation is a compile error.

use serde::Serialize;
use vigil_model::{
    FindingStatus, Language, MarkKind, RequestMetric, ResourceMetric, Severity, SignalKind,
};

/// The fixed strings of one language; templates read them as `t.<field>`.
#[derive(Debug, Serialize)]
pub(crate) struct Strings {
    pub html_lang: &'static str,
    pub report: &'static str,
    pub window: &'static str,
    pub generated: &'static str,
    pub health_score: &'static str,
    pub new_findings: &'static str,
    pub still_open_findings: &'static str,
    pub resolved: &'static str,
    pub suppressed: &'static str,
    pub no_findings: &'static str,
    pub severity: &'static str,
    pub entity: &'static str,
    pub check: &'static str,
    pub first_seen: &'static str,
    pub last_seen: &'static str,
    pub acknowledged_by: &'static str,
    pub until: &'static str,
    pub reason: &'static str,
    pub root_cause_candidates: &'static str,
    pub rank: &'static str,
    pub confidence: &'static str,
    pub signals: &'static str,
    pub started: &'static str,
    pub no_candidates: &'static str,
    pub propagation: &'static str,
    pub propagation_legend: &'static str,
    pub evidence: &'static str,
    pub baseline: &'static str,
    pub observed: &'static str,
    pub expected_band: &'static str,
    pub anomaly_window: &'static str,
    pub hottest_stacks: &'static str,
    pub runbook: &'static str,
    pub no_runbook: &'static str,
    pub slow_sql: &'static str,
    pub slow_redis: &'static str,
    pub server: &'static str,
    pub statement: &'static str,
    pub command: &'static str,
    pub count: &'static str,
    pub errors: &'static str,
    pub mean: &'static str,
    pub p99: &'static str,
    pub max: &'static str,
    pub slos: &'static str,
    pub service: &'static str,
    pub objective: &'static str,
    pub target: &'static str,
    pub achieved: &'static str,
    pub budget_remaining: &'static str,
    pub worst_burn: &'static str,
    pub cpu_consumers: &'static str,
    pub mean_cores: &'static str,
    pub peak_cores: &'static str,
    pub limit: &'static str,
    pub coverage: &'static str,
    pub services_with_data: &'static str,
    pub hosts_with_data: &'static str,
    pub checks_run: &'static str,
    pub silent_services: &'static str,
    pub services_without_data: &'static str,
    pub failed_checks: &'static str,
    pub blind_warning: &'static str,
    pub partly_blind_warning: &'static str,
    pub full_coverage: &'static str,
    pub machine_summary: &'static str,
    pub machine_summary_note: &'static str,
    pub none: &'static str,
    pub more: &'static str,
    pub full_report: &'static str,
    pub top_root_cause: &'static str,
    pub findings: &'static str,
    pub contents: &'static str,
}

const EN: Strings = Strings {
    html_lang: "en",
    report: "Patrol report",
    window: "Window",
    generated: "Generated",
    health_score: "Health score",
    new_findings: "New findings",
    still_open_findings: "Still open",
    resolved: "Resolved",
    suppressed: "Suppressed",
    no_findings: "No findings: nothing needs attention in this window.",
    severity: "Severity",
    entity: "Entity",
    check: "Check",
    first_seen: "First seen",
    last_seen: "Last seen",
    acknowledged_by: "Acknowledged by",
    until: "until",
    reason: "Reason",
    root_cause_candidates: "Root-cause candidates",
    rank: "#",
    confidence: "Confidence",
    signals: "Signals",
    started: "Started",
    no_candidates: "No root-cause candidate was ranked.",
    propagation: "Propagation path",
    propagation_legend: "red: likely root cause · orange: propagation path · arrows point from caller to callee",
    evidence: "Evidence",
    baseline: "baseline",
    observed: "observed",
    expected_band: "expected band",
    anomaly_window: "anomaly window",
    hottest_stacks: "Hottest stacks (on-CPU flame graph)",
    runbook: "What to do",
    no_runbook: "No runbook for this check.",
    slow_sql: "Slow SQL",
    slow_redis: "Slow Redis commands",
    server: "Server",
    statement: "Statement",
    command: "Command",
    count: "Count",
    errors: "Errors",
    mean: "Mean",
    p99: "p99",
    max: "Max",
    slos: "Service-level objectives",
    service: "Service",
    objective: "Objective",
    target: "Target",
    achieved: "Achieved",
    budget_remaining: "Budget left",
    worst_burn: "Worst burn (1 h)",
    cpu_consumers: "Top CPU consumers",
    mean_cores: "Mean cores",
    peak_cores: "Peak cores",
    limit: "Limit",
    coverage: "Coverage",
    services_with_data: "Services with data",
    hosts_with_data: "Hosts with data",
    checks_run: "Checks run",
    silent_services: "Went silent",
    services_without_data: "Never sent data",
    failed_checks: "Failed checks",
    blind_warning: "The patrol is blind: no service sent request data in this window, so \"no findings\" means nothing.",
    partly_blind_warning: "The patrol is partly blind: some services or checks could not be seen; problems there would not be reported.",
    full_coverage: "Every service and host sent data and every check ran.",
    machine_summary: "Summary (machine-written)",
    machine_summary_note: "Written by a language model from the findings below; the findings are the facts.",
    none: "none",
    more: "more",
    full_report: "Full report",
    top_root_cause: "likely root cause",
    findings: "Findings",
    contents: "Contents",
};

const ZH: Strings = Strings {
    html_lang: "zh-CN",
    report: "巡检报告",
    window: "巡检时段",
    generated: "生成时间",
    health_score: "健康分",
    new_findings: "新增问题",
    still_open_findings: "持续问题",
    resolved: "已恢复",
    suppressed: "已屏蔽",
    no_findings: "未发现问题：本时段内没有需要处理的事项。",
    severity: "级别",
    entity: "对象",
    check: "检查项",
    first_seen: "首次发现",
    last_seen: "最后出现",
    acknowledged_by: "已确认，确认人",
    until: "有效期至",
    reason: "原因",
    root_cause_candidates: "根因候选",
    rank: "排名",
    confidence: "置信度",
    signals: "异常信号",
    started: "开始时间",
    no_candidates: "未能排出根因候选。",
    propagation: "传播路径",
    propagation_legend: "红色：最可能的根因 · 橙色：传播路径 · 箭头由调用方指向被调用方",
    evidence: "证据",
    baseline: "基线",
    observed: "实际",
    expected_band: "正常范围",
    anomaly_window: "异常时段",
    hottest_stacks: "最热调用栈（CPU 火焰图）",
    runbook: "处理建议",
    no_runbook: "该检查项暂无处理建议。",
    slow_sql: "慢 SQL",
    slow_redis: "慢 Redis 命令",
    server: "服务端",
    statement: "语句",
    command: "命令",
    count: "次数",
    errors: "错误",
    mean: "平均",
    p99: "P99",
    max: "最大",
    slos: "服务等级目标（SLO）",
    service: "服务",
    objective: "目标类型",
    target: "目标值",
    achieved: "达成",
    budget_remaining: "剩余错误预算",
    worst_burn: "最高消耗速率（1 小时）",
    cpu_consumers: "CPU 消耗排行",
    mean_cores: "平均核数",
    peak_cores: "峰值核数",
    limit: "限额",
    coverage: "覆盖率",
    services_with_data: "有数据的服务",
    hosts_with_data: "有数据的主机",
    checks_run: "已执行检查",
    silent_services: "数据中断的服务",
    services_without_data: "从未上报数据的服务",
    failed_checks: "失败的检查",
    blind_warning: "巡检处于盲区：本时段没有任何服务上报请求数据，“未发现问题”不代表一切正常。",
    partly_blind_warning: "巡检存在部分盲区：部分服务或检查不可见，那里的问题不会出现在本报告中。",
    full_coverage: "所有服务和主机均有数据，所有检查均已执行。",
    machine_summary: "摘要（机器生成）",
    machine_summary_note: "由大语言模型根据下列问题生成，以下列问题为准。",
    none: "无",
    more: "更多",
    full_report: "完整报告",
    top_root_cause: "最可能根因",
    findings: "问题",
    contents: "目录",
};

/// The strings of `language`.
pub(crate) fn strings(language: Language) -> &'static Strings {
    match language {
        Language::En => &EN,
        Language::Zh => &ZH,
    }
}

/// A severity's badge text.
pub(crate) fn severity(language: Language, severity: Severity) -> &'static str {
    match (language, severity) {
        (Language::En, Severity::Critical) => "CRITICAL",
        (Language::En, Severity::Warning) => "WARNING",
        (Language::En, Severity::Info) => "INFO",
        (Language::Zh, Severity::Critical) => "严重",
        (Language::Zh, Severity::Warning) => "警告",
        (Language::Zh, Severity::Info) => "提示",
    }
}

/// A status badge's text.
pub(crate) fn status(language: Language, status: FindingStatus) -> &'static str {
    match (language, status) {
        (Language::En, FindingStatus::New) => "NEW",
        (Language::En, FindingStatus::StillOpen) => "STILL OPEN",
        (Language::Zh, FindingStatus::New) => "新增",
        (Language::Zh, FindingStatus::StillOpen) => "持续",
    }
}

/// A mark's badge text.
pub(crate) fn mark(language: Language, kind: MarkKind) -> &'static str {
    match (language, kind) {
        (Language::En, MarkKind::Acknowledged) => "ACKNOWLEDGED",
        (Language::En, MarkKind::Suppressed) => "SUPPRESSED",
        (Language::Zh, MarkKind::Acknowledged) => "已确认",
        (Language::Zh, MarkKind::Suppressed) => "已屏蔽",
    }
}

/// What a signal is called in `language` ("p99 latency", "P99 延迟").
pub(crate) fn signal(language: Language, signal: &SignalKind) -> String {
    let zh = language == Language::Zh;
    match signal {
        SignalKind::Request(metric) => {
            let (en, cn) = match metric {
                RequestMetric::Requests => ("request rate", "请求量"),
                RequestMetric::Errors => ("errors", "错误数"),
                RequestMetric::ErrorRatio => ("error ratio", "错误率"),
                RequestMetric::LatencyMean => ("mean latency", "平均延迟"),
                RequestMetric::LatencyP50 => ("p50 latency", "P50 延迟"),
                RequestMetric::LatencyP90 => ("p90 latency", "P90 延迟"),
                RequestMetric::LatencyP99 => ("p99 latency", "P99 延迟"),
            };
            if zh { cn } else { en }.to_owned()
        }
        SignalKind::Resource(metric) => {
            let (en, cn) = match metric {
                ResourceMetric::CpuCores => ("CPU", "CPU 使用"),
                ResourceMetric::MemoryBytes => ("memory", "内存"),
                ResourceMetric::TcpRetransmits => ("TCP retransmits", "TCP 重传"),
                ResourceMetric::TcpResets => ("TCP resets", "TCP 重置"),
            };
            if zh { cn } else { en }.to_owned()
        }
        SignalKind::Statement(shape) => {
            if zh {
                format!("语句 {shape}")
            } else {
                format!("statement {shape}")
            }
        }
        SignalKind::SloBurn(objective) => {
            if zh {
                format!("SLO {objective} 预算消耗")
            } else {
                format!("SLO {objective} burn")
            }
        }
        SignalKind::Check(name) => name.clone(),
        SignalKind::Silence => if zh {
            "遥测中断"
        } else {
            "telemetry silence"
        }
        .to_owned(),
    }
}

/// "rose" / "fell" after a signal, from observed against baseline.
pub(crate) fn direction(language: Language, signal: &SignalKind, rose: bool) -> &'static str {
    match (signal, language, rose) {
        (SignalKind::Silence | SignalKind::Check(_) | SignalKind::SloBurn(_), Language::En, _) => {
            ""
        }
        (SignalKind::Silence | SignalKind::Check(_), Language::Zh, _) => "",
        (SignalKind::SloBurn(_), Language::Zh, _) => "过快",
        (SignalKind::Statement(_), Language::En, _) => " slow",
        (SignalKind::Statement(_), Language::Zh, _) => " 变慢",
        (_, Language::En, true) => " up",
        (_, Language::En, false) => " down",
        (_, Language::Zh, true) => "升高",
        (_, Language::Zh, false) => "下降",
    }
}
