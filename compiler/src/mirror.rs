//! A table kept validated between compiles, for the watcher: a change
//! re-validates one item, and a build only writes (no parse, no
//! validation, no sort). It compiles to exactly the bytes that
//! [`compile`](crate::compile()) with `skip_invalid` makes from the same
//! items (tested), duplicates included: two items that normalize to the
//! same Domain are both left out.
//!
//! It also tracks what changed since it was last [settled](Mirror::settle):
//! [`changes`](Mirror::changes) are the routes to upsert and the names to
//! delete that take a state built from the mirror then to one built from
//! it now, which the watcher writes as a layer. Their cost follows the
//! items changed, not the table.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use edgeroute_edge::SnapshotId;

use crate::compile::{Compiled, Stats};
use crate::entry::{self, Entry, ItemError, ItemErrorKind};
use crate::item::{Location, RawItem, Value};
use crate::layer::Change;
use crate::writer::{write_sorted, WriteError};

/// One item: its index key and entry, or why it is left out.
#[derive(Debug)]
struct Slot {
    result: Result<(Vec<u8>, Entry<'static>), ItemError>,
}

/// Items by the table's own key (the Domain as written), validated.
#[derive(Debug, Default)]
pub struct Mirror {
    items: HashMap<String, Slot>,
    /// Index key → the valid items that have it (more than one: duplicates).
    keys: BTreeMap<Vec<u8>, Vec<String>>,
    /// Index keys whose route may have changed since the last settle, with
    /// the route each had then.
    touched: BTreeMap<Vec<u8>, Option<Entry<'static>>>,
    /// Table keys set since the last settle.
    touched_items: BTreeSet<String>,
    /// Keys with exactly one valid item: the routes a build holds.
    routes: usize,
    /// Items a build leaves out: invalid ones, and every item of a key
    /// that more than one has.
    left_out: usize,
}

/// What a key held by `n` valid items adds to the routes and to the items
/// left out.
fn counts(n: usize) -> (usize, usize) {
    match n {
        0 => (0, 0),
        1 => (1, 0),
        n => (0, n),
    }
}

impl Mirror {
    pub fn new() -> Mirror {
        Mirror::default()
    }

    /// How many items the table has (valid or not).
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Sets the item under table key `domain` (`None`: it was deleted).
    /// An `Err` is an item already known to be bad (an ARN that did not
    /// resolve, say).
    pub fn set(&mut self, domain: &str, item: Option<Result<RawItem<'static>, ItemError>>) {
        self.touched_items.insert(domain.to_owned());
        // The route before the change is noted while the old item is still there.
        if let Some(Slot { result: Ok((key, _)) }) = self.items.get(domain) {
            let key = key.clone();
            self.touch(&key);
        }
        if let Some(old) = self.items.remove(domain) {
            match old.result {
                Ok((key, _)) => {
                    if let Some(list) = self.keys.get_mut(&key) {
                        let before = list.len();
                        list.retain(|d| d != domain);
                        let after = list.len();
                        if list.is_empty() {
                            self.keys.remove(&key);
                        }
                        self.recount(before, after);
                    }
                }
                Err(_) => self.left_out -= 1,
            }
        }
        let Some(item) = item else { return };
        let result = item.and_then(|item| {
            let route = entry::validate(Location::Index(0), &item)?;
            Ok((route.key(), route))
        });
        match &result {
            Ok((key, _)) => {
                self.touch(key);
                let list = self.keys.entry(key.clone()).or_default();
                list.push(domain.to_owned());
                let after = list.len();
                self.recount(after - 1, after);
            }
            Err(_) => self.left_out += 1,
        }
        self.items.insert(domain.to_owned(), Slot { result });
    }

    /// Moves the counts of a key from `before` valid items to `after`.
    fn recount(&mut self, before: usize, after: usize) {
        let (routes_before, out_before) = counts(before);
        let (routes_after, out_after) = counts(after);
        self.routes = self.routes + routes_after - routes_before;
        self.left_out = self.left_out + out_after - out_before;
    }

    /// Notes the route `key` has before its first change since the last settle.
    fn touch(&mut self, key: &[u8]) {
        if !self.touched.contains_key(key) {
            let before = self.route(key).cloned();
            self.touched.insert(key.to_vec(), before);
        }
    }

