//! Cron expressions read at a fixed UTC offset: when a job should fire.

use std::str::FromStr;
use std::sync::Arc;

use chrono::{FixedOffset, TimeZone};
use thiserror::Error;
use vigil_model::Timestamp;

/// Why a schedule was refused; the text quotes what was written so config errors are actionable.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum ScheduleError {
    /// The cron expression does not parse, or can never fire.
    #[error("invalid cron expression `{expression}`: {reason}")]
    Expression {
        /// The expression as written.
        expression: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The UTC offset is not `+HH:MM`, `-HH:MM` or `Z`.
    #[error(
        "invalid UTC offset `{offset}`: expected `+HH:MM`, `-HH:MM` or `Z` (for example `+08:00`)"
    )]
    Offset {
        /// The offset as written.
        offset: String,
    },
}

/// A parsed cron expression read at a fixed UTC offset, so "08:00" means the
/// users' 08:00 whatever the server's zone.
///
/// Accepted forms:
/// - 5 fields, crontab style: `minute hour day-of-month month day-of-week`, with
///   crontab's day numbering (0 or 7 = Sunday, 1 = Monday) and names (`MON-FRI`);
///   it fires at second 0. Restricting both day-of-month and day-of-week is refused,
///   because crontab fires when *either* matches and this parser would need *both*.
/// - 6 or 7 fields, the `cron` crate's form: `second minute hour day-of-month month
///   day-of-week [year]`, with its numbering (1 = Sunday … 7 = Saturday).
/// - Shorthands: `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`.
#[derive(Clone, Debug)]
pub struct CronSchedule {
    expression: String,
    offset: FixedOffset,
    schedule: Arc<cron::Schedule>,
}

impl CronSchedule {
    /// Parses `expression` read at `utc_offset`; refuses expressions that can never fire.
    pub fn parse(expression: &str, utc_offset: &str) -> Result<Self, ScheduleError> {
        let offset = parse_utc_offset(utc_offset)?;
        let normalised = normalise_expression(expression)?;
        let schedule = cron::Schedule::from_str(&normalised)
            .map_err(|error| invalid_expression(expression, error.to_string()))?;
        let parsed = Self {
            expression: expression.trim().to_owned(),
            offset,
            schedule: Arc::new(schedule),
        };
        if parsed.next_after(Timestamp(0)).is_none() {
            return Err(invalid_expression(
                expression,
                "it matches no date, so it would never fire".to_owned(),
            ));
        }
        Ok(parsed)
    }

    /// The expression as written (trimmed), for listings and logs.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The first fire time strictly after `after`; `None` when the schedule has ended
    /// (a year field in the past).
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        let from = self.offset.timestamp_opt(after.secs(), 0).single()?;
        self.schedule
            .after(&from)
            .next()
            .map(|fire| Timestamp(fire.timestamp()))
    }

    /// The latest fire time at or before `at`: the fire a catch-up run stands in for.
    pub fn latest_at_or_before(&self, at: Timestamp) -> Option<Timestamp> {
        let just_after = self
            .offset
            .timestamp_opt(at.secs().checked_add(1)?, 0)
            .single()?;
        self.schedule
            .after(&just_after)
            .next_back()
            .map(|fire| Timestamp(fire.timestamp()))
            .filter(|fire| *fire <= at)
    }
}

fn invalid_expression(expression: &str, reason: String) -> ScheduleError {
    ScheduleError::Expression {
        expression: expression.trim().to_owned(),
        reason,
    }
}

