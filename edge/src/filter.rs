//! The filter of a layer (`docs/snapshot-format.md`, "Layers"): a Bloom
//! filter of its routing keys, so that a lookup skips, at the cost of a few
//! bit tests, every layer that holds none of the host's candidates. A state
//! that follows a store at ten changes a second holds a hundred small
//! layers; walking each one's index would cost more than the base's.
//!
//! The hash is over a key's labels in key order (`com.example.api`), each
//! label's bytes with bit 5 set (`| 0x20`), so that the lookup hashes the
//! request's host as it comes, right to left, with no copy and in any
//! case: an uppercase letter hashes as its lowercase one, `_` as 0x7F on
//! both sides (no key holds 0x7F), and every other byte a host may hold
//! has bit 5 set already. Either side maps a byte exactly as the other,
//! which is all a filter needs: it may only ever say "maybe" too often.

use crate::format::{FILTER_MIN_LEN, FILTER_PROBES, KEY_LABEL_SEPARATOR};

const SEED: u64 = 0x9E37_79B9_7F4A_7C15;

#[inline]
fn mix(h: u64, v: u64) -> u64 {
    (h ^ v).wrapping_mul(0xBF58_476D_1CE4_E5B9).rotate_left(29)
}

/// The hash of one label, as it is stored or as the request spells it.
#[inline]
pub(crate) fn label_hash(label: &[u8]) -> u64 {
    // Bit 5 of each byte, set a word at a time.
    const BIT_5: u64 = 0x2020_2020_2020_2020;
    let mut h = label.len() as u64;
    let mut words = label.chunks_exact(8);
    for word in &mut words {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(word);
        h = mix(h, u64::from_le_bytes(bytes) | BIT_5);
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        // Zero-padded at the end, bit 5 set on the label's bytes only.
        let mut bytes = [0u8; 8];
        bytes[..rest.len()].copy_from_slice(rest);
        h = mix(h, u64::from_le_bytes(bytes) | (BIT_5 >> (8 * (8 - rest.len()))));
    }
    h
}

/// The hash of a key so far (its labels up to here), for [`KeyHash::with`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct KeyHash(u64);

impl KeyHash {
    pub(crate) const START: KeyHash = KeyHash(SEED);

    /// The key with one more label.
    #[inline]
    pub(crate) fn with(self, label: &[u8]) -> KeyHash {
        KeyHash(mix(self.0, label_hash(label)))
    }

    /// The hash of the key as it stands.
    #[inline]
    pub(crate) fn finish(self) -> u64 {
        let mut h = self.0;
        h ^= h >> 31;
        h = h.wrapping_mul(0x94D0_49BB_1331_11EB);
        h ^ (h >> 29)
    }
}

/// The hash a filter is built from and probed with, of a routing key
/// (`com.example.api`, `com.example.*`).
pub fn key_hash(key: &[u8]) -> u64 {
    key.split(|&b| b == KEY_LABEL_SEPARATOR).fold(KeyHash::START, |h, label| h.with(label)).finish()
}

/// The length in bytes of the filter of a layer of `entries` keys: 16 bits
/// per key, rounded up to a power of two, at least [`FILTER_MIN_LEN`].
pub fn filter_len(entries: usize) -> usize {
    (entries.saturating_mul(crate::format::FILTER_BITS_PER_ENTRY) / 8).max(FILTER_MIN_LEN).next_power_of_two()
}

/// The bits a key hash sets in a filter of `len` bytes (a power of two).
#[inline]
fn probes(hash: u64, len: usize) -> impl Iterator<Item = usize> {
    let mask = (len * 8 - 1) as u64;
    let (h1, h2) = (hash & 0xFFFF_FFFF, (hash >> 32) | 1);
    (0..u64::from(FILTER_PROBES)).map(move |i| (h1.wrapping_add(i.wrapping_mul(h2)) & mask) as usize)
}

/// Sets the bits of `hash` in `filter` (the writer's side).
pub fn filter_insert(filter: &mut [u8], hash: u64) {
    let len = filter.len();
    for bit in probes(hash, len) {
        if let Some(byte) = filter.get_mut(bit / 8) {
            *byte |= 1 << (bit % 8);
        }
    }
}

/// Whether a key of hash `hash` may be in `filter`: `false` means it is not.
/// Bytes that are not a filter (shorter than [`FILTER_MIN_LEN`], or not a
/// power of two: never after validation) say "maybe": a filter may only
/// ever save a walk, never hide a key.
#[inline]
pub(crate) fn may_contain(filter: &[u8], hash: u64) -> bool {
    let len = filter.len();
    if len < FILTER_MIN_LEN || !len.is_power_of_two() {
        return true;
    }
    probes(hash, len).all(|bit| filter.get(bit / 8).is_some_and(|b| b & (1 << (bit % 8)) != 0))
}

