//! The chat assistant without an LLM: English and Chinese questions about
//! slowness, errors, changes, CPU, health and yesterday, answered from the
//! deterministic analysis with evidence, in the language of the question.
//!
//! Parsing ([`parse_question`]) is pure and total: any text gives an intent
//! (possibly [`Intent::Unknown`]), a mention (possibly none) and a window.
//! Entities are found by fuzzy name, configured and `alias.*` aliases, and a
//! keyword table for common Chinese words (订单 → order, 缓存 → redis…).
//! When something is unknown or data is missing, the answer says so.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use vigil_knowledge_graph::AliasConfig;
use vigil_model::{
    EntityFilter, EntityId, EntityKind, Language, RequestMetric, RequestSeries, ResourceMetric,
    SeriesQuery, TelemetrySource, TimeRange, Timestamp, MINUTE_SECS,
};

use crate::investigate::{investigate, InvestigateOptions, Investigation};
use crate::labels::EntityIndex;
use crate::llm::LlmClient;
use crate::tools::Tools;
use crate::Suggestion;

/// What a question asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Intent {
    /// Why is X slow?
    WhySlow,
    /// Why does X fail?
    WhyErrors,
    /// What changed?
    WhatChanged,
    /// Who burns CPU?
    WhoBurnsCpu,
    /// Is X healthy?
    IsHealthy,
    /// How does X compare with yesterday?
    CompareWithYesterday,
    /// Not understood.
    Unknown,
}

/// A question, parsed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParsedQuestion {
    /// The question's language (Chinese when it has any CJK character).
    pub language: Language,
    /// What it asks.
    pub intent: Intent,
    /// Candidate names of the entity asked about, most specific first
    /// (English words, Chinese phrases, keywords translated).
    pub mentions: Vec<String>,
    /// Kind hinted by the words (数据库 → database, 缓存 → cache).
    pub kind: Option<EntityKind>,
    /// Minutes back from now the question is about.
    pub window_minutes: u32,
}

/// Options of [`ask`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AskOptions {
    /// How investigations are scoped.
    pub investigate: InvestigateOptions,
    /// Extra names per entity (any language).
    pub aliases: AliasConfig,
    /// Base URL of the web pages, for links in answers (e.g. `http://vigil:8080`).
    pub link_base: Option<String>,
}

/// The answer to a question.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    /// The question's language, which the answer is written in.
    pub language: Language,
    /// What was understood.
    pub intent: Intent,
    /// The entity the answer is about, when one was found.
    pub entity: Option<EntityId>,
    /// The window looked at.
    pub window: TimeRange,
    /// The answer, Markdown.
    pub text: String,
    /// Ranked causes, for why-questions.
    pub suggestions: Vec<Suggestion>,
    /// Whether the assistant could answer (false: not understood, unknown
    /// entity, or no data).
    pub answered: bool,
    /// What was missing, in plain words.
    pub missing: Vec<String>,
    /// Whether an LLM wrote the text (from the same tools' results).
    pub llm: bool,
}

const ZH_KEYWORDS: &[(&str, &str)] = &[
    ("订单", "order"),
    ("支付", "payment"),
    ("付款", "payment"),
    ("用户", "user"),
    ("网关", "gateway"),
    ("购物车", "cart"),
    ("商品", "catalog"),
    ("目录", "catalog"),
    ("库存", "inventory"),
    ("搜索", "search"),
    ("物流", "shipping"),
    ("发货", "shipping"),
    ("评价", "review"),
    ("促销", "promotion"),
    ("账户", "account"),
    ("账号", "account"),
    ("价格", "pricing"),
    ("通知", "notification"),
    ("推荐", "recommendation"),
    ("结算", "checkout"),
    ("下单", "checkout"),
    ("认证", "auth"),
    ("鉴权", "auth"),
    ("登录", "auth"),
    ("资料", "profile"),
    ("收藏", "wishlist"),
    ("优惠券", "coupon"),
    ("发票", "invoice"),
    ("退款", "refund"),
    ("积分", "loyalty"),
    ("地址", "address"),
    ("媒体", "media"),
    ("报表", "report"),
    ("账单", "billing"),
    ("风控", "fraud"),
    ("配送", "delivery"),
    ("仓库", "warehouse"),
    ("供应商", "supplier"),
    ("商户", "merchant"),
    ("消息", "message"),
    ("评论", "comment"),
    ("会话", "session"),
    ("数据库", "mysql"),
    ("缓存", "redis"),
];

const EN_STOPWORDS: &[&str] = &[
    "why",
    "is",
    "are",
    "was",
    "were",
    "the",
    "a",
    "an",
    "so",
    "slow",
    "slowly",
    "slower",
    "what",
    "who",
    "which",
    "has",
    "have",
    "had",
    "been",
    "error",
    "errors",
    "failing",
    "fails",
    "failed",
    "fail",
    "failure",
    "failures",
    "changed",
    "change",
    "changes",
    "burns",
    "burning",
    "burn",
    "using",
    "uses",
    "use",
    "cpu",
    "healthy",
    "health",
    "ok",
    "okay",
    "status",
    "compare",
    "compared",
    "comparison",
    "with",
    "to",
    "yesterday",
    "today",
    "last",
    "past",
    "hour",
    "hours",
    "minutes",
    "minute",
    "mins",
    "min",
    "in",
    "on",
    "of",
    "for",
    "my",
    "our",
    "latency",
    "high",
    "how",
    "doing",
    "it",
    "there",
    "any",
    "me",
    "tell",
    "show",
    "about",
    "since",
    "do",
    "does",
    "did",
    "than",
    "vs",
    "versus",
    "now",
    "right",
    "lately",
    "recently",
    "and",
    "or",
    "5xx",
    "500s",
    "requests",
    "request",
    "most",
    "much",
    "more",
    "many",
    "this",
    "that",
    "timeouts",
    "timeout",
    "throwing",
    "returning",
    "responding",
    "response",
    "time",
    "times",
    "be",
    "going",
    "on",
    "up",
    "down",
    "wrong",
    "deployed",
    "deploy",
    "deploys",
];

