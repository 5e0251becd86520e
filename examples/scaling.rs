//! Scaling curves of `glmix bench`: entities/s and peak memory against the number of
//! entities, the rows per entity (exactly n, or a Zipf-skewed mix with mean n) and the
//! number of features; `bayes-logistic`, λ = 10, δ = 0.8, diagonal Hessian, CPU.
//!
//! ```text
//! cargo build --release
//! cargo run --release --example scaling -- [--glmix PATH] [--out docs] [--quick]
//! ```
//!
//! Every point is its own `glmix bench --json` process, so that its peak RSS is its own;
//! the binary is the one built beside the example unless `--glmix` names another.
//! Writes `scaling.csv` and four SVG charts into `--out`. `--quick` runs a small subset
//! (for CI: it checks the pipeline, not the figures).

use glmix::plot::{line_chart_scaled, Scales, Series};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

struct Point {
    sweep: &'static str,
    series: &'static str,
    entities: usize,
    rows: usize,
    features: usize,
    zipf: Option<f64>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // By default the glmix beside this example's build: target/<profile>/examples/scaling.
    let mut glmix = std::env::current_exe()?
        .parent()
        .and_then(Path::parent)
        .map_or_else(|| PathBuf::from("target/release"), Path::to_path_buf)
        .join("glmix");
    let mut out = PathBuf::from("docs");
    let mut quick = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--glmix" => glmix = args.next().ok_or("--glmix needs a path")?.into(),
            "--out" => out = args.next().ok_or("--out needs a folder")?.into(),
            "--quick" => quick = true,
            _ => return Err(format!("unknown argument {a}").into()),
        }
    }
    std::fs::create_dir_all(&out)?;
    let points = plan(quick);
    let mut csv = String::from(
        "sweep,series,entities,rows_per_entity,rows,features,zipf,entities_per_s_end_to_end,\
         entities_per_s_solve,rows_per_s,fit_seconds,packed_mib,peak_rss_mib\n",
    );
    let mut results = Vec::new();
    for p in &points {
        let r = run(&glmix, p, &out)?;
        let device = &r["devices"][0];
        let f = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
        let row = [
            f(&device["entities/s (end to end)"]),
            f(&device["entities/s (solve)"]),
            f(&device["rows/s (end to end)"]),
            f(&device["fit seconds (end to end)"]),
            f(&r["data MiB (packed)"]),
            f(&r["peak RSS MiB"]),
        ];
        eprintln!(
            "{:>9} {:<16} E={:<8} n={:<6} d={:<4} {:>10.0} entities/s {:>8.1} MiB peak / {:.1} MiB packed",
            p.sweep, p.series, p.entities, p.rows, p.features, row[0], row[5], row[4]
        );
        csv += &format!(
            "{},{},{},{},{},{},{},{:.1},{:.1},{:.1},{:.4},{:.1},{:.1}\n",
            p.sweep,
            p.series,
            p.entities,
            p.rows,
            r["rows"],
            p.features,
            p.zipf.map_or(String::new(), |s| s.to_string()),
            row[0],
            row[1],
            row[2],
            row[3],
            row[4],
            row[5]
        );
        results.push(row);
    }
    glmix::io::write_output(&out.join("scaling.csv"), |f| {
        std::io::Write::write_all(f, csv.as_bytes())
    })?;

    let log = Scales {
        log_x: true,
        log_y: true,
    };
    let series = |sweep: &str, x: fn(&Point) -> f64, y: usize| -> Vec<Series> {
        let mut names: Vec<&str> = points
            .iter()
            .filter(|p| p.sweep == sweep)
            .map(|p| p.series)
            .collect();
        names.dedup();
        names
            .into_iter()
            .map(|name| Series {
                label: name.to_string(),
                points: points
                    .iter()
                    .zip(&results)
                    .filter(|(p, _)| p.sweep == sweep && p.series == name)
                    .map(|(p, r)| (x(p), r[y]))
                    .collect(),
            })
            .collect()
    };
    let by_entities = |p: &Point| p.entities as f64;
    // The entities sweep has one series; each chart of it shows two of its columns.
    let entities_column = |y: usize, label: &str| Series {
        label: label.to_string(),
        ..series("entities", by_entities, y).remove(0)
    };
    let throughput = [
        entities_column(0, "end to end (pack, solve, posterior)"),
        entities_column(1, "solve (batched L-BFGS)"),
    ];
    line_chart_scaled(
        &out.join("scaling-entities.svg"),
        "entities/s against entities (n = 50, d = 16, CPU)",
        "entities E",
        "entities/s",
        log,
        &throughput,
    )?;
    let memory = [
        entities_column(5, "peak RSS"),
        entities_column(4, "packed data (f64 values + label, weight, offset)"),
    ];
    line_chart_scaled(
        &out.join("scaling-memory.svg"),
        "peak memory against entities (n = 50, d = 16)",
        "entities E",
        "MiB",
        log,
        &memory,
    )?;
    line_chart_scaled(
        &out.join("scaling-rows.svg"),
        "entities/s against rows per entity (2·10⁶ rows in all, d = 16)",
        "rows per entity n (mean)",
        "entities/s, end to end",
        log,
        &series("rows", |p| p.rows as f64, 0),
    )?;
    line_chart_scaled(
        &out.join("scaling-features.svg"),
        "entities/s against features (E = 10⁴, n = 50, dense)",
        "features d",
        "entities/s, end to end",
        log,
        &series("features", |p| p.features as f64, 0),
    )?;
    eprintln!("wrote {}", out.join("scaling.csv").display());
    Ok(())
}

