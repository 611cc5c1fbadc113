//! A table kept validated between compiles, for the watcher: a change
//! re-validates one item, and a build only writes (no parse, no
//! validation, no sort). It compiles to exactly the bytes that
//! [`compile`](crate::compile()) with `skip_invalid` makes from the same
//! items (tested), duplicates included: two items that normalize to the
//! same Domain are both left out.

use std::collections::{BTreeMap, HashMap};

use edgeroute_edge::SnapshotId;

use crate::compile::{Compiled, Stats};
use crate::entry::{self, Entry, ItemError, ItemErrorKind};
use crate::item::{Location, RawItem, Value};
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
        if let Some(old) = self.items.remove(domain) {
            if let Ok((key, _)) = old.result {
                if let Some(list) = self.keys.get_mut(&key) {
                    list.retain(|d| d != domain);
                    if list.is_empty() {
                        self.keys.remove(&key);
                    }
                }
            }
        }
        let Some(item) = item else { return };
        let result = item.and_then(|item| {
            let route = entry::validate(Location::Index(0), &item)?;
            Ok((route.key(), route))
        });
        if let Ok((key, _)) = &result {
            self.keys.entry(key.clone()).or_default().push(domain.to_owned());
        }
        self.items.insert(domain.to_owned(), Slot { result });
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
        Ok(Compiled { id: SnapshotId::of(&bytes), bytes, stats: Stats::of(&routes), skipped })
    }
}

/// The table key of an item: its Domain, if a string.
pub fn table_key<'a>(item: &'a RawItem<'_>) -> Option<&'a str> {
    match &item.domain {
        Some(Value::Str(d)) => Some(d),
        _ => None,
    }
}