const CN_DIGITS: [(char, u32); 11] = [
    ('一', 1),
    ('二', 2),
    ('两', 2),
    ('三', 3),
    ('四', 4),
    ('五', 5),
    ('六', 6),
    ('七', 7),
    ('八', 8),
    ('九', 9),
    ('十', 10),
];

fn is_cjk(c: char) -> bool {
    matches!(c, '\u{4e00}'..='\u{9fff}' | '\u{3400}'..='\u{4dbf}')
}

fn contains_any(text: &str, words: &[&str]) -> bool {
    words.iter().any(|w| text.contains(w))
}

fn has_word(words: &[&str], wanted: &[&str]) -> bool {
    words.iter().any(|w| wanted.contains(w))
}

/// A number written before `unit` in `text` (digits or Chinese numerals).
fn number_before(text: &str, units: &[&str]) -> Option<u32> {
    for unit in units {
        let Some(position) = text.find(unit) else {
            continue;
        };
        let before = text[..position].trim_end();
        let digits: String = before
            .chars()
            .rev()
            .take_while(char::is_ascii_digit)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        if let Ok(n) = digits.parse::<u32>() {
            return Some(n);
        }
        // Chinese: 一, 两, 十, 二十, 半 (half an hour is 30 minutes: handled by caller).
        let chars: Vec<char> = before.chars().rev().take(3).collect();
        let mut value = 0u32;
        let mut seen = false;
        for c in chars.iter().rev() {
            if let Some((_, n)) = CN_DIGITS.iter().find(|(d, _)| d == c) {
                seen = true;
                value = if *n == 10 {
                    value.max(1) * 10
                } else {
                    value + n
                };
            } else if seen {
                break;
            } else {
                value = 0;
            }
        }
        if seen && value > 0 {
            return Some(value);
        }
        if before.ends_with('个') {
            return Some(1);
        }
        let last = before.split_whitespace().last().unwrap_or("");
        if matches!(last, "last" | "past" | "an" | "one" | "the") {
            return Some(1);
        }
    }
    None
}

