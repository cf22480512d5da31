//! Reading playbooks: YAML text → validated [`Playbook`], with errors that name
//! the file, the line and the key; the built-in catalogue; a directory of
//! user playbooks that may replace built-ins by id.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use crate::definition::{Detector, Playbook};
use crate::PlaybookError;

/// The built-in catalogue, embedded so a bare binary has it.
const CATALOGUE: &[(&str, &str)] = &[
    (
        "daily-report.yaml",
        include_str!("../catalogue/daily-report.yaml"),
    ),
    (
        "continuous.yaml",
        include_str!("../catalogue/continuous.yaml"),
    ),
    ("slo.yaml", include_str!("../catalogue/slo.yaml")),
    ("services.yaml", include_str!("../catalogue/services.yaml")),
    ("mysql.yaml", include_str!("../catalogue/mysql.yaml")),
    ("redis.yaml", include_str!("../catalogue/redis.yaml")),
    (
        "resources.yaml",
        include_str!("../catalogue/resources.yaml"),
    ),
    ("network.yaml", include_str!("../catalogue/network.yaml")),
    ("risks.yaml", include_str!("../catalogue/risks.yaml")),
    ("coverage.yaml", include_str!("../catalogue/coverage.yaml")),
];

/// The built-in playbooks, parsed and validated.
pub fn builtin() -> Result<Vec<Playbook>, PlaybookError> {
    CATALOGUE
        .iter()
        .map(|(name, text)| parse(text, &format!("built-in {name}")))
        .collect()
}

/// The built-in catalogue's files (name, YAML), for `vigil patrol catalogue --export`.
pub fn builtin_sources() -> &'static [(&'static str, &'static str)] {
    CATALOGUE
}

/// Built-ins plus every `*.yaml`/`*.yml` under `dir`; a user playbook with a
/// built-in's id replaces it, two user files with one id are an error.
pub fn load_all(dir: Option<&Path>) -> Result<Vec<Playbook>, PlaybookError> {
    let mut by_id: BTreeMap<String, (String, Playbook)> = builtin()?
        .into_iter()
        .map(|p| (p.id.clone(), ("built-in".to_owned(), p)))
        .collect();
    let Some(dir) = dir else {
        return Ok(by_id.into_values().map(|(_, p)| p).collect());
    };
    let entries = std::fs::read_dir(dir).map_err(|err| PlaybookError::Read {
        origin: dir.display().to_string(),
        message: err.to_string(),
    })?;
    let mut files: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    let mut user_ids = BTreeMap::new();
    for file in files {
        let origin = file.display().to_string();
        let text = std::fs::read_to_string(&file).map_err(|err| PlaybookError::Read {
            origin: origin.clone(),
            message: err.to_string(),
        })?;
        let playbook = parse(&text, &origin)?;
        if let Some(first) = user_ids.insert(playbook.id.clone(), origin.clone()) {
            return Err(PlaybookError::DuplicateId {
                id: playbook.id,
                first,
                second: origin,
            });
        }
        by_id.insert(playbook.id.clone(), (origin, playbook));
    }
    Ok(by_id.into_values().map(|(_, p)| p).collect())
}

/// Parses and validates one playbook; `origin` names it in errors.
pub fn parse(text: &str, origin: &str) -> Result<Playbook, PlaybookError> {
    let deserializer = serde_norway::Deserializer::from_str(text);
    let playbook: Playbook = serde_path_to_error::deserialize(deserializer).map_err(|err| {
        let key = err.path().to_string();
        let inner = err.into_inner();
        let (line, column) = inner.location().map_or((0, 0), |l| (l.line(), l.column()));
        PlaybookError::Parse {
            origin: origin.to_owned(),
            line,
            column,
            key: if key == "." { String::new() } else { key },
            message: inner.to_string(),
        }
    })?;
    validate(&playbook, text, origin)?;
    Ok(playbook)
}

/// The first line (1-based) holding `needle`, for errors found after parsing.
fn line_of(text: &str, needle: &str) -> Option<usize> {
    text.lines()
        .position(|line| line.contains(needle))
        .map(|index| index + 1)
}

fn is_id(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 64
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !text.starts_with('-')
}

