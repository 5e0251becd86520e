//! Incremental per-user models on MovieLens-100K, compared by progressive validation.
//!
//! ```text
//! cargo run --release --example ml100k_stream -- --data ../shared/data/ml-100k --out target/ml100k
//! ```
//!
//! Protocol (issue 4 of the project; written down in the README):
//! - Ratings in time order; label 1 when the rating is ≥ 4, else 0.
//! - A global fixed-effect logistic model (λ = 1) on the earliest 20% of the ratings, over
//!   the movie's genres and release decade and the user's gender, age band and occupation,
//!   gives every later rating its offset.
//! - Per-user random effects on the movie's genres plus an intercept are then updated over
//!   the remaining 80% in hourly mini-batches (tumbling windows of 3,600 s). Every
//!   mini-batch is scored before it trains (progressive validation).
//! - Compared on the same 80%: (a) offsets only; (b) each mini-batch trained alone
//!   (`bayes-logistic`, δ = 0); (c) plain `logistic` warm-started from the previous
//!   model; (d) incremental `bayes-logistic` for δ in a small sweep; (e) `logistic`
//!   retrained from scratch on all of each touched user's ratings so far at every
//!   mini-batch; (f) incremental `bayes-logistic` after every rating (mini-batches of one
//!   record, commits grouped), with its own λ and δ; (g) the same with a half-life in
//!   seconds in place of δ (the prior's weight `2^(−Δt/h)`, Δt since the user's last
//!   rating), with its own λ.
//!
//! Prints a Markdown table and a JSON summary, writes the stream, the stores, a metrics
//! CSV per run and an SVG plot of the running AUC.

#[path = "common/movielens.rs"]
mod movielens;
#[path = "common/recbole.rs"]
mod recbole;

use clap::Parser;
use glmix::data::{write_jsonl, Dataset, EntityMode, ReadOptions};
use glmix::objective::ObjectiveKind;
use glmix::plot::{line_chart, Series};
use glmix::score::score;
use glmix::store::ModelStore;
use glmix::stream::{
    run_stream, Batching, CommitPolicy, OnBadRecord, Source, StreamConfig, Update,
};
use glmix::train::{Backend, TrainConfig};
use movielens::MovieLens;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Parser)]
struct Args {
    /// The ml-100k folder (ml-100k.inter, .item, .user).
    #[arg(long, default_value = "../shared/data/ml-100k")]
    data: PathBuf,
    /// Output folder.
    #[arg(long, default_value = "target/ml100k-stream")]
    out: PathBuf,
    /// Where to write the plot (default OUT/running-auc.svg).
    #[arg(long)]
    plot: Option<PathBuf>,
    /// L2 penalty λ of the per-user models.
    #[arg(long, default_value_t = 10.0)]
    penalty: f64,
    /// Mini-batch window in seconds.
    #[arg(long, default_value_t = 3_600.0)]
    window: f64,
    /// Forgetting factors δ tried for (d).
    #[arg(long, value_delimiter = ',', default_value = "0.5,0.8,0.9,0.95,1.0")]
    deltas: Vec<f64>,
    /// λ and δ of (f), an update after every rating (the best of 12 tried).
    #[arg(long, default_value_t = 3.0)]
    record_penalty: f64,
    #[arg(long, default_value_t = 0.95)]
    record_delta: f64,
    /// λ and half-life (seconds) of (g), an update after every rating forgetting by time
    /// (the best of 37 tried).
    #[arg(long, default_value_t = 1.5)]
    half_life_penalty: f64,
    #[arg(long, default_value_t = 200.0)]
    half_life: f64,
}

struct Run {
    name: String,
    auc: f64,
    logloss: f64,
    entity_auc: f64,
    train_seconds: f64,
    rows_trained: usize,
    curve: Vec<(f64, f64)>,
    offset_auc: f64,
    offset_logloss: f64,
    offset_curve: Vec<(f64, f64)>,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    std::fs::create_dir_all(a.out.join("stores"))?;

    let ml = MovieLens::read(&a.data);
    let ratings = &ml.ratings;
    let split = ml.split();