/// Parses a question: language, intent, entity mentions and window. Pure; never panics.
pub fn parse_question(question: &str) -> ParsedQuestion {
    let question: String = question.chars().take(2000).collect();
    let language = if question.chars().any(is_cjk) {
        Language::Zh
    } else {
        Language::En
    };
    let lower = question.to_lowercase();
    let cleaned: String = lower
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '-' | ':' | '@' | '.' | '_') {
                c
            } else {
                ' '
            }
        })
        .collect();
    let words: Vec<&str> = cleaned
        .split_whitespace()
        .map(|w| w.trim_matches('.'))
        .filter(|w| !w.is_empty())
        .collect();

    let intent = if contains_any(
        &lower,
        &[
            "compare",
            " vs ",
            "versus",
            "than yesterday",
            "对比",
            "比较",
            "相比",
            "同比",
            "和昨天",
            "跟昨天",
            "与昨天",
            "比昨天",
        ],
    ) {
        Intent::CompareWithYesterday
    } else if has_word(&words, &["cpu", "cores"])
        || contains_any(&lower, &["burns", "burning", "占用", "耗cpu"])
    {
        Intent::WhoBurnsCpu
    } else if has_word(
        &words,
        &[
            "changed",
            "change",
            "changes",
            "deploy",
            "deployed",
            "deploys",
            "deployment",
            "rollout",
        ],
    ) || contains_any(&lower, &["变更", "变化", "改动", "发布", "上线", "改了"])
    {
        Intent::WhatChanged
    } else if has_word(
        &words,
        &[
            "error",
            "errors",
            "fail",
            "fails",
            "failing",
            "failed",
            "failure",
            "failures",
            "5xx",
            "500s",
            "exception",
            "exceptions",
        ],
    ) || contains_any(&lower, &["报错", "错误", "失败", "出错", "异常率", "5xx"])
    {
        Intent::WhyErrors
    } else if has_word(
        &words,
        &[
            "slow", "slowly", "slower", "latency", "laggy", "timeout", "timeouts", "sluggish",
        ],
    ) || contains_any(
        &lower,
        &["延迟", "慢", "卡", "耗时", "响应时间", "超时", "时延"],
    ) {
        Intent::WhySlow
    } else if has_word(
        &words,
        &[
            "healthy", "health", "ok", "okay", "status", "fine", "alright", "up",
        ],
    ) || contains_any(
        &lower,
        &["健康", "正常", "状态", "怎么样", "还好", "好吗", "有问题"],
    ) {
        Intent::IsHealthy
    } else {
        Intent::Unknown
    };

    let hours = number_before(&lower, &["hours", "hour", "hrs", "h ", "小时", "钟头"]);
    let minutes = number_before(&lower, &["minutes", "minute", "mins", "min", "分钟"]);
    let window_minutes = if let Some(m) = minutes {
        m
    } else if let Some(h) = hours {
        h * 60
    } else if lower.contains("半小时") || lower.contains("half an hour") {
        30
    } else if lower.contains("today")
        || lower.contains("今天")
        || lower.contains("今日")
        || (intent != Intent::CompareWithYesterday
            && (lower.contains("yesterday") || lower.contains("昨天")))
    {
        24 * 60
    } else {
        60
    }
    .clamp(1, 24 * 60);

    let mut mentions = Vec::new();
    let mut kind = None;
    if language == Language::Zh {
        // Chinese text as typed (for aliases), then translated keywords, then Latin words.
        let phrase: String = question
            .chars()
            .filter(|c| is_cjk(*c) || c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        let mut translated: Vec<(usize, &str)> = Vec::new();
        for &(zh, en) in ZH_KEYWORDS {
            if let Some(position) = question.find(zh) {
                if !translated.iter().any(|(_, e)| *e == en) {
                    translated.push((position, en));
                }
                if zh == "数据库" {
                    kind = Some(EntityKind::Database);
                } else if zh == "缓存" {
                    kind = Some(EntityKind::Cache);
                }
            }
        }
        translated.sort();
        for word in words.iter().filter(|w| w.is_ascii()) {
            if !EN_STOPWORDS.contains(word) && word.len() > 1 {
                mentions.push((*word).to_owned());
            }
        }
        mentions.extend(translated.into_iter().map(|(_, en)| en.to_owned()));
        if !phrase.is_empty() {
            mentions.push(phrase);
        }
    } else {
        let content: Vec<&str> = words
            .iter()
            .copied()
            .filter(|w| !EN_STOPWORDS.contains(w) && !w.chars().all(|c| c.is_ascii_digit()))
            .collect();
        if content.len() > 1 {
            mentions.push(content.join("-"));
        }
        for pair in content.windows(2) {
            mentions.push(format!("{}-{}", pair[0], pair[1]));
        }
        mentions.extend(content.iter().map(|w| (*w).to_owned()));
        if words.contains(&"database") || words.contains(&"mysql") || words.contains(&"db") {
            kind = Some(EntityKind::Database);
        } else if words.contains(&"cache") || words.contains(&"redis") {
            kind = Some(EntityKind::Cache);
        }
    }
    let mut seen = BTreeSet::new();
    mentions.retain(|m| seen.insert(m.clone()));
    mentions.truncate(12);
    ParsedQuestion {
        language,
        intent,
        mentions,
        kind,
        window_minutes,
    }
}

fn tr<'a>(language: Language, en: &'a str, zh: &'a str) -> &'a str {
    match language {
        Language::En => en,
        Language::Zh => zh,
    }
}

fn fmt_time(t: Timestamp) -> String {
    let secs = t.secs().rem_euclid(86_400);
    format!("{:02}:{:02} UTC", secs / 3600, (secs % 3600) / 60)
}

fn fmt_num(value: f64) -> String {
    if !value.is_finite() {
        "n/a".to_owned()
    } else if value.abs() >= 100.0 {
        format!("{value:.0}")
    } else if value.abs() >= 1.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.3}")
    }
}

/// Lowest similarity of a chat mention to a name (a typo like `gatewy` passes).
const MIN_MENTION_SCORE: f64 = 0.84;

/// Entities the mentions name, best first, one per entity (service/server level).
fn resolve_mentions(index: &EntityIndex, parsed: &ParsedQuestion) -> Vec<(EntityId, f64)> {
    let mut best: BTreeMap<EntityId, f64> = BTreeMap::new();
    for (position, mention) in parsed.mentions.iter().enumerate() {
        // Earlier (more specific) mentions weigh slightly more.
        let weight = 1.0 - 0.01 * position as f64;
        for mut found in index.find(mention, 12) {
            // A mention that is a whole word of the name (`redis` in
            // `redis-server@10.0.0.10:6379`) is a good match however long the name.
            let lower = mention.to_lowercase();
            if found
                .matched
                .to_lowercase()
                .split(|c: char| !c.is_alphanumeric())
                .any(|word| word == lower)
            {
                found.score = (found.score + 0.1).min(0.999);
            }
            // Loose fuzzy matches name the wrong thing more often than not.
            if found.entity.kind() == EntityKind::Endpoint || found.score < MIN_MENTION_SCORE {
                continue;
            }
            let owner = index.owner(&found.entity);
            let mut score = found.score * weight;
            if let Some(kind) = parsed.kind {
                if owner.kind() == kind {
                    score += 0.05;
                }
            }
            // A service named by its domain word: prefer what serves requests.
            if found.entity.kind() != owner.kind() {
                score -= 0.02;
            }
            let entry = best.entry(owner).or_insert(score);
            if score > *entry {
                *entry = score;
            }
        }
    }
    let mut out: Vec<(EntityId, f64)> = best.into_iter().collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    out
}