/// Parses `+08:00` / `-05:30` / `Z` into seconds east of UTC.
pub fn parse_utc_offset(text: &str) -> Option<i32> {
    if text == "Z" || text == "UTC" {
        return Some(0);
    }
    let (sign, rest) = match text.as_bytes().first()? {
        b'+' => (1, &text[1..]),
        b'-' => (-1, &text[1..]),
        _ => return None,
    };
    let (hours, minutes) = rest.split_once(':')?;
    let hours: i32 = hours.parse().ok()?;
    let minutes: i32 = minutes.parse().ok()?;
    if hours > 14 || minutes >= 60 || hours.is_negative() || minutes.is_negative() {
        return None;
    }
    Some(sign * (hours * 3600 + minutes * 60))
}

fn validate(playbook: &Playbook, text: &str, origin: &str) -> Result<(), PlaybookError> {
    let invalid = |key: String, needle: &str, message: String| PlaybookError::Invalid {
        origin: origin.to_owned(),
        line: line_of(text, needle),
        key,
        message,
    };
    if !is_id(&playbook.id) {
        return Err(invalid(
            "id".to_owned(),
            "id:",
            format!(
                "{:?} is not an id: use lower-case letters, digits and '-' (at most 64)",
                playbook.id
            ),
        ));
    }
    if playbook.name.en.trim().is_empty() {
        return Err(invalid(
            "name.en".to_owned(),
            "name",
            "the English name must not be empty".to_owned(),
        ));
    }
    if playbook.schedule.trim().is_empty() {
        return Err(invalid(
            "schedule".to_owned(),
            "schedule",
            "must be a cron expression, e.g. \"0 8 * * *\"".to_owned(),
        ));
    }
    if parse_utc_offset(&playbook.utc_offset).is_none() {
        return Err(invalid(
            "utc_offset".to_owned(),
            "utc_offset",
            format!("{:?} is not an offset like +08:00", playbook.utc_offset),
        ));
    }
    if playbook.window < Duration::from_secs(60)
        || playbook.window > Duration::from_secs(7 * 86_400)
    {
        return Err(invalid(
            "window".to_owned(),
            "window",
            "must be between 1m and 7d".to_owned(),
        ));
    }
    if !playbook.window.as_secs().is_multiple_of(60) {
        return Err(invalid(
            "window".to_owned(),
            "window",
            "must be whole minutes".to_owned(),
        ));
    }
    if playbook.history_days > 28 {
        return Err(invalid(
            "history_days".to_owned(),
            "history_days",
            "at most 28 days are used".to_owned(),
        ));
    }
    if playbook.timeout < Duration::from_secs(1) {
        return Err(invalid(
            "timeout".to_owned(),
            "timeout",
            "must be at least 1s".to_owned(),
        ));
    }
    if let Some(report) = &playbook.report {
        if report.languages.is_empty() {
            return Err(invalid(
                "report.languages".to_owned(),
                "languages",
                "name at least one language (en, zh)".to_owned(),
            ));
        }
    }
    if playbook.checks.is_empty() {
        return Err(invalid(
            "checks".to_owned(),
            "checks",
            "a playbook needs at least one check".to_owned(),
        ));
    }
    let mut ids = BTreeSet::new();
    for (index, check) in playbook.checks.iter().enumerate() {
        let needle = format!("id: {}", check.id);
        if !is_id(&check.id) {
            return Err(invalid(
                format!("checks[{index}].id"),
                &needle,
                format!("{:?} is not an id", check.id),
            ));
        }
        if !ids.insert(check.id.as_str()) {
            return Err(invalid(
                format!("checks[{index}].id"),
                &needle,
                format!("check id {:?} is used twice", check.id),
            ));
        }
        for name in check.params.set_names() {
            if !check.detector.params().contains(&name) {
                return Err(invalid(
                    format!("checks[{index}].params.{name}"),
                    &format!("{name}:"),
                    format!(
                        "the {} detector does not read {name}; it reads: {}",
                        check.detector.as_str(),
                        list(check.detector.params())
                    ),
                ));
            }
        }
        if check.detector == Detector::Query {
            let query = check.params.query.as_deref().unwrap_or("").trim();
            let key = format!("checks[{index}].params.query");
            if query.is_empty() {
                return Err(invalid(
                    key,
                    &needle,
                    "a query check needs a query".to_owned(),
                ));
            }
            let lower = query.to_ascii_lowercase();
            if !(lower.starts_with("select") || lower.starts_with("with")) || query.contains(';') {
                return Err(invalid(
                    key,
                    "query:",
                    "must be one SELECT statement (no ';'), returning one number as `value`"
                        .to_owned(),
                ));
            }
            if check.params.above.is_none() && check.params.below.is_none() {
                return Err(invalid(
                    format!("checks[{index}].params"),
                    &needle,
                    "a query check needs `above` or `below`".to_owned(),
                ));
            }
            if let Some(entity) = &check.params.entity {
                if entity.parse::<vigil_model::EntityId>().is_err() {
                    return Err(invalid(
                        format!("checks[{index}].params.entity"),
                        "entity:",
                        format!("{entity:?} is not an entity id like service:checkout"),
                    ));
                }
            }
        }
        for (name, value) in [
            ("threshold", check.params.threshold),
            ("min_ratio", check.params.min_ratio),
            ("slow_ms", check.params.slow_ms),
            ("saturation_share", check.params.saturation_share),
        ] {
            if value.is_some_and(|v| !(v.is_finite() && v > 0.0)) {
                return Err(invalid(
                    format!("checks[{index}].params.{name}"),
                    &format!("{name}:"),
                    "must be a positive number".to_owned(),
                ));
            }
        }
        if check
            .params
            .objective
            .is_some_and(|v| !(0.0 < v && v < 1.0))
        {
            return Err(invalid(
                format!("checks[{index}].params.objective"),
                "objective:",
                "must be between 0 and 1, e.g. 0.999".to_owned(),
            ));
        }
    }
    for (index, over) in playbook.overrides.iter().enumerate() {
        if over.services.is_empty() {
            return Err(invalid(
                format!("overrides[{index}].services"),
                "overrides",
                "name at least one service pattern".to_owned(),
            ));
        }
        for (check_id, params) in &over.checks {
            let Some(check) = playbook.checks.iter().find(|c| &c.id == check_id) else {
                return Err(invalid(
                    format!("overrides[{index}].checks.{check_id}"),
                    &format!("{check_id}:"),
                    format!("no check {check_id:?} in this playbook"),
                ));
            };
            for name in params.set_names() {
                if !check.detector.params().contains(&name) {
                    return Err(invalid(
                        format!("overrides[{index}].checks.{check_id}.{name}"),
                        &format!("{name}:"),
                        format!(
                            "the {} detector does not read {name}",
                            check.detector.as_str()
                        ),
                    ));
                }
            }
        }
    }
    for (index, route) in playbook.routes.iter().enumerate() {
        if route.trim().is_empty() {
            return Err(invalid(
                format!("routes[{index}]"),
                "routes",
                "a route name must not be empty".to_owned(),
            ));
        }
    }
    Ok(())
}

