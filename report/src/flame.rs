//! On-CPU flame graphs from folded stacks, drawn by `inferno` (the Rust port
//! of Brendan Gregg's FlameGraph).
//!
//! Inferno writes a standalone SVG document whose script assumes it is the
//! only `<svg>` in its document (it looks up fixed ids and `svg[0]`), so each
//! flame graph is shown in its own sandboxed `<iframe srcdoc>`: the script
//! runs (zoom, search, tooltips) without touching the report or its charts.

use vigil_model::Profile;

/// Stacks beyond this many (heaviest first) are left out: too thin to see.
const MAX_STACKS: usize = 500;

/// Drawing width in SVG units; the frame scales it to the page's width.
const IMAGE_WIDTH: usize = 1200;

/// A flame graph ready to embed.
pub(crate) struct Flame {
    /// A complete HTML document holding the SVG, for `srcdoc`.
    pub document: String,
    /// The SVG's height in pixels, so the frame needs no scroll bar.
    pub height: u32,
    /// The leaf frame of the heaviest stack (what the reader looks for first).
    pub heaviest_frame: String,
}

/// Draws `profile`; `None` when it has no samples or inferno refuses it.
pub(crate) fn flame_graph(profile: &Profile, title: &str) -> Option<Flame> {
    let mut stacks: Vec<_> = profile
        .stacks
        .iter()
        .filter(|s| s.value > 0 && !s.frames.trim().is_empty())
        .collect();
    stacks.sort_by(|a, b| b.value.cmp(&a.value).then_with(|| a.frames.cmp(&b.frames)));
    stacks.truncate(MAX_STACKS);
    let heaviest_frame = stacks
        .first()?
        .frames
        .rsplit(';')
        .next()
        .unwrap_or_default()
        .to_owned();
    // The folded format separates the count by the last space; frames keep
    // their own spaces, but a line break would split a stack in two.
    let lines: Vec<String> = stacks
        .iter()
        .map(|s| format!("{} {}", s.frames.replace(['\n', '\r'], " "), s.value))
        .collect();

    let mut options = inferno::flamegraph::Options::default();
    options.title = title.to_owned();
    options.count_name = if profile.unit.is_empty() {
        "samples".to_owned()
    } else {
        profile.unit.clone()
    };
    options.deterministic = true;
    options.hash = true;
    options.font_type = "sans-serif".to_owned();
    // A fixed drawing width: inferno's "fluid" mode measures the SVG's width
    // attribute after removing it, which reads 0 inside an HTML document. The
    // frame's CSS scales the fixed drawing to the page instead.
    options.image_width = Some(IMAGE_WIDTH);
    let mut svg = Vec::new();
    inferno::flamegraph::from_lines(&mut options, lines.iter().map(String::as_str), &mut svg)
        .ok()?;
    let svg = String::from_utf8(svg).ok()?;
    let body = svg.find("<svg").map_or(svg.as_str(), |at| &svg[at..]);
    let height = body
        .split_once("height=\"")
        .and_then(|(_, rest)| rest.split_once('"'))
        .and_then(|(h, _)| h.parse::<u32>().ok())
        .unwrap_or(400);
    let document = format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><style>html,body{{margin:0;background:#fff}}svg{{display:block;width:100%;height:auto}}</style></head><body>{body}</body></html>"
    );
    Some(Flame {
        document,
        height,
        heaviest_frame,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_model::{EntityId, EntityKind, FoldedStack, TimeRange, Timestamp};

    #[test]
    fn heaviest_leaf_is_named_and_drawn() {
        let profile = Profile {
            entity: EntityId::new(EntityKind::Process, "java@10.0.0.7"),
            range: TimeRange {
                start: Timestamp(0),
                end: Timestamp(60),
            },
            unit: "samples".to_owned(),
            stacks: vec![
                FoldedStack {
                    frames: "main;serve;idle".to_owned(),
                    value: 5,
                },
                FoldedStack {
                    frames: "main;serve;json_encode".to_owned(),
                    value: 90,
                },
            ],
        };
        let flame = flame_graph(&profile, "cpu").expect("draws");
        assert_eq!(flame.heaviest_frame, "json_encode");
        assert!(flame.document.contains("json_encode"));
        assert!(!flame.document.contains("<?xml"));
        assert!(flame.height > 0);
    }

    #[test]
    fn empty_profile_draws_nothing() {
        let profile = Profile {
            entity: EntityId::new(EntityKind::Process, "p"),
            range: TimeRange {
                start: Timestamp(0),
                end: Timestamp(60),
            },
            unit: "samples".to_owned(),
            stacks: vec![],
        };
        assert!(flame_graph(&profile, "cpu").is_none());
    }
}
