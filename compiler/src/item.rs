//! A routing-table item as read from a source, before validation.
//!
//! Attribute values are kept *loosely* typed, so that an attribute of the
//! wrong type becomes a per-item error that names the item's Domain instead
//! of a parse failure that loses it.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// Where an item came from, for error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Location {
    /// 1-based line of a JSON Lines file.
    Line(usize),
    /// 0-based position in a JSON array.
    Index(usize),
    /// The `index`-th item (from 0) that a Scan returned for `segment`.
    Scan { segment: u32, index: u32 },
    /// 1-based line of a table export's data file, numbered (from 1) in
    /// the order of `manifest-files.json`.
    Export { file: u32, line: u32 },
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Line(n) => write!(f, "line {n}"),
            Location::Index(i) => write!(f, "item {i}"),
            Location::Scan { segment, index } => write!(f, "scan segment {segment} item {index}"),
            Location::Export { file, line } => write!(f, "data file {file} line {line}"),
        }
    }
}

/// An attribute value of any JSON type. Strings borrow from the source's
/// bytes when they can (no escapes), which saves millions of allocations on
/// big tables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value<'a> {
    Str(Cow<'a, str>),
    List(Vec<Value<'a>>),
    /// `true` or `false`.
    Bool(bool),
    /// Any other JSON type, by name (`number`, `object`, …).
    Other(&'static str),
}

impl Value<'_> {
    /// The type's name as a user would write it in a table.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "string",
            Value::List(_) => "list",
            Value::Bool(_) => "boolean",
            Value::Other(t) => t,
        }
    }
}

/// One item with the attributes edgeroute reads; others are ignored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawItem<'a> {
    pub domain: Option<Value<'a>>,
    pub target: Option<Value<'a>>,
    pub origin: Option<Value<'a>>,
    pub assets: Option<Value<'a>>,
    pub fallback: Option<Value<'a>>,
    /// `Deleted`, in the JSON Lines of `edgeroute apply` only (`true`: a
    /// deletion of the Domain); a table's items never carry it, and
    /// DynamoDB's typed JSON ignores it.
    pub deleted: Option<Value<'a>>,
    /// Set when the item is not a JSON object at all (its JSON type).
    pub not_an_object: Option<&'static str>,
    /// An attribute given twice.
    pub duplicate_attribute: Option<&'static str>,
    /// Attributes whose name is one of edgeroute's in another case
    /// (`domain` for `Domain`), as written: names are case-sensitive, so
    /// they are ignored; a missing attribute's error says what was meant,
    /// and the CLI warns about the others ([`RawItem::ignored_attributes`]).
    pub miscased: Vec<Cow<'a, str>>,
}

/// The attributes edgeroute reads, spelled as the table must spell them.
pub const ATTRIBUTES: [&str; 5] = ["Domain", "Target", "Origin", "Assets", "Fallback"];

impl Value<'_> {
    /// The value, owning its strings.
    pub fn into_owned(self) -> Value<'static> {
        match self {
            Value::Str(s) => Value::Str(Cow::Owned(s.into_owned())),
            Value::List(list) => Value::List(list.into_iter().map(Value::into_owned).collect()),
            Value::Bool(b) => Value::Bool(b),
            Value::Other(t) => Value::Other(t),
        }
    }
}

