//! A decoded node, and which layout its state byte says it has.
//!
//! `fst` writes nodes children first, each one's bytes in *reverse*: a node's
//! address is its last byte, the **state byte**, and the rest is read
//! downwards from there. The state byte's top bits pick one of three
//! layouts, each a type of its own, as in `fst`'s `raw/node.rs`:
//!
//! | state byte  | layout | type |
//! | --- | --- | --- |
//! | `11iiiiii`  | one transition to the node written just before, output 0 | [`OneTransNext`] |
//! | `10iiiiii`  | one transition, packed address and output | [`OneTrans`] |
//! | `0fnnnnnn`  | any number of transitions, final if `f` | [`AnyTrans`] |
//!
//! (`iiiiii`: a [common input](super::common_inputs) index; `nnnnnn`: the
//! transition count.) A fourth node, [`EmptyFinal`], has no bytes at all.
//! A one-transition node is never final: a final node with one transition
//! is written as `AnyTrans`.

use super::any_trans::AnyTrans;
use super::one_trans::{OneTrans, OneTransNext};
use super::pack::PackSizes;

/// The address of the empty final node: final, no transitions, output 0.
/// `fst` never writes it (every key's last transition may point here), and
/// 0 is inside the header, so no written node can have it.
pub(crate) const EMPTY_ADDRESS: usize = 0;

/// State-byte bit set by both one-transition layouts and clear in [`AnyTrans`].
pub(crate) const ONE_TRANS_FLAG: u8 = 0b1000_0000;

/// The state byte's low six bits: a one-transition node's common input
/// index, or an `AnyTrans` node's transition count.
pub(crate) const STATE_PAYLOAD: u8 = 0b0011_1111;

/// The layout of a node, with what its state byte told about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Layout {
    EmptyFinal,
    OneTransNext(OneTransNext),
    OneTrans(OneTrans),
    AnyTrans(AnyTrans),
}

impl Layout {
    /// `fst`'s short name for the layout (`Node::state`), for tests and debugging.
    #[cfg(test)]
    pub(crate) fn name(self) -> &'static str {
        match self {
            Layout::EmptyFinal => "EF",
            Layout::OneTransNext(_) => "OTN",
            Layout::OneTrans(_) => "OT",
            Layout::AnyTrans(_) => "AT",
        }
    }
}

/// One decoded node. Cheap to build and to copy; every field was read with
/// bounds checks, and the node's bytes lie in `end..=start`.
#[derive(Clone, Copy, Debug)]
pub struct Node {
    /// The node's address: its last byte, the state byte.
    pub(crate) start: usize,
    /// Its lowest byte. A transition's packed address is relative to it.
    pub(crate) end: usize,
    pub(crate) layout: Layout,
    /// The number of transitions, 0 to 256.
    pub(crate) ntrans: usize,
    pub(crate) sizes: PackSizes,
    pub(crate) is_final: bool,
    /// Added to the output of a key that ends here (0 unless final).
    pub(crate) final_output: u64,
}

/// A transition taken from a node: the output to add and the next node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    pub input: u8,
    pub out: u64,
    pub addr: usize,
}

/// The node with no bytes at [`EMPTY_ADDRESS`]: final, no transitions,
/// output 0. Where every key without a longer key below it ends.
#[derive(Clone, Copy, Debug)]
pub(crate) struct EmptyFinal;

impl EmptyFinal {
    pub(crate) const NODE: Node = Node {
        start: EMPTY_ADDRESS,
        end: EMPTY_ADDRESS,
        layout: Layout::EmptyFinal,
        ntrans: 0,
        sizes: PackSizes::NONE,
        is_final: true,
        final_output: 0,
    };
}

impl Node {
    /// Decodes the node whose state byte is at `addr` in the FST `data`
    /// (the whole section), or `None` if it does not decode inside the
    /// nodes, between the header and the footer.
    #[inline]
    pub(crate) fn decode(data: &[u8], addr: usize) -> Option<Node> {
        if addr == EMPTY_ADDRESS {
            return Some(EmptyFinal::NODE);
        }
        if addr < super::header::HEADER_LEN || addr >= data.len().checked_sub(super::header::FOOTER_LEN)? {
            return None;
        }
        let state = *data.get(addr)?;
        if state & ONE_TRANS_FLAG == 0 {
            AnyTrans::decode(data, addr, state)
        } else if OneTransNext::is(state) {
            OneTransNext::decode(data, addr, state)
        } else {
            OneTrans::decode(data, addr, state)
        }
    }

    /// The `i`th transition, in ascending input order.
    #[inline]
    pub(crate) fn transition(&self, data: &[u8], i: usize) -> Option<Transition> {
        if i >= self.ntrans {
            return None;
        }
        match self.layout {
            Layout::EmptyFinal => None,
            Layout::OneTransNext(l) => l.transition(self),
            Layout::OneTrans(l) => l.transition(data, self),
            Layout::AnyTrans(l) => l.transition(data, self, i),
        }
    }

    /// The transition for input byte `b`, if there is one.
    #[inline]
    pub(crate) fn find(&self, data: &[u8], b: u8) -> Option<Transition> {
        match self.layout {
            Layout::EmptyFinal => None,
            Layout::OneTransNext(OneTransNext { input }) | Layout::OneTrans(OneTrans { input }) => {
                if input == b {
                    self.transition(data, 0)
                } else {
                    None
                }
            }
            Layout::AnyTrans(l) => l.find(data, self, b),
        }
    }
}
