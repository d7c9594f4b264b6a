//! `--plot=FILE.svg`: the run's [`Timeline`] as an SVG chart.
//!
//! Two panels over one time axis (seconds since the run started): operations
//! completed per second, and the P99 latency of the writes completed in each second
//! (log scale: a stall's tens of milliseconds and a memtable insert's microsecond
//! share the panel). Vertical markers: grey where a benchmark starts (named at the
//! top), red where a checkpoint starts, green for a restore (its start, its first
//! read, the warmer's end).

use std::path::Path;

use anyhow::anyhow;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::timeline::{Event, EventKind, Second, Timeline};

const WIDTH_PX: u32 = 1200;
const HEIGHT_PX: u32 = 760;
const CHECKPOINT: RGBColor = RGBColor(214, 39, 40);
const RESTORE: RGBColor = RGBColor(44, 160, 44);
const BENCHMARK: RGBColor = RGBColor(150, 150, 150);
const OPS: RGBColor = RGBColor(31, 119, 180);
const LATENCY: RGBColor = RGBColor(255, 127, 14);

/// Writes the chart of `timeline` to `path`.
pub fn write_svg(path: &Path, timeline: &Timeline, title: &str) -> anyhow::Result<()> {
    let seconds = timeline.seconds();
    let events = timeline.events();
    let last_event = events
        .iter()
        .map(|e| e.at.as_secs_f64())
        .fold(0.0, f64::max);
    let x_max = (seconds.len() as f64).max(last_event + 1.0).max(1.0);

    let root = SVGBackend::new(path, (WIDTH_PX, HEIGHT_PX)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let (top, bottom) = root.split_vertically(HEIGHT_PX / 2);
    ops_panel(&top, &seconds, &events, x_max, title).map_err(|e| anyhow!("{e}"))?;
    latency_panel(&bottom, &seconds, &events, x_max).map_err(|e| anyhow!("{e}"))?;
    root.present()
        .map_err(|e| anyhow!("writing {}: {e}", path.display()))?;
    Ok(())
}

type PlotResult = Result<(), DrawingAreaErrorKind<std::io::Error>>;

fn ops_panel(
    area: &DrawingArea<SVGBackend, Shift>,
    seconds: &[Second],
    events: &[Event],
    x_max: f64,
    title: &str,
) -> PlotResult {
    let y_max = seconds.iter().map(|s| s.ops).max().unwrap_or(0).max(1) as f64 * 1.15;
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)?;
    chart
        .configure_mesh()
        .x_desc("seconds since start")
        .y_desc("operations per second")
        .y_label_formatter(&|v| format!("{:.0}k", v / 1000.0))
        .light_line_style(RGBColor(245, 245, 245))
        .draw()?;
    chart
        .draw_series(LineSeries::new(
            seconds
                .iter()
                .enumerate()
                .map(|(i, s)| (i as f64 + 0.5, s.ops as f64)),
            OPS.stroke_width(2),
        ))?
        .label("ops/s")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], OPS.stroke_width(2)));
    markers(&mut chart, events, 0.0, y_max)?;
    for e in events {
        if let EventKind::Benchmark(name) = &e.kind {
            chart.draw_series(std::iter::once(Text::new(
                name.clone(),
                (e.at.as_secs_f64() + x_max * 0.003, y_max * 0.97),
                ("sans-serif", 12).into_font().color(&BLACK),
            )))?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
}

fn latency_panel(
    area: &DrawingArea<SVGBackend, Shift>,
    seconds: &[Second],
    events: &[Event],
    x_max: f64,
) -> PlotResult {
    let p99_us = |s: &Second| {
        (!s.write_latency_ns.is_empty())
            .then(|| (s.write_latency_ns.value_at_quantile(0.99) as f64 / 1e3).max(0.01))
    };
    let y_max = seconds
        .iter()
        .filter_map(p99_us)
        .fold(1.0, f64::max)
        .max(10.0)
        * 2.0;
    let y_min = seconds
        .iter()
        .filter_map(p99_us)
        .fold(y_max, f64::min)
        .min(1.0)
        / 2.0;
    let mut chart = ChartBuilder::on(area)
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..x_max, (y_min..y_max).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("seconds since start")
        .y_desc("write P99 per second (µs, log)")
        .light_line_style(RGBColor(245, 245, 245))
        .draw()?;
    // One line per run of seconds that had writes: no line across read benchmarks.
    let mut runs: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut open = false;
    for (i, s) in seconds.iter().enumerate() {
        match p99_us(s) {
            Some(v) => {
                if !open {
                    runs.push(Vec::new());
                    open = true;
                }
                if let Some(run) = runs.last_mut() {
                    run.push((i as f64 + 0.5, v));
                }
            }
            None => open = false,
        }
    }
    for (n, run) in runs.into_iter().enumerate() {
        let series = chart.draw_series(LineSeries::new(run, LATENCY.stroke_width(2)))?;
        if n == 0 {
            series.label("write P99").legend(|(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], LATENCY.stroke_width(2))
            });
        }
    }
    markers(&mut chart, events, y_min, y_max)?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
}