    /// The route a build holds under `key`: its item's, when exactly one
    /// valid item has it.
    fn route(&self, key: &[u8]) -> Option<&Entry<'static>> {
        match self.keys.get(key).map(Vec::as_slice) {
            Some([only]) => match &self.items[only].result {
                Ok((_, route)) => Some(route),
                Err(_) => unreachable!("only valid items are indexed"),
            },
            _ => None,
        }
    }

    /// How many routes a build holds now.
    pub fn routes(&self) -> usize {
        self.routes
    }

    /// How many items a build leaves out now (invalid, or duplicates).
    pub fn left_out(&self) -> usize {
        self.left_out
    }

    /// The changes since the last [`settle`](Self::settle), sorted by key
    /// and one per key (as a layer is written): a route for each key whose
    /// route is new or another, a delete for each key that lost its route.
    /// A key changed and changed back is not among them.
    pub fn changes(&self) -> Vec<Change<'static>> {
        let mut changes = Vec::new();
        for (key, before) in &self.touched {
            let now = self.route(key);
            if now == before.as_ref() {
                continue;
            }
            changes.push(match (now, before) {
                (Some(route), _) => Change::Upsert(route.clone()),
                (None, Some(gone)) => Change::Delete(gone.domain.clone()),
                (None, None) => unreachable!("equal"),
            });
        }
        changes
    }

    /// The table keys set since the last settle, sorted.
    pub fn changed_items(&self) -> impl Iterator<Item = &str> {
        self.touched_items.iter().map(String::as_str)
    }

    /// Whether no change is outstanding since the last settle.
    pub fn is_settled(&self) -> bool {
        self.touched.is_empty()
    }

    /// Forgets the changes: the state built from the mirror now is the
    /// one the next [`changes`](Self::changes) start from.
    pub fn settle(&mut self) {
        self.touched.clear();
        self.touched_items.clear();
    }

    /// Why the item under table key `domain` is left out of a build, if it is.
    pub fn why_left_out(&self, domain: &str) -> Option<ItemError> {
        let (key, route) = match &self.items.get(domain)?.result {
            Err(e) => return Some(e.clone()),
            Ok((key, route)) => (key, route),
        };
        let domains = &self.keys[key];
        let other = domains.iter().filter(|d| *d != domain).min()?;
        Some(ItemError {
            location: Location::Index(0),
            domain: Some(domain.to_owned()),
            kind: ItemErrorKind::Duplicate {
                domain: route.domain.to_string(),
                other: Location::Index(0),
                other_written: other.clone(),
            },
        })
    }

    /// Writes the snapshot of the table as it is now.
    pub fn build(&self) -> Result<Compiled, WriteError> {
        let mut keys: Vec<&[u8]> = Vec::with_capacity(self.keys.len());
        let mut routes: Vec<&Entry<'static>> = Vec::with_capacity(self.keys.len());
        let mut skipped = Vec::new();
        for (key, domains) in &self.keys {
            let route = |d: &String| match &self.items[d].result {
                Ok((_, route)) => route,
                Err(_) => unreachable!("only valid items are indexed"),
            };
            if let [only] = domains.as_slice() {
                keys.push(key);
                routes.push(route(only));
                continue;
            }
            let mut sorted: Vec<&String> = domains.iter().collect();
            sorted.sort();
            for (i, d) in sorted.iter().enumerate() {
                let other = sorted[if i == 0 { 1 } else { 0 }];
                skipped.push(ItemError {
                    location: Location::Index(0),
                    domain: Some((*d).clone()),
                    kind: ItemErrorKind::Duplicate {
                        domain: route(d).domain.to_string(),
                        other: Location::Index(0),
                        other_written: other.clone(),
                    },
                });
            }
        }
        skipped.extend(self.items.values().filter_map(|e| e.result.as_ref().err().cloned()));
        skipped.sort_by(|a, b| a.domain.cmp(&b.domain));
        let bytes = write_sorted(&keys, &routes)?;
        Ok(Compiled { id: SnapshotId::of(&bytes), bytes, stats: Stats::of(&keys, &routes), skipped })
    }
}

/// The table key of an item: its Domain, if a string.
pub fn table_key<'a>(item: &'a RawItem<'_>) -> Option<&'a str> {
    match &item.domain {
        Some(Value::Str(d)) => Some(d),
        _ => None,
    }
}
