//! A trained GAME model on disk: one directory, written atomically.
//!
//! | file | contents |
//! |---|---|
//! | `config.json` | the configuration, every default written out |
//! | `<coordinate>.jsonl` | the coordinate's models as model JSON lines (the fixed effect: one model, named after the coordinate) |
//! | `game.json` | the training summary: data controls and every coordinate step |

use super::{GameConfig, GameModel};
use crate::error::{Error, Result};
use crate::io::{write_dir, write_output};
use crate::model::{read_models, write_models, ModelSet};
use std::io::Write;
use std::path::Path;

/// The file every GAME model directory holds; a directory with it may be replaced.
pub const SUMMARY_FILE: &str = "game.json";

impl GameModel {
    /// Write the model and its training `summary` into `dir`, replacing a previous GAME
    /// model there; on an error `dir` is left as it was.
    pub fn write(&self, dir: &Path, summary: &serde_json::Value) -> Result<()> {
        write_dir(dir, SUMMARY_FILE, |tmp| {
            let text = serde_json::to_string_pretty(&self.config.to_json())
                .expect("a JSON value serialises");
            write_output(&tmp.join("config.json"), |f| writeln!(f, "{text}"))?;
            for (c, models) in self.config.coordinates.iter().zip(&self.coordinates) {
                write_models(&tmp.join(format!("{}.jsonl", c.name)), models.models())?;
            }
            let text = serde_json::to_string_pretty(summary).expect("a JSON value serialises");
            write_output(&tmp.join(SUMMARY_FILE), |f| writeln!(f, "{text}"))
        })
    }

    /// Read a model written by [`GameModel::write`].
    pub fn read(dir: &Path) -> Result<Self> {
        if !dir.join(SUMMARY_FILE).is_file() {
            return Err(Error::io(
                dir,
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("not a GAME model directory (no {SUMMARY_FILE}; write one with glmix game train)"),
                ),
            ));
        }
        let config = GameConfig::read(&dir.join("config.json"))?;
        let coordinates = config
            .coordinates
            .iter()
            .map(
                |c| match read_models(&dir.join(format!("{}.jsonl", c.name)), None) {
                    // A random effect none of whose entities had min_rows records.
                    Err(Error::EmptyInput { .. }) => Ok(ModelSet::new()),
                    other => other,
                },
            )
            .collect::<Result<_>>()?;
        Ok(GameModel {
            config,
            coordinates,
        })
    }
}
