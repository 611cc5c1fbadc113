//! A zero-copy, bounds-checked reader for the FST section.
//!
//! The section holds a map built by the `fst` crate (format version 3, as
//! written by `fst` 0.4). We read it with our own code instead of linking
//! `fst` because `fst`'s reader trusts its input: a structurally corrupt FST
//! can make it index out of bounds in the middle of a lookup. Every read here
//! goes through `slice::get` and checked arithmetic, so a lookup over any
//! bytes at all returns `None` rather than panicking; [`Fst::validate`] then
//! proves, once, that the map is exactly what the compiler would have written.
//!
//! Layout recap (see `docs/snapshot-format.md`): a 16-byte header (version,
//! type), nodes written children-first, then the key count, the root address
//! and a masked CRC32C. A node's address is its *last* byte, and it is read
//! backwards from there.

/// The one `fst` format version this reader understands.
pub const FST_VERSION: u64 = 3;
/// Address of the implicit final node with no transitions and no output.
const EMPTY_ADDRESS: usize = 0;
/// Nodes with more transitions than this carry a 256-byte index.
const TRANS_INDEX_THRESHOLD: usize = 32;
/// Bytes `fst` encodes inside a state byte, most common first (`fst`'s
/// `COMMON_INPUTS_INV`, of which a 6-bit index reaches the first 63).
const COMMON_INPUTS: [u8; 63] = *b"te/oasripcnw.hlm-du012g=:bf3y5&_4v9678k%?xCDASFIBEjPTzRNM+LOqHG";

/// Why the FST section was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FstError {
    /// Shorter than the smallest FST, or the footer does not match the length.
    Truncated,
    /// Not format version 3, or not a plain map.
    Version,
    /// A node does not decode within the section, or points forwards.
    BadNode,
    /// A key is not a normalized routing key, or the key count is wrong.
    BadKey,
    /// An output overflows, or is not the offset of the key's route record
    /// (records lie in key order, end to end).
    BadOutput,
    /// A key is longer than [`MAX_KEY_LEN`].
    KeyTooLong,
}

/// The longest key a snapshot may hold (a 253-byte hostname).
pub const MAX_KEY_LEN: usize = 253;

/// A validated view of an FST section.
#[derive(Clone, Copy, Debug)]
pub struct Fst<'a> {
    data: &'a [u8],
    root: usize,
    len: u64,
}

/// One decoded node. Cheap to build; every field was read with bounds checks.
#[derive(Clone, Copy, Debug)]
pub struct Node {
    start: usize,
    end: usize,
    kind: Kind,
    ntrans: usize,
    tsize: usize,
    osize: usize,
    is_final: bool,
    final_output: u64,
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    EmptyFinal,
    /// One transition to the node written just before this one, no output.
    OneTransNext {
        input: u8,
    },
    /// One transition with an explicit address and output.
    OneTrans {
        input: u8,
    },
    /// Any number of transitions; `index` when there is a 256-byte index.
    AnyTrans {
        ntrans_len: usize,
        index: bool,
    },
}

/// A transition taken from a node: the output to add and the next node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    pub input: u8,
    pub out: u64,
    pub addr: usize,
}

fn read_u64(data: &[u8], at: usize) -> Option<u64> {
    let b = data.get(at..at.checked_add(8)?)?;
    Some(u64::from_le_bytes(b.try_into().ok()?))
}

/// Reads `n` (0..=8) little-endian bytes at `at`.
fn unpack(data: &[u8], at: usize, n: usize) -> Option<u64> {
    if n > 8 {
        return None;
    }
    let b = data.get(at..at.checked_add(n)?)?;
    Some(b.iter().rev().fold(0u64, |acc, &x| (acc << 8) | x as u64))
}

fn common_input(idx: u8) -> Option<u8> {
    idx.checked_sub(1).and_then(|i| COMMON_INPUTS.get(i as usize).copied())
}

