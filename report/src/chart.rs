//! Evidence line charts as inline SVG: the observed series (gaps where it is
//! `NaN`), the expected band as a polygon, the anomaly window shaded, and
//! labelled axes in the reader's time zone.
//!
//! Hand-written because the picture is small and fixed: a charting crate would
//! bring a layout engine for four primitives.

use std::fmt::Write as _;

use vigil_model::{Series, TimeRange};

use crate::format::{clock, number, xml_escape};

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 58.0;
const RIGHT: f64 = 14.0;
const TOP: f64 = 16.0;
const BOTTOM: f64 = 28.0;

/// What one chart shows.
pub(crate) struct ChartInput<'a> {
    /// The observed values.
    pub series: &'a Series,
    /// Lower and upper edge of the expected band, when known.
    pub band: Option<&'a (Series, Series)>,
    /// The anomaly window to shade.
    pub window: TimeRange,
    /// Unit shown on the y axis.
    pub unit: &'a str,
    /// Accessible label of the whole chart.
    pub label: &'a str,
    /// Reader's offset from UTC, minutes.
    pub offset_minutes: i32,
}

/// Maps times and values to chart coordinates.
struct Frame {
    t0: f64,
    t1: f64,
    y0: f64,
    y1: f64,
}

impl Frame {
    fn x(&self, t: f64) -> f64 {
        let span = (self.t1 - self.t0).max(1.0);
        LEFT + (t - self.t0) / span * (WIDTH - LEFT - RIGHT)
    }

    fn y(&self, v: f64) -> f64 {
        let span = (self.y1 - self.y0).max(f64::EPSILON);
        TOP + (1.0 - (v - self.y0) / span) * (HEIGHT - TOP - BOTTOM)
    }
}

/// Seconds of step `i` of `series`, as a float for drawing.
fn time_of(series: &Series, i: usize) -> f64 {
    // Epoch seconds fit a f64 mantissa exactly for any real date.
    series.time_at(i).secs() as f64
}

/// Runs of consecutive indexes for which `present` holds (a gap splits a run).
fn runs(len: usize, present: impl Fn(usize) -> bool) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for i in 0..len {
        match (present(i), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, len));
    }
    out
}

/// A round tick step (1, 2 or 5 times a power of ten) of at least `raw`.
fn nice_step(raw: f64) -> f64 {
    if !raw.is_finite() || raw <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(raw.log10().floor());
    let fraction = raw / magnitude;
    let nice = if fraction <= 1.0 {
        1.0
    } else if fraction <= 2.0 {
        2.0
    } else if fraction <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * magnitude
}