/// Picks the events of one marker kind.
type IsKind = fn(&EventKind) -> bool;

/// Vertical lines for the events, each kind labelled once in the legend.
fn markers<'a, Y>(
    chart: &mut ChartContext<
        'a,
        SVGBackend<'a>,
        Cartesian2d<plotters::coord::types::RangedCoordf64, Y>,
    >,
    events: &[Event],
    y_lo: Y::ValueType,
    y_hi: Y::ValueType,
) -> PlotResult
where
    Y: Ranged,
    Y::ValueType: Clone + 'static,
{
    let kinds: [(&str, RGBColor, IsKind); 3] = [
        ("benchmark start", BENCHMARK, |k| {
            matches!(k, EventKind::Benchmark(_))
        }),
        ("checkpoint", CHECKPOINT, |k| {
            matches!(k, EventKind::Checkpoint(_))
        }),
        ("restore, first read, warmer done", RESTORE, |k| {
            matches!(
                k,
                EventKind::Restore | EventKind::FirstRead | EventKind::WarmerDone
            )
        }),
    ];
    for (label, color, is) in kinds {
        let lines: Vec<_> = events
            .iter()
            .filter(|e| is(&e.kind))
            .map(|e| {
                let x = e.at.as_secs_f64();
                PathElement::new(
                    vec![(x, y_lo.clone()), (x, y_hi.clone())],
                    color.stroke_width(1),
                )
            })
            .collect();
        if lines.is_empty() {
            continue;
        }
        let series = chart.draw_series(lines)?;
        if label != "benchmark start" {
            series.label(label).legend(move |(x, y)| {
                PathElement::new(vec![(x + 10, y - 6), (x + 10, y + 6)], color)
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[test]
    fn writes_an_svg_with_both_panels_and_markers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let start = terrace_tiering::clock::now();
        let t = Arc::new(Timeline::starting_at(start));
        t.event_at(start, EventKind::Benchmark("fillrandom".into()));
        {
            let mut r = t.recorder(true);
            for s in 0..5u64 {
                for _ in 0..100 {
                    r.record(
                        start + Duration::from_millis(s * 1000 + 10),
                        Duration::from_micros(2 + s),
                        1,
                    );
                }
            }
        }
        t.event_at(start + Duration::from_secs(2), EventKind::Checkpoint(1));
        t.event_at(start + Duration::from_secs(3), EventKind::Restore);
        let path = dir.path().join("run.svg");
        write_svg(&path, &t, "test run").expect("plot");
        let svg = std::fs::read_to_string(&path).expect("svg");
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(200)]);
        for text in ["fillrandom", "checkpoint", "write P99", "ops/s"] {
            assert!(svg.contains(text), "{text} missing");
        }
    }
}