/// Parses `+08:00`, `-05:30`, `+0800`, `Z` or `UTC`.
fn parse_utc_offset(text: &str) -> Result<FixedOffset, ScheduleError> {
    let refuse = || ScheduleError::Offset {
        offset: text.to_owned(),
    };
    let trimmed = text.trim();
    if trimmed.eq_ignore_ascii_case("z") || trimmed.eq_ignore_ascii_case("utc") {
        return FixedOffset::east_opt(0).ok_or_else(refuse);
    }
    let (sign, digits) = if let Some(rest) = trimmed.strip_prefix('+') {
        (1, rest)
    } else if let Some(rest) = trimmed.strip_prefix('-') {
        (-1, rest)
    } else {
        return Err(refuse());
    };
    let (hours, minutes) = match digits.split_once(':') {
        Some(parts) => parts,
        None if digits.len() == 4 && digits.is_char_boundary(2) => digits.split_at(2),
        None => return Err(refuse()),
    };
    let two_digits = |part: &str| -> Option<i32> {
        if part.len() == 2 && part.bytes().all(|b| b.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    let hours = two_digits(hours).filter(|h| *h <= 23).ok_or_else(refuse)?;
    let minutes = two_digits(minutes)
        .filter(|m| *m <= 59)
        .ok_or_else(refuse)?;
    FixedOffset::east_opt(sign * (hours * 3600 + minutes * 60)).ok_or_else(refuse)
}

/// Brings an expression into the `cron` crate's form (seconds first, 1 = Sunday).
fn normalise_expression(expression: &str) -> Result<String, ScheduleError> {
    let trimmed = expression.trim();
    if trimmed.starts_with('@') {
        return Ok(trimmed.to_owned());
    }
    let fields: Vec<&str> = trimmed.split_whitespace().collect();
    match fields.as_slice() {
        [minute, hour, day_of_month, month, day_of_week] => {
            if !is_unrestricted(day_of_month) && !is_unrestricted(day_of_week) {
                return Err(invalid_expression(
                    expression,
                    "both day-of-month and day-of-week are restricted; crontab fires when either \
                     matches, this scheduler only when both do: use `*` for one of them, or two jobs"
                        .to_owned(),
                ));
            }
            let day_of_week = crontab_days_of_week(day_of_week)
                .map_err(|reason| invalid_expression(expression, reason))?;
            Ok(format!(
                "0 {minute} {hour} {day_of_month} {month} {day_of_week}"
            ))
        }
        [_, _, _, _, _, _] | [_, _, _, _, _, _, _] => Ok(fields.join(" ")),
        _ => Err(invalid_expression(
            expression,
            format!(
                "expected 5 fields (crontab: minute hour day-of-month month day-of-week) or 6–7 \
                 (second first, optional year last), found {}",
                fields.len()
            ),
        )),
    }
}

fn is_unrestricted(field: &str) -> bool {
    field == "*" || field == "?"
}

/// Day names in the `cron` crate's accepted spelling, indexed by crontab number (0 = Sunday).
const DAY_NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// Rewrites a crontab day-of-week field (0/7 = Sunday) as a list of day names,
/// which the `cron` crate reads without numbering ambiguity.
fn crontab_days_of_week(field: &str) -> Result<String, String> {
    if is_unrestricted(field) {
        return Ok(field.to_owned());
    }
    let mut selected = [false; 7];
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => {
                let step = step
                    .parse::<usize>()
                    .ok()
                    .filter(|step| *step > 0)
                    .ok_or_else(|| format!("day-of-week step `{step}` is not a positive number"))?;
                (range, Some(step))
            }
            None => (item, None),
        };
        let (first, last) = if is_unrestricted(range) {
            (0, 6)
        } else if let Some((first, last)) = range.split_once('-') {
            (crontab_day(first)?, crontab_day(last)?)
        } else {
            let day = crontab_day(range)?;
            // `3/2` means "from Wednesday, every second day", as in the cron crate.
            (day, if step.is_some() { 6 } else { day })
        };
        if first > last {
            return Err(format!("day-of-week range `{range}` runs backwards"));
        }
        for day in (first..=last).step_by(step.unwrap_or(1)) {
            selected[day % 7] = true;
        }
    }
    Ok(DAY_NAMES
        .iter()
        .zip(selected)
        .filter_map(|(name, on)| on.then_some(*name))
        .collect::<Vec<_>>()
        .join(","))
}

