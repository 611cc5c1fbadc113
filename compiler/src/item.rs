//! A routing-table item as read from a source, before validation.
//!
//! Attribute values are kept *loosely* typed, so that an attribute of the
//! wrong type becomes a per-item error that names the item's Domain instead
//! of a parse failure that loses it.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// Where an item came from, for error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Location {
    /// 1-based line of a JSON Lines file.
    Line(usize),
    /// 0-based position in a JSON array.
    Index(usize),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Line(n) => write!(f, "line {n}"),
            Location::Index(i) => write!(f, "item {i}"),
        }
    }
}

/// An attribute value of any JSON type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Str(String),
    List(Vec<Value>),
    /// Any other JSON type, by name (`number`, `object`, …).
    Other(&'static str),
}

impl Value {
    /// The type's name as a user would write it in a table.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "string",
            Value::List(_) => "list",
            Value::Other(t) => t,
        }
    }
}

/// One item with the attributes edgeroute reads; others are ignored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawItem {
    pub domain: Option<Value>,
    pub target: Option<Value>,
    pub origin: Option<Value>,
    pub assets: Option<Value>,
    pub fallback: Option<Value>,
    /// Set when the item is not a JSON object at all (its JSON type).
    pub not_an_object: Option<&'static str>,
    /// An attribute given twice.
    pub duplicate_attribute: Option<&'static str>,
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }
    fn visit_bool<E>(self, _: bool) -> Result<Value, E> {
        Ok(Value::Other("boolean"))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Value, E> {
        Ok(Value::Other("number"))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Value, E> {
        Ok(Value::Other("number"))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Value, E> {
        Ok(Value::Other("number"))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Other("null"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(v) = seq.next_element::<Value>()? {
            items.push(v);
        }
        Ok(Value::List(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        while map
            .next_entry::<de::IgnoredAny, de::IgnoredAny>()?
            .is_some()
        {}
        Ok(Value::Other("object"))
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ItemVisitor;

impl<'de> Visitor<'de> for ItemVisitor {
    type Value = RawItem;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a routing-table item (a JSON object)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawItem, A::Error> {
        let mut item = RawItem::default();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            let (name, slot) = match key.as_ref() {
                "Domain" => ("Domain", &mut item.domain),
                "Target" => ("Target", &mut item.target),
                "Origin" => ("Origin", &mut item.origin),
                "Assets" => ("Assets", &mut item.assets),
                "Fallback" => ("Fallback", &mut item.fallback),
                _ => {
                    map.next_value::<de::IgnoredAny>()?;
                    continue;
                }
            };
            let value = map.next_value::<Value>()?;
            if slot.replace(value).is_some() {
                item.duplicate_attribute.get_or_insert(name);
            }
        }
        Ok(item)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<RawItem, A::Error> {
        ValueVisitor.visit_seq(seq)?;
        Ok(RawItem {
            not_an_object: Some("list"),
            ..RawItem::default()
        })
    }
    fn visit_str<E>(self, _: &str) -> Result<RawItem, E> {
        Ok(RawItem {
            not_an_object: Some("string"),
            ..RawItem::default()
        })
    }
    fn visit_bool<E>(self, _: bool) -> Result<RawItem, E> {
        Ok(RawItem {
            not_an_object: Some("boolean"),
            ..RawItem::default()
        })
    }
    fn visit_i64<E>(self, _: i64) -> Result<RawItem, E> {
        Ok(RawItem {
            not_an_object: Some("number"),
            ..RawItem::default()
        })
    }
    fn visit_u64<E>(self, _: u64) -> Result<RawItem, E> {
        Ok(RawItem {
            not_an_object: Some("number"),
            ..RawItem::default()
        })
    }
    fn visit_f64<E>(self, _: f64) -> Result<RawItem, E> {
        Ok(RawItem {
            not_an_object: Some("number"),
            ..RawItem::default()
        })
    }
    fn visit_unit<E>(self) -> Result<RawItem, E> {
        Ok(RawItem {
            not_an_object: Some("null"),
            ..RawItem::default()
        })
    }
}

impl<'de> Deserialize<'de> for RawItem {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RawItem, D::Error> {
        d.deserialize_any(ItemVisitor)
    }
}
