//! The two one-transition layouts, `fst`'s `StateOneTransNext` and
//! `StateOneTrans`. Most nodes of a hostname FST are one of these: a label's
//! bytes are a chain of single transitions.
//!
//! Both begin (reading down from the state byte) with the input: in the
//! state byte's low six bits when it is a [common input](super::common_inputs),
//! else in the byte just below. Neither is ever final.

use super::common_inputs::common_input;
use super::node::{Layout, Node, Transition, ONE_TRANS_FLAG, STATE_PAYLOAD};
use super::pack::{delta_to_addr, unpack_uint, PackSizes};

/// State-byte bit that, with [`ONE_TRANS_FLAG`], marks [`OneTransNext`]:
/// the transition leads to the node written just before this one.
const NEXT_FLAG: u8 = 0b0100_0000;

/// Reads a one-transition node's input from its state byte `state` at
/// `addr`: returns the input and how many bytes it took below the state
/// byte (0 for a common input, 1 for one written out).
#[inline]
pub(crate) fn read_input(data: &[u8], addr: usize, state: u8) -> Option<(u8, usize)> {
    match common_input(state & STATE_PAYLOAD) {
        Some(b) => Some((b, 0)),
        None => Some((*data.get(addr.checked_sub(1)?)?, 1)),
    }
}

/// One transition, with output 0, to the node written just before this one
/// (whose last byte is the byte right below this node). Nothing else is
/// stored, so the node is one or two bytes:
///
/// ```text
/// [input, if not common] state = 11iiiiii
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OneTransNext {
    pub(crate) input: u8,
}

impl OneTransNext {
    /// Whether a one-transition state byte is this layout's.
    #[inline]
    pub(crate) fn is(state: u8) -> bool {
        state & (ONE_TRANS_FLAG | NEXT_FLAG) == ONE_TRANS_FLAG | NEXT_FLAG
    }

    #[inline]
    pub(crate) fn decode(data: &[u8], addr: usize, state: u8) -> Option<Node> {
        let (input, input_len) = read_input(data, addr, state)?;
        Some(Node {
            start: addr,
            end: addr.checked_sub(input_len)?,
            layout: Layout::OneTransNext(OneTransNext { input }),
            ntrans: 1,
            sizes: PackSizes::NONE,
            is_final: false,
            final_output: 0,
        })
    }

    /// The address the transition leads to, for a node whose lowest byte is `end`.
    #[inline]
    pub(crate) fn target(end: usize) -> Option<usize> {
        end.checked_sub(1)
    }

    #[inline]
    pub(crate) fn transition(self, node: &Node) -> Option<Transition> {
        Some(Transition { input: self.input, out: 0, addr: Self::target(node.end)? })
    }
}

/// One transition with its own target address and output:
///
/// ```text
/// [output: osize bytes] [address delta: tsize bytes] pack sizes [input, if not common] state = 10iiiiii
/// ```
///
/// The output is left out (`osize` 0) when it is 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OneTrans {
    pub(crate) input: u8,
}

impl OneTrans {
    #[inline]
    pub(crate) fn decode(data: &[u8], addr: usize, state: u8) -> Option<Node> {
        let (input, input_len) = read_input(data, addr, state)?;
        let sizes = PackSizes::decode(*data.get(addr.checked_sub(input_len + 1)?)?)?;
        let end = addr.checked_sub(input_len + 1 + sizes.transition() + sizes.output())?;
        Some(Node {
            start: addr,
            end,
            layout: Layout::OneTrans(OneTrans { input }),
            ntrans: 1,
            sizes,
            is_final: false,
            final_output: 0,
        })
    }

    #[inline]
    pub(crate) fn transition(self, data: &[u8], node: &Node) -> Option<Transition> {
        let osize = node.sizes.output();
        let out = if osize == 0 { 0 } else { unpack_uint(data, node.end, osize)? };
        let delta = unpack_uint(data, node.end + osize, node.sizes.transition())?;
        Some(Transition { input: self.input, out, addr: delta_to_addr(node.end, delta)? })
    }
}