impl<'a> Fst<'a> {
    /// Reads the header and footer. Cheap; does not look at the nodes.
    pub fn new(data: &'a [u8]) -> Result<Fst<'a>, FstError> {
        if data.len() < 36 {
            return Err(FstError::Truncated);
        }
        if read_u64(data, 0) != Some(FST_VERSION) || read_u64(data, 8) != Some(0) {
            return Err(FstError::Version);
        }
        let end = data.len() - 4;
        let root = read_u64(data, end - 8).ok_or(FstError::Truncated)?;
        let len = read_u64(data, end - 16).ok_or(FstError::Truncated)?;
        let root = usize::try_from(root).map_err(|_| FstError::Truncated)?;
        // The root is the last node written; 20 footer bytes follow its last byte.
        let consistent = if root == EMPTY_ADDRESS {
            data.len() == 36
        } else {
            root >= 16 && root.checked_add(21) == Some(data.len())
        };
        if !consistent {
            return Err(FstError::Truncated);
        }
        Ok(Fst { data, root, len })
    }

    /// Rebuilds a view from the parts of an `Fst` that [`Fst::new`] checked.
    pub fn from_parts(data: &'a [u8], root: usize, len: u64) -> Fst<'a> {
        Fst { data, root, len }
    }

    pub fn root_addr(&self) -> usize {
        self.root
    }

    /// The number of keys the footer claims.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn root(&self) -> Option<Node> {
        self.node(self.root)
    }

    /// Decodes the node whose last byte is at `addr`.
    #[inline]
    pub fn node(&self, addr: usize) -> Option<Node> {
        let data = self.data;
        if addr == EMPTY_ADDRESS {
            return Some(Node {
                start: EMPTY_ADDRESS,
                end: EMPTY_ADDRESS,
                kind: Kind::EmptyFinal,
                ntrans: 0,
                tsize: 0,
                osize: 0,
                is_final: true,
                final_output: 0,
            });
        }
        // Node bytes live between the 16-byte header and the footer.
        if addr < 16 || addr >= data.len().checked_sub(20)? {
            return None;
        }
        let v = *data.get(addr)?;
        match v >> 6 {
            0b11 => {
                let (input, input_len) = match common_input(v & 0b11_1111) {
                    Some(b) => (b, 0),
                    None => (*data.get(addr.checked_sub(1)?)?, 1),
                };
                let end = addr.checked_sub(input_len)?;
                Some(Node {
                    start: addr,
                    end,
                    kind: Kind::OneTransNext { input },
                    ntrans: 1,
                    tsize: 0,
                    osize: 0,
                    is_final: false,
                    final_output: 0,
                })
            }
            0b10 => {
                let (input, input_len) = match common_input(v & 0b11_1111) {
                    Some(b) => (b, 0),
                    None => (*data.get(addr.checked_sub(1)?)?, 1),
                };
                let sizes = *data.get(addr.checked_sub(input_len + 1)?)?;
                let (tsize, osize) = ((sizes >> 4) as usize, (sizes & 0xF) as usize);
                if tsize > 8 || osize > 8 {
                    return None;
                }
                let end = addr.checked_sub(input_len + 1 + tsize + osize)?;
                Some(Node {
                    start: addr,
                    end,
                    kind: Kind::OneTrans { input },
                    ntrans: 1,
                    tsize,
                    osize,
                    is_final: false,
                    final_output: 0,
                })
            }
            _ => {
                let is_final = v & 0b0100_0000 != 0;
                let (ntrans, ntrans_len) = match v & 0b11_1111 {
                    0 => match *data.get(addr.checked_sub(1)?)? {
                        1 => (256, 1),
                        n => (n as usize, 1),
                    },
                    n => (n as usize, 0),
                };
                let sizes = *data.get(addr.checked_sub(ntrans_len + 1)?)?;
                let (tsize, osize) = ((sizes >> 4) as usize, (sizes & 0xF) as usize);
                if tsize > 8 || osize > 8 {
                    return None;
                }
                let index = ntrans > TRANS_INDEX_THRESHOLD;
                let index_size = if index { 256 } else { 0 };
                let trans_size = ntrans + ntrans * tsize + index_size;
                let final_osize = if is_final { osize } else { 0 };
                let end = addr
                    .checked_sub(ntrans_len + 1)?
                    .checked_sub(trans_size)?
                    .checked_sub(ntrans * osize)?
                    .checked_sub(final_osize)?;
                let final_output = if is_final && osize > 0 { unpack(data, end, osize)? } else { 0 };
                Some(Node {
                    start: addr,
                    end,
                    kind: Kind::AnyTrans { ntrans_len, index },
                    ntrans,
                    tsize,
                    osize,
                    is_final,
                    final_output,
                })
            }
        }
    }

    /// The `i`th transition of `node`, in ascending input order.
    #[inline]
    pub fn transition(&self, node: &Node, i: usize) -> Option<Transition> {
        if i >= node.ntrans {
            return None;
        }
        let data = self.data;
        match node.kind {
            Kind::EmptyFinal => None,
            Kind::OneTransNext { input } => Some(Transition { input, out: 0, addr: node.end.checked_sub(1)? }),
            Kind::OneTrans { input } => {
                let out = if node.osize == 0 { 0 } else { unpack(data, node.end, node.osize)? };
                let delta = unpack(data, node.end + node.osize, node.tsize)?;
                Some(Transition { input, out, addr: self.delta_addr(node, delta)? })
            }
            Kind::AnyTrans { ntrans_len, index } => {
                let index_size = if index { 256 } else { 0 };
                let inputs_end = node.start.checked_sub(ntrans_len + 1 + index_size)?;
                let input = *data.get(inputs_end.checked_sub(i + 1)?)?;
                let addrs_end = inputs_end.checked_sub(node.ntrans)?;
                let delta_at = addrs_end.checked_sub((i + 1) * node.tsize)?;
                let delta = unpack(data, delta_at, node.tsize)?;
                let out = if node.osize == 0 {
                    0
                } else {
                    let outs_end = addrs_end.checked_sub(node.ntrans * node.tsize)?;
                    unpack(data, outs_end.checked_sub((i + 1) * node.osize)?, node.osize)?
                };
                Some(Transition { input, out, addr: self.delta_addr(node, delta)? })
            }
        }
    }

    fn delta_addr(&self, node: &Node, delta: u64) -> Option<usize> {
        let delta = usize::try_from(delta).ok()?;
        if delta == EMPTY_ADDRESS {
            Some(EMPTY_ADDRESS)
        } else {
            node.end.checked_sub(delta)
        }
    }

    /// The lookup fast path: follows input `b` from the node at `addr`,
    /// returning the output and the next node's address. The one-transition
    /// kinds, which make up most of a hostname FST, are decoded in place
    /// without building a [`Node`]. [`Fst::validate`] proves it agrees with
    /// [`Fst::step`] on every transition.
    #[inline]
    pub fn step_addr(&self, addr: usize, b: u8) -> Option<(u64, usize)> {
        let data = self.data;
        let v = *data.get(addr)?;
        if addr == EMPTY_ADDRESS || addr < 16 {
            return None;
        }
        let kind = v >> 6;
        if kind >= 0b10 {
            let (input, input_len) = match common_input(v & 0b11_1111) {
                Some(c) => (c, 0),
                None => (*data.get(addr - 1)?, 1),
            };
            if input != b {
                return None;
            }
            if kind == 0b11 {
                return Some((0, addr.checked_sub(input_len + 1)?));
            }
        }
        let node = self.node(addr)?;
        let t = self.step(&node, b)?;
        Some((t.out, t.addr))
    }

    /// If the node at `addr` is final, its final output.
    #[inline]
    pub fn accept(&self, addr: usize) -> Option<u64> {
        if addr == EMPTY_ADDRESS {
            return Some(0);
        }
        // Only the any-transitions kind (top bit clear; the next bit is its
        // final flag) can be final.
        if *self.data.get(addr)? >> 7 != 0 {
            return None;
        }
        let node = self.node(addr)?;
        node.is_final.then_some(node.final_output)
    }

    /// Follows the transition for input byte `b`, if there is one.
    #[inline]
    pub fn step(&self, node: &Node, b: u8) -> Option<Transition> {
        match node.kind {
            Kind::EmptyFinal => None,
            Kind::OneTransNext { input } | Kind::OneTrans { input } => {
                if input == b {
                    self.transition(node, 0)
                } else {
                    None
                }
            }
            Kind::AnyTrans { ntrans_len, index } => {
                let i = if index {
                    let at = node.start.checked_sub(ntrans_len + 1 + 256)? + b as usize;
                    let i = *self.data.get(at)? as usize;
                    if i >= node.ntrans {
                        return None;
                    }
                    i
                } else {
                    let end = node.start.checked_sub(ntrans_len + 1)?;
                    let inputs = self.data.get(end.checked_sub(node.ntrans)?..end)?;
                    // Inputs are stored in reverse order.
                    let pos = inputs.iter().position(|&x| x == b)?;
                    node.ntrans.checked_sub(pos + 1)?
                };
                let t = self.transition(node, i)?;
                if t.input == b {
                    Some(t)
                } else {
                    None
                }
            }
        }
    }

    /// Proves the whole map sound, allocating nothing: every node reachable
    /// from the root decodes inside the section and only points backwards,
    /// each node's inputs ascend, the lookup fast path agrees with the
    /// enumeration, and there are exactly `len` keys. `check(key, output)`
    /// sees every key in ascending order and judges the keys and outputs.
    ///
    /// The walk visits every key once (a depth-first search with a fixed
    /// stack of [`MAX_KEY_LEN`] frames), so it costs O(total key bytes).
    pub fn validate<E>(&self, mut check: impl FnMut(&[u8], u64) -> Result<(), E>) -> Result<(), E>
    where
        E: From<FstError>,
    {
        let mut keys = 0u64;
        self.walk(|key, out| {
            keys += 1;
            check(key, out)
        })?;
        if keys != self.len {
            return Err(FstError::BadKey.into());
        }
        Ok(())
    }

    /// Calls `f(key, output)` for every key in ascending order. Allocates
    /// nothing: the key is assembled in a fixed buffer of [`MAX_KEY_LEN`].
    pub fn walk<E>(&self, mut f: impl FnMut(&[u8], u64) -> Result<(), E>) -> Result<(), E>
    where
        E: From<FstError>,
    {
        #[derive(Clone, Copy)]
        struct Frame {
            node: Node,
            next: usize,
            out: u64,
        }
        let root = self.root().ok_or(FstError::BadNode)?;
        let empty = Frame { node: root, next: 0, out: 0 };
        let mut stack = [empty; MAX_KEY_LEN + 1];
        let mut key = [0u8; MAX_KEY_LEN];
        let mut depth = 0usize;
        if root.is_final {
            f(&[], root.final_output)?;
        }
        loop {
            let frame = &mut stack[depth];
            if frame.next == frame.node.ntrans {
                if depth == 0 {
                    return Ok(());
                }
                depth -= 1;
                continue;
            }
            let i = frame.next;
            frame.next += 1;
            let node = frame.node;
            let out_here = frame.out;
            let t = self.transition(&node, i).ok_or(FstError::BadNode)?;
            // Inputs must ascend strictly: that is what makes keys sorted,
            // ids ascending, and `step` agree with the enumeration.
            if i > 0 {
                let prev = self.transition(&node, i - 1).ok_or(FstError::BadNode)?;
                if prev.input >= t.input {
                    return Err(FstError::BadNode.into());
                }
            }
            // `step` must find every transition the enumeration finds (this
            // also checks the 256-byte index of wide nodes).
            if self.step(&node, t.input) != Some(t) || self.step_addr(node.start, t.input) != Some((t.out, t.addr)) {
                return Err(FstError::BadNode.into());
            }
            // Children are written before parents: forward or self pointers
            // would mean a cycle.
            if t.addr != EMPTY_ADDRESS && t.addr >= node.end {
                return Err(FstError::BadNode.into());
            }
            let child = self.node(t.addr).ok_or(FstError::BadNode)?;
            if self.accept(t.addr) != child.is_final.then_some(child.final_output) {
                return Err(FstError::BadNode.into());
            }
            let out = out_here.checked_add(t.out).ok_or(FstError::BadOutput)?;
            if depth == MAX_KEY_LEN {
                return Err(FstError::KeyTooLong.into());
            }
            key[depth] = t.input;
            depth += 1;
            if child.is_final {
                let total = out.checked_add(child.final_output).ok_or(FstError::BadOutput)?;
                f(&key[..depth], total)?;
            } else if child.ntrans == 0 {
                // A dead end that is not a key: the builder never writes one.
                return Err(FstError::BadNode.into());
            }
            stack[depth] = Frame { node: child, next: 0, out };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::prelude::rust_2021::*;
    use std::{format, vec};

    fn build(keys: &[(&[u8], u64)]) -> Vec<u8> {
        let mut keys = keys.to_vec();
        keys.sort();
        let mut b = ::fst::MapBuilder::memory();
        for (k, v) in keys {
            b.insert(k, v).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn get(f: &Fst<'_>, key: &[u8]) -> Option<u64> {
        let mut node = f.root()?;
        let mut out = 0u64;
        for &b in key {
            let t = f.step(&node, b)?;
            out += t.out;
            node = f.node(t.addr)?;
        }
        node.is_final.then(|| out + node.final_output)
    }

    #[test]
    fn agrees_with_the_fst_crate() {
        // Cover every node kind: common and rare inputs, outputs, wide fan-out
        // (more than 32 transitions, so the 256-byte index is used), a key that
        // is a prefix of another (final nodes with transitions), the empty key.
        let mut owned: Vec<(Vec<u8>, u64)> = Vec::new();
        owned.push((b"".to_vec(), 7));
        for b in 0u8..=255 {
            owned.push((vec![b'x', b], 1000 + b as u64));
        }
        for (i, w) in ["a", "ab", "abc", "b~", "com.example", "com.example.*", "com.example.api"].iter().enumerate() {
            owned.push((w.as_bytes().to_vec(), i as u64 * 13));
        }
        for i in 0..2000u64 {
            owned.push((format!("k{:x}q{}", i * 7919, i % 17).into_bytes(), i * 31 % 997));
        }
        owned.sort();
        owned.dedup_by(|a, b| a.0 == b.0);
        let refs: Vec<(&[u8], u64)> = owned.iter().map(|(k, v)| (k.as_slice(), *v)).collect();
        let bytes = build(&refs);
        let ours = Fst::new(&bytes).unwrap();
        let theirs = ::fst::Map::new(bytes.clone()).unwrap();
        assert_eq!(ours.len(), theirs.len() as u64);
        for (k, v) in &owned {
            assert_eq!(get(&ours, k), Some(*v), "{k:?}");
            assert_eq!(theirs.get(k), Some(*v));
        }
        for miss in [&b"x"[..], b"abcd", b"com", b"com.example.a", b"zzz", b"k"] {
            assert_eq!(get(&ours, miss), theirs.get(miss), "{miss:?}");
        }
        // The enumeration yields exactly the same pairs, in order.
        let mut seen = Vec::new();
        ours.walk::<FstError>(|k, v| {
            seen.push((k.to_vec(), v));
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, owned);
    }

    #[test]
    fn validate_passes_keys_and_outputs_in_order() {
        let good = build(&[(b"a", 0), (b"b", 5), (b"c", 9)]);
        let mut seen = std::vec::Vec::new();
        let r: Result<(), FstError> = Fst::new(&good).unwrap().validate(|k, o| {
            seen.push((k.to_vec(), o));
            Ok(())
        });
        assert_eq!(r, Ok(()));
        assert_eq!(seen, [(b"a".to_vec(), 0), (b"b".to_vec(), 5), (b"c".to_vec(), 9)]);
        let refuse_b = |k: &[u8], _| if k == b"b" { Err(FstError::BadKey) } else { Ok(()) };
        assert_eq!(Fst::new(&good).unwrap().validate(refuse_b), Err(FstError::BadKey));
        // The footer's key count must match the keys reachable from the root.
        let mut lying = good.clone();
        let at = lying.len() - 20;
        lying[at] = 4;
        assert!(Fst::new(&lying).unwrap().validate(|_, _| Ok::<(), FstError>(())).is_err());
    }

    #[test]
    fn header_and_footer_are_checked() {
        let good = build(&[(b"a", 0)]);
        assert!(Fst::new(&good[..35]).is_err());
        assert_eq!(Fst::new(&good[..good.len() - 1]).unwrap_err(), FstError::Truncated);
        let mut v2 = good.clone();
        v2[0] = 2;
        assert_eq!(Fst::new(&v2).unwrap_err(), FstError::Version);
        let empty = build(&[]);
        let f = Fst::new(&empty).unwrap();
        assert_eq!(f.len(), 0);
        assert_eq!(f.validate(|_, _| Ok::<(), FstError>(())), Ok(()));
    }

    #[test]
    fn corrupt_nodes_never_panic() {
        let mut keys: Vec<(Vec<u8>, u64)> =
            (0..300u64).map(|i| (format!("com.example.h{i:03}-{}", i % 7).into_bytes(), 0)).collect();
        keys.sort();
        for (i, k) in keys.iter_mut().enumerate() {
            k.1 = i as u64;
        }
        let refs: Vec<(&[u8], u64)> = keys.iter().map(|(k, v)| (k.as_slice(), *v)).collect();
        let bytes = build(&refs);
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let mut m = bytes.clone();
            let at = 16 + (state as usize % (m.len() - 36));
            m[at] ^= 1 << ((state >> 32) % 8);
            if let Ok(f) = Fst::new(&m) {
                let _ = f.validate(|_, _| Ok::<(), FstError>(()));
                for (k, _) in keys.iter().step_by(37) {
                    let _ = get(&f, k);
                }
            }
        }
    }
}
