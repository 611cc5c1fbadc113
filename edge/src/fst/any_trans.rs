//! The any-transitions layout, `fst`'s `StateAnyTrans`: every node that has
//! zero or several transitions, or is final, or both.
//!
//! Read down from the state byte (`0fnnnnnn`, `f` the final flag):
//!
//! ```text
//! [final output: osize bytes, if final]
//! [outputs: ntrans × osize bytes, last transition's first]
//! [address deltas: ntrans × tsize bytes, last transition's first]
//! [inputs: ntrans bytes, last transition's first]
//! [index: 256 bytes, if ntrans > 32]
//! pack sizes
//! [ntrans, if it does not fit in nnnnnn]
//! state
//! ```
//!
//! Because everything is written in reverse, transition `i` (in ascending
//! input order) sits `i` entries *below* the top of each array.

use super::node::{Layout, Node, Transition, STATE_PAYLOAD};
use super::pack::{delta_to_addr, unpack_uint, PackSizes};

/// State-byte bit of an `AnyTrans` node: a key ends here.
const FINAL_FLAG: u8 = 0b0100_0000;

/// Nodes with more transitions than this carry a 256-byte index from input
/// byte to transition number, so a lookup reads one byte instead of scanning
/// the inputs (`fst`'s `TRANS_INDEX_THRESHOLD`, since its format version 2).
const TRANS_INDEX_THRESHOLD: usize = 32;

/// The index's size: one entry per input byte. An entry of `ntrans` or
/// more (`fst` writes 255) means no transition for that byte.
const TRANS_INDEX_LEN: usize = 256;

/// What the separate transition-count byte holds for 256 transitions, which
/// a byte cannot: 1 is free because one transition always fits in the
/// state byte's six bits.
const NTRANS_256: u8 = 1;

/// Any number of transitions; how the node's counts were encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AnyTrans {
    /// Bytes below the state byte that hold the transition count: 0 when it
    /// fits in the state byte's six bits, else 1.
    ntrans_len: usize,
    /// Whether the node has the 256-byte index (more than
    /// [`TRANS_INDEX_THRESHOLD`] transitions).
    index: bool,
}

impl AnyTrans {
    #[inline]
    pub(crate) fn decode(data: &[u8], addr: usize, state: u8) -> Option<Node> {
        let is_final = state & FINAL_FLAG != 0;
        let (ntrans, ntrans_len) = match state & STATE_PAYLOAD {
            0 => match *data.get(addr.checked_sub(1)?)? {
                NTRANS_256 => (256, 1),
                n => (n as usize, 1),
            },
            n => (n as usize, 0),
        };
        let sizes = PackSizes::decode(*data.get(addr.checked_sub(ntrans_len + 1)?)?)?;
        let (tsize, osize) = (sizes.transition(), sizes.output());
        let index = ntrans > TRANS_INDEX_THRESHOLD;
        let index_size = if index { TRANS_INDEX_LEN } else { 0 };
        let trans_size = ntrans + ntrans * tsize + index_size;
        let final_osize = if is_final { osize } else { 0 };
        let end = addr
            .checked_sub(ntrans_len + 1)?
            .checked_sub(trans_size)?
            .checked_sub(ntrans * osize)?
            .checked_sub(final_osize)?;
        let final_output = if is_final && osize > 0 { unpack_uint(data, end, osize)? } else { 0 };
        Some(Node {
            start: addr,
            end,
            layout: Layout::AnyTrans(AnyTrans { ntrans_len, index }),
            ntrans,
            sizes,
            is_final,
            final_output,
        })
    }

    /// Bytes between the state byte and the index (or the inputs, if
    /// there is no index): the transition count, if separate, and the pack sizes.
    #[inline]
    fn counts_len(self) -> usize {
        self.ntrans_len + 1
    }

    #[inline]
    fn index_len(self) -> usize {
        if self.index {
            TRANS_INDEX_LEN
        } else {
            0
        }
    }

    /// The `i`th transition (`i < node.ntrans`, checked by the caller).
    #[inline]
    pub(crate) fn transition(self, data: &[u8], node: &Node, i: usize) -> Option<Transition> {
        let (tsize, osize) = (node.sizes.transition(), node.sizes.output());
        let inputs_end = node.start.checked_sub(self.counts_len() + self.index_len())?;
        let input = *data.get(inputs_end.checked_sub(i + 1)?)?;
        let addrs_end = inputs_end.checked_sub(node.ntrans)?;
        let delta = unpack_uint(data, addrs_end.checked_sub((i + 1) * tsize)?, tsize)?;
        let out = if osize == 0 {
            0
        } else {
            let outs_end = addrs_end.checked_sub(node.ntrans * tsize)?;
            unpack_uint(data, outs_end.checked_sub((i + 1) * osize)?, osize)?
        };
        Some(Transition { input, out, addr: delta_to_addr(node.end, delta)? })
    }

    /// The transition for input `b`: through the index when there is one,
    /// else by scanning the inputs.
    #[inline]
    pub(crate) fn find(self, data: &[u8], node: &Node, b: u8) -> Option<Transition> {
        let i = if self.index {
            let at = node.start.checked_sub(self.counts_len() + TRANS_INDEX_LEN)? + b as usize;
            let i = *data.get(at)? as usize;
            if i >= node.ntrans {
                return None;
            }
            i
        } else {
            let end = node.start.checked_sub(self.counts_len())?;
            let inputs = data.get(end.checked_sub(node.ntrans)?..end)?;
            // Inputs are stored in reverse order.
            let pos = inputs.iter().position(|&x| x == b)?;
            node.ntrans.checked_sub(pos + 1)?
        };
        let t = node.transition(data, i)?;
        if t.input == b {
            Some(t)
        } else {
            None
        }
    }
}