impl RawItem<'_> {
    /// The item, owning its strings.
    pub fn into_owned(self) -> RawItem<'static> {
        let own = |v: Option<Value<'_>>| v.map(Value::into_owned);
        RawItem {
            domain: own(self.domain),
            target: own(self.target),
            origin: own(self.origin),
            assets: own(self.assets),
            fallback: own(self.fallback),
            deleted: own(self.deleted),
            not_an_object: self.not_an_object,
            duplicate_attribute: self.duplicate_attribute,
            miscased: self.miscased.into_iter().map(|m| Cow::Owned(m.into_owned())).collect(),
        }
    }

    /// Notes `name`, an attribute edgeroute does not read, if it is one of
    /// [`ATTRIBUTES`] in another case.
    pub fn note_unread(&mut self, name: &str) {
        if ATTRIBUTES.iter().any(|a| *a != name && a.eq_ignore_ascii_case(name)) {
            self.miscased.push(Cow::Owned(name.to_owned()));
        }
    }

    /// [`note_unread`](Self::note_unread) for every attribute of a map
    /// (DynamoDB's), in name order, so that what the errors show does not
    /// depend on the map's order.
    pub fn note_unread_names<'n>(&mut self, names: impl IntoIterator<Item = &'n String>) {
        let mut names: Vec<&String> = names.into_iter().collect();
        names.sort_unstable();
        for name in names {
            self.note_unread(name);
        }
    }

    /// The attribute `name` (one of [`ATTRIBUTES`]) was meant to be, as
    /// written in another case, if the item has it.
    pub fn miscased(&self, name: &str) -> Option<&str> {
        self.miscased.iter().map(|m| m.as_ref()).find(|m| m.eq_ignore_ascii_case(name))
    }

    /// Attributes written in another case that edgeroute therefore ignores
    /// while the item stays valid without them: `(as written, meant)` for
    /// `Origin`, `Assets` and `Fallback` when the right spelling is absent.
    pub fn ignored_attributes(&self) -> impl Iterator<Item = (&str, &'static str)> {
        let present = |a: &str| match a {
            "Origin" => self.origin.is_some(),
            "Assets" => self.assets.is_some(),
            "Fallback" => self.fallback.is_some(),
            _ => true,
        };
        self.miscased.iter().filter_map(move |m| {
            let meant = ATTRIBUTES.iter().find(|a| a.eq_ignore_ascii_case(m))?;
            (!present(meant)).then_some((m.as_ref(), *meant))
        })
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Value<'de>, E> {
        Ok(Value::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value<'de>, E> {
        Ok(Value::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Value<'de>, E> {
        Ok(Value::Str(Cow::Owned(v)))
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value<'de>, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Value<'de>, E> {
        Ok(Value::Other("number"))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Value<'de>, E> {
        Ok(Value::Other("number"))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Value<'de>, E> {
        Ok(Value::Other("number"))
    }
    fn visit_unit<E>(self) -> Result<Value<'de>, E> {
        Ok(Value::Other("null"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value<'de>, A::Error> {
        let mut items = Vec::new();
        while let Some(v) = seq.next_element::<Value<'de>>()? {
            items.push(v);
        }
        Ok(Value::List(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value<'de>, A::Error> {
        while map.next_entry::<de::IgnoredAny, de::IgnoredAny>()?.is_some() {}
        Ok(Value::Other("object"))
    }
}

impl<'de> Deserialize<'de> for Value<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Value<'de>, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

/// How a format writes attribute values: plain JSON (`"Target": "s3://b"`)
/// or DynamoDB's typed JSON (`"Target": {"S": "s3://b"}`).
trait AttributeValues {
    const EXPECTING: &'static str;
    /// Whether `Deleted` is read (plain JSON, as `edgeroute apply` reads it).
    const READS_DELETED: bool;
    fn next_value<'de, A: MapAccess<'de>>(map: &mut A) -> Result<Value<'de>, A::Error>;
}

/// Plain JSON values: the JSON file source.
struct PlainJson;

impl AttributeValues for PlainJson {
    const EXPECTING: &'static str = "a routing-table item (a JSON object)";
    const READS_DELETED: bool = true;
    fn next_value<'de, A: MapAccess<'de>>(map: &mut A) -> Result<Value<'de>, A::Error> {
        map.next_value::<Value<'de>>()
    }
}

struct ItemVisitor<F>(std::marker::PhantomData<F>);

impl<'de, F: AttributeValues> Visitor<'de> for ItemVisitor<F> {
    type Value = RawItem<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(F::EXPECTING)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawItem<'de>, A::Error> {
        let mut item = RawItem::default();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            let (name, slot) = match key.as_ref() {
                "Domain" => ("Domain", &mut item.domain),
                "Target" => ("Target", &mut item.target),
                "Origin" => ("Origin", &mut item.origin),
                "Assets" => ("Assets", &mut item.assets),
                "Fallback" => ("Fallback", &mut item.fallback),
                "Deleted" if F::READS_DELETED => ("Deleted", &mut item.deleted),
                _ => {
                    item.note_unread(&key);
                    map.next_value::<de::IgnoredAny>()?;
                    continue;
                }
            };
            let value = F::next_value(&mut map)?;
            if slot.replace(value).is_some() {
                item.duplicate_attribute.get_or_insert(name);
            }
        }
        Ok(item)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<RawItem<'de>, A::Error> {
        ValueVisitor.visit_seq(seq)?;
        Ok(RawItem { not_an_object: Some("list"), ..RawItem::default() })
    }
    fn visit_str<E>(self, _: &str) -> Result<RawItem<'de>, E> {
        Ok(RawItem { not_an_object: Some("string"), ..RawItem::default() })
    }
    fn visit_bool<E>(self, _: bool) -> Result<RawItem<'de>, E> {
        Ok(RawItem { not_an_object: Some("boolean"), ..RawItem::default() })
    }
    fn visit_i64<E>(self, _: i64) -> Result<RawItem<'de>, E> {
        Ok(RawItem { not_an_object: Some("number"), ..RawItem::default() })
    }
    fn visit_u64<E>(self, _: u64) -> Result<RawItem<'de>, E> {
        Ok(RawItem { not_an_object: Some("number"), ..RawItem::default() })
    }
    fn visit_f64<E>(self, _: f64) -> Result<RawItem<'de>, E> {
        Ok(RawItem { not_an_object: Some("number"), ..RawItem::default() })
    }
    fn visit_unit<E>(self) -> Result<RawItem<'de>, E> {
        Ok(RawItem { not_an_object: Some("null"), ..RawItem::default() })
    }
}