/// Among equally well named entities, the one whose request metrics are most
/// anomalous in the window ("Redis" when there are several Redis servers).
async fn most_anomalous(
    source: &dyn TelemetrySource,
    ids: &[EntityId],
    now: Timestamp,
    options: &InvestigateOptions,
) -> Option<EntityId> {
    let window = crate::investigate::window_at(now, options);
    let range = TimeRange {
        start: window
            .start
            .plus_secs(-86_400 * i64::from(options.history_days.max(1))),
        end: window.end,
    };
    let requests = source
        .request_series(&SeriesQuery {
            filter: EntityFilter::ids(ids),
            range,
            step_secs: MINUTE_SECS,
        })
        .await
        .ok()?;
    let input = vigil_analyzer::AnalysisInput {
        window,
        topology: Default::default(),
        requests,
        edges: Vec::new(),
        resources: Vec::new(),
        statements: Vec::new(),
        events: Vec::new(),
    };
    vigil_analyzer::anomalies(&input, &options.analyzer)
        .into_iter()
        .max_by(|a, b| {
            a.score
                .total_cmp(&b.score)
                .then_with(|| b.entity.cmp(&a.entity))
        })
        .map(|a| a.entity)
}

struct Context<'a> {
    source: &'a dyn TelemetrySource,
    now: Timestamp,
    options: &'a AskOptions,
    language: Language,
    window: TimeRange,
}

impl Context<'_> {
    fn t<'s>(&self, en: &'s str, zh: &'s str) -> &'s str {
        tr(self.language, en, zh)
    }

    fn link(&self, entity: &EntityId) -> String {
        match &self.options.link_base {
            Some(base) => format!(
                "\n\n{}: {}/graph?focus={}&at={}",
                self.t("Charts", "图表"),
                base.trim_end_matches('/'),
                entity,
                self.now
            ),
            None => String::new(),
        }
    }
}

/// Answers `question` about the estate at `now` without any LLM, in the
/// question's language. Never fails: errors and missing data become answers
/// that say so.
pub async fn ask(
    question: &str,
    source: &dyn TelemetrySource,
    now: Timestamp,
    options: &AskOptions,
) -> Answer {
    let parsed = parse_question(question);
    let language = parsed.language;
    let now = now.floor_to(MINUTE_SECS);
    let window = TimeRange {
        start: now.plus_secs(-i64::from(parsed.window_minutes) * 60),
        end: now.plus_secs(60),
    };
    let context = Context {
        source,
        now,
        options,
        language,
        window,
    };
    let mut answer = Answer {
        language,
        intent: parsed.intent,
        entity: None,
        window,
        text: String::new(),
        suggestions: Vec::new(),
        answered: false,
        missing: Vec::new(),
        llm: false,
    };
    let topology = match source
        .topology(TimeRange {
            start: now.plus_secs(-86_400),
            end: now.plus_secs(60),
        })
        .await
    {
        Ok(topology) => topology,
        Err(error) => {
            answer.text = format!(
                "{} {error}",
                tr(
                    language,
                    "I could not read telemetry:",
                    "无法读取遥测数据："
                )
            );
            answer.missing.push(error.to_string());
            return answer;
        }
    };
    if topology.entities.is_empty() {
        answer.text = tr(
            language,
            "I have no telemetry for that time: no entity was seen in the last day. Is the collector running?",
            "该时间段没有任何遥测数据：过去一天没有看到任何实体。采集器是否在运行？",
        )
        .to_owned();
        answer.missing.push("no topology".to_owned());
        return answer;
    }
    let index = EntityIndex::new(&topology, &options.aliases);
    let matches = resolve_mentions(&index, &parsed);
    let entity = match matches.first() {
        Some((first, top)) => {
            let tied: Vec<EntityId> = matches
                .iter()
                .take_while(|(id, score)| *score >= top - 0.015 && id.kind() == first.kind())
                .map(|(id, _)| id.clone())
                .take(8)
                .collect();
            if tied.len() > 1 {
                Some(
                    most_anomalous(source, &tied, now, &options.investigate)
                        .await
                        .unwrap_or_else(|| first.clone()),
                )
            } else {
                Some(first.clone())
            }
        }
        None => None,
    };
    answer.entity = entity.clone();
    let needs_entity = matches!(
        parsed.intent,
        Intent::WhySlow | Intent::WhyErrors | Intent::IsHealthy
    );
    if entity.is_none() && needs_entity {
        let asked = parsed.mentions.first().cloned().unwrap_or_default();
        let examples: Vec<String> = topology
            .entities
            .iter()
            .filter(|e| e.id.kind() == EntityKind::Service)
            .take(5)
            .map(|e| e.id.name().to_owned())
            .collect();
        answer.text = if asked.is_empty() {
            format!(
                "{} {}",
                tr(
                    language,
                    "Which service or server do you mean? For example:",
                    "请问是哪个服务或服务器？例如："
                ),
                examples.join(", ")
            )
        } else {
            format!(
                "{} \"{asked}\". {} {}",
                tr(
                    language,
                    "I do not know any service or server called",
                    "我不认识名为"
                ),
                tr(
                    language,
                    "Known services include:",
                    "的服务或服务器。已知的服务有："
                ),
                examples.join(", ")
            )
        };
        answer.missing.push("entity not found".to_owned());
        return answer;
    }
    match parsed.intent {
        Intent::WhySlow | Intent::WhyErrors | Intent::IsHealthy => {
            if let Some(entity) = entity {
                why(&context, &entity, parsed.intent, &mut answer).await;
            }
        }
        Intent::WhatChanged => what_changed(&context, entity.as_ref(), &mut answer).await,
        Intent::WhoBurnsCpu => who_burns_cpu(&context, entity.as_ref(), &index, &mut answer).await,
        Intent::CompareWithYesterday => compare(&context, entity.as_ref(), &mut answer).await,
        Intent::Unknown => {
            answer.text = tr(
                language,
                "I did not understand the question. I can answer: why is X slow, why does X fail, what changed, who burns CPU, is X healthy, and how X compares with yesterday — e.g. \"why is redis slow in the last hour\".",
                "没有理解这个问题。我可以回答：X 为什么慢、X 为什么报错、最近有什么变更、谁在消耗 CPU、X 是否健康、和昨天相比如何——例如“过去一小时 Redis 为什么慢”。",
            )
            .to_owned();
        }
    }
    answer
}