/// A crontab day: 0–7 (0 and 7 are Sunday) or an English name (`mon`, `Monday`).
fn crontab_day(text: &str) -> Result<usize, String> {
    if let Ok(number) = text.parse::<usize>() {
        return if number <= 7 {
            Ok(number)
        } else {
            Err(format!("day of week `{text}` is not 0–7"))
        };
    }
    let lower = text.to_ascii_lowercase();
    let day = match lower.as_str() {
        "sun" | "sunday" => 0,
        "mon" | "monday" => 1,
        "tue" | "tues" | "tuesday" => 2,
        "wed" | "wednesday" => 3,
        "thu" | "thurs" | "thursday" => 4,
        "fri" | "friday" => 5,
        "sat" | "saturday" => 6,
        _ => return Err(format!("`{text}` is not a day of the week")),
    };
    Ok(day)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2024-01-01T00:00:00Z, a Monday.
    const MONDAY_2024: i64 = 1_704_067_200;
    const HOUR: i64 = 3600;
    const DAY: i64 = 86_400;

    fn parse(expression: &str, offset: &str) -> CronSchedule {
        CronSchedule::parse(expression, offset).expect("test schedule parses")
    }

    #[test]
    fn daily_at_eight_in_china_fires_at_midnight_utc() {
        let schedule = parse("0 8 * * *", "+08:00");
        let next = schedule.next_after(Timestamp(MONDAY_2024 - 12 * HOUR));
        assert_eq!(next, Some(Timestamp(MONDAY_2024)));
        assert_eq!(
            schedule.next_after(Timestamp(MONDAY_2024)),
            Some(Timestamp(MONDAY_2024 + DAY)),
            "next_after is strictly after"
        );
    }

    #[test]
    fn negative_and_compact_offsets_are_read() {
        let schedule = parse("30 9 * * *", "-0530");
        // 09:30 at UTC-05:30 is 15:00 UTC.
        assert_eq!(
            schedule.next_after(Timestamp(MONDAY_2024)),
            Some(Timestamp(MONDAY_2024 + 15 * HOUR))
        );
        let utc = parse("0 0 * * *", "Z");
        assert_eq!(
            utc.next_after(Timestamp(MONDAY_2024 - 1)),
            Some(Timestamp(MONDAY_2024))
        );
    }

    #[test]
    fn crontab_weekdays_use_crontab_numbering() {
        // Friday 2024-01-05 09:00 at +08:00 = 01:00 UTC.
        let friday_morning = Timestamp(MONDAY_2024 + 4 * DAY + HOUR);
        for weekdays in [
            "0 8 * * 1-5",
            "0 8 * * MON-FRI",
            "0 8 * * mon,tue,wed,thu,fri",
        ] {
            let schedule = parse(weekdays, "+08:00");
            assert_eq!(
                schedule.next_after(friday_morning),
                Some(Timestamp(MONDAY_2024 + 7 * DAY)),
                "`{weekdays}` skips the weekend to Monday 08:00 local"
            );
        }
    }

    #[test]
    fn sunday_is_zero_or_seven_in_crontab() {
        // Sunday 2024-01-07 00:00 UTC.
        let sunday = Timestamp(MONDAY_2024 + 6 * DAY);
        for expression in ["0 0 * * 0", "0 0 * * 7", "0 0 * * SUN"] {
            let schedule = parse(expression, "+00:00");
            assert_eq!(schedule.next_after(Timestamp(MONDAY_2024)), Some(sunday));
        }
        // Friday to Sunday: 5-7 wraps onto Sunday.
        let weekend = parse("0 0 * * 5-7", "+00:00");
        let fires: Vec<i64> =
            std::iter::successors(Some(Timestamp(MONDAY_2024)), |t| weekend.next_after(*t))
                .skip(1)
                .take(3)
                .map(|t| (t.secs() - MONDAY_2024) / DAY)
                .collect();
        assert_eq!(fires, vec![4, 5, 6], "Fri, Sat, Sun of the first week");
    }

    #[test]
    fn day_of_week_steps_follow_crontab() {
        assert_eq!(
            crontab_days_of_week("*/2").expect("valid"),
            "SUN,TUE,THU,SAT"
        );
        assert_eq!(crontab_days_of_week("1-5/2").expect("valid"), "MON,WED,FRI");
        assert_eq!(crontab_days_of_week("3/2").expect("valid"), "WED,FRI");
        assert_eq!(crontab_days_of_week("?").expect("valid"), "?");
    }

    #[test]
    fn six_and_seven_field_forms_are_taken_as_the_cron_crate_reads_them() {
        let every_ten_seconds = parse("*/10 * * * * *", "+00:00");
        assert_eq!(
            every_ten_seconds.next_after(Timestamp(MONDAY_2024 + 3)),
            Some(Timestamp(MONDAY_2024 + 10))
        );
        let only_2024 = parse("0 0 0 1 1 * 2024", "+00:00");
        assert_eq!(
            only_2024.next_after(Timestamp(MONDAY_2024 - 1)),
            Some(Timestamp(MONDAY_2024))
        );
        assert_eq!(only_2024.next_after(Timestamp(MONDAY_2024)), None);
        let daily = parse("@daily", "+00:00");
        assert_eq!(
            daily.next_after(Timestamp(MONDAY_2024)),
            Some(Timestamp(MONDAY_2024 + DAY))
        );
    }

    #[test]
    fn latest_at_or_before_includes_the_instant_itself() {
        let hourly = parse("0 * * * *", "+00:00");
        let ten = Timestamp(MONDAY_2024 + 10 * HOUR);
        assert_eq!(hourly.latest_at_or_before(ten), Some(ten));
        assert_eq!(hourly.latest_at_or_before(ten.plus_secs(1799)), Some(ten));
        assert_eq!(
            hourly.latest_at_or_before(ten.plus_secs(-1)),
            Some(Timestamp(MONDAY_2024 + 9 * HOUR))
        );
    }

    #[test]
    fn bad_expressions_are_refused_with_the_text_quoted() {
        for (expression, needle) in [
            ("0 61 * * *", "0 61 * * *"),
            ("0 8 * *", "found 4"),
            ("0 8 1 * MON", "both day-of-month and day-of-week"),
            ("0 8 * * 8", "not 0–7"),
            ("0 8 * * FRI-MON", "runs backwards"),
            ("0 8 * * funday", "not a day of the week"),
            ("0 0 0 30 2 *", "never fire"),
        ] {
            let error = CronSchedule::parse(expression, "+08:00")
                .expect_err("expression must be refused")
                .to_string();
            assert!(error.contains(needle), "`{expression}`: {error}");
        }
    }

    #[test]
    fn bad_offsets_are_refused() {
        for offset in ["", "8", "+8", "+08", "+24:00", "+08:60", "CST", "+08:0a"] {
            let error = CronSchedule::parse("0 8 * * *", offset).expect_err("offset refused");
            assert_eq!(
                error,
                ScheduleError::Offset {
                    offset: offset.to_owned()
                }
            );
        }
    }
}
