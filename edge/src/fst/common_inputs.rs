//! Inputs a one-transition node encodes inside its state byte.

/// `fst`'s `COMMON_INPUTS_INV` (`raw/common_inputs.rs`), cut to what a
/// state byte can reach: the bytes its authors found most common in keys,
/// most common first.
///
/// A one-transition node's state byte keeps six bits for its input: 0 means
/// "not a common input, the byte itself is written just below the state
/// byte", and `i` in 1..=63 means `COMMON_INPUTS[i - 1]`, saving that byte.
/// Six bits reach 63 entries, so the rest of `fst`'s 256-entry table is
/// never used here. (`*`, a wildcard key's last label, is not among them.)
pub(crate) const COMMON_INPUTS: [u8; 63] = *b"te/oasripcnw.hlm-du012g=:bf3y5&_4v9678k%?xCDASFIBEjPTzRNM+LOqHG";

/// The input a state byte's 6-bit `index` stands for, or `None` for 0
/// ("written separately").
#[inline]
pub(crate) fn common_input(index: u8) -> Option<u8> {
    index.checked_sub(1).and_then(|i| COMMON_INPUTS.get(i as usize).copied())
}
