//! The binary form of a model in the store: exact (f64 bits as written), and about a
//! fifth of the model's JSON line.
//!
//! | bytes | field |
//! |---|---|
//! | 1 | format version (2 or 3; 1 is still read) |
//! | 1 | objective: 0 none, 1 linear, 2 logistic, 3 bayes-linear, 4 bayes-logistic |
//! | 1 | Hessian type: 0 full, 1 diagonal, 2 identity, 3 none |
//! | 4 | `d`, the number of coefficients (u32 LE) |
//! | per coefficient | name and term, each a u32 LE length and UTF-8 bytes |
//! | 8·d | means (f64 LE) |
//! | 1 | precision: 0 none, 1 diagonal, 2 full |
//! | 8·d or 8·d² | the precision (f64 LE, row-major) |
//! | 8 | version 3: the model's `last_seen` time (f64 LE) |
//! | 8 | versions 2 and 3: FNV-1a (64-bit, LE) of every byte before it |
//!
//! The codes are fixed here, not positions in a list, so that a new objective or Hessian
//! type cannot renumber stored ones. A model is written in the oldest version that holds
//! it: 3 when it has a `last_seen` time, else 2, so that stores of runs without a
//! half-life stay readable by a glmix that knows only version 2. Version 1 had the
//! layout of version 2 without the checksum; a model whose checksum does not match is
//! refused as damaged.

use crate::data::FeatureKey;
use crate::io::{fnv1a, FNV1A_EMPTY};
use crate::model::{EntityModel, HessianType, Precision};
use crate::objective::ObjectiveKind;
use compact_str::CompactString;

/// The version written for a model without, and with, a `last_seen` time.
const VERSION: u8 = 2;
const VERSION_SEEN: u8 = 3;

fn objective_code(o: Option<ObjectiveKind>) -> u8 {
    match o {
        None => 0,
        Some(ObjectiveKind::Linear) => 1,
        Some(ObjectiveKind::Logistic) => 2,
        Some(ObjectiveKind::BayesLinear) => 3,
        Some(ObjectiveKind::BayesLogistic) => 4,
    }
}

fn objective_of(code: u8) -> Result<Option<ObjectiveKind>, String> {
    Ok(match code {
        0 => None,
        1 => Some(ObjectiveKind::Linear),
        2 => Some(ObjectiveKind::Logistic),
        3 => Some(ObjectiveKind::BayesLinear),
        4 => Some(ObjectiveKind::BayesLogistic),
        c => return Err(format!("bad objective code {c}")),
    })
}

fn hessian_code(h: HessianType) -> u8 {
    match h {
        HessianType::Full => 0,
        HessianType::Diagonal => 1,
        HessianType::Identity => 2,
        HessianType::None => 3,
    }
}

fn hessian_of(code: u8) -> Result<HessianType, String> {
    Ok(match code {
        0 => HessianType::Full,
        1 => HessianType::Diagonal,
        2 => HessianType::Identity,
        3 => HessianType::None,
        c => return Err(format!("bad Hessian code {c}")),
    })
}

/// Append `model`'s encoding (its entity id is the store's key, not part of it).
pub fn encode(model: &EntityModel, out: &mut Vec<u8>) {
    let start = out.len();
    out.push(match model.last_seen {
        None => VERSION,
        Some(_) => VERSION_SEEN,
    });
    out.push(objective_code(model.objective));
    out.push(hessian_code(model.hessian));
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
    if let Some(t) = model.last_seen {
        floats(out, &[t]);
    }
    let checksum = fnv1a(FNV1A_EMPTY, &out[start..]);
    out.extend_from_slice(&checksum.to_le_bytes());
}

