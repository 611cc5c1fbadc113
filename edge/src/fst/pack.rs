//! Packed integers: the pack-sizes byte and the little-endian integers of
//! 0 to 8 bytes it sizes (`fst`'s `PackSizes`, `bytes::unpack_uint` and
//! `unpack_delta` in `raw/node.rs`).
//!
//! `fst` writes each node's transition addresses and outputs in the fewest
//! bytes that hold the largest of them, so one node's fields all have the
//! same width and can be indexed without decoding the ones before.

use super::node::EMPTY_ADDRESS;

/// A node's pack-sizes byte, written just below its state byte (and its
/// transition count, if any): the high nibble is how many bytes each
/// transition's address delta takes, the low nibble how many each output
/// takes. Either may be 0: no outputs written (all are 0), or (for the
/// address) every transition goes to the empty final node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PackSizes(u8);

impl PackSizes {
    /// The widest packed integer: a `u64`. `fst` never writes a nibble
    /// above 8; a larger one means the byte is not a pack-sizes byte.
    pub(crate) const MAX: usize = 8;
    /// Bits of the transition-address size: the high nibble.
    const TRANS_SHIFT: u32 = 4;
    /// Bits of the output size: the low nibble.
    const OUTPUT_MASK: u8 = 0b0000_1111;

    /// The sizes of a node that writes no packed fields (the
    /// one-transition-to-the-previous-node layout, the empty final node).
    pub(crate) const NONE: PackSizes = PackSizes(0);

    /// Reads a pack-sizes byte, refusing one with a size above [`MAX`](Self::MAX).
    #[inline]
    pub(crate) fn decode(byte: u8) -> Option<PackSizes> {
        let sizes = PackSizes(byte);
        (sizes.transition() <= Self::MAX && sizes.output() <= Self::MAX).then_some(sizes)
    }

    /// Bytes per transition address delta, 0 to 8.
    #[inline]
    pub(crate) fn transition(self) -> usize {
        (self.0 >> Self::TRANS_SHIFT) as usize
    }

    /// Bytes per output, 0 to 8.
    #[inline]
    pub(crate) fn output(self) -> usize {
        (self.0 & Self::OUTPUT_MASK) as usize
    }
}

/// Reads the `n`-byte (0 to [`PackSizes::MAX`]) little-endian unsigned
/// integer at `at`.
#[inline]
pub(crate) fn unpack_uint(data: &[u8], at: usize, n: usize) -> Option<u64> {
    if n > PackSizes::MAX {
        return None;
    }
    crate::wire::uint_le(data, at, n)
}

/// Turns a transition's packed address *delta* into the address of the node
/// it leads to. `fst` writes `node_end - target` (children are written
/// first, so the target lies below), except that the empty final node,
/// which has no bytes, keeps its address [`EMPTY_ADDRESS`] (0) as is.
/// `node_end` is the lowest byte of the node holding the transition.
#[inline]
pub(crate) fn delta_to_addr(node_end: usize, delta: u64) -> Option<usize> {
    let delta = usize::try_from(delta).ok()?;
    if delta == EMPTY_ADDRESS {
        Some(EMPTY_ADDRESS)
    } else {
        node_end.checked_sub(delta)
    }
}