/// Answers with an LLM when `llm` is set and succeeds (it calls the same tools
/// and writes the text); otherwise, or on any failure, the deterministic answer.
pub async fn ask_with_llm(
    question: &str,
    tools: &Tools,
    now: Timestamp,
    options: &AskOptions,
    llm: Option<&LlmClient>,
) -> Answer {
    let mut answer = ask(question, tools.source().as_ref(), now, options).await;
    let Some(llm) = llm else {
        return answer;
    };
    match llm.chat(question, tools, now, &answer).await {
        Ok(text) => {
            answer.text = text;
            answer.llm = true;
        }
        Err(error) => {
            tracing::warn!(%error, "LLM chat failed; answering without it");
        }
    }
    answer
}

async fn why(context: &Context<'_>, entity: &EntityId, intent: Intent, answer: &mut Answer) {
    let language = context.language;
    let mut options = context.options.investigate.clone();
    options.lookback_minutes = u32::try_from(context.window.duration_secs() / 60)
        .unwrap_or(60)
        .clamp(5, 6 * 60);
    let found = match investigate(context.source, entity, context.now, &options).await {
        Ok(found) => found,
        Err(error) => {
            answer.text = format!(
                "{} {entity}: {error}",
                context.t("I could not investigate", "无法分析")
            );
            answer.missing.push(error.to_string());
            return;
        }
    };
    answer.missing = found.missing.clone();
    answer.answered = true;
    let mut text = String::new();
    let relevant = |signal: &str| match intent {
        Intent::WhyErrors => signal.starts_with("error"),
        Intent::WhySlow => signal.starts_with("latency") || signal.starts_with("statement"),
        _ => true,
    };
    let symptom_lines: Vec<String> = found
        .symptom_evidence
        .iter()
        .filter(|e| relevant(&e.signal))
        .map(|e| describe(language, e))
        .collect();
    let anomalous = !found.suggestions.is_empty();
    match (intent, anomalous) {
        (Intent::IsHealthy, false) => {
            let _ = write!(
                text,
                "{} **{entity}** {} {} ({} {}).",
                context.t("Yes:", "是的："),
                context.t(
                    "shows no anomaly in latency, errors, traffic, CPU or memory — nor does anything it depends on — over the last",
                    "及其依赖在过去"
                ),
                minutes_text(language, options.lookback_minutes),
                found.entities_read,
                context.t("entities checked", "个实体已检查，延迟、错误、流量、CPU 和内存均无异常")
            );
        }
        (_, false) => {
            let _ = write!(
                text,
                "{} **{entity}** {} {}.",
                context.t("I found no anomaly in", "在"),
                context.t(
                    "or anything it depends on over the last",
                    "及其依赖中没有发现异常，时间范围：过去"
                ),
                minutes_text(language, options.lookback_minutes)
            );
            if intent != Intent::IsHealthy {
                text.push_str(context.t(
                    " Its behaviour matches its baseline, so I cannot name a cause.",
                    "它的表现与基线一致，因此无法给出原因。",
                ));
            }
        }
        (_, true) => {
            if intent == Intent::IsHealthy {
                let _ = write!(
                    text,
                    "{} **{entity}** {}",
                    context.t("No:", "不健康："),
                    context.t("is affected by a problem. ", "受到故障影响。")
                );
            }
            if !symptom_lines.is_empty() {
                let _ = writeln!(text, "**{entity}**: {}.", symptom_lines.join("; "));
            }
            write_suggestions(context, &found, &mut text);
        }
    }
    for note in &found.missing {
        let _ = write!(text, "\n\n_{}: {note}_", context.t("Note", "注意"));
    }
    text.push_str(&context.link(entity));
    answer.text = text;
    answer.suggestions = found.suggestions;
}

fn minutes_text(language: Language, minutes: u32) -> String {
    match (language, minutes) {
        (Language::En, m) if m % 60 == 0 => {
            let h = m / 60;
            if h == 1 {
                "hour".to_owned()
            } else {
                format!("{h} hours")
            }
        }
        (Language::En, m) => format!("{m} minutes"),
        (Language::Zh, m) if m % 60 == 0 => format!("{} 小时", m / 60),
        (Language::Zh, m) => format!("{m} 分钟"),
    }
}

fn describe(language: Language, e: &crate::EvidenceItem) -> String {
    match language {
        Language::En => format!(
            "{} {} (baseline {}) since {}",
            e.signal,
            fmt_num(e.observed),
            fmt_num(e.baseline),
            fmt_time(e.since)
        ),
        Language::Zh => format!(
            "{} 为 {}（基线 {}），始于 {}",
            e.signal,
            fmt_num(e.observed),
            fmt_num(e.baseline),
            fmt_time(e.since)
        ),
    }
}

