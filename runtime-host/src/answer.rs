//! Decoding the module's output record (docs/wasm-abi.md) into the
//! [`Resolution`] type the native resolver returns.

use edgeroute_edge::{Domain, Key, Location, Reason, Resolution, Scheme};
use edgeroute_edge_wasm::{error, kind, out, OUTPUT_DATA, OUTPUT_HEADER};

use crate::engine::EngineError;

pub(crate) const OUTPUT_LEN: usize = OUTPUT_HEADER + OUTPUT_DATA;
const NONE: usize = u32::MAX as usize;

/// A copy of one answer, reused across lookups (no allocation once its
/// buffer has grown to the largest answer seen).
#[derive(Debug)]
pub struct Answer {
    header: [u8; OUTPUT_HEADER],
    /// The answer's strings: output data that is used, then the target.
    strings: Vec<u8>,
    used: usize,
    target: (usize, usize),
}

impl Default for Answer {
    fn default() -> Self {
        Answer { header: [0; OUTPUT_HEADER], strings: Vec::new(), used: 0, target: (0, 0) }
    }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> usize {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]) as usize
}

impl Answer {
    /// Copies the record at `output` (and the snapshot string it points to)
    /// out of guest memory, checking every offset.
    pub(crate) fn read(&mut self, mem: &[u8], output: usize) -> Result<(), EngineError> {
        let record = mem.get(output..output + OUTPUT_LEN).ok_or(EngineError::BadAnswer)?;
        self.header.copy_from_slice(&record[..OUTPUT_HEADER]);
        // Only the prefix of the data area that the answer's strings use.
        let end = [out::DOMAIN, out::KEY, out::FALLBACK, out::NOT_FOUND_PAGE]
            .iter()
            .map(|&at| (u32_at(&self.header, at), u32_at(&self.header, at + 4)))
            .filter(|&(off, _)| off != NONE && off >= OUTPUT_HEADER)
            .map(|(off, len)| off - OUTPUT_HEADER + len)
            .max()
            .unwrap_or(0);
        let data = record.get(OUTPUT_HEADER..OUTPUT_HEADER + end).ok_or(EngineError::BadAnswer)?;
        self.strings.clear();
        self.strings.extend_from_slice(data);
        self.used = end;
        let (ptr, len) = (u32_at(&self.header, out::TARGET), u32_at(&self.header, out::TARGET + 4));
        if len > 0 {
            let target = mem.get(ptr..ptr + len).ok_or(EngineError::BadAnswer)?;
            self.strings.extend_from_slice(target);
        }
        self.target = (end, len);
        Ok(())
    }

    fn string(&self, at: usize) -> Result<&str, EngineError> {
        let (off, len) = (u32_at(&self.header, at), u32_at(&self.header, at + 4));
        let start = off.checked_sub(OUTPUT_HEADER).ok_or(EngineError::BadAnswer)?;
        let bytes = self.strings.get(start..start + len).filter(|_| start + len <= self.used);
        std::str::from_utf8(bytes.ok_or(EngineError::BadAnswer)?).map_err(|_| EngineError::BadAnswer)
    }

    /// The key at `at`, or `None` for offset `u32::MAX`.
    fn optional_key(&self, at: usize) -> Result<Option<Key<'_, '_>>, EngineError> {
        if u32_at(&self.header, at) == NONE {
            return Ok(None);
        }
        Ok(Some(Key::whole(self.string(at)?)))
    }

    fn target(&self) -> Result<&str, EngineError> {
        let (start, len) = self.target;
        std::str::from_utf8(self.strings.get(start..start + len).ok_or(EngineError::BadAnswer)?)
            .map_err(|_| EngineError::BadAnswer)
    }

    /// The answer as the native resolver's type.
    pub fn resolution(&self) -> Result<Resolution<'_, '_>, EngineError> {
        let h = &self.header;
        let domain = || self.string(out::DOMAIN).and_then(|d| Domain::from_stored(d).ok_or(EngineError::BadAnswer));
        Ok(match h[out::KIND] {
            kind::STATIC => Resolution::Static {
                domain: domain()?,
                bucket: self.target()?,
                key: Key::whole(self.string(out::KEY)?),
                status: u16_at(h, out::STATUS_OR_PORT),
                fallback: self.optional_key(out::FALLBACK)?,
                not_found_page: self.optional_key(out::NOT_FOUND_PAGE)?,
            },
            kind::REDIRECT => Resolution::Redirect {
                domain: domain()?,
                location: Location::rendered(self.string(out::KEY)?),
                status: u16_at(h, out::STATUS_OR_PORT),
            },
            kind::BALANCER => Resolution::Balancer {
                domain: domain()?,
                origin: self.target()?,
                port: u16_at(h, out::STATUS_OR_PORT),
                scheme: match h[out::DETAIL] {
                    1 => Scheme::Http,
                    2 => Scheme::Https,
                    _ => return Err(EngineError::BadAnswer),
                },
            },
            4 => Resolution::NotFound,
            5 => Resolution::BadRequest(
                *Reason::ALL.get((h[out::DETAIL] as usize).wrapping_sub(1)).ok_or(EngineError::BadAnswer)?,
            ),
            kind::ERROR => {
                return Err(match h[out::DETAIL] {
                    error::INPUT_TOO_LONG => EngineError::InputTooLong,
                    _ => EngineError::BadAnswer,
                })
            }
            _ => return Err(EngineError::BadAnswer),
        })
    }
}