/// Bytes of a [`StateFilter`]: 128 Ki bits, 16 per key for 8k keys (more
/// keys only make it say "maybe" more often).
pub const STATE_FILTER_LEN: usize = 16 * 1024;

/// A filter over the keys of every layer a holder keeps (the WebAssembly
/// module keeps one beside its layers, built as they are pushed): a lookup
/// whose candidates it rules out skips the whole stack with a few bit
/// tests, where each layer's own filter costs a few per layer (a host
/// following a store at ten changes a second holds a hundred layers).
/// Built from the layers' keys, not their filters, whose sizes differ.
#[derive(Clone)]
pub struct StateFilter {
    bits: [u8; STATE_FILTER_LEN],
}

impl StateFilter {
    /// A filter of no keys.
    pub const fn new() -> StateFilter {
        StateFilter { bits: [0; STATE_FILTER_LEN] }
    }

    /// Forgets every key (before the layers it covers are rebuilt).
    pub fn clear(&mut self) {
        self.bits.fill(0);
    }

    /// Adds every key of `layer`, tombstones included: O(its keys).
    pub fn add<D: AsRef<[u8]>>(&mut self, layer: &crate::Layer<D>) {
        let walked = layer.fst().walk::<crate::FstError>(|key, _| {
            filter_insert(&mut self.bits, key_hash(key));
            Ok(())
        });
        if walked.is_err() {
            // An index that cannot be walked to its end (never one that
            // was validated): say "maybe" to everything rather than miss
            // the keys past the fault.
            self.bits.fill(0xFF);
        }
    }

    /// Whether any layer added may hold the key of hash `hash`.
    #[inline]
    pub(crate) fn may_contain(&self, hash: u64) -> bool {
        may_contain(&self.bits, hash)
    }
}

impl Default for StateFilter {
    fn default() -> Self {
        StateFilter::new()
    }
}

impl core::fmt::Debug for StateFilter {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let set: u32 = self.bits.iter().map(|b| b.count_ones()).sum();
        f.debug_struct("StateFilter").field("bits_set", &set).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_ignores_case_and_tells_labels_apart() {
        assert_eq!(key_hash(b"com.example.api"), key_hash(b"COM.Example.API"));
        assert_ne!(key_hash(b"com.example.api"), key_hash(b"com.exampleapi"));
        assert_ne!(key_hash(b"com.example.*"), key_hash(b"com.example"));
        let built = KeyHash::START.with(b"com").with(b"example").with(b"api").finish();
        assert_eq!(built, key_hash(b"com.example.api"));
    }

    /// The definition in `docs/snapshot-format.md`, a byte at a time.
    fn label_hash_by_the_book(label: &[u8]) -> u64 {
        let mut h = label.len() as u64;
        for chunk in label.chunks(8) {
            let mut word = 0u64;
            for (i, &b) in chunk.iter().enumerate() {
                word |= u64::from(b | 0x20) << (8 * i);
            }
            h = mix(h, word);
        }
        h
    }

    #[test]
    fn a_label_hashes_as_the_format_defines_it() {
        let text = b"Abc-DEF_ghi0123456789-xyz.*";
        for start in 0..text.len() {
            for end in start..=text.len() {
                let label = &text[start..end];
                assert_eq!(label_hash(label), label_hash_by_the_book(label), "{label:?}");
            }
        }
        // Fixed values: the filters of layers already written depend on them.
        assert_eq!(key_hash(b"com.example.*"), 9571598878538120647);
    }

    #[test]
    fn a_filter_never_forgets_and_mostly_refuses() {
        let keys: std::vec::Vec<std::string::String> = (0..1000).map(|i| std::format!("com.example.k{i}")).collect();
        let mut filter = std::vec![0u8; filter_len(keys.len())];
        for k in &keys {
            filter_insert(&mut filter, key_hash(k.as_bytes()));
        }
        assert!(keys.iter().all(|k| may_contain(&filter, key_hash(k.as_bytes()))));
        let false_positives =
            (0..10_000).filter(|i| may_contain(&filter, key_hash(std::format!("com.example.x{i}").as_bytes()))).count();
        assert!(false_positives < 100, "{false_positives} of 10,000");
        assert_eq!(filter_len(0), 8);
        assert_eq!(filter_len(1), 8);
        assert_eq!(filter_len(1000), 2048);
    }
}