fn write_suggestions(context: &Context<'_>, found: &Investigation, text: &mut String) {
    let language = context.language;
    let Some(top) = found.suggestions.first() else {
        return;
    };
    let _ = write!(
        text,
        "\n{} **{}** ({} {:.0}%{})",
        context.t("Most likely cause:", "最可能的原因："),
        top.entity,
        context.t("confidence", "置信度"),
        top.confidence * 100.0,
        top.started_at
            .map(|t| format!(", {} {}", context.t("since", "始于"), fmt_time(t)))
            .unwrap_or_default()
    );
    text.push('\n');
    for e in &top.evidence {
        let _ = writeln!(text, "- {}: {}", e.entity, describe(language, e));
    }
    if !top.slow_statements.is_empty() {
        let _ = writeln!(
            text,
            "\n{} {}:",
            context.t("Slowest statements on", "最慢的语句，服务器"),
            top.entity
        );
        for s in top.slow_statements.iter().take(3) {
            let before = s
                .p99_day_before_ms
                .map(|b| {
                    format!(
                        ", {} {} ms",
                        context.t("a day before", "一天前"),
                        fmt_num(b)
                    )
                })
                .unwrap_or_default();
            let _ = writeln!(
                text,
                "- `{}` p99 {} ms ({} {}{before})",
                s.shape,
                fmt_num(s.p99_ms),
                s.count,
                context.t("calls", "次调用")
            );
        }
    }
    if let Some(stack) = &top.hot_stack {
        let _ = writeln!(
            text,
            "\n{} `{stack}`",
            context.t("Hottest stack:", "最热的调用栈：")
        );
    }
    if !top.affected_callers.is_empty() {
        let names: Vec<&str> = top.affected_callers.iter().map(EntityId::as_str).collect();
        let _ = writeln!(
            text,
            "\n{} {}",
            context.t("Affected callers:", "受影响的调用方："),
            names.join(", ")
        );
    }
    if top.path.len() > 1 {
        let path: Vec<&str> = top.path.iter().map(EntityId::as_str).collect();
        let _ = writeln!(
            text,
            "{} {}",
            context.t("Propagation:", "传播路径："),
            path.join(" → ")
        );
    }
    if found.suggestions.len() > 1 {
        let others: Vec<String> = found
            .suggestions
            .iter()
            .skip(1)
            .take(3)
            .map(|s| format!("{}. {} ({:.0}%)", s.rank, s.entity, s.confidence * 100.0))
            .collect();
        let _ = write!(
            text,
            "{} {}",
            context.t("Other candidates:", "其他候选："),
            others.join("; ")
        );
    }
}

async fn what_changed(context: &Context<'_>, entity: Option<&EntityId>, answer: &mut Answer) {
    let language = context.language;
    let events = match context.source.events(context.window).await {
        Ok(events) => events,
        Err(error) => {
            answer.text = format!(
                "{} {error}",
                context.t("I could not read events:", "无法读取事件：")
            );
            return;
        }
    };
    let mut scope: Option<BTreeSet<EntityId>> = None;
    let mut found = None;
    if let Some(entity) = entity {
        let mut options = context.options.investigate.clone();
        options.lookback_minutes = u32::try_from(context.window.duration_secs() / 60)
            .unwrap_or(60)
            .clamp(5, 24 * 60);
        if let Ok(investigation) = investigate(context.source, entity, context.now, &options).await
        {
            let mut ids: BTreeSet<EntityId> = investigation
                .suggestions
                .iter()
                .map(|s| s.entity.clone())
                .collect();
            ids.insert(entity.clone());
            scope = Some(ids);
            found = Some(investigation);
        }
    }
    let mut text = String::new();
    let relevant: Vec<_> = events
        .iter()
        .filter(|e| {
            scope.as_ref().is_none_or(|ids| {
                ids.contains(&e.entity)
                    || ids.iter().any(|id| e.entity.name().starts_with(id.name()))
            })
        })
        .collect();
    let _ = writeln!(
        text,
        "{} {}{}:",
        context.t("Changes in the last", "过去"),
        minutes_text(
            language,
            u32::try_from(context.window.duration_secs() / 60).unwrap_or(60)
        ),
        entity
            .map(|e| format!(" {} {e}", context.t("around", "，范围")))
            .unwrap_or_default()
    );
    if relevant.is_empty() {
        text.push_str(context.t(
            "- no deploy, restart, configuration change or OOM kill was recorded.\n",
            "- 没有记录到发布、重启、配置变更或 OOM。\n",
        ));
    }
    for event in relevant.iter().take(15) {
        let _ = writeln!(
            text,
            "- {} {} {} {}",
            fmt_time(event.time),
            event.kind.as_str(),
            event.entity,
            event.detail
        );
    }
    if let Some(found) = &found {
        if !found.suggestions.is_empty() {
            text.push_str(context.t("\nNew anomalies:\n", "\n新出现的异常：\n"));
            for s in found.suggestions.iter().take(5) {
                for e in s.evidence.iter().take(2) {
                    let _ = writeln!(text, "- {}: {}", e.entity, describe(language, e));
                }
            }
        }
        answer.suggestions = found.suggestions.clone();
    }
    answer.answered = true;
    answer.text = text;
}