/// Decode a model of `entity`; `Err` says what is wrong with the bytes.
pub fn decode(entity: &str, bytes: &[u8]) -> Result<EntityModel, String> {
    let version = *bytes.first().ok_or("no bytes")?;
    let bytes = match version {
        1 => bytes,
        VERSION | VERSION_SEEN => {
            let body = bytes
                .len()
                .checked_sub(8)
                .ok_or("truncated before its checksum")?;
            let (body, sum) = bytes.split_at(body);
            let stored = u64::from_le_bytes(sum.try_into().expect("8 bytes"));
            if fnv1a(FNV1A_EMPTY, body) != stored {
                return Err("its checksum does not match its bytes".into());
            }
            body
        }
        v => return Err(format!("unknown model encoding version {v}")),
    };
    let mut r = Reader { bytes, at: 1 };
    let objective = objective_of(r.u8()?)?;
    let hessian = hessian_of(r.u8()?)?;
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
    let last_seen = match version {
        VERSION_SEEN => Some(r.floats(1)?[0]),
        _ => None,
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
        last_seen,
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
                last_seen: None,
            };
            let mut bytes = Vec::new();
            encode(&m, &mut bytes);
            assert_eq!(decode("é", &bytes).unwrap(), m);
            assert!(decode("é", &bytes[..bytes.len() - 1]).is_err());
            bytes.push(0);
            assert!(decode("é", &bytes).is_err());
        }
    }

    fn golden() -> EntityModel {
        EntityModel {
            entity: "u1".into(),
            objective: Some(ObjectiveKind::BayesLogistic),
            hessian: HessianType::Full,
            features: vec![FeatureKey::intercept(), FeatureKey::new("genre", "Drama")],
            means: vec![0.25, -1.5],
            precision: Precision::Full(vec![2.0, 0.5, 0.5, 3.0]),
            last_seen: None,
        }
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// `golden()` as version 1 wrote it (the encoder of commit ff0d9ba).
    const V1: &str = "0104000200000009000000696e7465726365707409000000696e746572636570740500000067656e7265050000004472616d61000000000000d03f000000000000f8bf020000000000000040000000000000e03f000000000000e03f0000000000000840";

    #[test]
    fn bytes_of_version_1_are_read() {
        assert_eq!(decode("u1", &hex(V1)).unwrap(), golden());
    }

    #[test]
    fn version_2_is_version_1_with_a_checksum_that_catches_a_flipped_bit() {
        let mut bytes = Vec::new();
        encode(&golden(), &mut bytes);
        let v1 = hex(V1);
        assert_eq!(bytes[0], 2);
        assert_eq!(bytes[1..bytes.len() - 8], v1[1..]);
        assert_eq!(decode("u1", &bytes).unwrap(), golden());
        // A flipped bit in a mean, as a damaged page would hold.
        let at = bytes.len() - 8 - 5 * 8 - 3;
        bytes[at] ^= 0x10;
        let err = decode("u1", &bytes).unwrap_err();
        assert!(err.contains("checksum does not match"), "{err}");
    }

    /// `golden()` last seen at 1,700,000,000.25, as version 3 writes it.
    const V3: &str = "0304000200000009000000696e7465726365707409000000696e746572636570740500000067656e7265050000004472616d61000000000000d03f000000000000f8bf020000000000000040000000000000e03f000000000000e03f000000000000084000001040fc54d941be4a9e3a7276c5a3";

    #[test]
    fn a_time_is_written_as_version_3_and_bytes_of_version_3_are_read() {
        let mut timed = golden();
        timed.last_seen = Some(1_700_000_000.25);
        let mut bytes = Vec::new();
        encode(&timed, &mut bytes);
        assert_eq!(bytes, hex(V3));
        assert_eq!(decode("u1", &hex(V3)).unwrap(), timed);
        // Version 2's layout, then the time, then the checksum.
        let mut v2 = Vec::new();
        encode(&golden(), &mut v2);
        assert_eq!(bytes[1..v2.len() - 8], v2[1..v2.len() - 8]);
        assert_eq!(
            bytes[v2.len() - 8..v2.len()],
            1_700_000_000.25f64.to_le_bytes()
        );
        // A truncated time is caught by its checksum.
        let mut short = bytes[..v2.len() - 4].to_vec();
        short.extend_from_slice(&bytes[bytes.len() - 8..]);
        assert!(decode("u1", &short).is_err());
    }

    /// A model of each shape as version 2 writes it (commit 9bbcce4): later versions must
    /// read these bytes to the same models.
    const V2: [(&str, &str); 4] = [
        ("full", "0204000200000009000000696e7465726365707409000000696e746572636570740500000067656e7265050000004472616d61000000000000d03f000000000000f8bf020000000000000040000000000000e03f000000000000e03f0000000000000840e55414f84b87eeb3"),
        ("diagonal", "0203010200000009000000696e7465726365707409000000696e746572636570740500000067656e7265050000004472616d61000000000000d03f000000000000f8bf0100000000000000400000000000002040c450d4ccf7e23c4d"),
        ("identity", "0202020200000009000000696e7465726365707409000000696e746572636570740500000067656e7265050000004472616d61000000000000d03f000000000000f8bf01000000000000f03f000000000000f03f28ef42df0ad1849f"),
        ("none", "0200030200000009000000696e7465726365707409000000696e746572636570740500000067656e7265050000004472616d61000000000000d03f000000000000f8bf00d4bf6e08f90d861b"),
    ];

    #[test]
    fn bytes_of_version_2_of_every_shape_are_read() {
        for (shape, bytes) in V2 {
            let mut want = golden();
            (want.objective, want.hessian, want.precision) = match shape {
                "full" => (want.objective, want.hessian, want.precision),
                "diagonal" => (
                    Some(ObjectiveKind::BayesLinear),
                    HessianType::Diagonal,
                    Precision::Diagonal(vec![2.0, 8.0]),
                ),
                "identity" => (
                    Some(ObjectiveKind::Logistic),
                    HessianType::Identity,
                    Precision::Diagonal(vec![1.0, 1.0]),
                ),
                _ => (None, HessianType::None, Precision::None),
            };
            assert_eq!(decode("u1", &hex(bytes)).unwrap(), want, "{shape}");
            let mut again = Vec::new();
            encode(&want, &mut again);
            assert_eq!(again, hex(bytes), "{shape} is written as it was");
        }
    }
}