fn list(names: &[&str]) -> String {
    if names.is_empty() {
        "no parameters".to_owned()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "id: mine\nname: {en: Mine, zh: 我的}\nschedule: \"*/5 * * * *\"\nchecks:\n  - id: lat\n    detector: latency\n";

    #[test]
    fn the_catalogue_loads_and_has_the_promised_playbooks() {
        let playbooks = builtin().expect("catalogue is valid");
        let ids: BTreeSet<&str> = playbooks.iter().map(|p| p.id.as_str()).collect();
        for id in [
            "daily-report",
            "continuous",
            "slo",
            "mysql",
            "redis",
            "coverage",
        ] {
            assert!(ids.contains(id), "missing {id}: {ids:?}");
        }
        let daily = playbooks
            .iter()
            .find(|p| p.id == "daily-report")
            .expect("daily-report");
        assert!(daily.report.is_some());
        let detectors: BTreeSet<Detector> = playbooks
            .iter()
            .flat_map(|p| p.checks.iter().map(|c| c.detector))
            .collect();
        for detector in Detector::ALL {
            if detector != Detector::Query {
                assert!(
                    detectors.contains(&detector),
                    "no built-in check uses {detector:?}"
                );
            }
        }
        for playbook in &playbooks {
            assert!(
                !playbook.name.zh.is_empty(),
                "{} lacks a Chinese name",
                playbook.id
            );
        }
    }

    #[test]
    fn a_minimal_playbook_gets_defaults() {
        let playbook = parse(MINIMAL, "mine.yaml").expect("valid");
        assert_eq!(playbook.window, Duration::from_secs(3600));
        assert!(playbook.root_cause);
        assert!(playbook.enabled);
        assert_eq!(playbook.history_days, 7);
    }

    #[test]
    fn unknown_keys_name_file_line_and_key() {
        let text = MINIMAL.replace(
            "    detector: latency\n",
            "    detector: latency\n    treshold: 3\n",
        );
        let err = parse(&text, "mine.yaml").expect_err("unknown key");
        let message = err.to_string();
        assert!(message.starts_with("mine.yaml:7:"), "{message}");
        assert!(message.contains("checks[0]"), "{message}");
        assert!(message.contains("treshold"), "{message}");
    }

    #[test]
    fn unknown_detectors_list_the_known_ones() {
        let text = MINIMAL.replace("detector: latency", "detector: latensy");
        let message = parse(&text, "mine.yaml")
            .expect_err("bad detector")
            .to_string();
        assert!(message.contains("checks[0].detector"), "{message}");
        assert!(message.contains("latency"), "{message}");
    }

    #[test]
    fn parameters_a_detector_does_not_read_are_refused_by_name() {
        let text = format!("{MINIMAL}    params:\n      persist_minutes: 30\n");
        let message = parse(&text, "mine.yaml")
            .expect_err("wrong param")
            .to_string();
        assert!(message.contains("mine.yaml:8"), "{message}");
        assert!(
            message.contains("checks[0].params.persist_minutes"),
            "{message}"
        );
        assert!(
            message.contains("min_ratio"),
            "lists what it reads: {message}"
        );
    }

    #[test]
    fn duplicate_check_ids_and_bad_overrides_are_refused() {
        let text = format!("{MINIMAL}  - id: lat\n    detector: errors\n");
        let message = parse(&text, "p.yaml").expect_err("duplicate").to_string();
        assert!(message.contains("used twice"), "{message}");
        let text = format!("{MINIMAL}overrides:\n  - services: [batch-*]\n    checks:\n      nope: {{threshold: 9}}\n");
        let message = parse(&text, "p.yaml")
            .expect_err("unknown check")
            .to_string();
        assert!(message.contains("overrides[0].checks.nope"), "{message}");
    }

    #[test]
    fn query_checks_must_be_a_single_select_with_a_threshold() {
        let query = "id: q\nname: {en: Q}\nschedule: \"* * * * *\"\nchecks:\n  - id: q\n    detector: query\n    params:\n      query: \"DROP TABLE x\"\n      above: 1\n";
        let message = parse(query, "q.yaml")
            .expect_err("not a select")
            .to_string();
        assert!(message.contains("checks[0].params.query"), "{message}");
        let query = query.replace("DROP TABLE x", "SELECT count() AS value FROM t");
        parse(&query, "q.yaml").expect("valid query check");
        let no_threshold = query.replace("      above: 1\n", "");
        assert!(parse(&no_threshold, "q.yaml").is_err());
    }

    #[test]
    fn offsets_parse() {
        assert_eq!(parse_utc_offset("+08:00"), Some(8 * 3600));
        assert_eq!(parse_utc_offset("-05:30"), Some(-(5 * 3600 + 1800)));
        assert_eq!(parse_utc_offset("Z"), Some(0));
        assert_eq!(parse_utc_offset("8"), None);
        assert_eq!(parse_utc_offset("+25:00"), None);
    }

    #[test]
    fn bad_scope_patterns_name_the_key() {
        let text = format!("{MINIMAL}scope:\n  services: [\"[oops\"]\n");
        let message = parse(&text, "p.yaml").expect_err("bad glob").to_string();
        assert!(message.contains("scope.services"), "{message}");
    }
}
