//! The scale chart (`benches/results/scale.svg`): time to all Ready and RSS against N, drawn with
//! `plotters` (SVG backend: no font files or system libraries needed), log-scaled N.

use std::path::PathBuf;

use plotters::prelude::*;

/// Where the chart goes.
pub fn path() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/benches/results/scale.svg"
    ))
}

/// `(N, seconds from apply to all Ready)` of the create-path convergence results on disk
/// (`convergence.json`, `convergence-n<N>.json`; unthrottled runs only).
pub fn create_path_points() -> Vec<(f64, f64)> {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/benches/results"));
    let Ok(entries) = std::fs::read_dir(dir) else {
        return vec![];
    };
    let mut points: Vec<(f64, f64)> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().and_then(|f| f.to_str()).is_some_and(|f| {
                f == "convergence.json" || (f.starts_with("convergence-n") && f.ends_with(".json"))
            })
        })
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .filter_map(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .filter(|v| v["throttled"] != true)
        .filter_map(|v| {
            Some((
                v["n"].as_f64()?,
                v["figures"]["operator_apply_to_all_ready_s"].as_f64()?,
            ))
        })
        .collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    points
}

/// Draws two panels side by side: seconds to all Ready (adoption at start-up, and the create path
/// when known) and steady RSS in MiB, both against N.
pub fn draw(
    adopt: &[(f64, f64)],
    create: &[(f64, f64)],
    rss: &[(f64, f64)],
) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let file = path();
    let root = SVGBackend::new(file.as_path(), (1000, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(500);
    let max_n = adopt
        .iter()
        .chain(create)
        .chain(rss)
        .map(|p| p.0)
        .fold(100.0, f64::max);
    panel(
        &left,
        "Time to all Ready (s)",
        max_n,
        &[
            ("adopt N at start-up", adopt, BLUE),
            ("create N (convergence bench)", create, RED),
        ],
    )?;
    panel(
        &right,
        "Operator RSS (MiB)",
        max_n,
        &[("steady RSS", rss, GREEN)],
    )?;
    root.present()?;
    Ok(path())
}

type Series<'a> = (&'a str, &'a [(f64, f64)], RGBColor);

fn panel(
    area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    title: &str,
    max_n: f64,
    series: &[Series],
) -> Result<(), Box<dyn std::error::Error>> {
    let max_y = series
        .iter()
        .flat_map(|s| s.1.iter().map(|p| p.1))
        .fold(1.0, f64::max)
        * 1.15;
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(48)
        .build_cartesian_2d((50.0..max_n * 1.5).log_scale(), 0.0..max_y)?;
    chart
        .configure_mesh()
        .x_desc("sessions (N, log scale)")
        .draw()?;
    for (label, points, color) in series {
        if points.is_empty() {
            continue;
        }
        let color = *color;
        chart
            .draw_series(LineSeries::new(points.iter().copied(), color))?
            .label(*label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
        chart.draw_series(points.iter().map(|p| Circle::new(*p, 3, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()?;
    Ok(())
}