fn mean_inside(values: &[f64], keep: impl Fn(usize) -> bool) -> Option<f64> {
    let picked: Vec<f64> = values
        .iter()
        .enumerate()
        .filter(|(i, v)| keep(*i) && v.is_finite())
        .map(|(_, v)| *v)
        .collect();
    (!picked.is_empty()).then(|| picked.iter().sum::<f64>() / picked.len() as f64)
}

async fn who_burns_cpu(
    context: &Context<'_>,
    entity: Option<&EntityId>,
    index: &EntityIndex,
    answer: &mut Answer,
) {
    let language = context.language;
    let topology = index.topology();
    let limits: BTreeMap<&EntityId, f64> = topology
        .entities
        .iter()
        .filter_map(|e| {
            e.attributes
                .get("cpu_limit_cores")
                .and_then(|v| v.parse().ok())
                .map(|v| (&e.id, v))
        })
        .collect();
    let mut filter = EntityFilter::kinds(&[EntityKind::Container, EntityKind::Process]);
    if let Some(entity) = entity {
        let ids: Vec<EntityId> = topology
            .entities
            .iter()
            .filter(|e| {
                matches!(e.id.kind(), EntityKind::Container | EntityKind::Process)
                    && index.owner(&e.id) == *entity
            })
            .map(|e| e.id.clone())
            .collect();
        if !ids.is_empty() {
            filter = EntityFilter::ids(&ids);
        }
    }
    let series = match context
        .source
        .resource_series(
            &SeriesQuery {
                filter,
                range: context.window,
                step_secs: MINUTE_SECS,
            },
            ResourceMetric::CpuCores,
        )
        .await
    {
        Ok(series) => series,
        Err(error) => {
            answer.text = format!(
                "{} {error}",
                context.t("I could not read CPU:", "无法读取 CPU 数据：")
            );
            return;
        }
    };
    let mut ranked: Vec<(f64, f64, &EntityId)> = series
        .iter()
        .filter_map(|s| {
            let mean = mean_inside(&s.series.values, |_| true)?;
            let peak = s
                .series
                .values
                .iter()
                .copied()
                .filter(|v| v.is_finite())
                .fold(f64::MIN, f64::max);
            Some((mean, peak, &s.entity))
        })
        .collect();
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.2.cmp(b.2)));
    if ranked.is_empty() {
        answer.text = context
            .t(
                "I have no CPU data for that window (no container or process CPU series).",
                "该时间段没有 CPU 数据（没有容器或进程的 CPU 序列）。",
            )
            .to_owned();
        answer.missing.push("no CPU series".to_owned());
        return;
    }
    let mut text = format!(
        "{} {}:\n",
        context.t(
            "Top CPU consumers over the last",
            "CPU 消耗最高的容器，过去"
        ),
        minutes_text(
            language,
            u32::try_from(context.window.duration_secs() / 60).unwrap_or(60)
        )
    );
    for (mean, peak, id) in ranked.iter().take(5) {
        let limit = limits
            .get(id)
            .map(|l| {
                format!(
                    ", {:.0}% {}",
                    100.0 * mean / l,
                    context.t("of its limit", "占限额")
                )
            })
            .unwrap_or_default();
        let _ = writeln!(
            text,
            "- {id} ({}): {} {} {}, {} {}{limit}",
            index.owner(id),
            context.t("mean", "平均"),
            fmt_num(*mean),
            context.t("cores", "核"),
            context.t("peak", "峰值"),
            fmt_num(*peak)
        );
    }
    if let Some((_, _, top)) = ranked.first() {
        let owner = index.owner(top);
        for target in [(*top).clone(), owner] {
            if let Ok(profile) = context.source.profile(&target, context.window).await {
                if let Some(stack) = profile.stacks.iter().max_by_key(|s| s.value) {
                    let share = 100.0 * stack.value as f64 / profile.total().max(1) as f64;
                    let _ = writeln!(
                        text,
                        "\n{} {target}: `{}` ({share:.0}%)",
                        context.t("Hottest stack of", "最热的调用栈："),
                        stack.frames
                    );
                    break;
                }
            }
        }
    }
    answer.answered = true;
    answer.text = text;
}

fn summary(series: &RequestSeries, range: TimeRange) -> BTreeMap<&'static str, f64> {
    let m = &series.metrics;
    let inside = |i: usize| range.contains(m.time_at(i));
    let mut out = BTreeMap::new();
    let total: f64 = (0..m.len())
        .filter(|&i| inside(i) && m.requests[i].is_finite())
        .map(|i| m.requests[i])
        .sum();
    let errors: f64 = (0..m.len())
        .filter(|&i| inside(i) && m.errors[i].is_finite())
        .map(|i| m.errors[i])
        .sum();
    out.insert("requests", total);
    out.insert(
        "error_ratio",
        if total > 0.0 {
            errors / total
        } else {
            f64::NAN
        },
    );
    if let Some(v) = mean_inside(&m.latency_mean_ms, inside) {
        out.insert("latency_mean_ms", v);
    }
    if let Some(v) = mean_inside(&m.series(RequestMetric::LatencyP99).values, inside) {
        out.insert("latency_p99_ms", v);
    }
    out
}

