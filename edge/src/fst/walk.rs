//! Enumerating every key, and proving the map sound on the way.

use super::error::FstError;
use super::header::HEADER_LEN;
use super::node::{Layout, Node, EMPTY_ADDRESS};
use super::{Fst, MAX_KEY_LEN};

/// A place in the order of a walk's keys: the transitions taken from the
/// root (by index), the last of them the one the walk takes next. See
/// [`Fst::cursor_at`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    path: [u16; MAX_KEY_LEN + 1],
    /// At least 1.
    len: usize,
}

impl Fst<'_> {
    /// Proves the whole map sound, allocating nothing: every node reachable
    /// from the root decodes inside the section and only points backwards,
    /// each node's inputs ascend, the lookup fast path agrees with the
    /// enumeration, and there are exactly `len` keys. `check(key, output)`
    /// sees every key in ascending order and judges the keys and outputs.
    ///
    /// The walk visits every key once (a depth-first search with a fixed
    /// stack of [`MAX_KEY_LEN`] frames), so it costs O(total key bytes).
    #[cfg(test)]
    pub fn validate<E>(&self, check: impl FnMut(&[u8], u64) -> Result<(), E>) -> Result<(), E>
    where
        E: From<FstError>,
    {
        let keys = self.walk_between(None, None, check)?;
        if keys != self.len {
            return Err(FstError::KeyCount { footer: self.len, found: keys }.into());
        }
        Ok(())
    }

    /// Calls `f(key, output)` for every key in ascending order. Allocates
    /// nothing: the key is assembled in a fixed buffer of [`MAX_KEY_LEN`].
    pub fn walk<E>(&self, f: impl FnMut(&[u8], u64) -> Result<(), E>) -> Result<(), E>
    where
        E: From<FstError>,
    {
        self.walk_between(None, None, f).map(|_| ())
    }

    /// Where the walk is when the next key it gives is the first whose
    /// output is at least `target` (outputs ascend with keys, as a table's
    /// record offsets do): a place to split a walk, so that its parts run
    /// on several cores ([`Fst::walk_between`]). Reads only the path there;
    /// on bytes not yet validated, a bad node ends the path early (the
    /// parts' checks then fail, they never read out of bounds).
    #[cfg(any(test, feature = "std"))]
    pub fn cursor_at(&self, target: u64) -> Cursor {
        let mut cursor = Cursor { path: [0; MAX_KEY_LEN + 1], len: 1 };
        let Some(mut node) = self.root() else { return cursor };
        let mut acc = 0u64;
        for depth in 0..MAX_KEY_LEN {
            // The last transition whose subtree starts at or before the target.
            let mut chosen = None;
            for i in 0..node.ntrans {
                match self.transition(&node, i) {
                    Some(t) if acc.saturating_add(t.out) <= target => chosen = Some((i, t)),
                    _ => break,
                }
            }
            let Some((i, t)) = chosen else {
                cursor.path[depth] = 0;
                cursor.len = depth + 1;
                return cursor;
            };
            acc = acc.saturating_add(t.out);
            cursor.path[depth] = i as u16;
            cursor.len = depth + 1;
            let Some(child) = self.node(t.addr) else { return cursor };
            // A subtree that starts exactly at the target, or a leaf: split before it.
            if acc == target || child.ntrans == 0 {
                return cursor;
            }
            node = child;
        }
        cursor
    }

    /// [`Fst::walk`] from `from` (the start when `None`) up to `to` (the
    /// end when `None`): each key between them once, in order, with every
    /// check of the whole walk on the nodes it visits. Returns how many keys
    /// it gave. The walks between consecutive cursors cover the whole walk
    /// exactly once: the first stops where the second starts.
    pub fn walk_between<E>(
        &self,
        from: Option<&Cursor>,
        to: Option<&Cursor>,
        mut f: impl FnMut(&[u8], u64) -> Result<(), E>,
    ) -> Result<u64, E>
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
        let mut keys = 0u64;
        match from {
            None => {
                if root.is_final {
                    keys += 1;
                    f(&[], root.final_output)?;
                }
            }
            // The stack as the whole walk leaves it at `from`: each frame
            // below past the transition the path takes, the last before its.
            Some(c) => {
                for (d, &i) in c.path[..c.len].iter().enumerate() {
                    let frame = &mut stack[d];
                    let i = usize::from(i);
                    let bad_node = FstError::BadNode { addr: frame.node.start };
                    if i > 0 {
                        frame.last = u16::from(self.transition(&frame.node, i - 1).ok_or(bad_node)?.input);
                    }
                    frame.next = i;
                    if d + 1 == c.len {
                        break;
                    }
                    let t = self.transition(&frame.node, i).ok_or(bad_node)?;
                    let (node, out) = (frame.node, frame.out);
                    frame.next = i + 1;
                    frame.last = u16::from(t.input);
                    key[d] = t.input;
                    let child = self.node(t.addr).ok_or(FstError::BadNode { addr: t.addr })?;
                    let out = out.checked_add(t.out).ok_or(FstError::OutputOverflow { addr: node.start })?;
                    stack[d + 1] = Frame { node: child, next: 0, out, last: 256 };
                }
                depth = c.len - 1;
            }
        }
        loop {
            // The frame and the one above it, borrowed apart: the node is
            // read in place, not copied for every transition.
            let (below, above) = stack.split_at_mut(depth + 1);
            if let Some(c) = to {
                // At `to`: this frame is about to take the path's last
                // transition, and each one below has just taken the path's.
                if depth + 1 == c.len
                    && below[depth].next == usize::from(c.path[depth])
                    && below[..depth].iter().zip(&c.path).all(|(f, &i)| f.next == usize::from(i) + 1)
                {
                    return Ok(keys);
                }
            }
            let frame = &mut below[depth];
            if frame.next == frame.node.ntrans {
                if depth == 0 {
                    return Ok(keys);
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
                keys += 1;
                f(&key[..depth], total)?;
            } else if child.ntrans == 0 {
                // A dead end that is not a key: the builder never writes one.
                return Err(bad_child.into());
            }
            above[0] = Frame { node: child, next: 0, out, last: 256 };
        }
    }
}