    // The global fixed effect on the earliest 20%, and every rating's offset.
    let clock = Instant::now();
    let fixed_model = ml.fixed_effect()?;
    let fixed_seconds = clock.elapsed().as_secs_f64();
    let mut global = Dataset::new();
    for r in ratings {
        let f = ml.global_features(&r.user, &r.item);
        global.push("global", f64::from(u8::from(r.positive)), 1.0, 0.0, None, f);
    }
    let offsets = score(&global, &fixed_model, None)?;

    // The stream: the later 80%, per-user genres, the fixed effect's score as offset.
    let mut stream = Dataset::new();
    for (r, &o) in ratings.iter().zip(&offsets).skip(split) {
        let f = ml.genre_features(&r.item);
        let label = f64::from(u8::from(r.positive));
        stream.push(&r.user, label, 1.0, o, Some(r.timestamp), f);
    }
    let stream_path = a.out.join("stream.jsonl");
    glmix::io::write_output(&stream_path, |f| write_jsonl(&stream, "user", f))?;
    eprintln!(
        "{} ratings; fixed effect on the first {split} ({:.2} s); streaming {} ratings of {} users from {}",
        ratings.len(),
        fixed_seconds,
        stream.num_rows(),
        stream.entities.len(),
        stream_path.display()
    );

    // Hourly mini-batches (a row of metrics each), or one rating at a time (commits
    // grouped, a row per commit).
    let hourly = (
        Batching::Window(a.window),
        a.penalty,
        CommitPolicy::EVERY_MINI_BATCH,
    );
    let run = |name: &str,
               objective: ObjectiveKind,
               (delta, half_life): (f64, Option<f64>),
               update: Update,
               (batching, penalty, commit): (Batching, f64, CommitPolicy)|
     -> anyhow::Result<Run> {
        let mut train = TrainConfig::new(objective);
        train.regularization.penalty = penalty;
        train.regularization.delta = delta;
        train.regularization.half_life = half_life;
        let config = StreamConfig {
            train,
            batching,
            read: ReadOptions {
                default_label: None,
                entity: EntityMode::Key("user".into()),
                timestamp_field: Some("timestamp".into()),
                feature_columns: Vec::new(),
                feature_bags: Vec::new(),
            },
            offset_model: None,
            on_bad_record: OnBadRecord::Fail,
            strict_keys: false,
            update,
            commit,
        };
        let slug: String = name.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
        let store_path = a.out.join("stores").join(format!("{slug}.redb"));
        let _ = std::fs::remove_file(&store_path);
        let store = ModelStore::open(&store_path)?;
        let (mut train_seconds, mut rows_trained) = (0.0, 0);
        let (mut curve, mut offset_curve) = (Vec::new(), Vec::new());
        let (mut entity_auc_sum, mut entity_auc_n) = (0.0, 0usize);
        let mut csv = std::fs::File::create(a.out.join(format!("{slug}.csv")))?;
        writeln!(csv, "{}", glmix::stream::BatchReport::COLUMNS.join(","))?;
        let summary = run_stream(
            &Source::File(stream_path.clone()),
            &store,
            &config,
            Backend::Cpu,
            &mut |r| {
                train_seconds += r.train_seconds;
                rows_trained += r.rows_trained;
                let x = r.running_records as f64;
                curve.push((x, r.running_auc.unwrap_or(f64::NAN)));
                offset_curve.push((x, r.running_offset_auc.unwrap_or(f64::NAN)));
                if let Some(e) = r.entity_auc {
                    entity_auc_sum += e * r.entity_auc_entities as f64;
                    entity_auc_n += r.entity_auc_entities;
                }
                writeln!(csv, "{}", r.csv_row()).expect("write metrics");
            },
        )?;
        let last = summary.last.expect("at least one batch");
        eprintln!(
            "{name}: {} batches, {:.2} s",
            summary.batches, summary.seconds
        );
        Ok(Run {
            name: name.into(),
            auc: last.running_auc.unwrap_or(f64::NAN),
            logloss: last.running_loss.unwrap_or(f64::NAN),
            entity_auc: entity_auc_sum / entity_auc_n.max(1) as f64,
            train_seconds,
            rows_trained,
            curve,
            offset_auc: last.running_offset_auc.unwrap_or(f64::NAN),
            offset_logloss: last.running_offset_loss.unwrap_or(f64::NAN),
            offset_curve,
        })
    };

