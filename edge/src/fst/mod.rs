//! A zero-copy, bounds-checked reader for the FST section.
//!
//! The section holds a map built by the `fst` crate (format version 3, as
//! written by `fst` 0.4). We read it with our own code instead of linking
//! `fst` because `fst`'s reader trusts its input: a structurally corrupt FST
//! can make it index out of bounds in the middle of a lookup. Every read here
//! goes through `slice::get` and checked arithmetic, so a lookup over any
//! bytes at all returns `None` rather than panicking; [`Fst::walk_between`] then
//! proves, once, that the map is exactly what the compiler would have written.
//!
//! The code is laid out as `fst`'s own `src/raw/`:
//!
//! - [`header`]: the 16-byte header (version, type) and the 20-byte footer
//!   (key count, root address, checksum) around the nodes;
//! - [`node`]: a decoded [`Node`], the state byte that says which layout a
//!   node has, and the empty final node;
//! - [`one_trans`] and [`any_trans`]: one type per layout written in the
//!   bytes (`OneTransNext`, `OneTrans`, `AnyTrans`);
//! - [`pack`]: the pack-sizes byte and the packed integers it sizes;
//! - [`common_inputs`]: the inputs a state byte can hold;
//! - [`walk`]: the enumeration of every key, and validation;
//! - [`error`]: the [`FstError`] type.
//!
//! Nodes are written children first, and a node's address is its *last*
//! byte, from which it is read backwards.

mod any_trans;
mod common_inputs;
mod error;
mod header;
mod node;
mod one_trans;
mod pack;
#[cfg(test)]
mod tests;
mod walk;

pub use self::error::FstError;
pub use self::node::{Node, Transition};
pub use self::walk::Cursor;

use self::header::{Frame, HEADER_LEN};
use self::node::{EMPTY_ADDRESS, ONE_TRANS_FLAG};
use self::one_trans::OneTransNext;

/// The longest key a snapshot may hold (a 253-byte hostname).
pub const MAX_KEY_LEN: usize = 253;

/// A view of an FST section whose header and footer were checked.
#[derive(Clone, Copy, Debug)]
pub struct Fst<'a> {
    data: &'a [u8],
    root: usize,
    len: u64,
}

impl<'a> Fst<'a> {
    /// Reads the header and footer. Cheap; does not look at the nodes.
    pub fn new(data: &'a [u8]) -> Result<Fst<'a>, FstError> {
        let Frame { root, key_count } = Frame::read(data)?;
        Ok(Fst { data, root, len: key_count })
    }

    /// Rebuilds a view from the parts of an `Fst` that [`Fst::new`] checked
    /// (the snapshot keeps the root address, not the view). Only for parts
    /// that came from `new` on these same bytes: anything else still reads
    /// in bounds, but as a different map.
    pub(crate) fn from_parts(data: &'a [u8], root: usize, len: u64) -> Fst<'a> {
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
        Node::decode(self.data, addr)
    }

    /// The `i`th transition of `node`, in ascending input order.
    #[inline]
    pub fn transition(&self, node: &Node, i: usize) -> Option<Transition> {
        node.transition(self.data, i)
    }

    /// Follows the transition for input byte `b`, if there is one.
    #[inline]
    pub fn step(&self, node: &Node, b: u8) -> Option<Transition> {
        node.find(self.data, b)
    }

    /// The lookup fast path: follows input `b` from the node at `addr`,
    /// returning the output and the next node's address. The one-transition
    /// layouts, which make up most of a hostname FST, are decoded in place
    /// without building a [`Node`]. [`Fst::walk_between`] proves it agrees with
    /// [`Fst::step`] on every transition.
    #[inline]
    pub fn step_addr(&self, addr: usize, b: u8) -> Option<(u64, usize)> {
        let data = self.data;
        let state = *data.get(addr)?;
        if addr == EMPTY_ADDRESS || addr < HEADER_LEN {
            return None;
        }
        if state & ONE_TRANS_FLAG != 0 {
            let (input, input_len) = one_trans::read_input(data, addr, state)?;
            if input != b {
                return None;
            }
            if OneTransNext::is(state) {
                return Some((0, OneTransNext::target(addr.checked_sub(input_len)?)?));
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
        // Only the empty final node and the any-transitions layout can be
        // final; a one-transition node never is.
        if *self.data.get(addr)? & ONE_TRANS_FLAG != 0 {
            return None;
        }
        let node = self.node(addr)?;
        node.is_final.then_some(node.final_output)
    }
}
