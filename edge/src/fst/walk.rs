//! Enumerating every key, and proving the map sound on the way.

use super::error::FstError;
use super::header::HEADER_LEN;
use super::node::{Layout, Node, EMPTY_ADDRESS};
use super::{Fst, MAX_KEY_LEN};

impl Fst<'_> {
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
            return Err(FstError::KeyCount { footer: self.len, found: keys }.into());
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
            /// The input of the transition taken before `next` (none yet: 256).
            last: u16,
        }
        let root = self.root().ok_or(FstError::BadNode { addr: self.root })?;
        let empty = Frame { node: root, next: 0, out: 0, last: 256 };
        let mut stack = [empty; MAX_KEY_LEN + 1];
        let mut key = [0u8; MAX_KEY_LEN];
        let mut depth = 0usize;
        if root.is_final {
            f(&[], root.final_output)?;
        }
        loop {
            // The frame and the one above it, borrowed apart: the node is
            // read in place, not copied for every transition.
            let (below, above) = stack.split_at_mut(depth + 1);
            let frame = &mut below[depth];
            if frame.next == frame.node.ntrans {
                if depth == 0 {
                    return Ok(());
                }
                depth -= 1;
                continue;
            }
            let i = frame.next;
            frame.next += 1;
            let node = &frame.node;
            let out_here = frame.out;
            let bad_node = FstError::BadNode { addr: node.start };
            let t = self.transition(node, i).ok_or(bad_node)?;
            // Inputs must ascend strictly: that is what makes keys sorted,
            // ids ascending, and `step` agree with the enumeration.
            if frame.last != 256 && frame.last >= u16::from(t.input) {
                return Err(bad_node.into());
            }
            frame.last = u16::from(t.input);
            // `step` must find every transition the enumeration finds (this
            // also checks the 256-byte index of wide nodes), and so must the
            // lookup's fast path. For a node of many transitions that path is
            // this very node's `step` (decoded at the same address), once its
            // address is one the fast path accepts: checked without decoding
            // the node again.
            let fast_path_agrees = match node.layout {
                Layout::AnyTrans(_) => node.start != EMPTY_ADDRESS && node.start >= HEADER_LEN,
                _ => self.step_addr(node.start, t.input) == Some((t.out, t.addr)),
            };
            // A node of one transition finds exactly that transition for its
            // one input (`find` is `transition(0)` when the input matches):
            // equal by construction, so only a wide node's `find` is checked.
            let step_agrees = match node.layout {
                Layout::AnyTrans(_) => self.step(node, t.input) == Some(t),
                _ => true,
            };
            if !step_agrees || !fast_path_agrees {
                return Err(bad_node.into());
            }
            // Children are written before parents: forward or self pointers
            // would mean a cycle.
            if t.addr != EMPTY_ADDRESS && t.addr >= node.end {
                return Err(bad_node.into());
            }
            let bad_child = FstError::BadNode { addr: t.addr };
            let child = self.node(t.addr).ok_or(bad_child)?;
            if self.accept(t.addr) != child.is_final.then_some(child.final_output) {
                return Err(bad_child.into());
            }
            let out = out_here.checked_add(t.out).ok_or(FstError::OutputOverflow { addr: node.start })?;
            if depth == MAX_KEY_LEN {
                return Err(FstError::KeyTooLong { addr: node.start }.into());
            }
            key[depth] = t.input;
            depth += 1;
            if child.is_final {
                let total = out.checked_add(child.final_output).ok_or(FstError::OutputOverflow { addr: t.addr })?;
                f(&key[..depth], total)?;
            } else if child.ntrans == 0 {
                // A dead end that is not a key: the builder never writes one.
                return Err(bad_child.into());
            }
            above[0] = Frame { node: child, next: 0, out, last: 256 };
        }
    }
}
