//! `RECORD`: one CSV line per file, `path,algorithm=urlsafe-b64-nopad-digest,size`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("RECORD line {line}: {reason}")]
pub struct RecordError {
    pub line: usize,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RecordEntry {
    pub path: String,
    /// `algorithm=digest`, as written.
    pub hash: Option<String>,
    pub size: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    pub entries: Vec<RecordEntry>,
}

/// `sha256=` followed by the URL-safe, unpadded base64 of the SHA-256 digest.
pub fn sha256_field(digest: &[u8]) -> String {
    format!("sha256={}", URL_SAFE_NO_PAD.encode(digest))
}

pub fn hash_bytes(data: &[u8]) -> String {
    sha256_field(&Sha256::digest(data))
}

impl Record {
    pub fn parse(text: &str) -> Result<Record, RecordError> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(text.as_bytes());
        let mut entries = Vec::new();
        for (i, row) in reader.records().enumerate() {
            let line = i + 1;
            let row = row.map_err(|e| RecordError {
                line,
                reason: e.to_string(),
            })?;
            if row.len() == 1 && row.get(0) == Some("") {
                continue;
            }
            if row.len() != 3 {
                return Err(RecordError {
                    line,
                    reason: format!("expected 3 fields, found {}", row.len()),
                });
            }
            let path = row[0].to_string();
            if path.is_empty() {
                return Err(RecordError {
                    line,
                    reason: "empty path".into(),
                });
            }
            let hash = match &row[1] {
                "" => None,
                h => {
                    let (algo, digest) = h.split_once('=').ok_or_else(|| RecordError {
                        line,
                        reason: format!("hash {h:?} is not `algorithm=digest`"),
                    })?;
                    if !matches!(algo, "sha256" | "sha384" | "sha512") {
                        return Err(RecordError {
                            line,
                            reason: format!(
                                "hash algorithm {algo:?} is not allowed (sha256 or stronger)"
                            ),
                        });
                    }
                    if URL_SAFE_NO_PAD.decode(digest).is_err() {
                        return Err(RecordError {
                            line,
                            reason: format!("digest {digest:?} is not URL-safe base64"),
                        });
                    }
                    Some(h.to_string())
                }
            };
            let size = match &row[2] {
                "" => None,
                s => Some(s.parse::<u64>().map_err(|_| RecordError {
                    line,
                    reason: format!("size {s:?} is not a number"),
                })?),
            };
            entries.push(RecordEntry { path, hash, size });
        }
        Ok(Record { entries })
    }

    pub fn get(&self, path: &str) -> Option<&RecordEntry> {
        self.entries.iter().find(|e| e.path == path)
    }

    /// Writes the entries in the given order (the caller sorts), CSV-quoted where needed.
    pub fn to_text(&self) -> String {
        let mut w = csv::WriterBuilder::new()
            .has_headers(false)
            .terminator(csv::Terminator::Any(b'\n'))
            .from_writer(Vec::new());
        for e in &self.entries {
            let size = e.size.map(|s| s.to_string()).unwrap_or_default();
            // PANIC SAFETY: writing to a Vec cannot fail.
            w.write_record([e.path.as_str(), e.hash.as_deref().unwrap_or(""), &size])
                .expect("in-memory CSV write");
        }
        // PANIC SAFETY: as above.
        let bytes = w.into_inner().expect("in-memory CSV flush");
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// A running SHA-256 over a member's bytes.
#[derive(Default, Clone)]
pub struct HashState {
    hasher: Sha256,
    pub len: u64,
}

impl HashState {
    pub fn update(&mut self, data: &[u8]) {
        self.hasher.update(data);
        self.len += data.len() as u64;
    }

    pub fn digest(&self) -> [u8; 32] {
        self.hasher.clone().finalize().into()
    }

    pub fn sha256_field(&self) -> String {
        sha256_field(&self.digest())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_quoting() {
        let text = "pkg/a.py,sha256=47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU,0\n\"pkg/we,ird.py\",sha256=47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU,0\npkg-1.0.dist-info/RECORD,,\n";
        let r = Record::parse(text).unwrap();
        assert_eq!(r.entries.len(), 3);
        assert_eq!(r.entries[1].path, "pkg/we,ird.py");
        assert_eq!(r.entries[2].hash, None);
        assert_eq!(r.to_text(), text);
    }

    #[test]
    fn hashes_like_pip() {
        assert_eq!(
            hash_bytes(b""),
            "sha256=47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"
        );
    }

    #[test]
    fn refuses_weak_hashes_and_bad_sizes() {
        assert!(Record::parse("a,md5=abc,1\n").is_err());
        assert!(Record::parse("a,sha256=abc,xyz\n").is_err());
        assert!(Record::parse("a,sha256=abc\n").is_err());
    }
}