async fn compare(context: &Context<'_>, entity: Option<&EntityId>, answer: &mut Answer) {
    let language = context.language;
    let yesterday = TimeRange {
        start: context.window.start.plus_secs(-86_400),
        end: context.window.end.plus_secs(-86_400),
    };
    let range = TimeRange {
        start: yesterday.start,
        end: context.window.end,
    };
    let filter = match entity {
        Some(entity) => EntityFilter::ids(std::slice::from_ref(entity)),
        None => {
            EntityFilter::kinds(&[EntityKind::Service, EntityKind::Database, EntityKind::Cache])
        }
    };
    let series = match context
        .source
        .request_series(&SeriesQuery {
            filter,
            range,
            step_secs: MINUTE_SECS,
        })
        .await
    {
        Ok(series) => series,
        Err(error) => {
            answer.text = format!(
                "{} {error}",
                context.t("I could not read metrics:", "无法读取指标：")
            );
            return;
        }
    };
    let mut rows: Vec<(f64, String)> = Vec::new();
    for s in &series {
        let today = summary(s, context.window);
        let before = summary(s, yesterday);
        if before.get("requests").copied().unwrap_or(0.0) <= 0.0 {
            continue;
        }
        let get = |m: &BTreeMap<&str, f64>, k: &str| m.get(k).copied().unwrap_or(f64::NAN);
        let ratio = get(&today, "latency_p99_ms") / get(&before, "latency_p99_ms");
        let line = format!(
            "- {}: p99 {} → {} ms ({}), {} {} → {}, {} {} → {}",
            s.entity,
            fmt_num(get(&before, "latency_p99_ms")),
            fmt_num(get(&today, "latency_p99_ms")),
            if ratio.is_finite() {
                format!("×{ratio:.2}")
            } else {
                "n/a".to_owned()
            },
            context.t("requests", "请求数"),
            fmt_num(get(&before, "requests")),
            fmt_num(get(&today, "requests")),
            context.t("error ratio", "错误率"),
            fmt_num(get(&before, "error_ratio")),
            fmt_num(get(&today, "error_ratio")),
        );
        rows.push((
            if ratio.is_finite() {
                (ratio - 1.0).abs()
            } else {
                0.0
            },
            line,
        ));
    }
    if rows.is_empty() {
        answer.text = context
            .t(
                "I have no data from yesterday's same window to compare with.",
                "没有昨天同一时段的数据可供比较。",
            )
            .to_owned();
        answer.missing.push("no data for yesterday".to_owned());
        return;
    }
    rows.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let mut text = format!(
        "{} ({} {} {}):\n",
        context.t("Yesterday → today", "昨天 → 今天"),
        context.t("same", "同一"),
        minutes_text(
            language,
            u32::try_from(context.window.duration_secs() / 60).unwrap_or(60)
        ),
        context.t("window", "时段")
    );
    for (_, line) in rows.iter().take(8) {
        text.push_str(line);
        text.push('\n');
    }
    answer.answered = true;
    answer.text = text;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn english_intents_and_windows() {
        let p = parse_question("why is Redis slow in the last 2 hours?");
        assert_eq!(p.intent, Intent::WhySlow);
        assert_eq!(p.language, Language::En);
        assert_eq!(p.window_minutes, 120);
        assert!(p.mentions.contains(&"redis".to_owned()), "{:?}", p.mentions);
        assert_eq!(p.kind, Some(EntityKind::Cache));
        assert_eq!(
            parse_question("why is checkout failing").intent,
            Intent::WhyErrors
        );
        assert_eq!(
            parse_question("what changed today").intent,
            Intent::WhatChanged
        );
        assert_eq!(parse_question("what changed today").window_minutes, 1440);
        assert_eq!(parse_question("who burns CPU").intent, Intent::WhoBurnsCpu);
        assert_eq!(
            parse_question("is order-api healthy?").intent,
            Intent::IsHealthy
        );
        assert_eq!(
            parse_question("compare payment-api with yesterday").intent,
            Intent::CompareWithYesterday
        );
        assert_eq!(parse_question("last hour").window_minutes, 60);
        assert_eq!(parse_question("hello there").intent, Intent::Unknown);
    }

    #[test]
    fn chinese_intents_keywords_and_windows() {
        let p = parse_question("Redis 为什么慢");
        assert_eq!(p.language, Language::Zh);
        assert_eq!(p.intent, Intent::WhySlow);
        assert_eq!(p.mentions[0], "redis");
        let p = parse_question("订单服务延迟高的原因");
        assert_eq!(p.intent, Intent::WhySlow);
        assert!(p.mentions.contains(&"order".to_owned()), "{:?}", p.mentions);
        assert!(p.mentions.iter().any(|m| m.contains("订单服务")));
        assert_eq!(parse_question("过去一小时支付报错").window_minutes, 60);
        assert_eq!(parse_question("过去两小时支付报错").window_minutes, 120);
        assert_eq!(
            parse_question("过去30分钟支付报错").intent,
            Intent::WhyErrors
        );
        assert_eq!(parse_question("过去30分钟支付报错").window_minutes, 30);
        assert_eq!(parse_question("昨天有什么变更").intent, Intent::WhatChanged);
        assert_eq!(
            parse_question("缓存和昨天相比怎么样").intent,
            Intent::CompareWithYesterday
        );
        assert_eq!(
            parse_question("数据库健康吗").kind,
            Some(EntityKind::Database)
        );
    }
}