/// The chart as an `<svg class="chart">` element.
pub(crate) fn line_chart(input: &ChartInput<'_>) -> String {
    let series = input.series;
    let n = series.values.len();
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    let mut widen = |v: f64| {
        if v.is_finite() {
            lo = lo.min(v);
            hi = hi.max(v);
        }
    };
    series.values.iter().copied().for_each(&mut widen);
    if let Some((lower, upper)) = input.band {
        lower.values.iter().copied().for_each(&mut widen);
        upper.values.iter().copied().for_each(&mut widen);
    }
    if !lo.is_finite() {
        lo = 0.0;
        hi = 1.0;
    }
    // Non-negative signals start at zero so a rise is never exaggerated.
    let y0 = if lo >= 0.0 { 0.0 } else { lo };
    let step = nice_step(if hi > y0 { (hi - y0) / 3.0 } else { 1.0 });
    let y0 = (y0 / step).floor() * step;
    let y1 = ((hi / step).ceil() * step).max(y0 + step);
    let frame = Frame {
        t0: time_of(series, 0),
        t1: time_of(series, n.saturating_sub(1).max(1)),
        y0,
        y1,
    };

    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{}" xmlns="http://www.w3.org/2000/svg">"#,
        xml_escape(input.label)
    );

    // Grid and y axis labels.
    let mut v = y0;
    while v <= y1 + step * 1e-9 {
        let y = frame.y(v);
        let _ = write!(
            svg,
            r#"<line class="grid" x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}"/><text class="axis" x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            WIDTH - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            xml_escape(&number(v))
        );
        v += step;
    }
    let _ = write!(
        svg,
        r#"<text class="axis unit" x="4" y="11">{}</text>"#,
        xml_escape(input.unit)
    );

    // Anomaly window, clamped to the drawn range.
    let (ws, we) = (
        input.window.start.secs() as f64,
        input.window.end.secs() as f64,
    );
    let (ws, we) = (ws.max(frame.t0), we.min(frame.t1));
    if we > ws {
        let (x0, x1) = (frame.x(ws), frame.x(we));
        let _ = write!(
            svg,
            r#"<rect class="anomaly-window" x="{x0:.1}" y="{TOP}" width="{:.1}" height="{:.1}"/>"#,
            (x1 - x0).max(1.5),
            HEIGHT - TOP - BOTTOM
        );
    }

    // Expected band: one polygon per stretch where both edges are known.
    if let Some((lower, upper)) = input.band {
        let len = lower.values.len().min(upper.values.len());
        for (s, e) in runs(len, |i| {
            lower.values[i].is_finite() && upper.values[i].is_finite()
        }) {
            let mut points = String::new();
            for i in s..e {
                let _ = write!(
                    points,
                    "{:.1},{:.1} ",
                    frame.x(time_of(upper, i)),
                    frame.y(upper.values[i])
                );
            }
            for i in (s..e).rev() {
                let _ = write!(
                    points,
                    "{:.1},{:.1} ",
                    frame.x(time_of(lower, i)),
                    frame.y(lower.values[i])
                );
            }
            let _ = write!(
                svg,
                r#"<polygon class="band" points="{}"/>"#,
                points.trim_end()
            );
        }
    }

    // Observed values: a polyline per stretch without gaps, a dot for a lone point.
    for (s, e) in runs(n, |i| series.values[i].is_finite()) {
        if e - s == 1 {
            let _ = write!(
                svg,
                r#"<circle class="point" cx="{:.1}" cy="{:.1}" r="2"/>"#,
                frame.x(time_of(series, s)),
                frame.y(series.values[s])
            );
            continue;
        }
        let mut points = String::new();
        for i in s..e {
            let _ = write!(
                points,
                "{:.1},{:.1} ",
                frame.x(time_of(series, i)),
                frame.y(series.values[i])
            );
        }
        let _ = write!(
            svg,
            r#"<polyline class="line" points="{}"/>"#,
            points.trim_end()
        );
    }

    // X axis: five time labels in the reader's zone.
    let _ = write!(
        svg,
        r#"<line class="axis-line" x1="{LEFT}" y1="{:.1}" x2="{:.1}" y2="{:.1}"/>"#,
        HEIGHT - BOTTOM,
        WIDTH - RIGHT,
        HEIGHT - BOTTOM
    );
    if n > 0 {
        let ticks = 4usize.min(n.saturating_sub(1)).max(1);
        for k in 0..=ticks {
            let i = (n - 1) * k / ticks;
            let t = series.time_at(i);
            let x = frame.x(time_of(series, i));
            let anchor = match k {
                0 => "start",
                _ if k == ticks => "end",
                _ => "middle",
            };
            let _ = write!(
                svg,
                r#"<text class="axis" x="{x:.1}" y="{:.1}" text-anchor="{anchor}">{}</text>"#,
                HEIGHT - 8.0,
                clock(t, input.offset_minutes)
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_model::Timestamp;

    #[test]
    fn gaps_split_the_line_and_the_band() {
        let series = Series {
            start: Timestamp(0),
            step_secs: 60,
            values: vec![1.0, 2.0, f64::NAN, 3.0, 4.0, 5.0],
        };
        let band = (
            Series {
                values: vec![0.5; 6],
                ..series.clone()
            },
            Series {
                values: vec![2.5, 2.5, 2.5, f64::NAN, 2.5, 2.5],
                ..series.clone()
            },
        );
        let svg = line_chart(&ChartInput {
            series: &series,
            band: Some(&band),
            window: TimeRange {
                start: Timestamp(180),
                end: Timestamp(300),
            },
            unit: "ms",
            label: "x",
            offset_minutes: 0,
        });
        assert_eq!(svg.matches("<polyline").count(), 2, "{svg}");
        assert_eq!(svg.matches("<polygon class=\"band\"").count(), 2, "{svg}");
        assert_eq!(svg.matches("class=\"anomaly-window\"").count(), 1, "{svg}");
        assert!(!svg.contains("NaN"), "{svg}");
    }

    #[test]
    fn ticks_are_round() {
        assert!((nice_step(0.7) - 1.0).abs() < 1e-12);
        assert!((nice_step(140.0) - 200.0).abs() < 1e-9);
        assert!((nice_step(0.03) - 0.05).abs() < 1e-12);
    }

    #[test]
    fn all_gaps_draw_an_empty_frame() {
        let series = Series::empty(Timestamp(0), 60, 4);
        let svg = line_chart(&ChartInput {
            series: &series,
            band: None,
            window: TimeRange {
                start: Timestamp(0),
                end: Timestamp(60),
            },
            unit: "ms",
            label: "x",
            offset_minutes: 0,
        });
        assert!(!svg.contains("<polyline"));
        assert!(!svg.contains("NaN"));
    }
}
