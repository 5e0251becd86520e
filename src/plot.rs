//! Line charts as SVG (plotters' SVG backend: no system fonts or C libraries needed).

use crate::error::{Error, Result};
use plotters::prelude::*;
use std::io::Write;
use std::path::Path;

/// One line of a chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// Matplotlib's `tab10` colours, in its order.
const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// Scales of a chart's axes; logarithmic ones are drawn base 10 and labelled in the
/// data's own units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scales {
    pub log_x: bool,
    pub log_y: bool,
}

/// Draw `series` into an SVG file at `path` (written atomically), both axes linear. The y
/// range is fitted to the data, with room below for the legend; points with a non-finite
/// coordinate are left out.
pub fn line_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
) -> Result<()> {
    line_chart_scaled(path, title, x_label, y_label, Scales::default(), series)
}

/// [`line_chart`] with the given axis scales; on a logarithmic axis, points at or below
/// zero are left out.
pub fn line_chart_scaled(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    scales: Scales,
    series: &[Series],
) -> Result<()> {
    let to_axis = |v: f64, log: bool| if log { v.log10() } else { v };
    let series: Vec<Series> = series
        .iter()
        .map(|s| Series {
            label: s.label.clone(),
            points: s
                .points
                .iter()
                .map(|&(x, y)| (to_axis(x, scales.log_x), to_axis(y, scales.log_y)))
                .collect(),
        })
        .collect();
    let series = series.as_slice();
    let tick = |v: f64, log: bool| number(if log { 10f64.powf(v) } else { v });
    if path.extension().and_then(|e| e.to_str()) != Some("svg") {
        return Err(Error::Config(format!(
            "{}: plots are written as SVG; name the file *.svg",
            path.display()
        )));
    }
    let finite = |&&(x, y): &&(f64, f64)| x.is_finite() && y.is_finite();
    let points = || series.iter().flat_map(|s| s.points.iter().filter(finite));
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in points() {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    if x0 > x1 {
        return Err(Error::Config(format!(
            "{}: nothing to plot (no finite points)",
            path.display()
        )));
    }
    // Room below the lines for the legend (lower right).
    let span = (y1 - y0).max(1e-3);
    let (y0, y1) = (
        y0 - span * (0.08 + 0.07 * series.len() as f64),
        y1 + span * 0.05,
    );
    let x1 = if x1 > x0 { x1 } else { x0 + 1.0 };

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (960, 540)).into_drawing_area();
        let draw = |e: &dyn std::fmt::Display| Error::Config(format!("plot: {e}"));
        root.fill(&WHITE).map_err(|e| draw(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| draw(&e))?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .x_label_formatter(&|x| tick(*x, scales.log_x))
            .y_desc(y_label)
            .y_label_formatter(&|y| tick(*y, scales.log_y))
            .draw()
            .map_err(|e| draw(&e))?;
        for (k, s) in series.iter().enumerate() {
            let color = COLORS[k % COLORS.len()];
            chart
                .draw_series(LineSeries::new(
                    s.points.iter().filter(finite).copied(),
                    color.stroke_width(2),
                ))
                .map_err(|e| draw(&e))?
                .label(s.label.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(|e| draw(&e))?;
        root.present().map_err(|e| draw(&e))?;
    }
    crate::io::write_output(path, |f| f.write_all(svg.as_bytes()))
}

/// An axis label: whole numbers without decimals, others with up to four; large ones
/// with three significant digits.
fn number(x: f64) -> String {
    if x.abs() >= 100.0 {
        let digits = x.abs().log10().floor() as i32 - 2;
        let rounded = (x / 10f64.powi(digits)).round() * 10f64.powi(digits);
        format!("{rounded:.0}")
    } else if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.4}").trim_end_matches('0').to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_an_svg_with_every_series() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.svg");
        let series = [
            Series {
                label: "model".into(),
                points: vec![(0.0, 0.6), (1.0, 0.7), (2.0, f64::NAN)],
            },
            Series {
                label: "offsets".into(),
                points: vec![(0.0, 0.55), (2.0, 0.56)],
            },
        ];
        line_chart(&path, "AUC", "records", "AUC", &series).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("offsets") && svg.contains("model"));
        assert!(line_chart(&dir.path().join("c.png"), "", "", "", &series).is_err());
    }

    #[test]
    fn log_axes_label_ticks_in_data_units() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.svg");
        let series = [Series {
            label: "entities/s".into(),
            points: vec![(1e3, 5e4), (1e4, 1.5e5), (1e6, 1.4e5), (0.0, 1.0)],
        }];
        let scales = Scales {
            log_x: true,
            log_y: true,
        };
        line_chart_scaled(&path, "scaling", "entities", "entities/s", scales, &series).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(
            svg.contains("\n1000\n") && svg.contains("\n100000\n"),
            "{svg}"
        );
        assert_eq!(number(123_456.0), "123000");
        assert_eq!(number(12.5), "12.5");
    }
}