impl<'de> Deserialize<'de> for RawItem<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RawItem<'de>, D::Error> {
        d.deserialize_any(ItemVisitor::<PlainJson>(std::marker::PhantomData))
    }
}

/// DynamoDB's typed JSON, as table exports (and the low-level API) write
/// it: every value is an object with one key naming its type.
struct DynamoJson;

impl AttributeValues for DynamoJson {
    const EXPECTING: &'static str = "a DynamoDB item (a JSON object of typed attribute values)";
    const READS_DELETED: bool = false;
    fn next_value<'de, A: MapAccess<'de>>(map: &mut A) -> Result<Value<'de>, A::Error> {
        Ok(map.next_value::<TypedValue<'de>>()?.0)
    }
}

/// An item in DynamoDB's typed JSON (`{"Domain": {"S": "a.dev"}, …}`).
#[derive(Debug)]
pub struct DynamoItem<'a>(pub RawItem<'a>);

impl<'de: 'a, 'a> Deserialize<'de> for DynamoItem<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<DynamoItem<'a>, D::Error> {
        d.deserialize_map(ItemVisitor::<DynamoJson>(std::marker::PhantomData)).map(DynamoItem)
    }
}

/// The names under which errors show DynamoDB's types that edgeroute never
/// reads (`S`, `L` and `SS` become strings and lists).
pub fn dynamodb_type_name(tag: &str) -> Option<&'static str> {
    Some(match tag {
        "N" => "number (N)",
        "B" => "binary (B)",
        "BOOL" => "boolean (BOOL)",
        "NULL" => "null (NULL)",
        "M" => "map (M)",
        "NS" => "number set (NS)",
        "BS" => "binary set (BS)",
        _ => return None,
    })
}

/// An item as DynamoDB's typed JSON that [`DynamoItem`] reads back as the
/// same item: the watcher's checkpoint of a table's items as written. A
/// type edgeroute never reads keeps only its name (`{"N": null}`), and an
/// attribute named like one of edgeroute's in another case is kept as a
/// `NULL`, which is all its errors say of it.
pub fn to_dynamodb_json(item: &RawItem<'_>) -> serde_json::Value {
    fn typed(value: &Value<'_>) -> serde_json::Value {
        let (tag, inner) = match value {
            Value::Str(s) => ("S", serde_json::Value::String(s.to_string())),
            Value::List(list) => ("L", serde_json::Value::Array(list.iter().map(typed).collect())),
            Value::Bool(b) => ("BOOL", serde_json::Value::Bool(*b)),
            Value::Other(name) => (dynamodb_tag(name).unwrap_or("NULL"), serde_json::Value::Null),
        };
        serde_json::json!({ tag: inner })
    }
    let mut map = serde_json::Map::new();
    for (name, value) in [
        ("Domain", &item.domain),
        ("Target", &item.target),
        ("Origin", &item.origin),
        ("Assets", &item.assets),
        ("Fallback", &item.fallback),
    ] {
        if let Some(value) = value {
            map.insert(name.to_owned(), typed(value));
        }
    }
    for name in &item.miscased {
        map.insert(name.to_string(), serde_json::json!({"NULL": true}));
    }
    serde_json::Value::Object(map)
}