    let mut runs = vec![
        run(
            "(b) each batch alone, δ = 0",
            ObjectiveKind::BayesLogistic,
            (0.0, None),
            Update::Incremental,
            hourly,
        )?,
        run(
            "(c) logistic, warm start",
            ObjectiveKind::Logistic,
            (0.0, None),
            Update::Incremental,
            hourly,
        )?,
    ];
    for &delta in &a.deltas {
        runs.push(run(
            &format!("(d) bayes-logistic, δ = {delta}"),
            ObjectiveKind::BayesLogistic,
            (delta, None),
            Update::Incremental,
            hourly,
        )?);
    }
    runs.push(run(
        "(e) retrain from scratch",
        ObjectiveKind::Logistic,
        (0.0, None),
        Update::Retrain,
        hourly,
    )?);
    runs.push(run(
        &format!(
            "(f) bayes-logistic after every rating, λ = {}, δ = {}",
            a.record_penalty, a.record_delta
        ),
        ObjectiveKind::BayesLogistic,
        (a.record_delta, None),
        Update::Incremental,
        (
            Batching::Records(1),
            a.record_penalty,
            CommitPolicy::default(),
        ),
    )?);
    runs.push(run(
        &format!(
            "(g) bayes-logistic after every rating, λ = {}, half-life {} s",
            a.half_life_penalty, a.half_life
        ),
        ObjectiveKind::BayesLogistic,
        (a.record_delta, Some(a.half_life)),
        Update::Incremental,
        (
            Batching::Records(1),
            a.half_life_penalty,
            CommitPolicy::default(),
        ),
    )?);
    let (offset_auc, offset_logloss) = (runs[0].offset_auc, runs[0].offset_logloss);

    println!(
        "Progressive validation on the later 80% of MovieLens-100K ({} ratings, hourly mini-batches but (f) and (g), λ = {}):\n",
        stream.num_rows(),
        a.penalty
    );
    println!("| method | AUC | log-loss | per-user AUC | train seconds | rows trained |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| (a) offsets only (fixed effect) | {offset_auc:.4} | {offset_logloss:.4} | – | – | – |"
    );
    for r in &runs {
        println!(
            "| {} | {:.4} | {:.4} | {:.4} | {:.2} | {} |",
            r.name, r.auc, r.logloss, r.entity_auc, r.train_seconds, r.rows_trained
        );
    }
    let best = runs
        .iter()
        .filter(|r| r.name.starts_with("(d)"))
        .max_by(|x, y| x.auc.total_cmp(&y.auc))
        .expect("a δ was tried");
    let retrain = runs
        .iter()
        .find(|r| r.name.starts_with("(e)"))
        .expect("(e) ran");
    let summary = serde_json::json!({
        "offsets_auc": offset_auc,
        "runs": runs.iter().map(|r| serde_json::json!({
            "name": r.name, "auc": r.auc, "logloss": r.logloss, "entity_auc": r.entity_auc,
            "train_seconds": r.train_seconds, "rows_trained": r.rows_trained,
        })).collect::<Vec<_>>(),
        "best_incremental": best.name,
    });
    println!("\n{summary}");

    // The first hours' running AUC swings on a few hundred ratings; the plot starts after
    // the first 2,000.
    let settled = |c: &[(f64, f64)]| c.iter().copied().filter(|&(x, _)| x >= 2000.0).collect();
    let mut series = vec![Series {
        label: "(a) offsets only".into(),
        points: settled(&runs[0].offset_curve),
    }];
    for r in runs
        .iter()
        .filter(|r| !r.name.starts_with("(d)") || r.name == best.name)
    {
        series.push(Series {
            label: r.name.clone(),
            points: settled(&r.curve),
        });
    }
    let plot = a
        .plot
        .clone()
        .unwrap_or_else(|| a.out.join("running-auc.svg"));
    line_chart(
        &plot,
        "MovieLens-100K: running progressive-validation AUC",
        "ratings seen",
        "AUC",
        &series,
    )?;
    eprintln!(
        "best incremental: {} (AUC {:.4}; retrain {:.4}, {:.1}× its training time); plot {}",
        best.name,
        best.auc,
        retrain.auc,
        retrain.train_seconds / best.train_seconds,
        plot.display()
    );
    Ok(())
}
