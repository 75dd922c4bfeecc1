//! Small JSON helpers that keep upstream bytes intact.
//!
//! The data plane never parses a tool definition or a call result into a `Value`: that
//! would reorder or drop what it does not know. It reads the top-level keys of an object
//! as raw slices ([`RawObject`]) and writes objects back by concatenating those slices.

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;

/// A borrowed object key; borrowed unless it contains escapes.
#[derive(Deserialize)]
struct Key<'a>(#[serde(borrow)] Cow<'a, str>);

/// The top-level members of a JSON object, in document order, values raw.
pub(crate) struct RawObject<'a>(pub Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> Deserialize<'de> for RawObject<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawObject<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
                    let v: &'de RawValue = map.next_value()?;
                    out.push((k, v));
                }
                Ok(RawObject(out))
            }
        }
        d.deserialize_map(V)
    }
}

impl<'a> RawObject<'a> {
    pub(crate) fn parse(text: &'a str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    pub(crate) fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }
}

/// Appends `s` as a JSON string literal.
pub(crate) fn push_str(out: &mut Vec<u8>, s: &str) {
    // Writing into a Vec cannot fail and a &str always serializes.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Reads a raw JSON string value (borrowed unless escaped); `None` if it is not a string.
pub(crate) fn as_str(raw: &RawValue) -> Option<Cow<'_, str>> {
    #[derive(Deserialize)]
    struct S<'a>(#[serde(borrow)] Cow<'a, str>);
    serde_json::from_str::<S<'_>>(raw.get()).ok().map(|s| s.0)
}

/// Byte range of `inner` inside `outer`, when `inner` is a sub-slice of it (as borrowed
/// `RawValue`s are). Lets a caller splice one member of an object without re-encoding
/// the rest.
pub(crate) fn span_in(outer: &str, inner: &str) -> Option<std::ops::Range<usize>> {
    let start = (inner.as_ptr() as usize).checked_sub(outer.as_ptr() as usize)?;
    let end = start.checked_add(inner.len())?;
    // Checked again by content so a wrong pointer assumption can never corrupt output.
    (outer.get(start..end)? == inner).then_some(start..end)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;

    #[test]
    fn raw_object_keeps_order_and_bytes() {
        let text = r#"{"b": {"x":1.50}, "a":"q\"", "z\u0041": [1, 2]}"#;
        let o = RawObject::parse(text).unwrap();
        let keys: Vec<_> = o.0.iter().map(|(k, _)| k.as_ref()).collect();
        assert_eq!(keys, vec!["b", "a", "zA"]);
        assert_eq!(o.get("b").unwrap().get(), r#"{"x":1.50}"#);
        assert_eq!(as_str(o.get("a").unwrap()).unwrap(), "q\"");
        assert!(RawObject::parse("[1]").is_err());
    }

    #[test]
    fn span_of_borrowed_member() {
        let text = r#"{"name":"a","x":1}"#;
        let o = RawObject::parse(text).unwrap();
        let r = span_in(text, o.get("name").unwrap().get()).unwrap();
        assert_eq!(&text[r], "\"a\"");
        assert!(span_in(text, "\"a\"").is_none());
    }
}
