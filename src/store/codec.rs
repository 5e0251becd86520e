//! The binary form of a model in the store: exact (f64 bits as written), and about a
//! fifth of the model's JSON line.
//!
//! | bytes | field |
//! |---|---|
//! | 1 | format version (1) |
//! | 1 | objective: 0 none, else 1 + its index in `ObjectiveKind::ALL` |
//! | 1 | Hessian type: its index in `HessianType::ALL` |
//! | 4 | `d`, the number of coefficients (u32 LE) |
//! | per coefficient | name and term, each a u32 LE length and UTF-8 bytes |
//! | 8·d | means (f64 LE) |
//! | 1 | precision: 0 none, 1 diagonal, 2 full |
//! | 8·d or 8·d² | the precision (f64 LE, row-major) |

use crate::data::FeatureKey;
use crate::model::{EntityModel, HessianType, Precision};
use crate::objective::ObjectiveKind;
use compact_str::CompactString;

const VERSION: u8 = 1;

/// Append `model`'s encoding (its entity id is the store's key, not part of it).
pub fn encode(model: &EntityModel, out: &mut Vec<u8>) {
    out.push(VERSION);
    out.push(model.objective.map_or(0, |o| {
        1 + ObjectiveKind::ALL
            .iter()
            .position(|&k| k == o)
            .expect("listed") as u8
    }));
    out.push(
        HessianType::ALL
            .iter()
            .position(|&h| h == model.hessian)
            .expect("listed") as u8,
    );
    out.extend_from_slice(&(model.means.len() as u32).to_le_bytes());
    for k in &model.features {
        for s in [&k.name, &k.term] {
            out.extend_from_slice(&(s.len() as u32).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
    }
    let floats = |out: &mut Vec<u8>, v: &[f64]| {
        for x in v {
            out.extend_from_slice(&x.to_le_bytes());
        }
    };
    floats(out, &model.means);
    match &model.precision {
        Precision::None => out.push(0),
        Precision::Diagonal(h) => {
            out.push(1);
            floats(out, h);
        }
        Precision::Full(h) => {
            out.push(2);
            floats(out, h);
        }
    }
}

/// Decode a model of `entity`; `Err` says what is wrong with the bytes.
pub fn decode(entity: &str, bytes: &[u8]) -> Result<EntityModel, String> {
    let mut r = Reader { bytes, at: 0 };
    let version = r.u8()?;
    if version != VERSION {
        return Err(format!("unknown model encoding version {version}"));
    }
    let objective = match r.u8()? {
        0 => None,
        k => Some(
            *ObjectiveKind::ALL
                .get(k as usize - 1)
                .ok_or("bad objective code")?,
        ),
    };
    let hessian = *HessianType::ALL
        .get(r.u8()? as usize)
        .ok_or("bad Hessian code")?;
    let d = r.u32()? as usize;
    let mut features = Vec::with_capacity(d);
    for _ in 0..d {
        features.push(FeatureKey {
            name: r.string()?,
            term: r.string()?,
        });
    }
    let means = r.floats(d)?;
    let precision = match r.u8()? {
        0 => Precision::None,
        1 => Precision::Diagonal(r.floats(d)?),
        2 => Precision::Full(r.floats(d * d)?),
        _ => return Err("bad precision code".into()),
    };
    if r.at != bytes.len() {
        return Err(format!("{} trailing bytes", bytes.len() - r.at));
    }
    Ok(EntityModel {
        entity: entity.to_string(),
        objective,
        hessian,
        features,
        means,
        precision,
    })
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| format!("truncated at byte {}", self.at))?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    fn string(&mut self) -> Result<CompactString, String> {
        let n = self.u32()? as usize;
        std::str::from_utf8(self.take(n)?)
            .map(CompactString::from)
            .map_err(|e| e.to_string())
    }

    fn floats(&mut self, n: usize) -> Result<Vec<f64>, String> {
        let bytes = self.take(n.checked_mul(8).ok_or("size overflow")?)?;
        Ok(bytes
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_hessian_type_round_trips_exactly_and_damage_is_caught() {
        for hessian in HessianType::ALL {
            let precision = match hessian {
                HessianType::Full => Precision::Full(vec![2.0, 0.1, 0.1, 1.0 / 3.0]),
                HessianType::Diagonal => Precision::Diagonal(vec![2.5, 1e-300]),
                HessianType::Identity => Precision::Diagonal(vec![1.0, 1.0]),
                HessianType::None => Precision::None,
            };
            let m = EntityModel {
                entity: "é".into(),
                objective: (hessian != HessianType::None).then_some(ObjectiveKind::Logistic),
                hessian,
                features: vec![
                    FeatureKey::intercept(),
                    FeatureKey::new("genre", "Film-Noir"),
                ],
                means: vec![0.1 + 0.2, -1e-17],
                precision,
            };
            let mut bytes = Vec::new();
            encode(&m, &mut bytes);
            assert_eq!(decode("é", &bytes).unwrap(), m);
            assert!(decode("é", &bytes[..bytes.len() - 1]).is_err());
            bytes.push(0);
            assert!(decode("é", &bytes).is_err());
        }
    }
}