/// The tag of a type [`dynamodb_type_name`] names.
fn dynamodb_tag(name: &str) -> Option<&'static str> {
    ["N", "B", "BOOL", "NULL", "M", "NS", "BS"].into_iter().find(|tag| dynamodb_type_name(tag) == Some(name))
}

/// One typed value: `{"S": "…"}`, `{"L": [typed values]}`, `{"SS": ["…"]}`,
/// or another type, kept by name only.
struct TypedValue<'a>(Value<'a>);

impl<'de> Deserialize<'de> for TypedValue<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<TypedValue<'de>, D::Error> {
        d.deserialize_map(TypedValueVisitor)
    }
}

struct TypedValueVisitor;

impl<'de> Visitor<'de> for TypedValueVisitor {
    type Value = TypedValue<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a DynamoDB attribute value (an object with one type key: S, N, L, SS, …)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TypedValue<'de>, A::Error> {
        let tag = map.next_key::<Cow<'de, str>>()?.ok_or_else(|| de::Error::custom("empty attribute value"))?;
        let value = match tag.as_ref() {
            "S" => match map.next_value::<Value<'de>>()? {
                s @ Value::Str(_) => s,
                other => {
                    return Err(de::Error::custom(format!(
                        "an S value must be a JSON string, not {}",
                        other.type_name()
                    )))
                }
            },
            "L" => Value::List(map.next_value::<Vec<TypedValue<'de>>>()?.into_iter().map(|v| v.0).collect()),
            "SS" => {
                let strings = map.next_value::<Vec<Value<'de>>>()?;
                if let Some(other) = strings.iter().find(|v| !matches!(v, Value::Str(_))) {
                    return Err(de::Error::custom(format!(
                        "an SS value holds JSON strings, not {}",
                        other.type_name()
                    )));
                }
                Value::List(strings)
            }
            other => match dynamodb_type_name(other) {
                Some(name) => {
                    map.next_value::<de::IgnoredAny>()?;
                    Value::Other(name)
                }
                None => return Err(de::Error::custom(format!("unknown DynamoDB type {other:?}"))),
            },
        };
        if map.next_key::<de::IgnoredAny>()?.is_some() {
            return Err(de::Error::custom(format!("a DynamoDB attribute value has one type key; {tag} has company")));
        }
        Ok(TypedValue(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamodb_json_reads_back_as_the_same_item() {
        let s = |t: &str| Value::Str(Cow::Owned(t.to_owned()));
        let items = [
            RawItem { domain: Some(s("A.example.com")), target: Some(s("s3://b/p")), ..RawItem::default() },
            RawItem {
                domain: Some(s("x.example.com")),
                target: Some(Value::Other("number (N)")),
                origin: Some(Value::Other("map (M)")),
                assets: Some(Value::List(vec![s("a.js"), Value::List(vec![s("deep")]), Value::Other("binary (B)")])),
                fallback: Some(Value::Other("null (NULL)")),
                miscased: vec![Cow::Borrowed("domain"), Cow::Borrowed("target")],
                ..RawItem::default()
            },
            RawItem { target: Some(s("https://h")), miscased: vec![Cow::Borrowed("DOMAIN")], ..RawItem::default() },
        ];
        for item in items {
            let json = to_dynamodb_json(&item).to_string();
            let back: DynamoItem<'_> = serde_json::from_str(&json).unwrap();
            assert_eq!(back.0, item, "{json}");
        }
    }
}