fn plan(quick: bool) -> Vec<Point> {
    let point = |sweep, series, entities, rows, features, zipf| Point {
        sweep,
        series,
        entities,
        rows,
        features,
        zipf,
    };
    let scale = if quick { 100 } else { 1 };
    let mut points = Vec::new();
    let entities: &[usize] = if quick {
        &[1_000, 10_000]
    } else {
        &[1_000, 10_000, 100_000, 1_000_000]
    };
    for &e in entities {
        points.push(point("entities", "n = 50", e, 50, 16, None));
    }
    let rows: &[usize] = if quick {
        &[10, 100]
    } else {
        &[10, 100, 1_000, 10_000]
    };
    for (series, zipf) in [("exactly n rows", None), ("Zipf(1), mean n", Some(1.0))] {
        for &n in rows {
            points.push(point("rows", series, 2_000_000 / n / scale, n, 16, zipf));
        }
    }
    let features: &[usize] = if quick { &[4, 16] } else { &[4, 16, 64, 256] };
    for &d in features {
        points.push(point("features", "dense", 10_000 / scale, 50, d, None));
    }
    points
}

fn run(glmix: &Path, p: &Point, out: &Path) -> Result<Value, Box<dyn std::error::Error>> {
    let json = out.join(".scaling-point.json");
    let repeat = if p.entities * p.rows >= 10_000_000 {
        1
    } else {
        3
    };
    let mut cmd = Command::new(glmix);
    cmd.args(["bench", "--device", "cpu", "--repeat", &repeat.to_string()])
        .args(["--entities", &p.entities.to_string()])
        .args(["--rows", &p.rows.to_string()])
        .args(["--features", &p.features.to_string()])
        .arg("--json")
        .arg(&json);
    if let Some(s) = p.zipf {
        cmd.args(["--zipf", &s.to_string()]);
    }
    let status = cmd.stdout(std::process::Stdio::null()).status()?;
    if !status.success() {
        return Err(format!("{cmd:?} failed: {status}").into());
    }
    let value = serde_json::from_str(&std::fs::read_to_string(&json)?)?;
    std::fs::remove_file(&json)?;
    Ok(value)
}
