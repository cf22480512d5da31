//! JSON for machines: the report's own serde shape (gaps as `null`), under a
//! versioned envelope with derived counts so consumers need not recount.

use serde_json::{json, Value};
use vigil_model::{FindingStatus, PatrolReport};

/// Version of the JSON shape; bumped whenever a field is renamed or removed.
pub const SCHEMA_VERSION: u32 = 1;

/// The report as a JSON object with `schema_version`, `kind`, `counts` and
/// every field of [`PatrolReport`] at the top level.
pub(crate) fn render(report: &PatrolReport) -> Value {
    let count = |status| {
        report
            .findings
            .iter()
            .filter(|f| f.status == status)
            .count()
    };
    let counts = json!({
        "new": count(FindingStatus::New),
        "still_open": count(FindingStatus::StillOpen),
        "resolved": report.resolved.len(),
        "suppressed": report.suppressed.len(),
    });
    let mut value =
        serde_json::to_value(report).unwrap_or_else(|error| json!({ "error": error.to_string() }));
    if let Value::Object(map) = &mut value {
        map.insert("schema_version".to_owned(), json!(SCHEMA_VERSION));
        map.insert("kind".to_owned(), json!("vigil.patrol-report"));
        map.insert("counts".to_owned(), counts);
    }
    value
}
